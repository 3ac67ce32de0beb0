//! The server side of HTTP/1.1, for the simulated hosts, the reference gateway and the HTTP
//! fault proxy: the task of a connection reads each request whole (they are prompts, not
//! uploads; [`super::incoming`]), runs the handler, and writes the answer's frames itself, one
//! write for whatever frames are ready at once. A token event then costs one timer wake-up,
//! the event's bytes framed into a reused buffer, and one `write`, without hyper's dispatcher
//! and write queue between the body and the socket (docs/benchmarks.md measures what that
//! saved). The proxy's faults end a connection on purpose through a [`Hangup`].
//!
//! What hyper's server did that these servers rely on, kept: keep-alive and pipelining,
//! `Expect: 100-continue`, chunked request bodies, HTTP/1.0 clients, a limit on how long a
//! request head may take, answering `HEAD` without a body, a response body that fails cutting
//! the connection (so a broken stream looks broken), and a client that closes its side ending
//! the answer it was waiting for (what the answer held, a capacity slot, is freed at once).

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use hyper::{Method, Request, Response, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::buffer::{Buffer, BODY_READ_MAX};
use super::head::Framing;
use super::incoming::{self, Refused};
use super::response::{self, Encoder};

/// Frames that are ready at once are written together, up to about this much: as much as a
/// body's read takes in at most, so a large body through the proxy is written in as few writes
/// as it was read in (each write on loopback wakes the reader; at 64 KiB the proxy reached
/// 0.65x a bare copy loop's rate, at 256 KiB 0.78x). Token events are far smaller, and nothing
/// waits to be coalesced: only frames ready at once are.
const WRITE_AT_ONCE: usize = BODY_READ_MAX;
/// A write buffer a large answer grew is given back after it, down to this.
const KEEP_WRITE_BUFFER: usize = 16 * 1024;
/// After the server's last answer on a connection it closes, it reads and drops what the
/// client still sends for at most this long and this much: closing a socket with unread bytes
/// makes the kernel send a RST, which can destroy the answer before the client reads it (a 413
/// to a client still writing its body).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// A request body as the handler gets it: whole, or too large to have been read.
pub type Upload = Result<Bytes, TooLarge>;

/// A request body over the server's limit; the connection closes after the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge {
    pub limit: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body is larger than {} bytes", self.limit)
    }
}

/// How a server speaks HTTP/1.1. Connections are always kept alive when the client allows it.
#[derive(Clone, Copy, Debug)]
pub struct Server {
    /// Each request head, from the moment the server waits for it (an idle kept-alive
    /// connection too, as hyper's server counted it), must be whole within this, so a silent or
    /// trickling client cannot hold a connection for ever. `None`: no limit.
    pub header_read_timeout: Option<Duration>,
    /// The longest a request body may pause between two reads (as nginx's
    /// `client_body_timeout`): a client that stops halfway through its upload is answered
    /// `408` and the connection closes, so a stalled upload cannot hold a connection (and the
    /// task and buffer behind it) until the server stops. `None`: no limit.
    pub body_read_timeout: Option<Duration>,
    /// The largest request body read; a larger one reaches the handler as [`TooLarge`].
    pub max_body: usize,
}

/// How a connection is ended when its owner asks for it: the fault proxy's `reset` and
/// `truncate_stream` faults, and a transparent proxy repeating how its upstream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hangup {
    /// A plain close: the client reads the end of the stream.
    Fin,
    /// SO_LINGER 0: the kernel sends a RST, and the client reads a reset.
    Reset,
}

/// Resolves when the connection is to end. The server acts on it only once every byte the
/// handler and its body handed over is written, so a cut falls exactly after the last byte the
/// owner allowed.
pub type HangupSignal = Pin<Box<dyn Future<Output = Hangup> + Send>>;

/// One connection's socket and what has been read from it.
pub(super) struct Conn {
    pub stream: TcpStream,
    pub buf: Buffer,
    /// `None`: nobody ends this connection but the client, the server and a failing body.
    pub hangup: Option<HangupSignal>,
}

