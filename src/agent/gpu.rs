//! GPU memory pressure on this host: a `faultline gpu-hog` child holds the memory, so the
//! driver frees it whatever happens to the agent; lifting the fault releases it.

use futures_util::future::BoxFuture;
use hyper::StatusCode;
use serde_json::Value;

use super::fault::Applied;
use super::model::ApiError;
use crate::gpu::{GpuPressureSpec, RunningHog};

struct Held {
    hog: RunningHog,
}

impl Applied for Held {
    fn describe(&self) -> Value {
        serde_json::json!({ "pid": self.hog.pid(), "report": self.hog.report() })
    }

    fn lift(self: Box<Self>) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            self.hog
                .release()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Starts the hog and waits until it holds the memory. A host without an NVIDIA driver
/// answers 503 with the hog's own explanation; a spec that cannot be applied, 400.
pub async fn apply(spec: &GpuPressureSpec) -> Result<Box<dyn Applied>, ApiError> {
    let pressure = spec
        .to_pressure()
        .map_err(|e| ApiError::bad_request(format!("gpu_memory_pressure: {e}")))?;
    let hog = RunningHog::start(&pressure)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Box::new(Held { hog }))
}
