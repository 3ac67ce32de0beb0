//! The rules every proxy served by `faultline proxy` follows when its address, upstream or
//! enabled state changes, whatever it carries (TCP bytes or HTTP requests): a new address or
//! upstream restarts a listening proxy, and a restart that fails leaves it as it was.

/// A proxy's state while its lock is held, seen through what `update` needs.
pub(crate) trait Relisten {
    type Error;
    fn listen_mut(&mut self) -> &mut String;
    fn upstream_mut(&mut self) -> &mut String;
    fn is_running(&self) -> bool;
    async fn start(&mut self) -> Result<(), Self::Error>;
    async fn stop(&mut self);
}

/// Applies a change of address, upstream and/or enabled state, as Toxiproxy does.
pub(crate) async fn update<R: Relisten>(
    r: &mut R,
    listen: Option<&str>,
    upstream: Option<&str>,
    enabled: Option<bool>,
) -> Result<(), R::Error> {
    let was_running = r.is_running();
    let changed = listen.is_some_and(|l| l != r.listen_mut().as_str())
        || upstream.is_some_and(|u| u != r.upstream_mut().as_str());
    if !changed {
        return match enabled {
            Some(true) => r.start().await,
            Some(false) => {
                r.stop().await;
                Ok(())
            }
            None => Ok(()),
        };
    }
    r.stop().await;
    let old = (r.listen_mut().clone(), r.upstream_mut().clone());
    if let Some(l) = listen {
        *r.listen_mut() = l.to_string();
    }
    if let Some(u) = upstream {
        *r.upstream_mut() = u.to_string();
    }
    if enabled.unwrap_or(was_running) {
        if let Err(e) = r.start().await {
            // Leave the proxy as it was rather than half changed.
            *r.listen_mut() = old.0;
            *r.upstream_mut() = old.1;
            if was_running {
                let _ = r.start().await;
            }
            return Err(e);
        }
    }
    Ok(())
}
