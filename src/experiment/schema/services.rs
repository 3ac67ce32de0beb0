//! The services an experiment starts, as written: simulated hosts, the reference gateway and
//! external processes.

use std::net::SocketAddr;
use std::path::PathBuf;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::net::HttpUrl;
use crate::units::{Dur, ErrorStatus};

/// A service entry as written: exactly one of `simulate`, `gateway` or `command`; `check`
/// turns it into a `ServiceSpec`. (The schema's description is for people writing files.)
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(
    description = "Exactly one of `simulate` (a simulated host), `gateway` (the reference \
                   gateway) or `command` (an external process, with `env`, `cwd`, `ready`, \
                   `stop_grace` and `listen`)."
)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    #[serde(default)]
    pub simulate: Option<SimulateSpec>,
    #[serde(default)]
    pub gateway: Option<GatewaySpec>,
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub env: IndexMap<String, String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    #[schemars(with = "Option<ReadySpec>")]
    pub ready: Option<Spanned<ReadySpec>>,
    #[serde(default)]
    pub stop_grace: Option<Dur>,
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// Something faultline starts for the drill and stops afterwards.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceSpec {
    /// A simulated inference host, served in-process.
    Simulate(SimulateSpec),
    /// The reference gateway, a stand-in for the user's own, served in-process.
    Gateway(GatewaySpec),
    /// An external process (haproxy, nginx, litellm, `faultline simulate`...).
    Command(CommandSpec),
}

impl ServiceSpec {
    /// The address the service listens on, when faultline knows it.
    pub fn listen(&self) -> Option<SocketAddr> {
        match self {
            ServiceSpec::Simulate(s) => Some(s.listen),
            ServiceSpec::Gateway(g) => Some(g.listen),
            ServiceSpec::Command(c) => c.listen,
        }
    }
}

/// An external process and how to tell it is ready.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CommandSpec {
    /// Program and arguments. A program named `faultline` is this faultline binary.
    pub command: Vec<String>,
    pub env: IndexMap<String, String>,
    /// Working directory; relative paths are from where faultline runs.
    pub cwd: Option<PathBuf>,
    pub ready: Option<ReadySpec>,
    /// Time between SIGTERM and SIGKILL when stopping it.
    pub stop_grace: Dur,
    /// The address it listens on, if declared: checked for clashes, named in messages.
    pub listen: Option<SocketAddr>,
    /// Variables taken out of the environment the service inherits from faultline: every
    /// host's `token_env` (the agents' tokens). `env:` can still set one on purpose. Not part
    /// of the file, so never serialized (a report shows the service as written).
    #[serde(skip)]
    pub withheld_env: Vec<String>,
}

/// A readiness probe: a TCP connect or an HTTP GET answering 2xx, retried until `within`.
#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReadySpec {
    #[serde(default)]
    pub tcp: Option<SocketAddr>,
    /// Checked where it is read: a bad URL is an error at its line and column.
    #[serde(default)]
    pub http: Option<HttpUrl>,
    #[serde(default = "default_ready_within")]
    pub within: Dur,
}

fn default_ready_within() -> Dur {
    Dur::from_secs(10)
}

pub(crate) fn default_stop_grace() -> Dur {
    Dur::from_secs(5)
}

/// What a simulated host does when every slot is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Wait for a slot.
    #[default]
    Queue,
    /// Answer at once with `reject_status`.
    Reject,
}

#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateSpec {
    pub listen: SocketAddr,
    /// The model id it reports; requests for other models are served anyway.
    #[serde(default = "default_model")]
    pub model: String,
    /// Time to first token.
    #[serde(default = "default_ttft")]
    pub ttft: Dur,
    #[serde(default = "default_tps")]
    pub tokens_per_second: f64,
    /// Tokens in every completion, unless the request's `max_tokens` cuts it shorter or its
    /// `min_tokens` (or `ignore_eos` with `max_tokens`) makes it longer.
    #[serde(default = "default_completion_tokens")]
    pub completion_tokens: u32,
    /// Concurrent requests served at once; unlimited when absent.
    #[serde(default)]
    pub capacity: Option<u32>,
    #[serde(default)]
    pub overflow: Overflow,
    #[serde(default = "default_reject_status")]
    pub reject_status: ErrorStatus,
    /// The value of the `x-served-by` header; the service's name when absent.
    #[serde(default)]
    pub served_by: Option<String>,
    /// A KV-cache memory model: requests reserve memory, and the host can leak and run out.
    #[serde(default)]
    pub memory: Option<MemorySpec>,
    /// Load time after start during which the host answers 503 to everything (`/health` too).
    #[serde(default)]
    pub cold_start: Option<Dur>,
    /// The completion text it writes: faultline's verifiable token scheme, or plain words.
    #[serde(default)]
    pub content: Content,
}

