//! The proxy's connections: every one a task of the shared listener, so that stopping the
//! proxy drops every connection, including the ones a fault keeps hanging. While the upstream
//! refuses connections (and no fault is in force) the listener is closed, and a watch on the
//! upstream opens it again as soon as a connect succeeds (docs/transparency.md).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::apply::{self, Shared};
use super::conn::ConnControl;
use crate::net::h1::server::Server;
use crate::net::{Connection, HostPort, Listener, Serve};

/// No header read limit: a client the proxy serves is the system under test, and how slowly it
/// writes is its own business, not a fault the proxy should add. A body is another matter: the
/// proxy reads it whole before the upstream sees any of it, so the upstream can never time out
/// an upload that stalls; the proxy does, as nginx does by default (`client_body_timeout`,
/// 60 s between two reads, then `408`).
const HTTP: Server = Server {
    header_read_timeout: None,
    body_read_timeout: Some(Duration::from_secs(60)),
    max_body: apply::MAX_REQUEST_BODY,
};

/// How often a closed proxy tries the upstream: quickly at first, so a restarted upstream is
/// reachable through the proxy soon after it listens, then at most this far apart.
const PROBE_FIRST: Duration = Duration::from_millis(20);
const PROBE_MAX: Duration = Duration::from_millis(200);
/// One probe's connect gives up after this: a silent address must not hold the watch.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Serves `listener` until `stop` fires or its sender is dropped, then drops every connection
/// and returns once they are gone. The upstream watch lives exactly as long: it is a branch of
/// this future, not a task of its own, so a stop in either state leaves nothing running.
pub(crate) async fn serve(
    listener: Listener,
    upstream: HostPort,
    shared: Arc<Shared>,
    stop: oneshot::Receiver<()>,
) {
    let opts = Serve {
        backoff: Duration::from_millis(20),
        // A blackholed or stalled request must not delay the stop: connections are cut at once.
        grace: Duration::ZERO,
    };
    let open = shared.open.subscribe();
    let watch = reopen_when_upstream_accepts(upstream, Arc::clone(&shared));
    // A stop and a dropped sender (the owner gone) both end it.
    let served = listener.serve_gated(opts, stop, open, move |conn| {
        serve_connection(conn, Arc::clone(&shared))
    });
    tokio::select! {
        _ = served => {}
        () = watch => {}
    }
}

/// Each time the listener is closed, tries the upstream until it accepts a connection (or a
/// fault is injected, whose behaviour needs the proxy listening), then opens the listener.
/// Never returns.
async fn reopen_when_upstream_accepts(upstream: HostPort, shared: Arc<Shared>) {
    let mut open = shared.open.subscribe();
    loop {
        // `shared` holds the sender, so the channel cannot close under this.
        if open.wait_for(|open| !*open).await.is_err() {
            return std::future::pending().await;
        }
        let mut wait = PROBE_FIRST;
        loop {
            if !shared.faults.snapshot().is_empty() {
                eprintln!(
                    "proxy `{}`: a fault was injected while the upstream {upstream} refused \
                     connections; listening again so that it acts",
                    shared.name
                );
                break;
            }
            if upstream.accepts(PROBE_TIMEOUT).await {
                eprintln!(
                    "proxy `{}`: the upstream {upstream} accepts connections again",
                    shared.name
                );
                break;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(PROBE_MAX);
        }
        shared.open.send_replace(true);
    }
}

async fn serve_connection(conn: Connection, shared: Arc<Shared>) {
    let control = Arc::new(ConnControl::default());
    let core = conn.core();
    // A client that leaves or a fault ends the connection by dropping it: the socket closes,
    // with a RST if the fault asked for one. A request the server cannot read it answers
    // itself (400, 431) and closes.
    let hangup = Arc::clone(&control).signal();
    conn.serve_h1(HTTP, Some(hangup), move |request| {
        apply::handle(Arc::clone(&shared), Arc::clone(&control), core, request)
    })
    .await;
}
