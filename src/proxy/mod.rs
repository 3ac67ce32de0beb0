//! The built-in HTTP fault proxy: sits between the system under test and one backend, forwards
//! requests and streams responses frame by frame, and applies the faults in force to each
//! request once it has arrived whole (its body too). Faults come and go while traffic flows
//! (`FaultControl`); the same seed and file give the same decisions for the k-th request
//! through a proxy.
//!
//! What each fault does on the wire:
//! - `latency`: waits before forwarding, after the upstream's headers (and before an injected
//!   error's), or before each forwarded body frame. Several latency faults add up.
//! - `http_error`: answers at once (once the request's body is read) with the status, headers
//!   and a provider-shaped JSON body; the upstream never sees the request.
//! - `truncate_stream` (2xx only): passes exactly the allowed bytes or SSE events, then `close`
//!   ends the connection with a FIN once those bytes are written: a chunked body lacks its
//!   terminating chunk and a sized body is short of its `content-length`, so every HTTP client
//!   sees an incomplete message. `reset` does the same with a RST; `stall` keeps the connection
//!   open and silent. A body that ends exactly at the cut point is left whole.
//! - `stream_error` (2xx `text/event-stream` only): passes the events, sends one error event in
//!   place of the rest and ends the body properly (`content-length` is dropped).
//! - `reset`: the connection gets a RST instead of an answer. `blackhole`: no answer, ever.
//!
//! Split by concern: `server` (accept loop), `conn` (connections that can end by FIN or RST),
//! `control` (the live fault table), `apply` (one request's plan), `body` (streaming body
//! wrappers), `errors` (provider-shaped error bodies).

pub mod admin;
mod apply;
mod body;
mod conn;
mod control;
mod errors;
mod lifecycle;
mod server;
pub mod tcp;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use control::FaultControl;

use crate::exit::Failure;
use crate::experiment::schema::ProxySpec;

/// A proxy serving in the background. Dropping it stops it too, without waiting.
#[derive(Debug)]
pub struct RunningProxy {
    addr: SocketAddr,
    faults: FaultControl,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningProxy {
    /// The address it listens on (the real port when the spec asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn faults(&self) -> FaultControl {
        self.faults.clone()
    }

    /// Stops accepting, drops open connections (including blackholed/stalled ones), waits.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        // The loop cannot panic; if the runtime is shutting down, there is nothing to wait for.
        let _ = self.task.await;
    }
}

/// Idle upstream connections are let go after this; a drill's backends come and go.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// An upstream that does not accept within this counts as refusing (a 502 while a fault is in
/// force).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the proxy's address and starts serving. A taken port is `Failure::Environment`.
/// [`start_with_tls`] trusting the system's root certificates.
pub async fn start(name: &str, spec: &ProxySpec, seed: u64) -> Result<RunningProxy, Failure> {
    let tls = crate::net::Tls::system().map_err(Failure::Environment)?;
    start_with_tls(name, spec, &tls, seed).await
}

/// `tls` is used when the upstream is `https://`.
pub async fn start_with_tls(
    name: &str,
    spec: &ProxySpec,
    tls: &crate::net::Tls,
    seed: u64,
) -> Result<RunningProxy, Failure> {
    let listener = crate::net::Listener::bind(spec.listen.addr(), &format!("proxy `{name}`"))?;
    let addr = listener.local_addr();
    let cores = crate::net::cores::Cores::shared()
        .map_err(|e| Failure::Environment(format!("proxy `{name}`: {e}")))?;
    let upstream = spec.upstream.addr();
    let https = (spec.upstream.scheme() == crate::net::Scheme::Https).then_some(tls);
    let clients = crate::net::cores::PerCore::new(cores.len(), |_| {
        crate::net::h1::Client::new(
            upstream.host(),
            upstream.port(),
            https,
            CONNECT_TIMEOUT,
            usize::MAX,
            POOL_IDLE,
        )
    })
    .map_err(|e| Failure::Environment(format!("proxy `{name}`: {e}")))?;
    let listener = listener.spread(cores);

    let host = if spec.preserve_host {
        None
    } else {
        // An Upstream's host:port is a URI authority (checked when it was read), and every
        // authority is a valid header value; `None` would only keep the client's Host.
        hyper::header::HeaderValue::from_str(&spec.upstream.addr().to_string()).ok()
    };

    let faults = FaultControl::new(name, seed);
    // Open: it listens from the start, whatever the upstream does, until a forward fails.
    let (open, _) = tokio::sync::watch::channel(true);
    let shared = Arc::new(apply::Shared {
        name: name.to_string(),
        upstream: spec.upstream.clone(),
        host,
        tls: tls.clone(),
        clients,
        faults: faults.clone(),
        open,
        next_index: AtomicU64::new(0),
    });
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server::serve(
        listener,
        spec.upstream.addr().clone(),
        shared,
        stopped,
    ));
    Ok(RunningProxy {
        addr,
        faults,
        stop,
        task,
    })
}
