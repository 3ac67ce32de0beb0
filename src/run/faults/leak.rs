//! A KV-cache leak in a simulated host with a memory model.

use super::{Backend, FaultError, LiftMode};
use crate::fault::action::LeakAction;
use crate::run::targets::{Started, Targets};
use crate::simulate::RunningServer;

pub(super) struct SimulatedLeak;

pub(crate) struct Held {
    service: String,
}

fn server<'t>(t: &'t Targets, service: &str) -> Result<&'t RunningServer, FaultError> {
    match t.services.get(service) {
        Some(Started::InProcess(s)) => Ok(s),
        _ => Err(FaultError::NotRunning {
            what: "simulated host",
            name: service.to_string(),
        }),
    }
}

impl Backend for SimulatedLeak {
    type Action = LeakAction;
    type Held = Held;

    async fn apply(a: &LeakAction, t: &mut Targets) -> Result<Held, FaultError> {
        if !server(t, &a.service)?.inject_leak(a.per_second) {
            return Err(FaultError::NoMemoryModel {
                service: a.service.clone(),
            });
        }
        Ok(Held {
            service: a.service.clone(),
        })
    }

    async fn lift(h: &mut Held, t: &mut Targets, _: LiftMode) -> Result<(), FaultError> {
        if let Ok(s) = server(t, &h.service) {
            s.lift_leak();
        }
        Ok(())
    }
}
