//! The experiment file's shape, as serde reads it. Field types are already the typed values
//! (durations, rates, addresses), so nothing downstream re-parses text. Unknown keys are rejected
//! everywhere. `Spanned` marks the values that cross-checks may need to point at.

use std::net::SocketAddr;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::net::{HostPort, Listen, TlsSpec, Upstream};
use crate::units::{Dur, Percent, Rate};
use services::default_model;

mod services;
mod workload;
use crate::fault::FaultSpec;
pub use services::*;
pub use workload::*;

/// A faultline experiment: what to start, the load to drive, the faults to inject on a
/// timeline, and the budgets that judge the run. Reference: docs/experiments.md.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "faultline experiment file")]
pub struct ExperimentFile {
    /// The file format's version; this faultline reads version 1.
    #[schemars(with = "u32", range(min = 1, max = 1))]
    pub version: Spanned<u32>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Seeds every fault decision; `--seed` overrides it. A file without one gets seed 0.
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    #[schemars(with = "IndexMap<String, ServiceEntry>")]
    pub services: IndexMap<String, Spanned<ServiceEntry>>,
    #[serde(default)]
    #[schemars(with = "IndexMap<String, ProxySpec>")]
    pub proxies: IndexMap<String, Spanned<ProxySpec>>,
    /// An existing Toxiproxy server, for proxies with `driver: toxiproxy`.
    #[serde(default)]
    #[schemars(with = "Option<ToxiproxyServer>")]
    pub toxiproxy: Option<Spanned<ToxiproxyServer>>,
    /// Live hosts with a `faultline agent`, for GPU and process faults on them.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, HostSpec>")]
    pub hosts: IndexMap<String, Spanned<HostSpec>>,
    #[schemars(with = "IndexMap<String, LoadStreamSpec>")]
    pub load: IndexMap<String, Spanned<LoadStreamSpec>>,
    #[schemars(with = "Vec<StepSpec>")]
    pub timeline: Vec<Spanned<StepSpec>>,
    #[serde(default = "no_budgets")]
    #[schemars(with = "Budgets")]
    pub expect: Spanned<Budgets>,
    #[serde(default = "default_measure")]
    #[schemars(with = "MeasureSpec")]
    pub measure: Spanned<MeasureSpec>,
    /// Halt condition: roll back early and exit 3.
    #[serde(default)]
    pub abort_if: Option<AbortIf>,
    /// The longest any fault may stay injected.
    #[serde(default = "default_max_fault_duration")]
    #[schemars(with = "Dur")]
    pub max_fault_duration: Spanned<Dur>,
}

/// The JSON Schema of an experiment file, derived from the types above, as committed in
/// docs/experiment.schema.json (pretty-printed, with a final newline, so the committed file
/// and this output compare byte for byte).
pub fn json_schema() -> serde_json::Result<String> {
    let schema = schemars::schema_for!(ExperimentFile);
    let mut text = serde_json::to_string_pretty(&schema)?;
    text.push('\n');
    Ok(text)
}

/// A live inference host, reached through the `faultline agent` running on it.
#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// The agent's address, HOST:PORT: an IP literal or a name (a Kubernetes Service's DNS
    /// name, say), resolved each time the run connects, so an agent whose address changes is
    /// followed.
    pub agent: HostPort,
    /// The environment variable holding the agent's token (never the token itself).
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// Each fault's lease: renewed every third of it; if renewals stop, the agent lifts the
    /// fault by itself within this long.
    #[serde(default = "default_lease")]
    pub lease: Dur,
}

fn default_token_env() -> String {
    "FAULTLINE_AGENT_TOKEN".into()
}

fn default_lease() -> Dur {
    Dur::from_secs(5)
}

/// Stop the run when clients have seen more than `error_rate_over` errors for `for`.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AbortIf {
    pub error_rate_over: Percent,
    #[serde(rename = "for")]
    pub sustained: Dur,
}

fn default_max_fault_duration() -> Spanned<Dur> {
    let nowhere = serde_saphyr::Location::UNKNOWN;
    Spanned::new(Dur::from_secs(600), nowhere, nowhere)
}

fn default_measure() -> Spanned<MeasureSpec> {
    let nowhere = serde_saphyr::Location::UNKNOWN;
    Spanned::new(MeasureSpec::default(), nowhere, nowhere)
}

fn no_budgets() -> Spanned<Budgets> {
    let nowhere = serde_saphyr::Location::UNKNOWN;
    Spanned::new(Budgets::default(), nowhere, nowhere)
}

/// What a proxy understands of the traffic it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMode {
    /// HTTP requests and streamed responses: takes the HTTP faults.
    #[default]
    Http,
    /// Bytes: takes Toxiproxy's toxics.
    Tcp,
}

