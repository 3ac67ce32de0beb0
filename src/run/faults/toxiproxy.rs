//! Toxics on a proxy of a Toxiproxy server (`driver: toxiproxy`).

use super::{Backend, FaultError, LiftMode};
use crate::fault::action::ToxiproxyAction;
use crate::run::targets::Targets;
use crate::toxiproxy::ToxiproxyError;

pub(super) struct ToxiproxyToxic;

pub(crate) struct Held {
    proxy: String,
    name: String,
}

impl Backend for ToxiproxyToxic {
    type Action = ToxiproxyAction;
    type Held = Held;

    async fn apply(a: &ToxiproxyAction, t: &mut Targets) -> Result<Held, FaultError> {
        let client = t.toxiproxy.as_ref().ok_or_else(|| FaultError::NotRunning {
            what: "Toxiproxy server for proxy",
            name: a.proxy.clone(),
        })?;
        client.add_toxic(&a.proxy, &a.toxic).await?;
        Ok(Held {
            proxy: a.proxy.clone(),
            name: a.toxic.name.clone().unwrap_or_default(),
        })
    }

    async fn lift(h: &mut Held, t: &mut Targets, _: LiftMode) -> Result<(), FaultError> {
        let Some(client) = &t.toxiproxy else {
            return Ok(());
        };
        match client.remove_toxic(&h.proxy, &h.name).await {
            // Already gone: the proxy was reset or deleted by someone else.
            Ok(()) | Err(ToxiproxyError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
