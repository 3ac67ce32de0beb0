//! The one listener everything faultline serves goes through (the HTTP fault proxy, the TCP
//! fault proxies, simulated hosts, the gateway, the agent, the proxy admin API), in the spirit
//! of mini-redis: bind with an error that names the address and the owner, accept until told
//! to stop, one tracked task per connection, and one place that configures hyper's HTTP/1
//! server. Stopping really ends every connection: a fault proxy holding a blackholed request,
//! or a simulated host that "crashed", must not leave sockets open behind it.

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
mod tests {
    use std::convert::Infallible;
    use std::time::Instant;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper::Response;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    use super::*;

    /// Every wait in these tests ends within this.
    const DEADLINE: Duration = Duration::from_secs(5);

    fn local() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    /// A server answering "ok" after `delay`, stopped by the returned sender.
    fn start(
        opts: Serve,
        delay: Duration,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        start_on(None, opts, delay)
    }

    /// [`start`], its connections run on `cores` when given.
    fn start_on(
        cores: Option<Arc<Cores>>,
        opts: Serve,
        delay: Duration,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let mut listener = Listener::bind(local(), "the test server").unwrap();
        if let Some(cores) = cores {
            listener = listener.spread(cores);
        }
        let addr = listener.local_addr();
        assert_ne!(addr.port(), 0, "the real port is reported");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(listener.serve(
            opts,
            async {
                let _ = stopped.await;
            },
            move |conn| {
                let service = service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                conn.serve_http(Http1::new(), service)
            },
        ));
        (addr, stop, task)
    }

    /// Sends one keep-alive GET and reads until the 2-byte body arrived.
    async fn get(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        let read = async {
            while !got.ends_with(b"\r\n\r\nok") {
                let n = stream.read(&mut buf).await.unwrap();
                assert_ne!(n, 0, "closed before the answer: {got:?}");
                got.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("no answer in time");
        String::from_utf8_lossy(&got).into_owned()
    }

    /// True if the peer closes (EOF or reset) within the deadline.
    async fn closed(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(within, stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn serves_and_a_stop_cuts_idle_keep_alive_connections() {
        let (addr, stop, task) = start(Serve::default(), Duration::ZERO);
        let mut client = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut client).await.starts_with("HTTP/1.1 200"));
        // Kept alive: a second request on the same connection is served too.
        assert!(get(&mut client).await.starts_with("HTTP/1.1 200"));
        stop.send(()).unwrap();
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("the server did not stop in time")
            .unwrap();
        assert!(
            closed(&mut client, DEADLINE).await,
            "the idle connection stayed open"
        );
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }

    #[tokio::test]
    async fn a_grace_period_answers_the_request_in_flight_and_closes_idle_ones_at_once() {
        grace_answers_in_flight(None).await;
    }

    #[tokio::test]
    async fn a_grace_period_works_on_cores_too() {
        grace_answers_in_flight(Some(two_cores())).await;
    }

    async fn grace_answers_in_flight(cores: Option<Arc<Cores>>) {
        let opts = Serve {
            grace: Duration::from_secs(30),
            ..Serve::default()
        };
        let (addr, stop, task) = start_on(cores, opts, Duration::from_millis(300));
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert!(get(&mut idle).await.starts_with("HTTP/1.1 200"));
        let mut busy = TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        // Let the request reach the handler before stopping.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let began = Instant::now();
        stop.send(()).unwrap();
        // Idle connections close long before the 30 s grace: they had nothing left to do.
        assert!(
            closed(&mut idle, DEADLINE).await,
            "the idle connection stayed open"
        );
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, busy.read_to_end(&mut answer))
            .await
            .expect("the request in flight was never finished")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
            "{answer}"
        );
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("the server did not stop once its connections ended")
            .unwrap();
        assert!(began.elapsed() < DEADLINE);
    }

    #[tokio::test]
    async fn a_stop_without_grace_cuts_the_request_in_flight() {
        stop_cuts_in_flight(None).await;
    }

