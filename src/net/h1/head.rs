//! A response head, read with `httparse`, and what it says about the body that follows
//! (RFC 9112, section 6.3).

use std::io;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::StatusCode;

/// More headers than this is not a message any inference server or client sends.
pub(super) const MAX_HEADERS: usize = 100;

/// How the body after a head ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// The body is everything until the server closes the connection.
    UntilClose,
}

#[derive(Debug)]
pub(super) struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The connection may carry another request once this body has been read.
    pub keep_alive: bool,
}

fn malformed(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// The head at the start of `buf` and its length in bytes, or `None` while it is incomplete.
pub(super) fn parse(buf: &[u8]) -> io::Result<Option<(Head, usize)>> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(malformed(format!("malformed response head: {e}"))),
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code)
        .map_err(|_| malformed(format!("response status {code} out of range")))?;
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    for h in response.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| malformed(format!("invalid response header name {:?}", h.name)))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| malformed(format!("invalid value of response header {name}")))?;
        headers.append(name, value);
    }
    let http11 = response.version == Some(1);
    let (framing, delimited) = framing(status, &headers)?;
    let keep_alive = delimited && persistent(http11, &headers);
    Ok(Some((
        Head {
            status,
            headers,
            framing,
            keep_alive,
        },
        len,
    )))
}

/// The body's framing, and whether it ends by itself (so the connection outlives it).
fn framing(status: StatusCode, headers: &HeaderMap) -> io::Result<(Framing, bool)> {
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Empty, true));
    }
    if let Some(last) = tokens(headers, hyper::header::TRANSFER_ENCODING).last() {
        // Only a final `chunked` delimits the body; any other coding runs until the close. A
        // length beside it is ignored, and the connection is not trusted with another request
        // (RFC 9112, section 6.3).
        let chunked = last.eq_ignore_ascii_case("chunked");
        let with_length = headers.contains_key(hyper::header::CONTENT_LENGTH);
        return Ok(if chunked {
            (Framing::Chunked, !with_length)
        } else {
            (Framing::UntilClose, false)
        });
    }
    let length = content_length(headers)?;
    Ok(match length {
        Some(n) => (Framing::Length(n), true),
        None => (Framing::UntilClose, false),
    })
}

/// The `content-length` the headers agree on, if any; a malformed or conflicting one is an
/// error (a message whose end cannot be known).
pub(super) fn content_length(headers: &HeaderMap) -> io::Result<Option<u64>> {
    let mut length: Option<u64> = None;
    for value in headers.get_all(hyper::header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|b| *b == b',') {
            let text = std::str::from_utf8(part).unwrap_or_default().trim();
            // Digits only: `parse` would also take a sign.
            let n: u64 = Some(text)
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| malformed(format!("invalid content-length {text:?}")))?;
            if length.is_some_and(|seen| seen != n) {
                return Err(malformed("conflicting content-length values"));
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// HTTP/1.1 keeps a connection unless told `close`; HTTP/1.0 only when told `keep-alive`.
pub(super) fn persistent(http11: bool, headers: &HeaderMap) -> bool {
    if http11 {
        !super::request::says_close(headers)
    } else {
        tokens(headers, hyper::header::CONNECTION).any(|t| t.eq_ignore_ascii_case("keep-alive"))
    }
}

/// The comma-separated tokens of every `name` header, in order.
pub(super) fn tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
