//! Toxics on a built-in TCP proxy (`mode: tcp`).

use super::{Backend, FaultError, LiftMode};
use crate::fault::action::TcpToxicAction;
use crate::fault::Evidence;
use crate::proxy::tcp::{TcpError, Toxic};
use crate::run::targets::Targets;

pub(super) struct TcpToxic;

pub(crate) struct Held {
    proxy: String,
    name: String,
}

impl Backend for TcpToxic {
    type Action = TcpToxicAction;
    type Held = Held;

    fn evidence(h: &Held, t: &Targets) -> Option<Evidence> {
        let touched = t.tcp_proxies.get(&h.proxy)?.touched(&h.name)?;
        Some(Evidence::Connections { touched })
    }

    async fn apply(a: &TcpToxicAction, t: &mut Targets) -> Result<Held, FaultError> {
        let tcp = t
            .tcp_proxies
            .get(&a.proxy)
            .ok_or_else(|| FaultError::NotRunning {
                what: "tcp proxy",
                name: a.proxy.clone(),
            })?;
        let toxic = Toxic::new(a.name.clone(), a.kind.clone(), a.stream, a.toxicity);
        tcp.add_toxic(toxic).map_err(|source| FaultError::Tcp {
            proxy: a.proxy.clone(),
            source,
        })?;
        Ok(Held {
            proxy: a.proxy.clone(),
            name: a.name.clone(),
        })
    }

    async fn lift(h: &mut Held, t: &mut Targets, _: LiftMode) -> Result<(), FaultError> {
        let Some(tcp) = t.tcp_proxies.get(&h.proxy) else {
            return Ok(());
        };
        match tcp.remove_toxic(&h.name) {
            Ok(()) | Err(TcpError::ToxicNotFound) => Ok(()),
            Err(source) => Err(FaultError::Tcp {
                proxy: h.proxy.clone(),
                source,
            }),
        }
    }
}