impl Conn {
    fn poll_hangup(&mut self, cx: &mut Context<'_>) -> Poll<Hangup> {
        match self.hangup.as_mut() {
            Some(signal) => signal.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }

    /// Ends the connection as asked; it is dropped right after.
    fn hang_up(&mut self, how: Hangup) -> After {
        if how == Hangup::Reset {
            reset_on_close(&self.stream);
        }
        After::Cut
    }
}

/// Makes the socket's close a RST. If this fails the socket still closes, only with a FIN.
fn reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// How an exchange left the connection.
enum After {
    /// Ready for the next request.
    Kept,
    /// The answer is whole and the server closes: after a lingering read.
    Close,
    /// The client is gone, or the answer was cut: dropped at once.
    Cut,
}

/// Serves requests on `stream` with `handler` until the client leaves, the connection may not
/// be kept, `draining` turns true (an answer being written is finished first), or `hangup`
/// resolves.
pub async fn serve<F, Fut, B>(
    stream: TcpStream,
    server: Server,
    mut draining: watch::Receiver<bool>,
    hangup: Option<HangupSignal>,
    mut handler: F,
) where
    F: FnMut(Request<Upload>) -> Fut,
    Fut: Future<Output = Response<B>>,
    B: Body<Data = Bytes>,
{
    let mut conn = Conn {
        stream,
        buf: Buffer::new(),
        hangup,
    };
    let mut out = Vec::with_capacity(1024);
    loop {
        match exchange(&mut conn, &mut out, server, &mut draining, &mut handler).await {
            After::Kept => {}
            After::Close => return linger(conn).await,
            After::Cut => return,
        }
        if conn.buf.is_empty() {
            conn.buf.clear();
        }
        if out.capacity() > KEEP_WRITE_BUFFER {
            out = Vec::with_capacity(1024);
        }
    }
}

/// One request and its answer.
async fn exchange<F, Fut, B>(
    conn: &mut Conn,
    out: &mut Vec<u8>,
    server: Server,
    draining: &mut watch::Receiver<bool>,
    handler: &mut F,
) -> After
where
    F: FnMut(Request<Upload>) -> Fut,
    Fut: Future<Output = Response<B>>,
    B: Body<Data = Bytes>,
{
    let read = async {
        let head = incoming::read_head(conn, server.header_read_timeout, draining).await?;
        let upload = incoming::read_body(conn, &head, server).await?;
        Ok::<_, Refused>((head, upload))
    };
    let (head, upload) = match read.await {
        Ok(request) => request,
        Err(Refused::Quietly) => return After::Cut,
        Err(Refused::Answer(status)) => {
            out.clear();
            response::error(out, status);
            return match conn.stream.write_all(out).await {
                Ok(()) => After::Close,
                Err(_) => After::Cut,
            };
        }
    };
    // A body left unread (too large) leaves the connection at an unknown place.
    let keep = head.keep_alive && upload.is_ok();
    let bodiless = head.method == Method::HEAD;
    let version = head.version;
    let mut request = Request::new(upload);
    *request.method_mut() = head.method;
    *request.uri_mut() = head.uri;
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers;
    let answer = match until_gone(conn, handler(request)).await {
        Ok(answer) => answer,
        Err(Ended::Gone) => return After::Cut,
        Err(Ended::Hangup(how)) => return conn.hang_up(how),
    };
    // A drain that began while the handler worked: the client is told this answer is the last.
    let keep = keep && !*draining.borrow();
    let after = write_response(conn, out, answer, version, bodiless, keep).await;
    match after {
        After::Kept if *draining.borrow() => After::Close,
        after => after,
    }
}

/// Why a connection ended while the server waited on the handler or the body.
enum Ended {
    /// The client closed its side, or the connection failed.
    Gone,
    /// The connection's owner asked for the end.
    Hangup(Hangup),
}

/// Runs `work` while watching the client and the hangup signal; if either ends the connection
/// first, `work` is dropped, and what it held is freed.
async fn until_gone<T>(conn: &mut Conn, work: impl Future<Output = T>) -> Result<T, Ended> {
    let mut work = pin!(work);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(done));
        }
        poll_ended(conn, cx).map(Err)
    })
    .await
}