/// The completion text of a simulated host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// `t<i>/<n> ` per token ([`crate::protocol::verify`]): a reader can tell a cut completion
    /// from a whole one by the text alone.
    #[default]
    Verifiable,
    /// Ordinary words, one per token, as a real model writes: the text proves nothing, so a
    /// reader must rely on the protocol's other signals (terminator, finish reason, usage).
    Plain,
}

/// The KV cache of a simulated host. Each request in flight holds `prompt + completion` tokens
/// of it from admission until its response ends.
#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemorySpec {
    /// Capacity in tokens (sequences x tokens per sequence).
    pub kv_tokens: u64,
    /// Capacity lost per second to a leak, from `leak_after` on.
    #[serde(default)]
    pub leak_per_second: u64,
    #[serde(default)]
    pub leak_after: Dur,
    /// What happens when a request does not fit.
    #[serde(default)]
    pub on_exhaustion: Exhaustion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Exhaustion {
    /// The host dies, like an OOM kill: the listener closes and every connection drops (a
    /// `faultline simulate` process exits with status 137).
    #[default]
    Crash,
    /// The request is refused with `reject_status`, the host lives on.
    Reject,
}

pub(super) fn default_model() -> String {
    "sim".into()
}
fn default_ttft() -> Dur {
    Dur::from_millis(20)
}
fn default_tps() -> f64 {
    200.0
}
fn default_completion_tokens() -> u32 {
    16
}
fn default_reject_status() -> ErrorStatus {
    TOO_MANY_REQUESTS
}

/// How the reference gateway picks an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The first healthy upstream in the list takes everything.
    #[default]
    Failover,
    /// Healthy upstreams take turns.
    RoundRobin,
}

#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    pub listen: SocketAddr,
    pub upstreams: Vec<SocketAddr>,
    #[serde(default)]
    pub strategy: Strategy,
    /// Further upstreams tried after a failed attempt.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Statuses that count as a failed attempt (connection errors always do).
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<u16>,
    /// Consecutive failures after which an upstream is taken out of rotation.
    #[serde(default = "default_eject_after")]
    pub eject_after: u32,
    /// How long an ejected upstream stays out.
    #[serde(default = "default_cooldown")]
    pub cooldown: Dur,
    /// Longest wait for an upstream's response headers.
    #[serde(default = "default_upstream_timeout")]
    pub timeout: Dur,
    /// Ends a client's stream with a synthetic `finish_reason: "stop"` and `[DONE]` when the
    /// upstream's stream is cut, as some gateways do; that hides the cut from protocol checks.
    #[serde(default)]
    pub reterminate_cut_streams: bool,
    /// Protection: at most this many requests in flight to one upstream. A request that finds
    /// every upstream full is shed at once with `shed_status` instead of piling onto them.
    #[serde(default)]
    pub max_in_flight_per_upstream: Option<u32>,
    #[serde(default = "default_shed_status")]
    pub shed_status: ErrorStatus,
}

fn default_shed_status() -> ErrorStatus {
    TOO_MANY_REQUESTS
}

const TOO_MANY_REQUESTS: ErrorStatus = match ErrorStatus::new(429) {
    Some(s) => s,
    None => unreachable!(),
};

fn default_retries() -> u32 {
    1
}
fn default_retry_on() -> Vec<u16> {
    vec![429, 500, 502, 503, 504, 529]
}
fn default_eject_after() -> u32 {
    3
}
fn default_cooldown() -> Dur {
    Dur::from_secs(5)
}
fn default_upstream_timeout() -> Dur {
    Dur::from_secs(10)
}
