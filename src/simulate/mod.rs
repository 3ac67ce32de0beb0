//! Simulated inference hosts and the reference gateway.
//!
//! A simulated host speaks the OpenAI chat completions and Anthropic Messages APIs with a
//! configurable time to first token, token rate and capacity, and writes its completions in the
//! verifiable token scheme of [`content`]. The reference gateway is a stand-in for a user's own
//! gateway (LiteLLM, Envoy, HAProxy...): failover or round robin, retries, passive ejection.
//! It exists so drills can run end to end without one; it is not a production gateway.

mod anthropic;
mod body;
mod capacity;
pub mod content;
mod gateway;
mod health;
mod host;
mod inflight;
mod memory;
mod openai;
mod server;
mod stream;
#[cfg(test)]
mod tests;

pub use server::RunningServer;

use crate::exit::Failure;
use crate::experiment::schema::{GatewaySpec, SimulateSpec};

/// Starts simulated host `name` on `spec.listen`. A taken port is `Failure::Environment`.
pub async fn start_host(name: &str, spec: &SimulateSpec) -> Result<RunningServer, Failure> {
    let crash = server::Crash::new();
    let handler = host::handler(name, spec, crash.clone())?;
    server::serve(spec.listen, &format!("service `{name}`"), handler, crash).await
}

/// Starts the reference gateway `name` on `spec.listen`. A taken port is `Failure::Environment`.
pub async fn start_gateway(name: &str, spec: &GatewaySpec) -> Result<RunningServer, Failure> {
    let handler = gateway::handler(name, spec)?;
    // A gateway never crashes on its own: its signal is never triggered.
    let crash = server::Crash::new();
    server::serve(spec.listen, &format!("service `{name}`"), handler, crash).await
}
