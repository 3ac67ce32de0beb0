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

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body the proxy sends. Unsync because hyper's server never shares a body.
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

/// Finds the ends of SSE events in a byte stream fed in arbitrary pieces. An event ends at a
/// blank line after some content: `\n\n` or `\r\n\r\n` (a `\r` is ignored, so mixed endings
/// work too; lone-`\r` line endings are not recognised). Comment blocks count as events.
#[derive(Debug, Clone)]
pub(crate) struct EventScanner {
    line_empty: bool,
    event_has_content: bool,
}

impl Default for EventScanner {
    fn default() -> Self {
        EventScanner {
            line_empty: true,
            event_has_content: false,
        }
    }
}

impl EventScanner {
    /// The offset just past the first event end in `bytes`; the scanner has consumed exactly
    /// the bytes before that offset, so the caller continues with the rest.
    pub(crate) fn next_end(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' => {
                    let ends = self.line_empty && self.event_has_content;
                    self.line_empty = true;
                    if ends {
                        self.event_has_content = false;
                        return Some(i + 1);
                    }
                }
                b'\r' => {}
                _ => {
                    self.line_empty = false;
                    self.event_has_content = true;
                }
            }
        }
        None
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

    fn exhausted(&self) -> bool {
        matches!(
            self,
            Allowance::Bytes(0) | Allowance::Events { left: 0, .. }
        )
    }

    /// Consumes `data`; returns how many of its bytes may pass if the allowance runs out in it.
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

/// Where a wrapper stands relative to its cut point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Passing,
    /// The allowance ran out exactly at a frame boundary. The cut waits for the next frame:
    /// a stream that ends right there was never truncated, and must end normally.
    AtLimit,
    Done,
}

/// Cuts a response after some bytes or SSE events, then ends the connection as the fault says.
pub(crate) struct Truncate {
    inner: Option<ProxyBody>,
    allowance: Allowance,
    how: CutStyle,
    conn: Arc<ConnControl>,
    phase: Phase,
}

impl Truncate {
    pub(crate) fn new(
        inner: ProxyBody,
        point: CutPoint,
        how: CutStyle,
        conn: Arc<ConnControl>,
    ) -> Self {
        let allowance = Allowance::new(point);
        let phase = if allowance.exhausted() {
            Phase::AtLimit
        } else {
            Phase::Passing
        };
        Truncate {
            inner: Some(inner),
            allowance,
            how,
            conn,
            phase,
        }
    }

    /// Stops reading the upstream (its connection is let go) and ends the client's connection
    /// once the bytes already passed are written. `stall` leaves the connection as it is.
    fn cut(&mut self) {
        self.inner = None;
        self.phase = Phase::Done;
        match self.how {
            CutStyle::Close => self.conn.close_after_flush(false),
            CutStyle::Reset => self.conn.close_after_flush(true),
            CutStyle::Stall => {}
        }
    }
}

impl Body for Truncate {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            // After the cut nothing is ever sent again, so no wake-up is arranged: the
            // connection ends (close, reset) or hangs until the client or the proxy leaves.
            return Poll::Pending;
        };
        let mut data = match next_data(inner, cx) {
            ControlFlow::Continue(data) => data,
            ControlFlow::Break(answer) => return answer,
        };
        if this.phase == Phase::AtLimit {
            this.cut();
            return Poll::Pending;
        }
        if let Some(keep) = this.allowance.take(&data) {
            if keep < data.len() {
                data.truncate(keep);
                this.cut();
                if data.is_empty() {
                    return Poll::Pending;
                }
            } else {
                this.phase = Phase::AtLimit;
            }
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

/// Passes some SSE events, then sends one error event instead of the rest and ends cleanly.
pub(crate) struct StreamError {
    inner: Option<ProxyBody>,
    allowance: Allowance,
    event: Bytes,
    phase: Phase,
}

impl StreamError {
    pub(crate) fn new(inner: ProxyBody, after_events: u64, event: Bytes) -> Self {
        let allowance = Allowance::new(CutPoint::Events(after_events));
        let phase = if allowance.exhausted() {
            Phase::AtLimit
        } else {
            Phase::Passing
        };
        StreamError {
            inner: Some(inner),
            allowance,
            event,
            phase,
        }
    }

    fn replace_rest(&mut self, prefix: Bytes) -> Polled {
        self.inner = None;
        self.phase = Phase::Done;
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
        if this.phase == Phase::AtLimit {
            return this.replace_rest(Bytes::new());
        }
        if let Some(keep) = this.allowance.take(&data) {
            if keep < data.len() {
                data.truncate(keep);
                return this.replace_rest(data);
            }
            this.phase = Phase::AtLimit;
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

    fn ends(scanner: &mut EventScanner, pieces: &[&str]) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for (p, piece) in pieces.iter().enumerate() {
            let mut at = 0;
            while let Some(end) = scanner.next_end(&piece.as_bytes()[at..]) {
                at += end;
                found.push((p, at));
            }
        }
        found
    }

    #[test]
    fn events_end_at_blank_lines_across_pieces() {
        let mut s = EventScanner::default();
        let found = ends(
            &mut s,
            &["data: a\n", "\ndata: b\n\nda", "ta: c\r\n\r", "\n"],
        );
        assert_eq!(found, [(1, 1), (1, 10), (3, 1)]);
    }

    #[test]
    fn multi_line_events_and_leading_blank_lines() {
        let mut s = EventScanner::default();
        let found = ends(&mut s, &["\n\nevent: x\ndata: 1\n\n: ping\n\n"]);
        assert_eq!(found, [(0, 20), (0, 28)]);
    }

    #[test]
    fn allowance_cuts_inside_a_piece() {
        let mut a = Allowance::new(CutPoint::Events(2));
        assert_eq!(a.take(b"data: 1\n\ndata: 2"), None);
        assert_eq!(a.take(b"\n\ndata: 3\n\n"), Some(2));
        let mut b = Allowance::new(CutPoint::Bytes(5));
        assert_eq!(b.take(b"abc"), None);
        assert_eq!(b.take(b"defg"), Some(2));
    }
}