    #[tokio::test]
    async fn a_stop_without_grace_cuts_requests_in_flight_on_every_core() {
        stop_cuts_in_flight(Some(two_cores())).await;
    }

    /// Two requests held by the server (one per core when there are two), both cut by a stop.
    async fn stop_cuts_in_flight(cores: Option<Arc<Cores>>) {
        let (addr, stop, task) = start_on(cores, Serve::default(), Duration::from_secs(60));
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut busy = TcpStream::connect(addr).await.unwrap();
            busy.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                .await
                .unwrap();
            held.push(busy);
        }
        // Let the requests reach the handler before stopping.
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        for busy in &mut held {
            let mut answer = Vec::new();
            let read = tokio::time::timeout(DEADLINE, busy.read_to_end(&mut answer))
                .await
                .expect("the connection was not cut");
            assert!(read.is_err() || answer.is_empty(), "answered: {answer:?}");
        }
        tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    }

    fn two_cores() -> Arc<Cores> {
        let cores = Cores::start("test-listen", std::num::NonZeroUsize::new(2).unwrap());
        Arc::new(cores.unwrap())
    }

    /// Each connection runs on the core it was given, on that core's thread, with its socket
    /// registered there (it reads and writes), and a stop closes them all.
    #[tokio::test]
    async fn a_connection_on_a_core_runs_on_that_cores_thread() {
        let listener = Listener::bind(local(), "the test server")
            .unwrap()
            .spread(two_cores());
        let addr = listener.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(listener.serve(
            Serve::default(),
            async {
                let _ = stopped.await;
            },
            |conn: Connection| async move {
                let core = conn.core();
                let Ok(mut stream) = conn.into_stream() else {
                    return;
                };
                let mut byte = [0u8; 1];
                if stream.read_exact(&mut byte).await.is_err() {
                    return;
                }
                let thread = std::thread::current().name().unwrap_or("").to_string();
                let answer = format!("{} {core} {thread}\n", byte[0] as char);
                let _ = stream.write_all(answer.as_bytes()).await;
                // Held open until the stop cuts it.
                let _ = stream.read(&mut byte).await;
            },
        ));
        let mut answers = Vec::new();
        let mut clients = Vec::new();
        for letter in ["a", "b", "c"] {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(letter.as_bytes()).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while !got.ends_with(b"\n") {
                let n = tokio::time::timeout(DEADLINE, client.read(&mut buf))
                    .await
                    .expect("no echo in time")
                    .unwrap();
                assert_ne!(n, 0, "closed before echoing");
                got.extend_from_slice(&buf[..n]);
            }
            answers.push(String::from_utf8(got).unwrap());
            clients.push(client);
        }
        assert_eq!(
            answers,
            [
                "a 0 test-listen-0\n",
                "b 1 test-listen-1\n",
                "c 0 test-listen-0\n"
            ],
            "round robin, each connection served on its core's thread"
        );
        stop.send(()).unwrap();
        tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
        for client in &mut clients {
            assert!(closed(client, DEADLINE).await, "a connection stayed open");
        }
    }

    #[tokio::test]
    async fn the_stop_value_is_returned() {
        let listener = Listener::bind(local(), "the test server").unwrap();
        let out = tokio::time::timeout(
            DEADLINE,
            listener.serve(Serve::default(), async { 42 }, |c: Connection| async move {
                drop(c)
            }),
        )
        .await
        .unwrap();
        assert_eq!(out, 42);
    }

    #[tokio::test]
    async fn a_taken_port_names_the_address_and_the_owner() {
        let first = Listener::bind(local(), "the first").unwrap();
        let addr = first.local_addr();
        let err = Listener::bind(addr, "service `primary`").unwrap_err();
        assert!(matches!(err, BindError::Listen { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot listen on {addr} for service `primary`: the address is already in use \
                 (another process, or an earlier run still holding it)"
            )
        );
    }
}