/// Who runs a proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProxyDriver {
    /// faultline itself, in-process.
    #[default]
    Builtin,
    /// An existing Toxiproxy server (top-level `toxiproxy: { server }`), through its REST API:
    /// the proxy is created at the start and deleted on rollback.
    Toxiproxy,
}

#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    /// IP:PORT, or a hostname that resolves to an address of this machine.
    pub listen: Listen,
    /// HOST:PORT, http://HOST:PORT or https://HOST:PORT; with https:// the proxy originates TLS
    /// (SNI, the system's roots, `upstream_tls`). Names are resolved at each connection.
    pub upstream: Upstream,
    /// TLS to an `https://` upstream: an extra CA, another server name, or no verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_tls: Option<TlsSpec>,
    /// Forward the client's `Host` header as it came; by default the proxy sends the upstream's
    /// own authority, as a virtual-hosted or TLS backend expects.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preserve_host: bool,
    #[serde(default)]
    pub mode: ProxyMode,
    #[serde(default)]
    pub driver: ProxyDriver,
}

impl ProxySpec {
    /// Whether the proxy takes Toxiproxy's toxics (and not faultline's HTTP faults).
    pub fn takes_toxics(&self) -> bool {
        self.mode == ProxyMode::Tcp || self.driver == ProxyDriver::Toxiproxy
    }
}

/// An existing Toxiproxy server that `driver: toxiproxy` proxies live on.
#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToxiproxyServer {
    /// Its API address (Toxiproxy's default is 127.0.0.1:8474).
    pub server: SocketAddr,
}

/// The API a load stream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    /// OpenAI chat completions (`/v1/chat/completions`): `messages`, `choices[0].delta`.
    OpenaiChat,
    /// Anthropic Messages (`/v1/messages`): named events up to `message_stop`.
    AnthropicMessages,
    /// OpenAI's legacy completions (`/v1/completions`), as vLLM, TGI and llama.cpp serve it:
    /// a `prompt`, `choices[0].text`.
    OpenaiCompletions,
    /// The OpenAI Responses API (`/v1/responses`): an `input`, named events up to
    /// `response.completed`.
    OpenaiResponses,
}

impl Api {
    /// The name an experiment file gives the API (its serde name).
    pub fn name(self) -> &'static str {
        match self {
            Api::OpenaiChat => "openai-chat",
            Api::AnthropicMessages => "anthropic-messages",
            Api::OpenaiCompletions => "openai-completions",
            Api::OpenaiResponses => "openai-responses",
        }
    }
}

#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    pub api: Api,
    #[serde(default = "yes")]
    pub stream: bool,
    #[serde(default = "default_model")]
    pub model: String,
    /// Sent as the chat or Anthropic user message, the completions `prompt` or the Responses
    /// `input`.
    #[serde(default = "default_prompt")]
    pub prompt: String,
    /// The completion's length limit: `max_tokens`, or `max_output_tokens` for the Responses
    /// API (256 when absent): a number, or a distribution drawn per request from the run's seed.
    #[serde(default)]
    pub max_tokens: Option<Tokens>,
    /// Prompts of this many words, drawn per request from the run's seed, in place of `prompt`.
    #[serde(default)]
    pub prompt_tokens: Option<Tokens>,
    /// A JSONL file of prompts (relative to the experiment file), one drawn per request from the
    /// run's seed: each line an object with a `prompt` string or a chat `messages` array.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub prompts: Option<Spanned<String>>,
    /// Ask an OpenAI chat or completions stream for the backend's token count in a last chunk
    /// (`stream_options: {include_usage: true}`); on by default, since a cut stream that
    /// something re-terminated lacks that chunk. Turn it off for backends that refuse it.
    /// (Anthropic and Responses streams always carry their usage.)
    #[serde(default)]
    pub include_usage: Option<bool>,
    /// Merged into the request's JSON body last, so it can set anything: `ignore_eos`,
    /// `min_tokens`, `stream_options`, provider options.
    #[serde(default)]
    pub extra_body: Option<serde_json::Map<String, serde_json::Value>>,
}

fn yes() -> bool {
    true
}
fn default_prompt() -> String {
    "ping".into()
}

#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServedBy {
    pub header: String,
}

