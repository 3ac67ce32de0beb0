//! Concise hand-made records for the tests of measure/ and report/.

use std::sync::Arc;
use std::time::Duration;

use crate::load::record::{Outcome, RequestRecord};

/// A successful request of `stream`, intended at `intended_ms`, sent on time, 100 ms latency,
/// 20 ms to first byte, served by `primary`.
pub fn rec(stream: &str, intended_ms: u64) -> RequestRecord {
    let intended = Duration::from_millis(intended_ms);
    RequestRecord {
        stream: Arc::from(stream),
        seq: 0,
        intended,
        sent: Some(intended),
        status: Some(200),
        outcome: Outcome::Ok,
        ttfb: Some(Duration::from_millis(20)),
        latency: Duration::from_millis(100),
        bytes: 512,
        events: 8,
        served_by: Some(Arc::from("primary")),
        tokens: Default::default(),
        verified: true,
        faults: None,
    }
}

/// Builds one record per index with `make`, numbering them in order.
pub fn records_at(
    range: impl IntoIterator<Item = u64>,
    make: impl Fn(u64) -> RequestRecord,
) -> Vec<RequestRecord> {
    range
        .into_iter()
        .map(|i| RequestRecord { seq: i, ..make(i) })
        .collect()
}

/// Adjusters, chained on `rec(..)`.
pub trait RecordExt: Sized {
    fn outcome(self, outcome: Outcome) -> Self;
    fn http_error(self, status: u16) -> Self;
    fn truncated(self) -> Self;
    fn dropped(self) -> Self;
    fn latency_ms(self, ms: u64) -> Self;
    fn served(self, by: Option<&str>) -> Self;
    fn lag_ms(self, ms: u64) -> Self;
    fn ttfb_ms(self, ms: u64) -> Self;
}

impl RecordExt for RequestRecord {
    fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        if outcome != Outcome::Ok {
            self.served_by = None;
        }
        self
    }
    fn http_error(mut self, status: u16) -> Self {
        self.status = Some(status);
        self.ttfb = None;
        self.outcome(Outcome::HttpError)
    }
    fn truncated(self) -> Self {
        self.outcome(Outcome::Truncated)
    }
    fn dropped(mut self) -> Self {
        self.sent = None;
        self.status = None;
        self.ttfb = None;
        self.latency = Duration::ZERO;
        self.bytes = 0;
        self.events = 0;
        self.outcome(Outcome::Dropped)
    }
    fn latency_ms(mut self, ms: u64) -> Self {
        self.latency = Duration::from_millis(ms);
        self
    }
    fn served(mut self, by: Option<&str>) -> Self {
        self.served_by = by.map(Arc::from);
        self
    }
    fn lag_ms(mut self, ms: u64) -> Self {
        self.sent = Some(self.intended + Duration::from_millis(ms));
        self
    }
    fn ttfb_ms(mut self, ms: u64) -> Self {
        self.ttfb = Some(Duration::from_millis(ms));
        self.latency = self.latency.max(Duration::from_millis(ms));
        self
    }
}
