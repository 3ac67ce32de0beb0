//! Response body wrappers: each passes frames through as they come (nothing is buffered whole)
//! and alters the stream in one way: a delay per chunk, a cut, or an in-stream error event.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::header::HeaderName;
use tokio::time::Sleep;

use super::conn::ConnControl;
use crate::fault::{CutPoint, CutStyle};
use crate::net::h1::server::Hangup;
use crate::protocol::ending::Ending;
use crate::protocol::sse::EventScanner;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body the proxy sends. Unsync because a connection's server never shares it.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Names the proxy on every response it sends, so a trace shows which hop answered.
pub(crate) const PROXY_HEADER: &str = "x-faultline-proxy";

pub(crate) fn proxy_header() -> HeaderName {
    HeaderName::from_static(PROXY_HEADER)
}

pub(crate) fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

/// The next non-empty data frame of `inner`; anything else (waiting, the end, an error,
/// trailers, an empty frame) is what the wrapping body answers as it is.
fn next_data(inner: &mut ProxyBody, cx: &mut Context<'_>) -> ControlFlow<Polled, Bytes> {
    let frame = match Pin::new(inner).poll_frame(cx) {
        Poll::Pending => return ControlFlow::Break(Poll::Pending),
        Poll::Ready(Some(Ok(frame))) => frame,
        Poll::Ready(other) => return ControlFlow::Break(Poll::Ready(other)),
    };
    match frame.into_data() {
        Ok(data) if !data.is_empty() => ControlFlow::Continue(data),
        Ok(data) => ControlFlow::Break(Poll::Ready(Some(Ok(Frame::data(data))))),
        Err(frame) => ControlFlow::Break(Poll::Ready(Some(Ok(frame)))),
    }
}

/// How much of a stream may still pass.
#[derive(Debug)]
enum Allowance {
    Bytes(u64),
    Events { left: u64, scanner: EventScanner },
}

impl Allowance {
    fn new(point: CutPoint) -> Self {
        match point {
            CutPoint::Bytes(n) => Allowance::Bytes(n),
            CutPoint::Events(n) => Allowance::Events {
                left: n,
                scanner: EventScanner::default(),
            },
        }
    }

    /// Consumes `data`; returns how many of its bytes may pass if the allowance runs out in it
    /// or had run out before. When it ran out exactly at the end of the previous frame, that
    /// is `Some(0)` (or `Some(1)`, below): the cut waits for a frame to cut, because a stream
    /// that ends right at the limit was never truncated and must end normally.
    fn take(&mut self, data: &[u8]) -> Option<usize> {
        match self {
            Allowance::Bytes(left) => {
                let len = data.len() as u64;
                if len >= *left {
                    let keep = usize::try_from(*left).unwrap_or(data.len());
                    *left = 0;
                    Some(keep)
                } else {
                    *left -= len;
                    None
                }
            }
            Allowance::Events { left: 0, scanner } => {
                // The `\n` of the last event's `\r\n`, framed apart from its `\r`, is still
                // that event's: the client gets the whole line end.
                let owed = scanner.owes_lf() && data.first() == Some(&b'\n');
                if owed {
                    scanner.next_end(b"\n");
                }
                Some(usize::from(owed))
            }
            Allowance::Events { left, scanner } => {
                let mut at = 0;
                while *left > 0 {
                    let end = scanner.next_end(&data[at..])?;
                    at += end;
                    *left -= 1;
                }
                Some(at)
            }
        }
    }
}

/// Cuts a response after some bytes or SSE events, then ends the connection as the fault says,
/// or (`end`, `reterminate`) ends the body cleanly and keeps the connection.
pub(crate) struct Truncate {
    inner: Option<ProxyBody>,
    allowance: Allowance,
    how: CutStyle,
    conn: Arc<ConnControl>,
    /// `reterminate` on an SSE body: follows what passes, to write the right ending.
    ending: Option<Ending>,
    /// After a clean cut: the body ends once this (the synthetic ending, if any) is sent.
    tail: Option<Option<Bytes>>,
}

impl Truncate {
    /// `ending` follows the stream for `how: reterminate`; without one (a body that is not an
    /// SSE stream has no terminator to fake) `reterminate` ends the body like `end`.
    pub(crate) fn new(
        inner: ProxyBody,
        point: CutPoint,
        how: CutStyle,
        conn: Arc<ConnControl>,
        ending: Option<Ending>,
    ) -> Self {
        Truncate {
            inner: Some(inner),
            allowance: Allowance::new(point),
            how,
            conn,
            ending: ending.filter(|_| how == CutStyle::Reterminate),
            tail: None,
        }
    }

    /// Stops reading the upstream (its connection is let go) and ends the client's connection
    /// once the bytes already passed are written. `stall` leaves the connection as it is;
    /// `end` and `reterminate` end the body instead, and the connection lives on.
    fn cut(&mut self) {
        self.inner = None;
        match self.how {
            CutStyle::Close => self.conn.hang_up(Hangup::Fin),
            CutStyle::Reset => self.conn.hang_up(Hangup::Reset),
            CutStyle::Stall => {}
            CutStyle::End | CutStyle::Reterminate => {
                let ending = self.ending.as_ref().map(Ending::ending);
                self.tail = Some(ending.filter(|e| !e.is_empty()).map(Bytes::from));
            }
        }
    }

