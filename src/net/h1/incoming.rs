//! A request as the server reads it: the head with `httparse`, the body whole (RFC 9112,
//! sections 6 and 7), and the answers a request that cannot be read gets.

use bytes::Bytes;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING,
};
use hyper::{Method, StatusCode, Uri, Version};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::body::Decoder;
use super::head::{self, Framing, MAX_HEADERS};
use super::server::{Conn, Server, TooLarge, Upload};
use super::MAX_HEAD;

/// Bytes of chunked framing (sizes, extensions, trailers) a body may carry beyond its data:
/// framing without end must not hold a connection for ever.
const MAX_FRAMING: usize = 64 * 1024;

/// A request head, parsed.
pub(super) struct Head {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The client lets the connection carry another request after this one.
    pub keep_alive: bool,
}

/// Why the connection stops before a request reaches the handler.
pub(super) enum Refused {
    /// The client left, or was silent for too long, or the server is draining: nothing to say.
    Quietly,
    /// The client spoke bad HTTP: this status, then the connection closes.
    Answer(StatusCode),
}

/// Reads the next request head; bytes after it stay in the buffer. The whole head, from the
/// moment the server waits for it (an idle kept-alive connection included, as hyper's server
/// did), must arrive within `limit`; an idle connection closes when `draining` turns true.
pub(super) async fn read_head(
    conn: &mut Conn,
    limit: Option<std::time::Duration>,
    draining: &mut watch::Receiver<bool>,
) -> Result<Head, Refused> {
    let deadline = limit.map(|l| Instant::now() + l);
    // How much of the unread bytes has been searched for the blank line that ends a head.
    let mut scanned: usize = 0;
    loop {
        // Empty lines before a request line are allowed (RFC 9112, section 2.2) and dropped
        // here, so that none of them is taken for the blank line that ends a head.
        let blank = conn
            .buf
            .unread()
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        conn.buf.consume(blank);
        scanned = scanned.saturating_sub(blank);
        let unread = conn.buf.unread();
        // Parsing only once a blank line is there: parsing a long head again at every read of
        // it would cost its length squared.
        let window = &unread[scanned.saturating_sub(3)..];
        let ended = memchr::memmem::find(window, b"\n\r\n").is_some()
            || memchr::memmem::find(window, b"\n\n").is_some();
        if ended {
            if let Some((head, len)) = parse(unread)? {
                if len > MAX_HEAD {
                    return Err(Refused::Answer(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
                }
                conn.buf.consume(len);
                return Ok(head);
            }
        }
        scanned = unread.len();
        if scanned >= MAX_HEAD {
            return Err(Refused::Answer(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        }
        let idle = conn.buf.is_empty();
        let read = std::future::poll_fn(|cx| conn.buf.poll_fill(&mut conn.stream, cx));
        let late = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let drained = async {
            // Only an idle connection closes at once; a head on its way is answered first. A
            // closed channel means the listener is gone and this task about to be cut.
            if !idle {
                std::future::pending::<()>().await;
            }
            let _ = draining.wait_for(|d| *d).await;
        };
        tokio::select! {
            biased;
            () = drained => return Err(Refused::Quietly),
            read = read => match read {
                Ok(0) | Err(_) => return Err(Refused::Quietly),
                Ok(_) => {}
            },
            () = late => return Err(Refused::Quietly),
        }
    }
}

/// The request head at the start of `buf` and its length, `None` while it is incomplete.
fn parse(buf: &[u8]) -> Result<Option<(Head, usize)>, Refused> {
    let bad = || Refused::Answer(StatusCode::BAD_REQUEST);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refused::Answer(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE))
        }
        Err(_) => return Err(bad()),
    };
    let method =
        Method::from_bytes(req.method.unwrap_or_default().as_bytes()).map_err(|_| bad())?;
    let uri: Uri = req.path.unwrap_or_default().parse().map_err(|_| bad())?;
    let http11 = req.version == Some(1);
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad())?;
        headers.append(name, value);
    }
    let framing = framing(http11, &headers).ok_or_else(bad)?;
    let keep_alive = head::persistent(http11, &headers);
    let version = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    Ok(Some((
        Head {
            method,
            uri,
            version,
            headers,
            framing,
            keep_alive,
        },
        len,
    )))
}

/// How a request's body ends (RFC 9112, section 6.3): `None` when that cannot be known for
/// sure, which is a bad request. Without a length or a coding a request has no body.
fn framing(http11: bool, headers: &HeaderMap) -> Option<Framing> {
    if headers.contains_key(TRANSFER_ENCODING) {
        // Where two readers of one request could disagree on its end, requests are smuggled:
        // a coding over HTTP/1.0, beside a length, unreadable, or not ending in `chunked`.
        let readable = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .all(|v| v.to_str().is_ok());
        let last = head::tokens(headers, TRANSFER_ENCODING).last();
        let chunked = last.is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        return (http11 && readable && chunked && !headers.contains_key(CONTENT_LENGTH))
            .then_some(Framing::Chunked);
    }
    match head::content_length(headers).ok()? {
        Some(0) | None => Some(Framing::Empty),
        Some(n) => Some(Framing::Length(n)),
    }
}

/// Reads the request's body whole, or finds it too large (then the rest is left unread and
/// the connection closes after the answer). A body that pauses longer than the server's
/// `body_read_timeout` between two reads is a `408`.
pub(super) async fn read_body(
    conn: &mut Conn,
    head: &Head,
    server: Server,
) -> Result<Upload, Refused> {
    let limit = server.max_body;
    let too_large = TooLarge { limit };
    match head.framing {
        Framing::Empty => return Ok(Ok(Bytes::new())),
        Framing::Length(n) if n > limit as u64 => return Ok(Err(too_large)),
        _ => {}
    }
    let continues = head.version == Version::HTTP_11
        && head
            .headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if continues && conn.buf.is_empty() {
        // The client waits for this before it sends the body.
        conn.stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| Refused::Quietly)?;
    }
    let mut decoder = Decoder::new(head.framing);
    let mut body = Vec::new();
    let mut framing = 0;
    while !decoder.is_done() {
        if conn.buf.is_empty() {
            let read = std::future::poll_fn(|cx| conn.buf.poll_refill(&mut conn.stream, cx));
            let read = match server.body_read_timeout {
                Some(pause) => tokio::time::timeout(pause, read)
                    .await
                    .map_err(|_| Refused::Answer(StatusCode::REQUEST_TIMEOUT))?,
                None => read.await,
            };
            match read {
                Ok(0) | Err(_) => return Err(Refused::Quietly),
                Ok(_) => {}
            }
        }
        let input = conn.buf.unread();
        let (used, data) = decoder
            .decode(input)
            .map_err(|_| Refused::Answer(StatusCode::BAD_REQUEST))?;
        let data = data.map_or(0, |(start, end)| {
            body.extend_from_slice(&input[start..end]);
            end - start
        });
        framing += used - data;
        conn.buf.consume(used);
        if body.len() > limit || framing > MAX_FRAMING {
            return Ok(Err(too_large));
        }
    }
    Ok(Ok(Bytes::from(body)))
}
