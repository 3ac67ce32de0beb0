//! One row per request: what the load generator saw. Everything downstream (metrics, verdict,
//! reports) reads only these rows.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a request ended, from the client's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A complete, verified response.
    Ok,
    /// A non-2xx status.
    HttpError,
    /// A 2xx whose body ended early: no terminator, or content that fails verification even
    /// though something re-terminated the stream. The gray failure.
    Truncated,
    /// A 2xx stream that carried an error event.
    StreamError,
    /// The whole exchange took longer than the stream's `timeout`.
    Timeout,
    /// Bytes stopped arriving for longer than `stall_timeout` while the connection stayed open.
    Stalled,
    /// No connection could be made.
    ConnectError,
    /// The connection was reset or closed before a response arrived.
    Reset,
    /// Never sent: the in-flight limit was full at its intended send time.
    Dropped,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::HttpError,
        Outcome::Truncated,
        Outcome::StreamError,
        Outcome::Timeout,
        Outcome::Stalled,
        Outcome::ConnectError,
        Outcome::Reset,
        Outcome::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::HttpError => "http_error",
            Outcome::Truncated => "truncated",
            Outcome::StreamError => "stream_error",
            Outcome::Timeout => "timeout",
            Outcome::Stalled => "stalled",
            Outcome::ConnectError => "connect_error",
            Outcome::Reset => "reset",
            Outcome::Dropped => "dropped",
        }
    }

    pub fn is_ok(self) -> bool {
        self == Outcome::Ok
    }
}

/// Everything recorded about one request. Times are offsets from the run's start.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub stream: Arc<str>,
    /// Position in its stream's schedule.
    pub seq: u64,
    /// When the open-loop schedule meant to send it.
    pub intended: Duration,
    /// When it was really sent; `None` if it was dropped.
    pub sent: Option<Duration>,
    pub status: Option<u16>,
    pub outcome: Outcome,
    /// Time to first body byte, measured from the intended send time.
    pub ttfb: Option<Duration>,
    /// From the intended send time to the end of the response or the failure.
    pub latency: Duration,
    pub bytes: u64,
    /// SSE events received (0 for a non-streaming response).
    pub events: u64,
    /// The backend named by the stream's `served_by` header, when the response had one.
    pub served_by: Option<Arc<str>>,
    /// Token timing of a streamed completion (empty for others).
    pub tokens: TokenTiming,
    /// For an `ok` response: whether any signal established that the completion is whole (a
    /// verifiable text, the backend's usage count, a pinned length). `false` means the response
    /// looked fine but nothing could prove it was not cut and re-terminated.
    pub verified: bool,
    /// The faults a faultline proxy says acted on this response (`x-faultline-fault`, or the
    /// same header as a gateway forwarded it), comma-separated.
    pub faults: Option<Arc<str>>,
}

/// When the tokens of one streamed completion arrived. Times count from the intended send
/// time, like every latency here.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenTiming {
    /// Time to first token: to the first event that carried content (not the first byte).
    pub ttft: Option<Duration>,
    /// The gaps between consecutive content events, in microseconds.
    pub itl_us: Vec<u32>,
    /// Output tokens: the backend's own count (`usage`) when it sent one, else the content
    /// events counted.
    pub output_tokens: Option<u64>,
}

impl TokenTiming {
    /// Time per output token: the time after the first token over the tokens after it. `None`
    /// below two tokens.
    pub fn tpot(&self, latency: Duration) -> Option<Duration> {
        let tokens = self.output_tokens?;
        let ttft = self.ttft?;
        let after = u32::try_from(tokens.checked_sub(1)?)
            .ok()
            .filter(|n| *n > 0)?;
        Some(latency.saturating_sub(ttft) / after)
    }

    /// Output tokens per second of the whole request, from its intended send time.
    pub fn tokens_per_second(&self, latency: Duration) -> Option<f64> {
        let tokens = self.output_tokens?;
        (!latency.is_zero()).then(|| tokens as f64 / latency.as_secs_f64())
    }
}

impl RequestRecord {
    /// How late the request left against its schedule.
    pub fn send_lag(&self) -> Option<Duration> {
        self.sent.map(|s| s.saturating_sub(self.intended))
    }
}
