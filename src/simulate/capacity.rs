//! The capacity model of a simulated host: a fixed number of slots for completions, and what
//! happens to a request that finds them all busy.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::experiment::schema::Overflow;

/// The slots of one host.
#[derive(Debug)]
pub(crate) struct Capacity {
    slots: Option<Arc<Semaphore>>,
    overflow: Overflow,
}

/// A slot held by one request; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Capacity {
    /// `None` means unlimited.
    pub(crate) fn new(capacity: Option<u32>, overflow: Overflow) -> Self {
        let slots = capacity.map(|n| {
            let n = usize::try_from(n).unwrap_or(Semaphore::MAX_PERMITS);
            Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS)))
        });
        Capacity { slots, overflow }
    }

    /// A slot for one request, or `None` when the host is full and rejects overflow.
    /// With `Overflow::Queue` this waits, in arrival order, for a slot to free up.
    pub(crate) async fn admit(&self) -> Option<Slot> {
        let Some(slots) = &self.slots else {
            return Some(Slot { _permit: None });
        };
        let permit = match self.overflow {
            Overflow::Queue => slots.clone().acquire_owned().await.ok()?,
            Overflow::Reject => slots.clone().try_acquire_owned().ok()?,
        };
        Some(Slot {
            _permit: Some(permit),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reject_refuses_when_full_and_admits_after_release() {
        let cap = Capacity::new(Some(1), Overflow::Reject);
        let first = cap.admit().await.unwrap();
        assert!(cap.admit().await.is_none());
        drop(first);
        assert!(cap.admit().await.is_some());
    }

    #[tokio::test]
    async fn queue_waits_for_a_slot() {
        let cap = Arc::new(Capacity::new(Some(1), Overflow::Queue));
        let first = cap.admit().await.unwrap();
        let waiting = tokio::spawn({
            let cap = cap.clone();
            async move { cap.admit().await.is_some() }
        });
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(!waiting.is_finished());
        drop(first);
        assert!(waiting.await.unwrap());
    }

    #[tokio::test]
    async fn unlimited_always_admits() {
        let cap = Capacity::new(None, Overflow::Reject);
        let _a = cap.admit().await.unwrap();
        let _b = cap.admit().await.unwrap();
    }
}
