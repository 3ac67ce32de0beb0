//! Reading a response body as it arrives: each read's payload is handed to the caller where it
//! lies in the connection's buffer, with the chunked framing taken out and nothing copied.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;

use super::head::Framing;
use super::{Conn, Inner};

/// Where the body is in its framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decoder {
    /// Bytes still to come.
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// The chunked coding's states (RFC 9112, section 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Chunk {
    /// The hex size; `digits`: at least one read.
    Size {
        size: u64,
        digits: bool,
    },
    /// Spaces or tabs after the size.
    SizeLws {
        size: u64,
    },
    /// A chunk extension, skipped.
    Extension {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// Trailer lines; `empty`: nothing yet on the current line.
    Trailer {
        empty: bool,
    },
    TrailerLf {
        empty: bool,
    },
}

/// Where payload lies in the input read, as start and end, when a step reached some.
type Payload = Option<(usize, usize)>;

fn malformed(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed chunked body: {why}"),
    )
}

impl Decoder {
    pub(super) fn new(framing: Framing) -> Decoder {
        match framing {
            Framing::Empty | Framing::Length(0) => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(Chunk::Size {
                size: 0,
                digits: false,
            }),
            Framing::UntilClose => Decoder::UntilClose,
        }
    }

    pub(super) fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    /// Reads framing from `input` up to the next payload. Returns how many bytes it used and,
    /// if it reached payload, where that lies in `input` (the payload's bytes count as used).
    pub(super) fn decode(&mut self, input: &[u8]) -> io::Result<(usize, Payload)> {
        match self {
            Decoder::Done => Ok((0, None)),
            Decoder::UntilClose => Ok((input.len(), Some((0, input.len())))),
            Decoder::Length(left) => {
                let take = (*left).min(input.len() as u64);
                *left -= take;
                if *left == 0 {
                    *self = Decoder::Done;
                }
                // `take` fits: it is at most `input.len()`.
                let take = take as usize;
                Ok((take, Some((0, take))))
            }
            Decoder::Chunked(state) => {
                let (used, data, done) = chunked(state, input)?;
                if done {
                    *self = Decoder::Done;
                }
                Ok((used, data))
            }
        }
    }
}

/// One step of the chunked coding over `input`: bytes used, payload reached, body ended.
/// Every line of the framing must end in CRLF. Header lines may end in a bare LF (RFC 9112,
/// section 2.2), but chunk lines may not (section 7.1); two readers that disagree on where a
/// body ends are how requests are smuggled past a proxy, so a bare LF is an error (hyper's
/// decoder refuses it in size lines, extensions and after the data too; here trailer lines
/// also). Only spaces or tabs may follow a size before its extension or line end.
fn chunked(state: &mut Chunk, input: &[u8]) -> io::Result<(usize, Payload, bool)> {
    for (i, &byte) in input.iter().enumerate() {
        *state = match *state {
            Chunk::Data { left } => {
                let take = left.min((input.len() - i) as u64);
                *state = if take == left {
                    Chunk::DataCr
                } else {
                    Chunk::Data { left: left - take }
                };
                // `take` fits: it is at most what is left of `input`.
                let end = i + take as usize;
                return Ok((end, Some((i, end)), false));
            }
            Chunk::Size { size, digits } => match byte {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    let digit = (byte as char).to_digit(16).unwrap_or_default();
                    // A multiple of 16 below u64::MAX has room for one more digit.
                    let size = size
                        .checked_mul(16)
                        .map(|s| s + u64::from(digit))
                        .ok_or_else(|| malformed("chunk size too large"))?;
                    Chunk::Size { size, digits: true }
                }
                _ if !digits => return Err(malformed("chunk size expected")),
                b' ' | b'\t' => Chunk::SizeLws { size },
                b';' => Chunk::Extension { size },
                b'\r' => Chunk::SizeLf { size },
                _ => return Err(malformed("invalid chunk size")),
            },
            Chunk::SizeLws { size } => match byte {
                b' ' | b'\t' => Chunk::SizeLws { size },
                b';' => Chunk::Extension { size },
                b'\r' => Chunk::SizeLf { size },
                _ => return Err(malformed("invalid chunk size")),
            },
            Chunk::Extension { size } => match byte {
                b'\r' => Chunk::SizeLf { size },
                b'\n' => return Err(malformed("bare LF in a chunk extension")),
                _ => Chunk::Extension { size },
            },
            Chunk::SizeLf { size } => match byte {
                b'\n' => after_size(size),
                _ => return Err(malformed("CRLF expected after the chunk size")),
            },
            Chunk::DataCr => match byte {
                b'\r' => Chunk::DataLf,
                _ => return Err(malformed("CRLF expected after the chunk data")),
            },
            Chunk::DataLf => match byte {
                b'\n' => Chunk::Size {
                    size: 0,
                    digits: false,
                },
                _ => return Err(malformed("CRLF expected after the chunk data")),
            },
            Chunk::Trailer { empty } => match byte {
                b'\r' => Chunk::TrailerLf { empty },
                b'\n' => return Err(malformed("bare LF in the trailer")),
                _ => Chunk::Trailer { empty: false },
            },
            Chunk::TrailerLf { empty } => match byte {
                b'\n' if empty => return Ok((i + 1, None, true)),
                b'\n' => Chunk::Trailer { empty: true },
                _ => return Err(malformed("CRLF expected in the trailer")),
            },
        };
    }
    Ok((input.len(), None, false))
}

