//! What each HTTP fault is, as the experiment file states it. Defined once here; the proxy applies
//! them, the timeline schedules them, the reports name them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::units::{Dur, ErrorStatus, Percent};

/// One fault, written as a single-key map: `{ http_error: { status: 503 } }`.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    Latency(LatencyFault),
    HttpError(HttpErrorFault),
    TruncateStream(TruncateFault),
    StreamError(StreamErrorFault),
    Reset(ResetFault),
    Blackhole(BlackholeFault),
    /// SIGKILL the service's process; lifting it starts the service again.
    Kill(ProcessFault),
    /// SIGSTOP: the process keeps its sockets and answers nothing (a gray failure); lifting it
    /// sends SIGCONT.
    Pause(ProcessFault),
    /// Stop the service and start it again at once; the fault ends when it is ready again.
    Restart(ProcessFault),
    /// A simulated host loses KV-cache capacity at this rate until lifted; what leaked stays
    /// lost, as with a real leak, until the host is restarted.
    MemoryLeak(MemoryLeakFault),
    /// Kill or pause processes on a live host, by pid or by command line, through its agent.
    #[serde(rename = "process")]
    HostProcess(HostProcessFault),
    /// Hold GPU memory on a live host (through its agent) or on this machine: really
    /// allocated and written, by a child process, until lifted.
    GpuMemoryPressure(crate::gpu::GpuPressureSpec),
    /// One of Toxiproxy's toxics, on a `mode: tcp` or `driver: toxiproxy` proxy.
    Toxic(ToxicFault),
}

impl FaultSpec {
    /// The name used in the file, the reports and the logs.
    pub fn kind(&self) -> &'static str {
        match self {
            FaultSpec::Latency(_) => "latency",
            FaultSpec::HttpError(_) => "http_error",
            FaultSpec::TruncateStream(_) => "truncate_stream",
            FaultSpec::StreamError(_) => "stream_error",
            FaultSpec::Reset(_) => "reset",
            FaultSpec::Blackhole(_) => "blackhole",
            FaultSpec::Kill(_) => "kill",
            FaultSpec::Pause(_) => "pause",
            FaultSpec::Restart(_) => "restart",
            FaultSpec::MemoryLeak(_) => "memory_leak",
            FaultSpec::HostProcess(_) => "process",
            FaultSpec::GpuMemoryPressure(_) => "gpu_memory_pressure",
            FaultSpec::Toxic(_) => "toxic",
        }
    }

    /// What kind of thing the fault acts on.
    pub fn acts_on(&self) -> FaultScope {
        match self {
            FaultSpec::Kill(_) | FaultSpec::Pause(_) | FaultSpec::Restart(_) => FaultScope::Process,
            FaultSpec::MemoryLeak(_) => FaultScope::SimulatedHost,
            FaultSpec::HostProcess(_) => FaultScope::LiveHost,
            FaultSpec::GpuMemoryPressure(_) => FaultScope::HostOrLocal,
            FaultSpec::Toxic(_) => FaultScope::Bytes,
            _ => FaultScope::Traffic,
        }
    }

    /// Which requests the fault touches: a probability per request, or on/off bursts.
    pub fn selection(&self) -> Selection {
        let (probability, burst) = match self {
            FaultSpec::Latency(f) => (f.probability, None),
            FaultSpec::HttpError(f) => (f.probability, f.burst),
            FaultSpec::TruncateStream(f) => (f.probability, None),
            FaultSpec::StreamError(f) => (f.probability, None),
            FaultSpec::Reset(f) => (f.probability, None),
            FaultSpec::Blackhole(f) => (f.probability, None),
            FaultSpec::Kill(_)
            | FaultSpec::Pause(_)
            | FaultSpec::Restart(_)
            | FaultSpec::MemoryLeak(_)
            | FaultSpec::HostProcess(_)
            | FaultSpec::GpuMemoryPressure(_)
            | FaultSpec::Toxic(_) => (Percent::ALL, None),
        };
        Selection { probability, burst }
    }
}

