//! What every fault kind provides to the lease table, and the one dispatch from a request's
//! spec to the code that applies it. A new kind is one `FaultSpec` variant, one arm below and
//! one `Applied` implementation; the table, leases, API and shutdown need no change.

use futures_util::future::BoxFuture;
use hyper::StatusCode;
use serde_json::Value;

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

/// Applies `spec` on this host.
pub async fn apply(spec: FaultSpec) -> Result<Box<dyn Applied>, ApiError> {
    match spec {
        FaultSpec::Process(p) => super::process::apply(p).await,
        // ---------------------------------------------------------------------------------
        // GPU INTEGRATION POINT. GPU memory pressure is being built in `crate::gpu`; until it
        // lands, the agent answers 501 here. Replace this arm with a call into `crate::gpu`
        // that returns its `Box<dyn Applied>` (lift = release the memory / end the holder
        // process), and swap `FaultSpec::GpuMemoryPressure`'s raw JSON for the typed spec.
        // ---------------------------------------------------------------------------------
        FaultSpec::GpuMemoryPressure(_) => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "gpu_memory_pressure is not available in this build",
        )),
    }
}
