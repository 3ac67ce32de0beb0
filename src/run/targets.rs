//! What a run started, that faults act on: services, proxies, agents, the Toxiproxy server.

use std::time::Duration;

use indexmap::IndexMap;

use crate::agent::AgentClient;
use crate::proxy::tcp::TcpProxy;
use crate::proxy::RunningProxy;
use crate::services::RunningProcess;
use crate::simulate::RunningServer;
use crate::toxiproxy::ToxiproxyClient;

/// A started service: served inside faultline, or an external process.
pub(crate) enum Started {
    InProcess(RunningServer),
    Process(Box<RunningProcess>),
}

/// A live host's agent, with the lease its faults get.
pub(crate) struct Agent {
    pub client: AgentClient,
    pub lease: Duration,
}

#[derive(Default)]
pub(crate) struct Targets {
    /// In start order, so teardown can stop them in reverse.
    pub services: IndexMap<String, Started>,
    /// Built-in HTTP proxies.
    pub proxies: IndexMap<String, RunningProxy>,
    /// Built-in TCP proxies (`mode: tcp`).
    pub tcp_proxies: IndexMap<String, TcpProxy>,
    pub agents: IndexMap<String, Agent>,
    /// The Toxiproxy server, and the proxies this run created on it.
    pub toxiproxy: Option<ToxiproxyClient>,
    pub toxiproxy_proxies: Vec<String>,
    /// The longest any fault may stay injected (agents enforce it too).
    pub max_fault_duration: Duration,
}