/// Which requests a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Selection {
    pub probability: Percent,
    pub burst: Option<Burst>,
}

fn all() -> Percent {
    Percent::ALL
}

/// Where in the exchange a latency fault waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LatencyPoint {
    /// Before the request is forwarded upstream (like a slow network or a queue).
    #[default]
    BeforeForward,
    /// After the upstream answered, before the first byte reaches the client (slow TTFT).
    FirstByte,
    /// Before every streamed body frame (slow tokens).
    PerChunk,
}

#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyFault {
    pub delay: Dur,
    /// Uniform extra delay in `[0, jitter]`, drawn from the seeded generator.
    #[serde(default)]
    pub jitter: Dur,
    #[serde(default, rename = "where")]
    pub point: LatencyPoint,
    #[serde(default = "all")]
    pub probability: Percent,
}

/// The error body shape of a provider, so gateways that parse errors see the real thing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ErrorShape {
    #[default]
    Openai,
    Anthropic,
    Vllm,
    Empty,
}

/// On/off periods: the fault acts for `on`, rests for `off`, and repeats, from its injection.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub on: Dur,
    pub off: Dur,
}

#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpErrorFault {
    pub status: ErrorStatus,
    #[serde(default)]
    pub body: ErrorShape,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "all")]
    pub probability: Percent,
    #[serde(default)]
    pub burst: Option<Burst>,
}

/// How a truncated stream ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CutStyle {
    /// The body ends early; the connection closes cleanly (a FIN).
    #[default]
    Close,
    /// The connection is reset (a RST).
    Reset,
    /// Nothing more is sent; the connection stays open until the client gives up.
    Stall,
    /// The body ends cleanly at the HTTP level (the final chunk of a chunked body, or the end
    /// of a close-delimited one) without the stream's terminator: a well-formed 200 whose SSE
    /// stream simply stops, as from a backend that stops generating early.
    End,
    /// Like `end`, but the proxy first appends a synthetic stop and terminator (`[DONE]`, or
    /// `message_stop`), as a gateway that "repairs" cut streams does: the stream looks
    /// finished, and only its content can tell it was cut.
    Reterminate,
}

impl CutStyle {
    /// The body ends well-formed at the HTTP level, so it cannot keep a length announced for
    /// the whole body.
    pub fn ends_cleanly(self) -> bool {
        matches!(self, CutStyle::End | CutStyle::Reterminate)
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TruncateFault {
    #[serde(default)]
    pub after_bytes: Option<u64>,
    #[serde(default)]
    pub after_events: Option<u64>,
    #[serde(default)]
    pub how: CutStyle,
    #[serde(default = "all")]
    pub probability: Percent,
}

impl TruncateFault {
    /// Where the cut falls; a file that gives neither cuts after the first event.
    pub fn cut_point(&self) -> CutPoint {
        match (self.after_bytes, self.after_events) {
            (Some(b), _) => CutPoint::Bytes(b),
            (None, Some(e)) => CutPoint::Events(e),
            (None, None) => CutPoint::Events(1),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutPoint {
    Bytes(u64),
    Events(u64),
}

#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamErrorFault {
    /// SSE events passed through before the error event replaces the rest of the stream.
    #[serde(default = "one")]
    pub after_events: u64,
    #[serde(default = "anthropic")]
    pub shape: ErrorShape,
    #[serde(default = "all")]
    pub probability: Percent,
}

fn one() -> u64 {
    1
}
fn anthropic() -> ErrorShape {
    ErrorShape::Anthropic
}

#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResetFault {
    #[serde(default = "all")]
    pub probability: Percent,
}

#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeFault {
    #[serde(default = "all")]
    pub probability: Percent,
}

/// A process fault has no parameters: `{ kill: {} }`.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProcessFault {}

/// What a fault acts on, which decides what it may be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultScope {
    /// HTTP traffic through a fault proxy.
    Traffic,
    /// The process of a `command:` service.
    Process,
    /// A simulated host's own state (`simulate:` services).
    SimulatedHost,
    /// A live host, through its agent (`host:`).
    LiveHost,
    /// A live host through its agent, or this machine when no `host:` is named.
    HostOrLocal,
    /// Bytes through a TCP proxy (`mode: tcp`) or a Toxiproxy server's proxy.
    Bytes,
}

/// Toxiproxy's toxics, with its names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToxicKind {
    Latency,
    Bandwidth,
    SlowClose,
    Timeout,
    ResetPeer,
    Slicer,
    LimitData,
}

