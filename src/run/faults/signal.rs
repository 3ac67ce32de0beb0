//! Signals to a `command:` service's process: kill, pause, restart.

use super::{Backend, FaultError, LiftMode};
use crate::exit::Failure;
use crate::fault::action::{Signal, SignalAction};
use crate::fault::Evidence;
use crate::run::targets::{Started, Targets};
use crate::services::RunningProcess;

pub(super) struct ProcessSignal;

pub(crate) struct Held {
    service: String,
    signal: Signal,
    /// The process state right after the signal.
    seen: Option<Evidence>,
}

/// What `/proc` says of `pid` right after `signal` was sent to its group.
fn observe(pid: Option<u32>, signal: Signal) -> Option<Evidence> {
    let expected = match signal {
        Signal::Pause => "stopped",
        Signal::Kill => "gone",
        // A restart is over once applied: a new process, nothing to compare.
        Signal::Restart => return None,
    };
    let seen = match pid.and_then(crate::agent::procfs::read_stat) {
        None => "gone".to_string(),
        // A zombie or a dead task has left as far as a client can tell.
        Some(s) if matches!(s.state, 'Z' | 'X' | 'x') => "gone".to_string(),
        Some(s) if matches!(s.state, 'T' | 't') => "stopped".to_string(),
        Some(s) => format!("in state {}", s.state),
    };
    Some(Evidence::Process { expected, seen })
}

fn process<'t>(t: &'t mut Targets, service: &str) -> Result<&'t mut RunningProcess, FaultError> {
    match t.services.get_mut(service) {
        Some(Started::Process(p)) => Ok(p),
        _ => Err(FaultError::NotRunning {
            what: "command service",
            name: service.to_string(),
        }),
    }
}

fn failed(service: &str) -> impl FnOnce(Failure) -> FaultError + '_ {
    move |e| FaultError::Process {
        service: service.to_string(),
        source: Box::new(e),
    }
}

impl Backend for ProcessSignal {
    type Action = SignalAction;
    type Held = Held;

    async fn apply(a: &SignalAction, t: &mut Targets) -> Result<Held, FaultError> {
        let p = process(t, &a.service)?;
        let pid = p.pid();
        match a.signal {
            Signal::Kill => p.kill().await,
            Signal::Pause => p.pause(),
            Signal::Restart => p.restart().await,
        }
        .map_err(failed(&a.service))?;
        Ok(Held {
            service: a.service.clone(),
            signal: a.signal,
            seen: observe(pid, a.signal),
        })
    }

    fn evidence(h: &Held, _: &Targets) -> Option<Evidence> {
        h.seen.clone()
    }

    async fn lift(h: &mut Held, t: &mut Targets, mode: LiftMode) -> Result<(), FaultError> {
        // A service already stopped by the teardown has nothing left to undo.
        let Ok(p) = process(t, &h.service) else {
            return Ok(());
        };
        match (h.signal, mode) {
            (Signal::Pause, _) => p.resume().map_err(failed(&h.service)),
            (Signal::Kill, LiftMode::Timeline) => p.restart().await.map_err(failed(&h.service)),
            // A restart is over once applied; a killed service at rollback is about to be
            // stopped anyway.
            (Signal::Kill, LiftMode::RollBack) | (Signal::Restart, _) => Ok(()),
        }
    }
}
