//! A response as the server writes it: the head, with the framing its body gets, and the body's
//! bytes framed into the connection's write buffer.

use std::io::Write;

use hyper::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use hyper::http::response::Parts;
use hyper::{StatusCode, Version};

use super::head::{self, Framing};

/// Writes the head of `parts` into `out` and decides the body's framing: the length the
/// handler set, else the body's exact size, else chunks (an HTTP/1.0 client reads to the
/// close). Returns it, and whether the connection is kept afterwards (`keep`, unless the
/// handler asked to close or the body runs to the close).
pub(super) fn head(
    out: &mut Vec<u8>,
    parts: &Parts,
    exact: Option<u64>,
    version: Version,
    keep: bool,
) -> (Framing, bool) {
    let status = parts.status;
    // A length the handler (or a relayed upstream) set is kept; a malformed one is dropped and
    // the body framed as if none had been set.
    let set_length = head::content_length(&parts.headers).ok().flatten();
    let framing = if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if let Some(n) = set_length.or(exact) {
        Framing::Length(n)
    } else if version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        Framing::UntilClose
    };
    let keep =
        keep && framing != Framing::UntilClose && !super::request::says_close(&parts.headers);
    status_line(out, version, status);
    for (name, value) in &parts.headers {
        // Framing and the connection's fate are the server's to say, once.
        if name == TRANSFER_ENCODING || name == CONNECTION || name == CONTENT_LENGTH {
            continue;
        }
        header(out, name.as_str(), value.as_bytes());
    }
    if !parts.headers.contains_key(DATE) {
        date(out);
    }
    match framing {
        Framing::Length(n) => header(out, "content-length", n.to_string().as_bytes()),
        Framing::Chunked => header(out, "transfer-encoding", b"chunked"),
        Framing::Empty | Framing::UntilClose => {}
    }
    if !keep {
        header(out, "connection", b"close");
    } else if version == Version::HTTP_10 {
        header(out, "connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    (framing, keep)
}

/// A whole answer from the server itself to a request it cannot serve; the connection closes.
pub(super) fn error(out: &mut Vec<u8>, status: StatusCode) {
    status_line(out, Version::HTTP_11, status);
    date(out);
    out.extend_from_slice(b"content-length: 0\r\nconnection: close\r\n\r\n");
}

/// The status line; an HTTP/1.0 client is answered in its version, as hyper answered it.
fn status_line(out: &mut Vec<u8>, version: Version, status: StatusCode) {
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The `date` header, rendered once a second per thread (a token event must not format a
/// date).
fn date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            *cache = (secs, httpdate::fmt_http_date(now));
        }
        header(out, "date", cache.1.as_bytes());
    });
}

/// Frames body bytes as the head announced.
pub(super) struct Encoder {
    framing: Framing,
    /// For a length: bytes still to come.
    left: u64,
}

/// More body than the head announced.
#[derive(Debug)]
pub(super) struct Overflow;

impl Encoder {
    pub(super) fn new(framing: Framing) -> Encoder {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        Encoder { framing, left }
    }

    /// Appends `data` as the framing has it: a chunk, or the bytes themselves.
    pub(super) fn data(&mut self, out: &mut Vec<u8>, data: &[u8]) -> Result<(), Overflow> {
        match self.framing {
            // An empty chunk would end the body.
            Framing::Chunked if data.is_empty() => {}
            Framing::Chunked => {
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{:x}\r\n", data.len());
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Framing::Length(_) => {
                let n = data.len() as u64;
                if n > self.left {
                    return Err(Overflow);
                }
                self.left -= n;
                out.extend_from_slice(data);
            }
            Framing::UntilClose => out.extend_from_slice(data),
            Framing::Empty => {}
        }
        Ok(())
    }

    /// A body with a length has given all of it.
    pub(super) fn is_full(&self) -> bool {
        matches!(self.framing, Framing::Length(_)) && self.left == 0
    }

    /// Appends the end of the body; false when it ended short of the length announced.
    pub(super) fn end(&self, out: &mut Vec<u8>) -> bool {
        match self.framing {
            Framing::Chunked => {
                out.extend_from_slice(b"0\r\n\r\n");
                true
            }
            Framing::Length(_) => self.left == 0,
            Framing::UntilClose | Framing::Empty => true,
        }
    }
}
