//! HTTP faults on a built-in HTTP proxy: switched on and off in the proxy's fault table.

use super::{Backend, FaultError, LiftMode};
use crate::fault::action::HttpAction;
use crate::fault::Evidence;
use crate::run::targets::Targets;

pub(super) struct HttpFault;

pub(crate) struct Held {
    proxy: String,
    id: String,
}

impl Backend for HttpFault {
    type Action = HttpAction;
    type Held = Held;

    fn evidence(h: &Held, t: &Targets) -> Option<Evidence> {
        let touched = t.proxies.get(&h.proxy)?.faults().touched(&h.id)?;
        Some(Evidence::Requests {
            touched,
            seen_by_clients: None,
        })
    }

    async fn apply(a: &HttpAction, t: &mut Targets) -> Result<Held, FaultError> {
        let p = t
            .proxies
            .get(&a.proxy)
            .ok_or_else(|| FaultError::NotRunning {
                what: "proxy",
                name: a.proxy.clone(),
            })?;
        p.faults().inject(&a.id, a.fault.clone());
        Ok(Held {
            proxy: a.proxy.clone(),
            id: a.id.clone(),
        })
    }

    async fn lift(h: &mut Held, t: &mut Targets, _: LiftMode) -> Result<(), FaultError> {
        // A proxy already stopped carries no fault any more.
        if let Some(p) = t.proxies.get(&h.proxy) {
            p.faults().lift(&h.id);
        }
        Ok(())
    }
}