impl Default for ServedBy {
    fn default() -> Self {
        ServedBy {
            header: "x-served-by".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadStreamSpec {
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    pub rate: Rate,
    pub request: RequestSpec,
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Longest silence between body bytes before the request counts as stalled.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: Dur,
    /// Requests allowed in flight at once; a send that finds it full is recorded as dropped.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    #[serde(default)]
    pub served_by: ServedBy,
    /// Extra request headers, e.g. `authorization: "Bearer ${GATEWAY_KEY}"`; `${NAME}` is read
    /// from the environment when the run starts and never written anywhere.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(with = "IndexMap<String, String>")]
    pub headers: IndexMap<String, Spanned<String>>,
    /// TLS for an `https://` url, besides the system's root certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<TlsSpec>")]
    pub tls: Option<Spanned<TlsSpec>>,
}

fn default_timeout() -> Dur {
    Dur::from_secs(10)
}
fn default_stall_timeout() -> Dur {
    Dur::from_secs(3)
}
fn default_max_in_flight() -> u32 {
    512
}

/// One timeline entry, as written; `check` turns it into a typed `Step`. (The schema gets a
/// description of its own: editors show it to people writing files, not to this crate.)
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(
    description = "One timeline step: `at`, and exactly one of `inject`, `lift`, `rate` or `end`."
)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    #[schemars(with = "Dur")]
    pub at: Spanned<Dur>,
    #[serde(default)]
    #[schemars(with = "Option<InjectSpec>")]
    pub inject: Option<Spanned<InjectSpec>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub lift: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub end: Option<Spanned<bool>>,
    /// A load stream's rate steps or ramps here; not a fault.
    #[serde(default)]
    #[schemars(with = "Option<RateStepSpec>")]
    pub rate: Option<Spanned<RateStepSpec>>,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InjectSpec {
    /// An HTTP fault goes to a proxy...
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub proxy: Option<Spanned<String>>,
    /// ...a process fault to a `command:` service...
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub service: Option<Spanned<String>>,
    /// ...a host fault to a live host's agent (GPU faults without a target act locally).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    #[schemars(with = "FaultSpec")]
    pub fault: Spanned<FaultSpec>,
    /// A name for `lift:`; defaults to `<proxy>/<fault kind>`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub id: Option<Spanned<String>>,
    /// Lifts the fault by itself after this long.
    #[serde(default)]
    #[schemars(with = "Option<Dur>")]
    pub duration: Option<Spanned<Dur>>,
}

/// The budgets: each one set here becomes one row of the verdict.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_within: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<Percent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_truncated: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p50_latency: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_latency: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover_within: Option<Dur>,
    /// The most `ok` responses whose completeness no signal could establish, over the whole
    /// run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unverified: Option<u64>,
    /// LLM serving SLOs, judged like the latency budgets (the fault phase, or the whole run
    /// without faults), over successful streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p50_ttft: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ttft: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p50_itl: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_itl: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_tpot: Option<Dur>,
    /// Every fault whose effect the run can observe must have acted (requests touched, a
    /// process stopped or gone, GPU memory held); a fault that touched nothing fails the run
    /// instead of only warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults_must_act: Option<bool>,
    /// Share of fault-phase successes that a given backend must have served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_served_by: Option<IndexMap<String, Percent>>,
    /// Budgets for single streams (one model or route), e.g. an isolation budget.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(with = "IndexMap<String, Budgets>")]
    pub streams: IndexMap<String, Spanned<Budgets>>,
}

/// How metrics are computed.
#[derive(Clone, Debug, Deserialize, JsonSchema, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    /// Width of the windows in which success is judged (failover and recovery time).
    #[serde(default = "default_window")]
    pub window: Dur,
    /// How far below the baseline success rate a window may fall and still count as steady.
    #[serde(default = "default_tolerance")]
    pub tolerance: Percent,
    /// The baseline success share below which the system counts as failing before any fault:
    /// failover, recovery and isolation budgets then fail instead of being judged against it.
    #[serde(default = "default_min_steady_state")]
    pub min_steady_state: Percent,
    /// The fewest baseline requests from which a steady state may be taken.
    #[serde(default = "default_min_baseline_requests")]
    pub min_baseline_requests: u64,
    /// Requests intended in the run's first stretch this long are sent but belong to no phase:
    /// they are reported apart and judged by no budget (a cold system's first answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Dur>,
}

impl Default for MeasureSpec {
    fn default() -> Self {
        MeasureSpec {
            window: default_window(),
            tolerance: default_tolerance(),
            min_steady_state: default_min_steady_state(),
            min_baseline_requests: default_min_baseline_requests(),
            warmup: None,
        }
    }
}

fn default_window() -> Dur {
    Dur::from_secs(1)
}
fn default_tolerance() -> Percent {
    Percent::from_fraction(0.02).unwrap_or(Percent::ZERO)
}
fn default_min_steady_state() -> Percent {
    Percent::from_fraction(0.95).unwrap_or(Percent::ZERO)
}
fn default_min_baseline_requests() -> u64 {
    20
}

#[cfg(test)]
mod tests {
    use super::Api;

    #[test]
    fn api_names_are_the_serde_names() {
        for api in [
            Api::OpenaiChat,
            Api::AnthropicMessages,
            Api::OpenaiCompletions,
            Api::OpenaiResponses,
        ] {
            assert_eq!(serde_json::to_value(api).ok(), Some(api.name().into()));
        }
    }
}
