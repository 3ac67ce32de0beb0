//! The one listener everything faultline serves goes through (the HTTP fault proxy, the TCP
//! fault proxies, simulated hosts, the gateway, the agent, the proxy admin API), in the spirit
//! of mini-redis: bind with an error that names the address and the owner, accept until told
//! to stop, one tracked task per connection, and one connection type every server speaks
//! HTTP/1 on (faultline's own server, or hyper's for the small APIs). Stopping really ends
//! every connection: a fault proxy holding a blackholed request, or a simulated host that
//! "crashed", must not leave sockets open behind it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::connection::Socket;
pub use super::connection::{Connection, Http1};
use super::cores::Cores;

/// Why a listener could not be set up. Every variant names who wanted it, so "port already
/// taken" is never a mystery.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot open a socket for {owner}: {source}")]
    Socket {
        owner: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {addr} for {owner}: {}", explain(source))]
    Listen {
        addr: SocketAddr,
        owner: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the address {owner} listens on: {source}")]
    LocalAddr {
        owner: String,
        #[source]
        source: io::Error,
    },
}

fn explain(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::AddrInUse {
        "the address is already in use (another process, or an earlier run still holding it)"
            .to_string()
    } else {
        e.to_string()
    }
}

/// Binds `addr` for `owner` (e.g. "service `primary`").
fn bind(addr: SocketAddr, owner: &str) -> Result<TcpListener, BindError> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|source| BindError::Socket {
        owner: owner.to_string(),
        source,
    })?;
    // Restarted drills must not wait out TIME_WAIT from the previous run.
    let _ = socket.set_reuseaddr(true);
    // Accepted sockets inherit it on Linux; set again per connection below for other kernels.
    socket.set_nodelay(true).ok();
    let listen_error = |source| BindError::Listen {
        addr,
        owner: owner.to_string(),
        source,
    };
    socket.bind(addr).map_err(listen_error)?;
    socket.listen(1024).map_err(listen_error)
}

/// How a listener accepts and how it stops.
#[derive(Clone, Copy, Debug)]
pub struct Serve {
    /// Pause after a failed accept (usually out of file descriptors): backing off instead of
    /// spinning lets the condition clear as connections close.
    pub backoff: Duration,
    /// On stop, how long open connections may finish what they are doing (HTTP connections
    /// answer the request in flight and close when idle) before they are cut. Zero cuts them
    /// at once, the way a killed process's sockets close.
    pub grace: Duration,
}

impl Default for Serve {
    fn default() -> Self {
        Serve {
            backoff: Duration::from_millis(50),
            grace: Duration::ZERO,
        }
    }
}

/// A bound listening socket and the address it really got (the port when asked for 0).
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    addr: SocketAddr,
    /// Who listens, for the log lines of a gated listener that stops and starts again.
    owner: String,
    /// Where its connections run: on the runtime that accepts them, or each on one of these.
    cores: Option<Arc<Cores>>,
}

/// Between two attempts to bind again a gated listener's address: a port briefly taken (by a
/// connection in TIME_WAIT without SO_REUSEADDR on the other side, or another process) is
/// retried, quickly at first.
const REBIND_FIRST: Duration = Duration::from_millis(20);
const REBIND_MAX: Duration = Duration::from_millis(200);

impl Listener {
    /// Binds `addr` for `owner`, with SO_REUSEADDR and TCP_NODELAY.
    pub fn bind(addr: SocketAddr, owner: &str) -> Result<Listener, BindError> {
        let tcp = bind(addr, owner)?;
        let addr = tcp.local_addr().map_err(|source| BindError::LocalAddr {
            owner: owner.to_string(),
            source,
        })?;
        Ok(Listener {
            tcp,
            addr,
            owner: owner.to_string(),
            cores: None,
        })
    }

    /// Runs each connection on one of `cores` in turn instead of the runtime that accepts it
    /// (`net::cores` says why). A stop still ends every connection: they are this listener's
    /// tasks wherever they run.
    pub fn spread(self, cores: Arc<Cores>) -> Listener {
        Listener {
            cores: Some(cores),
            ..self
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts until `stop` resolves, running `handle` on a task of its own for each
    /// connection, then closes the listener, lets the connections drain for `opts.grace` and
    /// cuts whatever is left. Returns what `stop` resolved to, once every connection is gone.
    pub async fn serve<T, F, Fut>(self, opts: Serve, stop: impl Future<Output = T>, handle: F) -> T
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.serve_inner(opts, stop, None, handle).await
    }

    /// [`Listener::serve`], except that the listening socket exists only while `open` says
    /// true. When it turns false the socket is closed, so new connects are refused the way
    /// they are by a host with nothing listening, and the open connections are told to end
    /// as at a stop with a grace period (idle keep-alive ones close now, busy ones after their
    /// answer), without being cut. When it turns true again the same address is bound again,
    /// retried with a bounded backoff while it is taken. Both changes are logged on stderr.
    /// A dropped sender leaves it listening. A stop works in either state.
    pub async fn serve_gated<T, F, Fut>(
        self,
        opts: Serve,
        stop: impl Future<Output = T>,
        open: watch::Receiver<bool>,
        handle: F,
    ) -> T
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.serve_inner(opts, stop, Some(open), handle).await
    }