/// [`poll_gone`], or the hangup signal: polled only with nothing left to write.
fn poll_ended(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<Ended> {
    if let Poll::Ready(how) = conn.poll_hangup(cx) {
        return Poll::Ready(Ended::Hangup(how));
    }
    poll_gone(conn, cx).map(|()| Ended::Gone)
}

/// Ready once the client has closed its side or the connection failed. Polled beside the
/// caller's own future (the handler, the body), which registered the task's waker first.
fn poll_gone(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<()> {
    loop {
        // Once bytes of a next request are here, reading stops until this answer is written,
        // as in hyper's server: the buffer stays small. Returning `Pending` without the socket
        // watching is safe only because the caller's future is watched.
        if !conn.buf.is_empty() {
            return Poll::Pending;
        }
        match conn.buf.poll_fill(&mut conn.stream, cx) {
            Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(_)) => continue,
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// What the body writer does next.
enum Next<D, E> {
    Frame(Option<Result<Frame<D>, E>>),
    /// No frame is ready: write what has been framed.
    Write,
    /// Everything framed is written, and the connection ended.
    Ended(Ended),
}

/// Writes `answer` to a request of `version`; the connection is kept when `keep` allows it
/// and the body ended by its framing.
async fn write_response<B: Body<Data = Bytes>>(
    conn: &mut Conn,
    out: &mut Vec<u8>,
    answer: Response<B>,
    version: Version,
    bodiless: bool,
    keep: bool,
) -> After {
    let (parts, body) = answer.into_parts();
    out.clear();
    let (mut framing, keep) = response::head(out, &parts, body.size_hint().exact(), version, keep);
    if bodiless {
        framing = Framing::Empty;
    }
    let done = |written: std::io::Result<()>, whole: bool| match written {
        Ok(()) if whole && keep => After::Kept,
        Ok(()) if whole => After::Close,
        _ => After::Cut,
    };
    if framing == Framing::Empty {
        // Dropped before the write, as a body with frames is (below).
        drop(body);
        return done(conn.stream.write_all(out).await, true);
    }
    // The body is gone before its last bytes are written: what it holds (a capacity slot) is
    // free by the time the client can read the end and ask again.
    match play(conn, out, body, Encoder::new(framing)).await {
        Ok(true) => done(conn.stream.write_all(out).await, true),
        Err(Broke::Client) => cut(conn, framing),
        Err(Broke::Hangup(how)) => conn.hang_up(how),
        // Short of the length it announced: as broken as a body that failed.
        Ok(false) | Err(Broke::Body) => {
            let _ = conn.stream.write_all(out).await;
            // A body that failed may have asked for its own end as it did (a proxy repeating
            // how its upstream ended).
            let asked = std::future::poll_fn(|cx| Poll::Ready(conn.poll_hangup(cx))).await;
            match asked {
                Poll::Ready(how) => conn.hang_up(how),
                Poll::Pending => cut(conn, framing),
            }
        }
    }
}

/// Why a body's frames stopped before its end.
enum Broke {
    /// The client left, or a write failed.
    Client,
    /// The connection's owner ended it, after everything framed was written.
    Hangup(Hangup),
    /// The body failed, or gave more than its length: `out` holds what came before.
    Body,
}

/// Frames `body` into `out`, writing whatever is framed whenever no frame is ready, until the
/// body ends; then `out` holds its last bytes, not yet written, and whether it ended whole.
async fn play<B: Body<Data = Bytes>>(
    conn: &mut Conn,
    out: &mut Vec<u8>,
    body: B,
    mut encoder: Encoder,
) -> Result<bool, Broke> {
    let mut body = pin!(body);
    loop {
        // A length of zero, or all of it given: nothing is left to wait for.
        if encoder.is_full() {
            return Ok(true);
        }
        let next = std::future::poll_fn(|cx| {
            if out.len() < WRITE_AT_ONCE {
                if let Poll::Ready(frame) = body.as_mut().poll_frame(cx) {
                    return Poll::Ready(Next::Frame(frame));
                }
            }
            if !out.is_empty() {
                return Poll::Ready(Next::Write);
            }
            poll_ended(conn, cx).map(Next::Ended)
        })
        .await;
        match next {
            Next::Frame(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                // More than the length it announced: the answer is broken.
                encoder.data(out, &data).map_err(|_| Broke::Body)?;
                // A body that has given all it announced is done (at the top of the loop),
                // whether or not it would also say so: the next request must not wait for it.
            }
            Next::Frame(None) => return Ok(encoder.end(out)),
            // A body that fails is cut where it stands: the client sees a broken answer, not
            // a finished one.
            Next::Frame(Some(Err(_))) => return Err(Broke::Body),
            Next::Write => {
                conn.stream
                    .write_all(out)
                    .await
                    .map_err(|_| Broke::Client)?;
                // A backlog of events (a slow client behind a fast upstream) grows the buffer
                // to its limit; the next small write gives the space back, so a long stream
                // does not hold it for the rest of its life.
                if out.len() <= KEEP_WRITE_BUFFER && out.capacity() > KEEP_WRITE_BUFFER {
                    *out = Vec::with_capacity(1024);
                } else {
                    out.clear();
                }
            }
            Next::Ended(Ended::Gone) => return Err(Broke::Client),
            Next::Ended(Ended::Hangup(how)) => return Err(Broke::Hangup(how)),
        }
    }
}

/// Cuts an answer that broke. A chunked body without its last chunk is visibly broken however
/// the connection ends; a body that runs to the close would look finished after a FIN, and a
/// short one could be taken for the client's own read error, so those end with a RST.
fn cut(conn: &mut Conn, framing: Framing) -> After {
    if framing != Framing::Chunked {
        reset_on_close(&conn.stream);
    }
    After::Cut
}

/// Closes the connection after the server's last answer: the write side first, then what the
/// client still sends is read and dropped (see [`LINGER`]) until it closes too.
async fn linger(mut conn: Conn) {
    if conn.stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut scratch = [0u8; 8192];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            match conn.stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => dropped += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
