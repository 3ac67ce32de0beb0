//! Records -> the timeline chart's data: per-bucket success rate, p99 latency and which backend
//! served the successes. Buckets are cut by *intended* send time, like every other measurement,
//! so a stalled client shows up as failures where it stalled rather than shifting them later.

use std::collections::HashMap;
use std::time::Duration;

use crate::load::record::{Outcome, RequestRecord};

/// Past this many buckets, buckets widen: a day-long soak at 1 s would put 86 400 points in
/// each series, a page of many megabytes that no screen could show at that resolution anyway.
const MAX_BUCKETS: u128 = 1_500;

/// The name a success without a `served_by` backend is shown under.
pub const UNKNOWN_BACKEND: &str = "unknown";

#[derive(Debug)]
pub struct Series {
    pub width: Duration,
    /// The x axis' end: the run's length, or further if some record was scheduled after it.
    pub end: Duration,
    pub buckets: Vec<Bucket>,
    /// Backends that served a success, most successes first (ties by name).
    pub backends: Vec<String>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Bucket {
    pub start: Duration,
    /// The next bucket's start, or the axis' end for the last one.
    pub end: Duration,
    /// Scheduled requests, dropped ones included.
    pub requests: u64,
    pub ok: u64,
    /// Of the sent requests, failures at their full wait; `None` when none was sent.
    pub p99: Option<Duration>,
    /// Successes per backend, in `Series::backends` order.
    pub served: Vec<u64>,
}

impl Bucket {
    /// `ok / requests`, or `None` for an empty bucket: no requests is not 0% success.
    pub fn success_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.ok as f64 / self.requests as f64)
    }
}

/// 1 s, or 0.5 s for runs shorter than 20 s (else a short run is a handful of points); wider,
/// in whole seconds, when the run would need more than `MAX_BUCKETS`.
pub fn bucket_width(run: Duration) -> Duration {
    let base = if run < Duration::from_secs(20) {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(1)
    };
    if run.as_nanos().div_ceil(base.as_nanos()) <= MAX_BUCKETS {
        return base;
    }
    let secs = run.as_nanos().div_ceil(MAX_BUCKETS * 1_000_000_000);
    Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX))
}

pub fn compute(records: &[RequestRecord], run: Duration) -> Series {
    let width = bucket_width(run);
    let width_ns = width.as_nanos().max(1);
    let index = |t: Duration| usize::try_from(t.as_nanos() / width_ns).unwrap_or(usize::MAX);

    // A record scheduled after the run's recorded end (a clock racing the end of the run)
    // widens the axis instead of vanishing. The cap keeps a wild timestamp from allocating
    // millions of buckets: such records land in the last one.
    let last = records.iter().map(|r| index(r.intended)).max();
    let run_buckets = usize::try_from(run.as_nanos().div_ceil(width_ns)).unwrap_or(usize::MAX);
    let count = last
        .map_or(run_buckets, |l| run_buckets.max(l.saturating_add(1)))
        .clamp(1, MAX_BUCKETS as usize * 2);
    let stretched = last.is_some_and(|l| l >= run_buckets);
    let end = if stretched {
        width
            .checked_mul(u32::try_from(count).unwrap_or(u32::MAX))
            .unwrap_or(Duration::MAX)
    } else {
        run
    };
    // A zero-length run would make a zero-width axis; one bucket's width keeps it drawable.
    let end = if end.is_zero() { width } else { end };

    let backends = backends_by_successes(records);
    let backend_index: HashMap<&str, usize> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| (b.as_str(), i))
        .collect();

    let mut buckets: Vec<Bucket> = (0..count)
        .map(|i| {
            let start = width.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            Bucket {
                start: start.min(end),
                end: start.saturating_add(width).min(end),
                served: vec![0; backends.len()],
                ..Bucket::default()
            }
        })
        .collect();
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); count];
    for r in records {
        let i = index(r.intended).min(count - 1);
        let b = &mut buckets[i];
        b.requests += 1;
        if r.outcome.is_ok() {
            b.ok += 1;
            if let Some(&k) = backend_index.get(backend_of(r)) {
                b.served[k] += 1;
            }
        }
        // A dropped request was never sent, so it has no latency (as in the phase metrics).
        if r.outcome != Outcome::Dropped {
            latencies[i].push(r.latency);
        }
    }
    for (b, mut lat) in buckets.iter_mut().zip(latencies) {
        b.p99 = p99(&mut lat);
    }
    Series {
        width,
        end,
        buckets,
        backends,
    }
}

