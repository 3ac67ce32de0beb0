//! GPU memory pressure on this host: a `faultline gpu-hog` child holds the memory, so the
//! driver frees it whatever happens to the agent; lifting the fault releases it.
//!
//! The hog also dies with the agent (its parent-death signal and stdin), but it is journaled
//! all the same: should it outlive a killed agent (stuck, or the signal lost), the next agent
//! ends it.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use hyper::StatusCode;
use serde_json::Value;

use super::fault::Applied;
use super::journal::{Journal, What};
use super::model::ApiError;
use super::procfs;
use crate::gpu::{GpuPressureSpec, RunningHog};

struct Held {
    hog: RunningHog,
    record: u64,
    journal: Arc<Journal>,
}

impl Applied for Held {
    fn describe(&self) -> Value {
        serde_json::json!({ "pid": self.hog.pid(), "report": self.hog.report() })
    }

    fn lift(self: Box<Self>) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let Held {
                hog,
                record,
                journal,
            } = *self;
            // `release` makes sure the hog is gone, even when it reports an error.
            let released = hog.release().await.map(|_| ()).map_err(|e| e.to_string());
            forget(journal, record).await;
            released
        })
    }
}

async fn forget(journal: Arc<Journal>, record: u64) {
    let forgotten = tokio::task::spawn_blocking(move || journal.forget(&[record])).await;
    match forgotten {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("faultline agent: {e}"),
        Err(e) => eprintln!("faultline agent: updating the state journal failed: {e}"),
    }
}

/// Starts the hog and waits until it holds the memory. A host without an NVIDIA driver
/// answers 503 with the hog's own explanation; a spec that cannot be applied, 400.
pub async fn apply(
    spec: &GpuPressureSpec,
    journal: Arc<Journal>,
) -> Result<Box<dyn Applied>, ApiError> {
    let pressure = spec
        .to_pressure()
        .map_err(|e| ApiError::bad_request(format!("gpu_memory_pressure: {e}")))?;
    // Started here, on a worker thread, never in `spawn_blocking`: see `RunningHog::start`.
    let hog = RunningHog::start(&pressure)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let recorded = match hog.pid() {
        Some(pid) => {
            let journal = Arc::clone(&journal);
            tokio::task::spawn_blocking(move || {
                // Our unreaped child: its /proc entry exists, and its pid is not reused.
                let info = procfs::read_proc(pid)
                    .ok_or_else(|| format!("the GPU hog (pid {pid}) is not in /proc"))?;
                let ids = journal
                    .record(What::GpuHog, &[info])
                    .map_err(|e| e.to_string())?;
                ids.first()
                    .copied()
                    .ok_or_else(|| "the journal returned no record".to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
        }
        None => Err("the GPU hog exited as it started".to_string()),
    };
    match recorded {
        Ok(record) => Ok(Box::new(Held {
            hog,
            record,
            journal,
        })),
        // Unjournaled, a hog outliving a killed agent would go unseen: not applied.
        Err(why) => {
            let _ = hog.release().await;
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("GPU memory pressure not applied: {why}"),
            ))
        }
    }
}
