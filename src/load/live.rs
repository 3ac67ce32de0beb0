//! Live counters for the run as it happens: the progress line and `abort_if` read them while
//! the full records are still on their way to the end of the run. An [`Observer`] (the live
//! metrics exporter) sees every request as it leaves and as it ends, without the load
//! generator knowing what it does with them.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::record::RequestRecord;

/// Totals so far, over requests that have finished (dropped ones included).
#[derive(Debug, Default)]
pub struct Tally {
    finished: AtomicU64,
    errors: AtomicU64,
}

/// A moment's reading of a `Tally`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub finished: u64,
    pub errors: u64,
}

impl Counts {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Counts) -> Counts {
        Counts {
            finished: self.finished.saturating_sub(earlier.finished),
            errors: self.errors.saturating_sub(earlier.errors),
        }
    }

    pub fn error_rate(self) -> Option<f64> {
        (self.finished > 0).then(|| self.errors as f64 / self.finished as f64)
    }
}

impl Tally {
    pub fn read(&self) -> Counts {
        Counts {
            finished: self.finished.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Something that watches requests as they happen. Called on the load generator's pacing
/// threads and its runtime, so it must be quick and must not block: counting, not I/O.
pub trait Observer: Send + Sync {
    /// A request of `stream` left and is in flight.
    fn sent(&self, stream: &str);
    /// A request ended (or was dropped, without a `sent` before it).
    fn finished(&self, record: &RequestRecord);
}

/// Where finished requests go: counted live, shown to the observer, kept for the end of the run.
#[derive(Clone)]
pub(crate) struct Sink {
    pub(crate) tx: mpsc::UnboundedSender<RequestRecord>,
    pub(crate) tally: std::sync::Arc<Tally>,
    pub(crate) observer: Option<std::sync::Arc<dyn Observer>>,
}

impl Sink {
    /// A request of `stream` is about to leave.
    pub(crate) fn sent(&self, stream: &str) {
        if let Some(o) = &self.observer {
            o.sent(stream);
        }
    }

    pub(crate) fn push(&self, record: RequestRecord) {
        self.tally.finished.fetch_add(1, Ordering::Relaxed);
        if !record.outcome.is_ok() {
            self.tally.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(o) = &self.observer {
            o.finished(&record);
        }
        // The receiver only goes away once the run stopped collecting; nothing to keep then.
        let _ = self.tx.send(record);
    }
}
