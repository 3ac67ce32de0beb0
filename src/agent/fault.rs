//! What every fault kind provides to the lease table, and the one dispatch from a request's
//! spec to the code that applies it. A new kind is one `FaultSpec` variant, one arm below and
//! one `Applied` implementation; the table, leases, API and shutdown need no change.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::journal::Journal;
use super::model::{ApiError, FaultSpec};

/// A fault in force on this host.
pub trait Applied: Send {
    /// What the fault did (targets, amounts), for the API's `details`.
    fn describe(&self) -> Value;

    /// Undoes the fault. Takes the fault by value so it cannot be lifted twice; the future is
    /// `'static` so the table can run it on its own task, where a dropped HTTP connection
    /// cannot cancel it halfway.
    fn lift(self: Box<Self>) -> BoxFuture<'static, Result<(), String>>;
}

/// Applies `spec` on this host. What must be undone if the agent dies (a pause, a GPU hog) is
/// recorded in `journal` by the kind's own code, which alone knows when it is in force.
pub async fn apply(spec: FaultSpec, journal: Arc<Journal>) -> Result<Box<dyn Applied>, ApiError> {
    match spec {
        FaultSpec::Process(p) => super::process::apply(p, journal).await,
        FaultSpec::GpuMemoryPressure(g) => super::gpu::apply(&g, journal).await,
    }
}