fn backend_of(r: &RequestRecord) -> &str {
    r.served_by.as_deref().unwrap_or(UNKNOWN_BACKEND)
}

fn backends_by_successes(records: &[RequestRecord]) -> Vec<String> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for r in records.iter().filter(|r| r.outcome.is_ok()) {
        *counts.entry(backend_of(r)).or_default() += 1;
    }
    let mut list: Vec<(&str, u64)> = counts.into_iter().collect();
    // Most first, so the largest band sits at the bottom of the stack; names break ties so
    // colours do not change between two renders of the same run.
    list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    list.into_iter().map(|(name, _)| name.to_string()).collect()
}

/// Nearest-rank p99: exact for a bucket's few dozen samples, where a histogram would buy
/// nothing.
fn p99(samples: &mut [Duration]) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = (samples.len() * 99).div_ceil(100);
    samples.get(rank.saturating_sub(1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::testutil::{rec, records_at, RecordExt};

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn widths() {
        assert_eq!(bucket_width(Duration::from_secs(10)), SEC / 2);
        assert_eq!(bucket_width(Duration::from_secs(20)), SEC);
        assert_eq!(bucket_width(Duration::from_secs(1_500)), SEC);
        assert_eq!(bucket_width(Duration::from_secs(1_501)), 2 * SEC);
        assert_eq!(bucket_width(Duration::from_secs(86_400)), 58 * SEC);
        assert_eq!(bucket_width(Duration::ZERO), SEC / 2);
    }

    #[test]
    fn buckets_by_intended_time() {
        let records = records_at(0..40, |i| {
            let r = rec("a", i * 250);
            match i {
                // Second 2: one failure, one drop, two slow successes by another backend.
                8 => r.http_error(503),
                9 => r.dropped(),
                10 | 11 => r.served(Some("fallback")).latency_ms(900),
                // Sent late, but intended in second 3: stays there.
                12 => r.lag_ms(4_000).served(None),
                _ => r,
            }
        });
        let s = compute(&records, Duration::from_secs(20));
        assert_eq!(s.width, SEC);
        assert_eq!(s.end, Duration::from_secs(20));
        assert_eq!(s.buckets.len(), 20);
        assert_eq!(s.backends, ["primary", "fallback", "unknown"]);
        let b = &s.buckets[2];
        assert_eq!((b.start, b.end), (2 * SEC, 3 * SEC));
        assert_eq!((b.requests, b.ok), (4, 2));
        assert_eq!(b.success_rate(), Some(0.5));
        assert_eq!(b.served, [0, 2, 0]);
        // The drop has no latency; of the three sent, the slowest is the p99.
        assert_eq!(b.p99, Some(Duration::from_millis(900)));
        assert_eq!(s.buckets[3].served, [3, 0, 1]);
        assert_eq!(s.buckets[12].success_rate(), None);
        assert_eq!(s.buckets[12].p99, None);
    }

    #[test]
    fn a_record_past_the_end_stretches_the_axis() {
        let s = compute(&[rec("a", 25_300)], Duration::from_secs(20));
        assert_eq!(s.buckets.len(), 26);
        assert_eq!(s.end, Duration::from_secs(26));
        assert_eq!(s.buckets[25].requests, 1);
    }

    #[test]
    fn an_empty_run_still_has_an_axis() {
        let s = compute(&[], Duration::ZERO);
        assert_eq!(s.buckets.len(), 1);
        assert_eq!(s.end, SEC / 2);
        assert!(s.backends.is_empty());
    }

    #[test]
    fn p99_is_nearest_rank() {
        let mut v: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        assert_eq!(p99(&mut v), Some(Duration::from_millis(198)));
        assert_eq!(p99(&mut [SEC]), Some(SEC));
        assert_eq!(p99(&mut []), None);
    }
}
