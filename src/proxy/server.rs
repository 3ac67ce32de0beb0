//! The proxy's connections: every one a task of the shared listener, so that stopping the
//! proxy drops every connection, including the ones a fault keeps hanging.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use tokio::sync::oneshot;

use super::apply::{self, Shared};
use super::conn::{ConnControl, FaultIo};
use crate::net::{Connection, Http1, Listener, Serve};

/// No header read limit: a client the proxy serves is the system under test, and how slowly it
/// writes is its own business, not a fault the proxy should add.
const HTTP: Http1 = Http1::new();

/// Serves `listener` until `stop` fires or its sender is dropped, then drops every connection
/// and returns once they are gone.
pub(crate) async fn serve(listener: Listener, shared: Arc<Shared>, stop: oneshot::Receiver<()>) {
    let opts = Serve {
        backoff: Duration::from_millis(20),
        // A blackholed or stalled request must not delay the stop: connections are cut at once.
        grace: Duration::ZERO,
    };
    // A stop and a dropped sender (the owner gone) both end it.
    let _ = listener
        .serve(opts, stop, move |conn| {
            serve_connection(conn, Arc::clone(&shared))
        })
        .await;
}

async fn serve_connection(conn: Connection, shared: Arc<Shared>) {
    let control = Arc::new(ConnControl::default());
    let per_request = Arc::clone(&control);
    let service = service_fn(move |request| {
        apply::handle(Arc::clone(&shared), Arc::clone(&per_request), request)
    });
    // A client that leaves, a protocol error or a fault all end the connection the same way:
    // it is dropped, and the socket closes (with a RST if a fault asked for one).
    let wrap = {
        let control = Arc::clone(&control);
        move |stream| FaultIo::new(stream, control)
    };
    conn.serve_http_with(wrap, HTTP, service, control.closing())
        .await;
}
