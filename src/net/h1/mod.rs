//! An HTTP/1.1 client in which the task that sends a request also reads its answer from the
//! socket: a token event costs one read and the parsing of its bytes where they lie, with no
//! connection task, no channel between it and the request, and no wake-up of a second task per
//! event; an open stream holds one small read buffer. (With hyper's client an event crossed its
//! dispatch channel from the connection's task to the request's, which cost the load generator
//! about a fifth of its CPU per event and more than half its memory per open stream.)
//! `httparse` reads response heads; the framing of bodies is in [`body`].
//!
//! The server side ([`server`]) is the same idea for the simulated hosts and the gateway: the
//! connection's task writes each token event itself.
//!
//! What the load generator and the fault proxy's upstream need: one target per client, requests
//! written in one piece, a keep-alive pool, TLS through rustls. The gateway and the REST and
//! readiness clients keep hyper's client (`crate::net::client`).

mod body;
mod buffer;
mod head;
mod incoming;
mod io;
pub mod request;
mod response;
pub mod server;
#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper::header::HeaderMap;
use hyper::StatusCode;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

pub use body::Body;
use buffer::Buffer;
use io::Io;

/// A request or response head longer than this is refused (about hyper's limit).
const MAX_HEAD: usize = 400 * 1024;

/// Why a request got no answer.
#[derive(Debug)]
pub enum Error {
    /// No connection: the TCP connect or the TLS handshake failed, so nothing was sent.
    Connect(std::io::Error),
    /// The connection failed, or closed, or the server answered something that is not an HTTP
    /// response, before a whole response head arrived.
    Lost(std::io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Error::Connect(_) => "connect error",
            Error::Lost(_) => "connection error",
        })
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect(e) | Error::Lost(e) => Some(e),
        }
    }
}

/// A request as it goes on the wire, head and body, and what its answer can be.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub wire: &'a [u8],
    /// The connection may carry another request afterwards: false when the request itself
    /// says `connection: close`.
    pub reuse: bool,
    /// The answer has no body whatever its head announces (the answer to a `HEAD`).
    pub bodiless: bool,
}