fn after_size(size: u64) -> Chunk {
    if size == 0 {
        Chunk::Trailer { empty: true }
    } else {
        Chunk::Data { left: size }
    }
}

/// A response body being read on its connection. Reading it to its end gives the connection
/// back to the pool when it can carry another request; dropping it earlier closes it.
pub struct Body {
    conn: Option<Conn>,
    decoder: Decoder,
    keep_alive: bool,
    client: Arc<Inner>,
}

impl Body {
    pub(super) fn new(conn: Conn, framing: Framing, keep_alive: bool, client: Arc<Inner>) -> Self {
        let mut body = Body {
            conn: Some(conn),
            decoder: Decoder::new(framing),
            keep_alive,
            client,
        };
        if body.decoder.is_done() {
            // No body (a 204, an answer to a HEAD, a zero length): a server forwarding it never
            // polls it, so the connection goes back to the pool now.
            body.release();
        }
        body
    }

    /// The next payload as it arrived, `None` at the body's end. An error means the connection
    /// failed or closed before the body's end, or broke its framing. Cancel-safe: a call dropped
    /// while it waits loses nothing.
    pub async fn next(&mut self) -> io::Result<Option<&[u8]>> {
        let range = std::future::poll_fn(|cx| self.poll_range(cx)).await?;
        Ok(range.and_then(|(start, end)| self.conn.as_ref().map(|c| c.buf.slice(start, end))))
    }

    /// Where the next payload lies in the connection's buffer, once it has arrived.
    fn poll_range(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<(usize, usize)>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(Ok(None));
            };
            if self.decoder.is_done() {
                self.release();
                return Poll::Ready(Ok(None));
            }
            if !conn.buf.is_empty() {
                let at = conn.buf.pos();
                let (used, data) = self.decoder.decode(conn.buf.unread())?;
                conn.buf.consume(used);
                match data {
                    Some((start, end)) if start < end => {
                        return Poll::Ready(Ok(Some((at + start, at + end))))
                    }
                    _ => continue,
                }
            }
            if ready!(conn.buf.poll_refill(&mut conn.io, cx))? == 0 {
                if self.decoder != Decoder::UntilClose {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the connection closed before the body's end",
                    )));
                }
                self.keep_alive = false;
                self.decoder = Decoder::Done;
            }
        }
    }

    /// Gives the connection back to the pool if it is fit for another request: the body ended by
    /// its framing, the server did not say `close`, and nothing came after the body.
    fn release(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if self.keep_alive && conn.buf.is_empty() && conn.io.nothing_buffered() {
                super::pool(&self.client, conn);
            }
        }
    }
}

/// As a hyper body, for a proxy that forwards it: each payload becomes one frame (copied out
/// of the connection's buffer, which the next read reuses).
impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        Poll::Ready(match ready!(this.poll_range(cx)) {
            Ok(Some((start, end))) => {
                let data = this
                    .conn
                    .as_ref()
                    .map(|c| Bytes::copy_from_slice(c.buf.slice(start, end)));
                // A server that has written all of an announced length drops the body without
                // asking for its end: the connection goes back to the pool now, or never.
                if this.decoder.is_done() {
                    this.release();
                }
                data.map(|d| Ok(Frame::data(d)))
            }
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }
}