impl ToxicKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ToxicKind::Latency => "latency",
            ToxicKind::Bandwidth => "bandwidth",
            ToxicKind::SlowClose => "slow_close",
            ToxicKind::Timeout => "timeout",
            ToxicKind::ResetPeer => "reset_peer",
            ToxicKind::Slicer => "slicer",
            ToxicKind::LimitData => "limit_data",
        }
    }

    /// The attributes Toxiproxy gives this toxic, in its units (ms, KB/s, bytes, µs).
    pub fn attributes(self) -> &'static [&'static str] {
        match self {
            ToxicKind::Latency => &["latency", "jitter"],
            ToxicKind::Bandwidth => &["rate"],
            ToxicKind::SlowClose => &["delay"],
            ToxicKind::Timeout | ToxicKind::ResetPeer => &["timeout"],
            ToxicKind::Slicer => &["average_size", "size_variation", "delay"],
            ToxicKind::LimitData => &["bytes"],
        }
    }
}

/// Which direction a toxic acts on: `downstream` (server to client, Toxiproxy's default) or
/// `upstream` (client to server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ToxicStream {
    Upstream,
    #[default]
    Downstream,
}

impl ToxicStream {
    pub fn as_str(self) -> &'static str {
        match self {
            ToxicStream::Upstream => "upstream",
            ToxicStream::Downstream => "downstream",
        }
    }
}

/// `{ toxic: { type: latency, stream: downstream, toxicity: 1.0, attributes: { latency: 200 } } }`
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToxicFault {
    #[serde(rename = "type")]
    pub kind: ToxicKind,
    #[serde(default)]
    pub stream: ToxicStream,
    /// Share of connections the toxic applies to, drawn per connection.
    #[serde(default = "whole")]
    pub toxicity: f32,
    #[serde(default)]
    pub attributes: BTreeMap<String, i64>,
}

fn whole() -> f32 {
    1.0
}

/// What a process fault on a live host does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessAction {
    /// SIGKILL; lifting it does nothing (the process is gone).
    Kill,
    /// SIGSTOP; lifting it sends SIGCONT.
    Pause,
}

impl ProcessAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessAction::Kill => "kill",
            ProcessAction::Pause => "pause",
        }
    }
}

/// Which processes, by pid or by a substring of their command line. The experiment file and
/// the agent's API share this shape: `{ action: pause, match: "vllm serve" }`.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostProcessFault {
    pub action: ProcessAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// A substring of `/proc/<pid>/cmdline`, its arguments joined by spaces.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// The processes a process fault aims at, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessTarget {
    Pid(u32),
    Match(String),
}

impl HostProcessFault {
    /// Exactly one of `pid` and `match`, and neither empty.
    pub fn target(&self) -> Result<ProcessTarget, String> {
        match (&self.pid, &self.pattern) {
            (Some(_), Some(_)) => Err("a process fault takes `pid` or `match`, not both".into()),
            (None, None) => Err("a process fault needs `pid` or `match`".into()),
            (Some(pid), None) => Ok(ProcessTarget::Pid(*pid)),
            (None, Some(p)) if p.trim().is_empty() => {
                Err("`match` must not be empty: it would match every process".into())
            }
            (None, Some(p)) => Ok(ProcessTarget::Match(p.clone())),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLeakFault {
    /// KV-cache tokens of capacity lost per second.
    pub per_second: u64,
}
