//! Why a fault could not be applied or lifted.

use crate::agent::AgentError;
use crate::exit::Failure;
use crate::proxy::tcp::TcpError;
use crate::toxiproxy::ToxiproxyError;

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The check guarantees every target exists; this is a target that stopped or never
    /// started (a start-up that failed half way).
    #[error("{what} `{name}` is not running")]
    NotRunning { what: &'static str, name: String },
    #[error("service `{service}`: {source}")]
    Process {
        service: String,
        #[source]
        source: Box<Failure>,
    },
    #[error("service `{service}` has no KV-cache memory model to leak from")]
    NoMemoryModel { service: String },
    #[error("proxy `{proxy}`: {source}")]
    Tcp {
        proxy: String,
        #[source]
        source: TcpError,
    },
    #[error(transparent)]
    Toxiproxy(#[from] ToxiproxyError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The agent could not be told to lift; its lease lifts the fault by itself.
    #[error("{source}; the agent lifts it by itself within {lease}")]
    AgentLift {
        #[source]
        source: AgentError,
        lease: String,
    },
    #[error("GPU memory pressure: {0}")]
    Gpu(#[source] Box<Failure>),
}