    async fn serve_inner<T, F, Fut>(
        self,
        opts: Serve,
        stop: impl Future<Output = T>,
        mut gate: Option<watch::Receiver<bool>>,
        mut handle: F,
    ) -> T
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Listener {
            tcp,
            addr,
            owner,
            cores,
        } = self;
        let mut tcp = Some(tcp);
        // Wanted open; differs from `tcp.is_some()` only while binding again.
        let mut wanted = true;
        let mut rebind_at = tokio::time::Instant::now();
        let mut rebind_wait = REBIND_FIRST;
        let mut rebind_failures = 0u32;
        let (mut drain, mut draining) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(stop);
        let stopped = loop {
            tokio::select! {
                // A stop must win over a flood of new connections.
                biased;
                out = &mut stop => break out,
                // Reaps finished connections, so the set holds only live ones for the whole drill.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                open = gate_changed(&mut gate) => {
                    wanted = open;
                    if !open && tcp.is_some() {
                        drop(tcp.take());
                        // The connections accepted so far end (gracefully, so a busy one still
                        // gets its answer); those accepted after the next bind get a fresh
                        // channel and are not concerned.
                        let (fresh, fresh_rx) = watch::channel(false);
                        let _ = std::mem::replace(&mut drain, fresh).send(true);
                        draining = fresh_rx;
                        eprintln!("{owner}: stopped listening on {addr}; connects are refused");
                    } else if open && tcp.is_none() {
                        rebind_at = tokio::time::Instant::now();
                        rebind_wait = REBIND_FIRST;
                        rebind_failures = 0;
                    }
                }
                () = tokio::time::sleep_until(rebind_at), if wanted && tcp.is_none() => {
                    match bind(addr, &owner) {
                        Ok(again) => {
                            tcp = Some(again);
                            eprintln!("{owner}: listening on {addr} again");
                        }
                        Err(e) => {
                            rebind_failures += 1;
                            // One line at the first failure and then about every 10 s, not 5 a second.
                            if rebind_failures == 1 || rebind_failures % 50 == 0 {
                                eprintln!("{owner}: {e}; retrying");
                            }
                            rebind_at = tokio::time::Instant::now() + rebind_wait;
                            rebind_wait = (rebind_wait * 2).min(REBIND_MAX);
                        }
                    }
                }
                accepted = accept(tcp.as_ref()) => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let draining = draining.clone();
                        match &cores {
                            None => {
                                let socket = Socket::Registered(stream);
                                connections.spawn(handle(Connection::new(socket, peer, 0, draining)));
                            }
                            // Taken off this runtime's poller here and put on the core's when
                            // its task first uses it. A socket that cannot be taken off is
                            // dropped: its client sees the connection closed, as after any
                            // failed accept.
                            Some(cores) => if let Ok(std) = stream.into_std() {
                                let (core, runtime) = cores.pick();
                                let socket = Socket::Unregistered(std);
                                let conn = Connection::new(socket, peer, core, draining);
                                connections.spawn_on(handle(conn), runtime);
                            },
                        }
                    }
                    Err(_) => tokio::time::sleep(opts.backoff).await,
                },
            }
        };
        // Closing the listener first refuses new connections while the old ones end.
        drop(tcp);
        if !opts.grace.is_zero() {
            let _ = drain.send(true);
            let all_done = async { while connections.join_next().await.is_some() {} };
            let _ = tokio::time::timeout(opts.grace, all_done).await;
        }
        // Aborting a connection's task drops its socket: the peer sees the stream cut, on
        // whichever core it ran.
        connections.shutdown().await;
        stopped
    }
}

/// The next connection, or never while there is no listening socket.
async fn accept(tcp: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match tcp {
        Some(tcp) => tcp.accept().await,
        None => std::future::pending().await,
    }
}

/// The gate's next value; never without a gate. A gate whose sender is gone is dropped and
/// reads as open, so an owner that goes away cannot leave the address closed.
async fn gate_changed(gate: &mut Option<watch::Receiver<bool>>) -> bool {
    let Some(rx) = gate.as_mut() else {
        return std::future::pending().await;
    };
    match rx.changed().await {
        Ok(()) => *rx.borrow_and_update(),
        Err(_) => {
            *gate = None;
            true
        }
    }
}

#[cfg(test)]
mod tests;
