//! How a run ends, as an exit code, and the failures that decide it.

use crate::experiment::ExperimentError;

/// The process exit codes, as documented in the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Every budget met (or, for `validate`, every file valid).
    Success = 0,
    /// At least one budget missed.
    BudgetMissed = 1,
    /// Bad input or usage: the experiment file, a flag.
    BadInput = 2,
    /// Stopped early (a signal or `abort_if`) after rolling everything back.
    Aborted = 3,
    /// The environment failed: a port taken, a service that would not start.
    Environment = 4,
    /// `faultline simulate` only: the simulated host ran out of KV-cache memory and crashed,
    /// exiting like a process the kernel OOM-killed (128 + SIGKILL).
    SimulatedOom = 137,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// Why a run could not reach a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    BadExperiment(#[from] ExperimentError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Environment(String),
    #[error("aborted: {0}")]
    Aborted(String),
    /// A fault could not be applied mid-drill: the run stopped there and rolled back.
    #[error("could not inject {id} on {target}: {source}; every fault was lifted and every service stopped")]
    Inject {
        id: String,
        target: String,
        #[source]
        source: Box<crate::run::FaultError>,
    },
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::BadExperiment(_) | Failure::Usage(_) => ExitCode::BadInput,
            Failure::Environment(_) | Failure::Inject { .. } => ExitCode::Environment,
            Failure::Aborted(_) => ExitCode::Aborted,
        }
    }
}

/// A listener that cannot be set up is the environment's fault: a port taken, descriptors out.
impl From<crate::net::BindError> for Failure {
    fn from(e: crate::net::BindError) -> Self {
        Failure::Environment(e.to_string())
    }
}

/// So is a process that cannot watch for its stop signals.
impl From<crate::net::SignalError> for Failure {
    fn from(e: crate::net::SignalError) -> Self {
        Failure::Environment(e.to_string())
    }
}

/// The exit code for any error that reaches `main`: typed failures keep their code; anything
/// else is an environment failure (an I/O error writing a report, say).
pub fn exit_code_for(err: &anyhow::Error) -> ExitCode {
    err.chain()
        .find_map(|e| e.downcast_ref::<Failure>().map(Failure::exit_code))
        .or_else(|| {
            err.chain()
                .find_map(|e| e.downcast_ref::<ExperimentError>())
                .map(|_| ExitCode::BadInput)
        })
        .unwrap_or(ExitCode::Environment)
}