impl<'a> Request<'a> {
    /// A request whose answer has a body as its head says, on a connection that is kept.
    pub fn new(wire: &'a [u8]) -> Request<'a> {
        Request {
            wire,
            reuse: true,
            bodiless: false,
        }
    }
}

/// A response whose head has arrived; its body is read from `body`.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

/// Where a client connects.
struct Target {
    host: String,
    port: u16,
    /// `https://`: the connector and the name the certificate must carry.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

/// A client for one target, with a keep-alive pool. Clones share the pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    connect_timeout: Duration,
    pool: Pool,
}

impl Client {
    /// A client for `host:port`, over TLS with `tls` when `https` (the server name from `tls`,
    /// else `host`), keeping at most `max_idle` idle connections for `idle_timeout` each.
    pub fn new(
        host: &str,
        port: u16,
        https: Option<&crate::net::Tls>,
        connect_timeout: Duration,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> anyhow::Result<Client> {
        let tls = match https {
            Some(tls) => {
                let mut config = (*tls.config).clone();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let name = match &tls.server_name {
                    Some(name) => name.clone(),
                    None => ServerName::try_from(host.to_string()).map_err(|_| {
                        anyhow::anyhow!("`{host}` is not a name TLS can check a certificate for")
                    })?,
                };
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
            }
            None => None,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                target: Target {
                    host: host.to_string(),
                    port,
                    tls,
                },
                connect_timeout,
                pool: Pool {
                    idle: Mutex::new(VecDeque::new()),
                    max_idle,
                    idle_timeout,
                    sweeping: AtomicBool::new(false),
                },
            }),
        })
    }

    /// Writes `request` on an idle connection or a new one and reads the response head. A
    /// dropped call closes its connection.
    pub async fn send(&self, request: Request<'_>) -> Result<Response, Error> {
        let mut conn = match self.inner.pool.take() {
            Some(conn) => conn,
            None => self.connect().await.map_err(Error::Connect)?,
        };
        let whole = write_request(&mut conn, request.wire)
            .await
            .map_err(Error::Lost)?;
        let head = read_head(&mut conn).await.map_err(Error::Lost)?;
        let framing = if request.bodiless {
            head::Framing::Empty
        } else {
            head.framing
        };
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body: Body::new(
                conn,
                framing,
                request.reuse && whole && head.keep_alive,
                Arc::clone(&self.inner),
            ),
        })
    }

    /// A new connection. The host is resolved each time, as a real client resolves it, so a
    /// backend that moves in DNS is followed; each address it resolves to gets its share of the
    /// connect bound, so a silent first address cannot use it all (as hyper's connector does).
    async fn connect(&self) -> std::io::Result<Conn> {
        let t = &self.inner.target;
        let limit = self.inner.connect_timeout;
        let silent = |within: Duration| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {}", crate::units::human_duration(within)),
            )
        };
        // The bound covers the name's resolution too.
        let deadline = tokio::time::Instant::now() + limit;
        let lookup = tokio::net::lookup_host((t.host.as_str(), t.port));
        let addrs: Vec<SocketAddr> = tokio::time::timeout_at(deadline, lookup)
            .await
            .map_err(|_| silent(limit))??
            .collect();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let each = left / u32::try_from(addrs.len()).unwrap_or(u32::MAX).max(1);
        let mut failed = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("`{}` resolves to no address", t.host),
        );
        let mut open = None;
        for addr in addrs {
            match tokio::time::timeout(each, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    open = Some(tcp);
                    break;
                }
                Ok(Err(e)) => failed = e,
                Err(_) => failed = silent(each),
            }
        }
        let tcp = open.ok_or(failed)?;
        // Token streams are many small writes each way.
        tcp.set_nodelay(true)?;
        let io = match &t.tls {
            Some((connector, name)) => {
                Io::Tls(Box::new(connector.connect(name.clone(), tcp).await?))
            }
            None => Io::Plain(tcp),
        };
        Ok(Conn {
            io,
            buf: Buffer::new(),
        })
    }
}

/// Writes `request` while watching for an answer: a server may answer before the request is
/// whole (a 413 or 429 for a long prompt) and stop reading, which would block the write and
/// lose the answer. An answer stops the writing and stays in the buffer for the head; the
/// result says whether the whole request went out (else the connection is not reused).
async fn write_request(conn: &mut Conn, request: &[u8]) -> std::io::Result<bool> {
    conn.buf.clear();
    let mut written = 0;
    std::future::poll_fn(|cx| loop {
        let wrote = if written < request.len() {
            Pin::new(&mut conn.io).poll_write(cx, &request[written..])
        } else {
            Pin::new(&mut conn.io).poll_flush(cx).map_ok(|()| 0)
        };
        match wrote {
            Poll::Ready(Ok(0)) if written < request.len() => {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
            }
            Poll::Ready(Ok(0)) => return Poll::Ready(Ok(true)),
            Poll::Ready(Ok(n)) => {
                written += n;
                continue;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        // The write waits for the server to read: see whether it has answered instead.
        return match conn.buf.poll_fill(&mut conn.io, cx) {
            Poll::Ready(Ok(0)) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed before the request was sent",
            ))),
            Poll::Ready(Ok(_)) => match skip_informational(&mut conn.buf) {
                // An interim answer (`100 Continue`, `103 Early Hints`) asks for the rest.
                Answer::Interim => continue,
                Answer::Final => Poll::Ready(Ok(false)),
            },
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        };
    })
    .await
}

/// What arrived while a request was being written.
enum Answer {
    /// Only interim heads, or not yet a whole head: the request goes on.
    Interim,
    /// A final head, or bytes that are not HTTP: the request stops, `read_head` reads it.
    Final,
}

