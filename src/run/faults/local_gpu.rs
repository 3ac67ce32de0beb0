//! GPU memory held on this machine by a child hog process.

use super::{Backend, FaultError, LiftMode};
use crate::fault::action::LocalGpuAction;
use crate::fault::Evidence;
use crate::gpu::RunningHog;
use crate::run::targets::Targets;

pub(super) struct LocalGpu;

impl Backend for LocalGpu {
    type Action = LocalGpuAction;
    /// `None` once released.
    type Held = Option<Box<RunningHog>>;

    fn evidence(h: &Self::Held, _: &Targets) -> Option<Evidence> {
        let held_bytes = h.as_ref()?.report().devices.iter().map(|d| d.held).sum();
        Some(Evidence::GpuMemory { held_bytes })
    }

    async fn apply(a: &LocalGpuAction, _: &mut Targets) -> Result<Self::Held, FaultError> {
        let hog = RunningHog::start(&a.pressure)
            .await
            .map_err(|e| FaultError::Gpu(Box::new(e)))?;
        Ok(Some(Box::new(hog)))
    }

    async fn lift(h: &mut Self::Held, _: &mut Targets, _: LiftMode) -> Result<(), FaultError> {
        match h.take() {
            // Releasing ends the hog process whatever it answers, so a failure is reported
            // but leaves nothing held.
            Some(hog) => hog
                .release()
                .await
                .map(|_| ())
                .map_err(|e| FaultError::Gpu(Box::new(e))),
            None => Ok(()),
        }
    }
}
