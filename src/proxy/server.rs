//! The accept loop: one task per client connection, all owned by the loop so that stopping the
//! proxy drops every connection, including the ones a fault keeps hanging.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::apply::{self, Shared};
use super::conn::{ConnControl, FaultIo};

/// Serves `listener` until `stop` fires or its sender is dropped, then drops every connection
/// and returns once they are gone.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            // Reaps finished connections, so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // Usually out of file descriptors: back off instead of spinning, and keep
                // serving the connections already open.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let control = Arc::new(ConnControl::default());
    let io = TokioIo::new(FaultIo::new(stream, Arc::clone(&control)));
    let per_request = Arc::clone(&control);
    let service = service_fn(move |request| {
        apply::handle(Arc::clone(&shared), Arc::clone(&per_request), request)
    });
    let connection = http1::Builder::new().serve_connection(io, service);
    // A client that leaves, a protocol error or a fault all end the connection the same way:
    // it is dropped, and the socket closes (with a RST if a fault asked for one).
    tokio::select! {
        _ = connection => {}
        _ = control.closing() => {}
    }
}
