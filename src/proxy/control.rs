//! The live fault table of one proxy. The timeline changes it while traffic flows; each request
//! takes a snapshot on arrival, so a change only touches requests that start after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::time::Instant;

use crate::fault::{Decider, FaultSpec};

/// One injected fault, as requests see it.
#[derive(Debug)]
pub(crate) struct ActiveFault {
    pub(crate) id: String,
    pub(crate) spec: FaultSpec,
    /// Bursts are phased from here.
    pub(crate) injected_at: Instant,
    pub(crate) decider: Decider,
    /// Requests this fault acted on: the evidence that it was on the path at all.
    touched: AtomicU64,
}

impl ActiveFault {
    /// Counts one request this fault acted on.
    pub(crate) fn touch(&self) {
        self.touched.fetch_add(1, Ordering::Relaxed);
    }
}

/// The faults in force, in injection order.
pub(crate) type Snapshot = Arc<Vec<Arc<ActiveFault>>>;

#[derive(Debug)]
struct Table {
    proxy: String,
    seed: u64,
    // Readers only clone the Arc, so a request never waits on a writer for longer than that.
    faults: RwLock<Snapshot>,
}

/// Adds and lifts faults on a running proxy. Cheap to clone; every clone drives the same proxy.
#[derive(Clone, Debug)]
pub struct FaultControl {
    table: Arc<Table>,
}

impl FaultControl {
    pub(crate) fn new(proxy: &str, seed: u64) -> Self {
        FaultControl {
            table: Arc::new(Table {
                proxy: proxy.to_string(),
                seed,
                faults: RwLock::new(Arc::new(Vec::new())),
            }),
        }
    }

    /// Puts `fault` in force under `id`. A fault already under `id` is replaced; the
    /// replacement counts as a new injection: it moves to the end of the order and its bursts
    /// start over. Its decisions stay the same, as they depend on the id, not on the time.
    pub fn inject(&self, id: &str, fault: FaultSpec) {
        let active = Arc::new(ActiveFault {
            id: id.to_string(),
            spec: fault,
            injected_at: Instant::now(),
            decider: Decider::new(self.table.seed, &self.table.proxy, id),
            touched: AtomicU64::new(0),
        });
        self.update(|faults| {
            faults.retain(|f| f.id != id);
            faults.push(active);
        });
    }

    /// Lifts the fault under `id`; false if there was none.
    pub fn lift(&self, id: &str) -> bool {
        let mut found = false;
        self.update(|faults| {
            let before = faults.len();
            faults.retain(|f| f.id != id);
            found = faults.len() != before;
        });
        found
    }

    /// Lifts every fault; returns how many there were.
    pub fn lift_all(&self) -> usize {
        let mut count = 0;
        self.update(|faults| {
            count = faults.len();
            faults.clear();
        });
        count
    }

    /// How many requests the fault under `id` acted on so far; `None` if it is not in force.
    pub fn touched(&self, id: &str) -> Option<u64> {
        self.snapshot()
            .iter()
            .find(|f| f.id == id)
            .map(|f| f.touched.load(Ordering::Relaxed))
    }

    /// The ids in force, in injection order.
    pub fn active(&self) -> Vec<String> {
        self.snapshot().iter().map(|f| f.id.clone()).collect()
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        // No code panics while holding the lock, and the data is a plain Arc swap either way, so
        // a poisoned lock still holds a consistent table.
        Arc::clone(
            &self
                .table
                .faults
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Copy-on-write, so snapshots already taken by requests in flight never change.
    fn update(&self, change: impl FnOnce(&mut Vec<Arc<ActiveFault>>)) {
        let mut guard = self
            .table
            .faults
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next: Vec<Arc<ActiveFault>> = guard.as_ref().clone();
        change(&mut next);
        *guard = Arc::new(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blackhole() -> FaultSpec {
        serde_json::from_value(serde_json::json!({ "blackhole": {} })).unwrap()
    }

    #[test]
    fn inject_replace_lift() {
        let control = FaultControl::new("p", 1);
        control.inject("a", blackhole());
        control.inject("b", blackhole());
        let before = control.snapshot();
        control.inject("a", blackhole());
        assert_eq!(control.active(), ["b", "a"]);
        assert_eq!(before.len(), 2, "a snapshot taken earlier does not change");
        assert_eq!(before[0].id, "a");
        assert!(control.lift("b"));
        assert!(!control.lift("b"));
        assert_eq!(control.active(), ["a"]);
        control.inject("c", blackhole());
        assert_eq!(control.lift_all(), 2);
        assert!(control.active().is_empty());
        assert_eq!(control.lift_all(), 0);
    }
}
