//! The accept loop both the host and the gateway run: HTTP/1.1 with keep-alive, one task per
//! connection, all of them tracked so that stopping really ends every connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::body::Body;
use crate::exit::Failure;

/// What a server does with one request. Boxed so the host and the gateway share one loop.
pub(crate) type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// A server started by [`super::start_host`] or [`super::start_gateway`].
///
/// Dropping it without [`RunningServer::stop`] also shuts it down, but without waiting.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// The address it listens on (the real port when the spec asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, drops open connections, waits for the tasks to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        // The loop never panics on its own; a JoinError here could only be a panic inside
        // hyper, and there is nothing left to clean up in that case either.
        let _ = self.task.await;
    }
}

/// Binds `listen` and serves `handler` on it until stopped.
pub(crate) async fn serve(
    listen: SocketAddr,
    owner: &str,
    handler: Handler,
) -> Result<RunningServer, Failure> {
    let listener = crate::net::bind(listen, owner).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Environment(format!("cannot read the address of {owner}: {e}")))?;
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, handler, stopped));
    Ok(RunningServer { addr, stop, task })
}

async fn accept_loop(listener: TcpListener, handler: Handler, mut stopped: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Either an explicit stop or the RunningServer being dropped.
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, handler.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning, the
                // condition usually clears as connections close.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            // Reap finished connections so the set does not grow for the whole drill.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(stream: tokio::net::TcpStream, handler: Handler) {
    let service = service_fn(move |req| {
        let fut = handler(req);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    // Errors here are the client going away or speaking bad HTTP; hyper has already answered
    // what could be answered, and the connection is over either way.
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
