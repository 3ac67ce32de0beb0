//! The server both the host and the gateway run, on the shared listener: HTTP/1.1 with
//! keep-alive, one tracked task per connection, so that stopping (or crashing) really ends
//! every connection.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Request, Response};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::body::Body;
use super::memory::Memory;
use crate::exit::Failure;
use crate::net::h1::server::{Server, Upload};
use crate::net::{Connection, Listener, Serve};

/// What a server does with one request. Boxed so the host and the gateway share one loop.
pub(crate) type Handler = Arc<
    dyn Fn(Request<Upload>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// Where a server is in its life. Only a simulated host with a memory model ever leaves
/// `Alive`; the gateway's signal is never triggered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Alive,
    /// Asked to die: handlers answer nothing more, the accept loop is tearing down.
    Crashing,
    /// Dead: the listener is closed and every connection has been dropped.
    Down,
}

/// The crash signal of one server, shared by its handler (which triggers it) and its owner
/// (which waits for it). A watch channel, so late waiters still see a crash that already
/// happened.
#[derive(Clone, Debug)]
pub(crate) struct Crash(Arc<watch::Sender<Life>>);

impl Crash {
    pub(crate) fn new() -> Self {
        Crash(Arc::new(watch::Sender::new(Life::Alive)))
    }

    /// Asks the server to die like an OOM-killed process. True only for the call that did it,
    /// so exactly one caller says why.
    pub(crate) fn trigger(&self) -> bool {
        self.0.send_if_modified(|life| {
            if *life == Life::Alive {
                *life = Life::Crashing;
                true
            } else {
                false
            }
        })
    }

    /// True from the moment the crash was asked for: nothing may be served any more.
    pub(crate) fn is_triggered(&self) -> bool {
        *self.0.borrow() != Life::Alive
    }

    fn is_down(&self) -> bool {
        *self.0.borrow() == Life::Down
    }

    fn mark_down(&self) {
        self.0.send_replace(Life::Down);
    }

    /// Resolves once `life` holds; never otherwise.
    async fn reached(&self, done: impl Fn(Life) -> bool) {
        let mut seen = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits; should it
        // anyway, "never crashed" is the honest answer.
        if seen.wait_for(|life| done(*life)).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A server started by [`super::start_host`] or [`super::start_gateway`].
///
/// Dropping it without [`RunningServer::stop`] also shuts it down, but without waiting.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    crash: Crash,
    /// A simulated host's KV cache, for faults that act on it.
    memory: Option<Arc<Memory>>,
}

impl RunningServer {
    pub(crate) fn with_memory(mut self, memory: Option<Arc<Memory>>) -> Self {
        self.memory = memory;
        self
    }

    /// Starts a `memory_leak` fault: the host's KV cache shrinks by `per_second` tokens every
    /// second until lifted. Only a simulated host with a `memory:` model can leak: `false`
    /// when this one has none.
    #[must_use]
    pub fn inject_leak(&self, per_second: u64) -> bool {
        match &self.memory {
            Some(memory) => {
                memory.start_leak(per_second);
                true
            }
            None => false,
        }
    }

    /// Lifts a `memory_leak` fault; the memory it took stays lost.
    pub fn lift_leak(&self) {
        if let Some(memory) = &self.memory {
            memory.stop_leak();
        }
    }

    /// The address it listens on (the real port when the spec asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// True once the server has crashed (a simulated host out of KV-cache memory with
    /// `on_exhaustion: crash`): its listener is closed, every connection it had is dropped,
    /// and it never serves again. Always false for a gateway.
    pub fn crashed(&self) -> bool {
        self.crash.is_down()
    }

    /// Resolves when the server has crashed, as [`RunningServer::crashed`] describes; never
    /// resolves for a server that does not crash. A `faultline simulate` process waits on this
    /// to exit with status 137, like an OOM-killed one.
    pub async fn wait_crashed(&self) {
        self.crash.reached(|life| life == Life::Down).await;
    }

    /// Stops accepting, drops open connections, waits for the tasks to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        // The accept loop never panics on its own (a connection's panic stays in its own task),
        // and after a JoinError there is nothing left to clean up either.
        let _ = self.task.await;
    }
}

/// Simulated servers keep hyper's usual limit on a request head (idle connections included),
/// so a stuck client cannot hold a connection for ever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// And the same on a pause in a request body: a client that stalls halfway through its
/// prompt is answered `408`.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a server's connections run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Runs {
    /// On the process's per-CPU runtimes (`net::cores`): a simulated host, whose requests
    /// then cost about a quarter less CPU (docs/benchmarks.md).
    OnCores,
    /// On the runtime that accepts them: the gateway, whose one upstream pool serves every
    /// connection and would otherwise hand sockets between threads.
    WhereAccepted,
}

/// Binds `listen` and serves `handler` on it until stopped, or until `crash` is triggered.
/// A request body over `max_body` bytes reaches the handler as too large (it answers 413 in
/// its API's shape).
pub(crate) async fn serve(
    listen: SocketAddr,
    owner: &str,
    handler: Handler,
    crash: Crash,
    runs: Runs,
    max_body: usize,
) -> Result<RunningServer, Failure> {
    let mut listener = Listener::bind(listen, owner)?;
    if runs == Runs::OnCores {
        let cores = crate::net::cores::Cores::shared()
            .map_err(|e| Failure::Environment(format!("{owner}: {e}")))?;
        listener = listener.spread(cores);
    }
    let addr = listener.local_addr();
    let (stop, stopped) = oneshot::channel();
    let http = Server {
        header_read_timeout: Some(HEADER_READ_TIMEOUT),
        body_read_timeout: Some(BODY_READ_TIMEOUT),
        max_body,
    };
    let task = tokio::spawn(accept_loop(listener, http, handler, stopped, crash.clone()));
    Ok(RunningServer {
        addr,
        stop,
        task,
        crash,
        memory: None,
    })
}

async fn accept_loop(
    listener: Listener,
    http: Server,
    handler: Handler,
    stopped: oneshot::Receiver<()>,
    crash: Crash,
) {
    // Either an explicit stop or the RunningServer being dropped ends the server; so does a
    // crash, which differs only in that the owner is told, and that it happens from inside.
    let stop = async {
        tokio::select! {
            _ = stopped => false,
            () = crash.reached(|life| life != Life::Alive) => true,
        }
    };
    // No grace: connections are cut, so clients see their streams cut mid-body, as when the
    // kernel reaps a process.
    let crashed = listener
        .serve(Serve::default(), stop, |conn| {
            serve_connection(conn, http, handler.clone())
        })
        .await;
    if crashed {
        crash.mark_down();
    }
}

async fn serve_connection(conn: Connection, http: Server, handler: Handler) {
    conn.serve_h1(http, None, |req| handler(req)).await;
}