    /// What a clean cut still sends: the tail once, then the end of the body.
    fn poll_tail(&mut self) -> Option<Polled> {
        let tail = self.tail.as_mut()?;
        Some(Poll::Ready(tail.take().map(|b| Ok(Frame::data(b)))))
    }
}

impl Body for Truncate {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        if let Some(answer) = this.poll_tail() {
            return answer;
        }
        let Some(inner) = this.inner.as_mut() else {
            // After the cut nothing is ever sent again, so no wake-up is arranged: the
            // connection ends (close, reset) or hangs until the client or the proxy leaves.
            return Poll::Pending;
        };
        let mut data = match next_data(inner, cx) {
            ControlFlow::Continue(data) => data,
            ControlFlow::Break(answer) => return answer,
        };
        if let Some(keep) = this.allowance.take(&data) {
            if keep < data.len() {
                data.truncate(keep);
                if let Some(ending) = this.ending.as_mut() {
                    ending.feed(&data);
                }
                this.cut();
                if data.is_empty() {
                    return this.poll_tail().unwrap_or(Poll::Pending);
                }
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
        }
        if let Some(ending) = this.ending.as_mut() {
            ending.feed(&data);
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

/// Passes some SSE events, then sends one error event instead of the rest and ends cleanly.
pub(crate) struct StreamError {
    inner: Option<ProxyBody>,
    allowance: Allowance,
    event: Bytes,
}

impl StreamError {
    pub(crate) fn new(inner: ProxyBody, after_events: u64, event: Bytes) -> Self {
        StreamError {
            inner: Some(inner),
            allowance: Allowance::new(CutPoint::Events(after_events)),
            event,
        }
    }

    fn replace_rest(&mut self, prefix: Bytes) -> Polled {
        self.inner = None;
        let mut out = BytesMut::with_capacity(prefix.len() + self.event.len());
        out.extend_from_slice(&prefix);
        out.extend_from_slice(&self.event);
        if out.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(out.freeze()))))
    }
}

impl Body for StreamError {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let mut data = match next_data(inner, cx) {
            ControlFlow::Continue(data) => data,
            ControlFlow::Break(answer) => return answer,
        };
        if let Some(keep) = this.allowance.take(&data) {
            if keep < data.len() {
                data.truncate(keep);
                return this.replace_rest(data);
            }
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::default()
    }
}

/// Holds every data frame for a while before passing it on: slow tokens.
pub(crate) struct PerChunkDelay {
    inner: ProxyBody,
    delay: Duration,
    held: Option<Frame<Bytes>>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl PerChunkDelay {
    pub(crate) fn new(inner: ProxyBody, delay: Duration) -> Self {
        PerChunkDelay {
            inner,
            delay,
            held: None,
            sleep: None,
        }
    }
}

impl Body for PerChunkDelay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        if let Some(sleep) = this.sleep.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
            if let Some(frame) = this.held.take() {
                return Poll::Ready(Some(Ok(frame)));
            }
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) if frame.is_data() => {
                this.held = Some(frame);
                let mut sleep = Box::pin(tokio::time::sleep(this.delay));
                // Register the timer's wake-up now; the frame goes out when it fires.
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(this.held.take().map(Ok));
                }
                this.sleep = Some(sleep);
                Poll::Pending
            }
            other => Poll::Ready(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sse;

    /// What passes of `pieces` (frames) under `point`, frame by frame, up to the cut.
    fn passed(point: CutPoint, pieces: &[&[u8]]) -> Vec<u8> {
        let mut a = Allowance::new(point);
        let mut out = Vec::new();
        for piece in pieces.iter().filter(|p| !p.is_empty()) {
            match a.take(piece) {
                Some(keep) if keep < piece.len() => {
                    out.extend_from_slice(&piece[..keep]);
                    break;
                }
                _ => out.extend_from_slice(piece),
            }
        }
        out
    }

    #[test]
    fn allowance_cuts_inside_a_piece() {
        assert_eq!(
            passed(
                CutPoint::Events(2),
                &[b"data: 1\n\ndata: 2", b"\n\ndata: 3\n\n"]
            ),
            b"data: 1\n\ndata: 2\n\n"
        );
        assert_eq!(passed(CutPoint::Bytes(5), &[b"abc", b"defg"]), b"abcde");
        assert_eq!(passed(CutPoint::Events(0), &[b"data: 1\n\n"]), b"");
    }

    #[test]
    fn a_cut_after_n_events_is_where_the_client_counts_n_whatever_the_framing() {
        // Mixed line ends, a comment block (not an event) and `\r\n` event ends, which the
        // framing below splits between their `\r` and `\n` too.
        let body: &[u8] = b"data: 1\n\n: ping\r\n\r\ndata: 2\r\n\r\nevent: e\rdata: 3\r\rdata: 4\n\r\ndata: 5\n\n";
        let ends = [9, 30, 48, 58, 67];
        for n in 1..=4 {
            let want = &body[..ends[n - 1]];
            for i in 0..=body.len() {
                for j in i..=body.len() {
                    let frames = [&body[..i], &body[i..j], &body[j..]];
                    let got = passed(CutPoint::Events(n as u64), &frames);
                    assert_eq!(got, want, "{n} events, frames cut at {i} and {j}");
                    assert_eq!(sse::decode_all(&got).len(), n, "{n} events");
                }
            }
        }
    }
}
