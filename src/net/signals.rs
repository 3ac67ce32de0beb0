//! The signals that stop faultline's long-running commands (`run`, `agent`, `proxy`,
//! `simulate`, `gpu-hog`): SIGINT (Ctrl-C) and SIGTERM, set up in one place.

use std::fmt;

use tokio::signal::unix::{signal, SignalKind};

/// Which signal asked for the stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
    /// SIGTERM: a supervisor (systemd, Kubernetes, `kill`) asking to stop.
    Terminate,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

/// The handlers could not be installed (no async runtime, or the OS refused).
#[derive(Debug, thiserror::Error)]
#[error("cannot handle {signal}: {source}")]
pub struct SignalError {
    pub signal: Signal,
    #[source]
    pub source: std::io::Error,
}

/// SIGINT and SIGTERM handlers, installed from the moment this exists: a process that must
/// never be killed with something still in force (the agent with a fault applied, a hog with
/// GPU memory held) installs them before it applies anything.
#[derive(Debug)]
pub struct ShutdownSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs both handlers; from then on neither signal kills the process.
    pub fn install() -> Result<ShutdownSignals, SignalError> {
        let install = |signal_kind: SignalKind, which: Signal| {
            signal(signal_kind).map_err(|source| SignalError {
                signal: which,
                source,
            })
        };
        Ok(ShutdownSignals {
            int: install(SignalKind::interrupt(), Signal::Interrupt)?,
            term: install(SignalKind::terminate(), Signal::Terminate)?,
        })
    }

    /// Resolves with the next signal. Cancel-safe: a signal that arrived while nobody waited
    /// is returned by the next call.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::Interrupt,
            _ = self.term.recv() => Signal::Terminate,
        }
    }
}

/// Installs the handlers and resolves with the first SIGINT or SIGTERM. The handlers exist
/// only once this is first polled; install [`ShutdownSignals`] up front where that matters.
pub async fn shutdown_signal() -> Result<Signal, SignalError> {
    Ok(ShutdownSignals::install()?.recv().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_named_as_the_os_names_them() {
        assert_eq!(Signal::Interrupt.to_string(), "SIGINT");
        assert_eq!(Signal::Terminate.to_string(), "SIGTERM");
    }
}
