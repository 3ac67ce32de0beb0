//! The load generator's HTTP/1.1 client. Each request's own task writes the request and reads
//! the answer from the socket, so a token event costs one read and the parsing of its bytes
//! where they lie: no connection task, no channel between it and the request, no wake-up of a
//! second task per event, and an open stream holds one small read buffer. (With hyper's client
//! an event crossed its dispatch channel from the connection's task to the request's, which
//! cost about a third of the load generator's CPU per event and about half its memory per
//! open stream.) `httparse` reads response heads; the framing of bodies is in [`body`].
//!
//! Only what a load generator needs: one target per client, `POST`-style requests written in
//! one piece, a keep-alive pool, TLS through rustls. The fault proxy, the gateway and the REST
//! clients keep hyper's client, which they share with `crate::net`.

mod body;
mod head;
mod io;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::header::HeaderMap;
use hyper::StatusCode;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use body::Body;
use io::Io;

/// What each connection reads into. A token event is a few hundred bytes and thousands of
/// streams are open at once; a whole-document answer takes a few more reads instead. A head
/// that does not fit grows it, up to [`MAX_HEAD`].
pub(crate) const READ_BUFFER: usize = 2048;

/// A response head longer than this is refused.
const MAX_HEAD: usize = 64 * 1024;

/// Why a request got no answer.
#[derive(Debug)]
pub enum Error {
    /// No connection: the TCP connect or the TLS handshake failed, so nothing was sent.
    Connect(std::io::Error),
    /// The connection failed, or closed, or the server answered something that is not an HTTP
    /// response, before a whole response head arrived.
    Lost(std::io::Error),
}

/// A response whose head has arrived; its body is read from `body`.
pub struct Response<'c> {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body<'c>,
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
                },
            }),
        })
    }

    /// Writes `request` (a whole HTTP/1.1 request, head and body) on an idle connection or a
    /// new one, and reads the response head. Cancel-safe in the sense that matters here: a
    /// dropped call closes its connection.
    pub async fn send(&self, request: &[u8]) -> Result<Response<'_>, Error> {
        let mut conn = match self.inner.pool.take() {
            Some(conn) => conn,
            None => self.connect().await.map_err(Error::Connect)?,
        };
        conn.io.write_all(request).await.map_err(Error::Lost)?;
        conn.io.flush().await.map_err(Error::Lost)?;
        let head = read_head(&mut conn).await.map_err(Error::Lost)?;
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body: Body::new(conn, head.framing, head.keep_alive, &self.inner.pool),
        })
    }

    async fn connect(&self) -> std::io::Result<Conn> {
        let t = &self.inner.target;
        let limit = self.inner.connect_timeout;
        let tcp = tokio::time::timeout(limit, TcpStream::connect((t.host.as_str(), t.port)))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {}", crate::units::human_duration(limit)),
                )
            })??;
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
            buf: Vec::with_capacity(READ_BUFFER),
            pos: 0,
        })
    }
}

/// Reads until a final response head is whole (informational 1xx heads are skipped); the bytes
/// after it stay in the buffer for the body.
async fn read_head(conn: &mut Conn) -> std::io::Result<head::Head> {
    conn.buf.clear();
    conn.pos = 0;
    loop {
        if let Some((head, len)) = head::parse(&conn.buf[conn.pos..])? {
            conn.pos += len;
            if head.status.is_informational() {
                if head.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the server switched protocols, which no request asked for",
                    ));
                }
                continue;
            }
            return Ok(head);
        }
        if conn.buf.len() - conn.pos >= MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("response head longer than {MAX_HEAD} bytes"),
            ));
        }
        if conn.buf.len() == conn.buf.capacity() {
            conn.buf.reserve(conn.buf.capacity().max(READ_BUFFER));
        }
        if conn.io.read_buf(&mut conn.buf).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed before a response",
            ));
        }
    }
}

/// An open connection and what has been read from it: `buf[pos..]` is not yet used.
struct Conn {
    io: Io,
    buf: Vec<u8>,
    pos: usize,
}

/// Idle keep-alive connections, the most recently used taken first.
struct Pool {
    idle: Mutex<VecDeque<(Conn, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
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

    fn put(&self, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock() {
            // The oldest are at the front, where taking never reaches while newer ones are
            // idle: closed here, so they do not linger open past their timeout.
            while idle
                .front()
                .is_some_and(|(_, since)| since.elapsed() >= self.idle_timeout)
            {
                idle.pop_front();
            }
            if idle.len() < self.max_idle {
                idle.push_back((conn, Instant::now()));
            }
        }
    }
}
