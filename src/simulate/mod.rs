//! Simulated inference hosts and the reference gateway.
//!
//! A simulated host speaks the OpenAI chat completions, OpenAI (legacy) completions, OpenAI
//! Responses and Anthropic Messages APIs with a configurable time to first token, token rate and capacity,
//! honours the length and usage options vLLM honours (`max_tokens`, `min_tokens`, `ignore_eos`,
//! `stream_options.include_usage`), and writes its completions in the verifiable token scheme
//! of [`crate::protocol::verify`] or, with `content: plain`, in ordinary words. The reference gateway is a stand-in for a user's own
//! gateway (LiteLLM, Envoy, HAProxy...): failover or round robin, retries, passive ejection,
//! and optional load shedding. It exists so drills can run end to end without one; it is not a
//! production gateway.
//!
//! Together they reproduce the 2026 cascade in miniature: a host's KV-cache **memory model**
//! (`memory:`) makes every chat/messages request in flight hold `prompt + completion` tokens,
//! from admission (after any queue wait for a `capacity` slot) until its response body ends or
//! the client leaves. Capacity at `t` after the host started is `kv_tokens - leak_per_second *
//! max(0, t - leak_after)`, never below 0. A request that does not fit is refused with
//! `reject_status` and `retry-after: 1` (`on_exhaustion: reject`), or crashes the host like an
//! OOM kill (`crash`): the listener closes, every connection drops mid-stream, the host never
//! serves again, one line goes to stderr, and [`RunningServer::wait_crashed`] resolves. A leak
//! that shrinks capacity below what requests in flight already hold crashes the host in either
//! mode, at the next admission or within ~50 ms (a watchdog runs while there is a leak).
//! A **cold start** (`cold_start:`) answers everything, `/health` included, with 503
//! `model is loading` and `retry-after: 1` until it is over.
//!
//! The gateway's **load shedding** (`max_in_flight_per_upstream: N`) counts each request
//! against its upstream until the response body to the client ends or is dropped; a full
//! upstream is skipped like an ejected one, and when every candidate is full the request is
//! answered at once with `shed_status` (429) and `retry-after: 1`. Without it, the failover
//! moves a dead host's traffic onto survivors until they run out of memory too.

mod anthropic;
mod body;
mod capacity;
mod completion;
mod completions;
mod gateway;
mod health;
mod host;
mod inflight;
mod memory;
mod openai;
mod responses;
mod server;
mod stream;
mod template;
#[cfg(test)]
mod tests;

pub use server::RunningServer;

use crate::exit::Failure;
use crate::experiment::schema::{GatewaySpec, SimulateSpec};

/// Starts simulated host `name` on `spec.listen`. A taken port is `Failure::Environment`.
pub async fn start_host(name: &str, spec: &SimulateSpec) -> Result<RunningServer, Failure> {
    let crash = server::Crash::new();
    let (handler, memory) = host::handler(name, spec, crash.clone())?;
    let owner = format!("service `{name}`");
    let server = server::serve(
        spec.listen,
        &owner,
        handler,
        crash,
        server::Runs::OnCores,
        host::MAX_REQUEST_BYTES,
    )
    .await?;
    Ok(server.with_memory(memory))
}

/// Starts the reference gateway `name` on `spec.listen`. A taken port is `Failure::Environment`.
pub async fn start_gateway(name: &str, spec: &GatewaySpec) -> Result<RunningServer, Failure> {
    let handler = gateway::handler(name, spec)?;
    // A gateway never crashes on its own: its signal is never triggered.
    let crash = server::Crash::new();
    let owner = format!("service `{name}`");
    server::serve(
        spec.listen,
        &owner,
        handler,
        crash,
        server::Runs::WhereAccepted,
        gateway::MAX_REQUEST_BYTES,
    )
    .await
}