/// Consumes the whole interim (1xx, not 101) heads at the start of `buf`.
fn skip_informational(buf: &mut Buffer) -> Answer {
    loop {
        match head::parse(buf.unread()) {
            Ok(Some((head, len)))
                if head.status.is_informational()
                    && head.status != StatusCode::SWITCHING_PROTOCOLS =>
            {
                buf.consume(len);
            }
            Ok(None) if buf.unread().len() < MAX_HEAD => return Answer::Interim,
            _ => return Answer::Final,
        }
    }
}

/// Most informational heads one answer may start with.
const MAX_INFORMATIONAL: usize = 16;

/// Reads until a final response head is whole (informational 1xx heads are skipped); the bytes
/// after it stay in the buffer for the body.
async fn read_head(conn: &mut Conn) -> std::io::Result<head::Head> {
    let mut informational = 0;
    loop {
        if let Some((head, len)) = head::parse(conn.buf.unread())? {
            conn.buf.consume(len);
            if !head.status.is_informational() {
                return Ok(head);
            }
            informational += 1;
            if head.status == StatusCode::SWITCHING_PROTOCOLS || informational > MAX_INFORMATIONAL {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the server answered {} before any response", head.status),
                ));
            }
            continue;
        }
        if conn.buf.unread().len() >= MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("response head longer than {MAX_HEAD} bytes"),
            ));
        }
        let read = std::future::poll_fn(|cx| conn.buf.poll_fill(&mut conn.io, cx)).await?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed before a response",
            ));
        }
    }
}

/// An open connection and what has been read from it.
struct Conn {
    io: Io,
    buf: Buffer,
}

/// Idle keep-alive connections, the most recently used taken first.
struct Pool {
    idle: Mutex<VecDeque<(Conn, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// A task is closing expired connections.
    sweeping: AtomicBool,
}

impl Pool {
    /// An idle connection still fit to send on; the stale and the closed ones are dropped.
    fn take(&self) -> Option<Conn> {
        // A poisoned lock only means a panic elsewhere while it was held; new connections work.
        let mut idle = self.idle.lock().ok()?;
        while let Some((conn, since)) = idle.pop_back() {
            if since.elapsed() < self.idle_timeout && conn.io.is_quiet() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request; a full pool lets its oldest go.
    fn put(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock() {
            self.expire(&mut idle);
            if idle.len() >= self.max_idle {
                idle.pop_front();
            }
            if self.max_idle > 0 {
                idle.push_back((conn, Instant::now()));
            }
        }
    }

    /// Closes the connections idle for longer than the timeout (the oldest are at the front);
    /// returns how long until the next one is due, `None` when the pool is empty.
    fn expire(&self, idle: &mut VecDeque<(Conn, Instant)>) -> Option<Duration> {
        while idle
            .front()
            .is_some_and(|(_, since)| since.elapsed() >= self.idle_timeout)
        {
            idle.pop_front();
        }
        idle.front()
            .map(|(_, since)| self.idle_timeout.saturating_sub(since.elapsed()))
    }
}

/// Gives `conn` back to `client`'s pool, and makes sure a sweeper closes it once it has been
/// idle too long even if no request comes to look (the upstream may have closed it: it would
/// hold a descriptor in CLOSE_WAIT until then).
fn pool(client: &Arc<Inner>, conn: Conn) {
    client.pool.put(conn);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if client.pool.sweeping.swap(true, Ordering::AcqRel) {
        return;
    }
    // Weak: an idle pool must not keep its client alive.
    let client = Arc::downgrade(client);
    runtime.spawn(async move {
        loop {
            let Some(strong) = client.upgrade() else {
                return;
            };
            let next = match strong.pool.idle.lock() {
                Ok(mut idle) => strong.pool.expire(&mut idle),
                Err(_) => None,
            };
            let Some(wait) = next else {
                strong.pool.sweeping.store(false, Ordering::Release);
                // A connection put back since the look above has no sweeper: take the job
                // again, unless another task took it.
                let refilled = strong.pool.idle.lock().is_ok_and(|idle| !idle.is_empty());
                if refilled && !strong.pool.sweeping.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            };
            drop(strong);
            tokio::time::sleep(wait + Duration::from_millis(10)).await;
        }
    });
}
