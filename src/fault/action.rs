//! Faults as a run applies them. The experiment check turns every timeline injection into one
//! of these, already validated and in the form its backend takes, so nothing is parsed again
//! once the drill is running; `run/faults/` holds one backend per variant.

use std::time::Duration;

use super::FaultSpec;
use crate::agent;
use crate::gpu::GpuPressure;
use crate::proxy::tcp::{Stream, ToxicKind};
use crate::toxiproxy::NewToxic;

/// One injection, in the form the backend that carries it out takes.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// An HTTP fault on a built-in HTTP proxy.
    Http(HttpAction),
    /// A toxic on a built-in TCP proxy (`mode: tcp`).
    TcpToxic(TcpToxicAction),
    /// A toxic on a proxy of a Toxiproxy server (`driver: toxiproxy`).
    ToxiproxyToxic(ToxiproxyAction),
    /// A signal to a `command:` service's process.
    Signal(SignalAction),
    /// A KV-cache leak in a simulated host with a memory model.
    SimulatedLeak(LeakAction),
    /// A fault a live host's agent applies.
    Agent(AgentAction),
    /// GPU memory held on this machine by a child hog process.
    LocalGpu(LocalGpuAction),
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpAction {
    pub proxy: String,
    /// The key in the proxy's fault table.
    pub id: String,
    /// One of the traffic faults (`FaultScope::Traffic`).
    pub fault: FaultSpec,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TcpToxicAction {
    pub proxy: String,
    /// The toxic's name on the proxy (the fault id in the characters toxic names allow).
    pub name: String,
    pub kind: ToxicKind,
    pub stream: Stream,
    pub toxicity: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ToxiproxyAction {
    pub proxy: String,
    /// Sent as is; its `name` is always set, so the lift can find it.
    pub toxic: NewToxic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGKILL; lifted by starting the service again.
    Kill,
    /// SIGSTOP; lifted by SIGCONT.
    Pause,
    /// Stop and start again; over once the service is ready.
    Restart,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SignalAction {
    pub service: String,
    pub signal: Signal,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LeakAction {
    pub service: String,
    pub per_second: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AgentAction {
    pub host: String,
    /// The id the agent is asked to give the fault (the experiment's id in the characters the
    /// agent accepts), known before the request so a cancelled start can still be lifted.
    pub agent_id: String,
    pub fault: agent::FaultSpec,
    /// How long to wait for the agent's answer when it is slow by nature (a GPU hog filling
    /// memory); `None` takes the client's usual timeout.
    pub wait: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LocalGpuAction {
    pub pressure: GpuPressure,
}

impl FaultAction {
    /// Whether the fault is over once applied (a restart), rather than in force until lifted.
    pub fn is_momentary(&self) -> bool {
        matches!(
            self,
            FaultAction::Signal(SignalAction {
                signal: Signal::Restart,
                ..
            })
        )
    }
}

/// The experiment's fault id in the characters agents and toxic names accept (ids such as the
/// default `node/process` contain a slash).
pub fn backend_id(id: &str) -> String {
    let cleaned: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if cleaned.trim_matches('.').is_empty() {
        "fault".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::backend_id;

    #[test]
    fn backend_ids_keep_what_the_agent_accepts() {
        assert_eq!(backend_id("node/process"), "node-process");
        assert_eq!(backend_id("gpu.taken_1"), "gpu.taken_1");
        assert_eq!(backend_id(".."), "fault");
        assert_eq!(backend_id(&"x".repeat(100)).len(), 64);
        assert!(crate::agent::model::check_id(&backend_id("a b/c:d")).is_ok());
    }
}
