//! Percentiles from an HDR histogram: microsecond resolution, 3 significant digits, growing as
//! needed, so a 10-minute timeout and a 200 µs response fit the same histogram.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Percentiles of one set of durations.
///
/// A quantile is hdrhistogram's own answer, the upper edge of its bucket: never below the true
/// value and above it by less than 0.1% (the bucket width), so a gate errs strict. It is
/// clamped to the exact smallest and largest sample; `max` is exact. The clamp makes a run whose
/// samples are all one value report exactly that value, so it passes a budget equal to it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Distribution {
    pub count: u64,
    #[serde(rename = "p50_ms", serialize_with = "super::ms::serialize")]
    pub p50: Duration,
    #[serde(rename = "p90_ms", serialize_with = "super::ms::serialize")]
    pub p90: Duration,
    #[serde(rename = "p99_ms", serialize_with = "super::ms::serialize")]
    pub p99: Duration,
    #[serde(rename = "max_ms", serialize_with = "super::ms::serialize")]
    pub max: Duration,
}

/// Collects durations; `summary` turns them into a `Distribution`.
pub struct Recorder {
    /// `None` only if the histogram could not be created, which the fixed, valid parameters
    /// rule out; kept as an `Option` so a data path never panics.
    hist: Option<Histogram<u64>>,
    min_us: u64,
    max: Duration,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            hist: Histogram::new(3).ok(),
            min_us: u64::MAX,
            max: Duration::ZERO,
        }
    }
}

impl Recorder {
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(h) = self.hist.as_mut() {
            // `record` grows the histogram; it fails only past its ultimate reach (~146 000
            // years in µs), and then the sample still counts, at the ceiling.
            // (`saturating_record` alone would clamp to the current, unresized range.)
            if h.record(us).is_err() {
                h.saturating_record(us);
            }
        }
        self.min_us = self.min_us.min(us);
        self.max = self.max.max(d);
    }

    /// `None` when nothing was recorded: "no data" is not "0 ms".
    pub fn summary(&self) -> Option<Distribution> {
        let h = self.hist.as_ref().filter(|h| !h.is_empty())?;
        let max_us = u64::try_from(self.max.as_micros()).unwrap_or(u64::MAX);
        let at = |q: f64| {
            let us = h.value_at_quantile(q).clamp(self.min_us, max_us);
            Duration::from_micros(us)
        };
        Some(Distribution {
            count: h.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: self.max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary_of(ms: impl IntoIterator<Item = u64>) -> Option<Distribution> {
        let mut r = Recorder::default();
        for v in ms {
            r.record(Duration::from_millis(v));
        }
        r.summary()
    }

    fn close(d: Duration, ms: u64) -> bool {
        let want = Duration::from_millis(ms).as_secs_f64();
        (d.as_secs_f64() - want).abs() <= want * 0.001
    }

    #[test]
    fn nothing_recorded_is_no_data() {
        assert_eq!(summary_of([]), None);
    }

    #[test]
    fn percentiles_of_one_to_a_hundred() {
        let s = summary_of(1..=100).unwrap();
        assert_eq!(s.count, 100);
        assert!(close(s.p50, 50), "{:?}", s.p50);
        assert!(close(s.p90, 90), "{:?}", s.p90);
        assert!(close(s.p99, 99), "{:?}", s.p99);
        assert_eq!(s.max, Duration::from_millis(100));
    }

    #[test]
    fn identical_samples_report_exactly_that_value() {
        // Clamping to the exact min/max keeps a value that sits on a budget from reading as
        // a hair over it.
        let s = summary_of([2_000; 10]).unwrap();
        assert_eq!(s.p50, Duration::from_secs(2));
        assert_eq!(s.p99, Duration::from_secs(2));
        assert_eq!(s.max, Duration::from_secs(2));
    }

    #[test]
    fn a_long_tail_fits() {
        let s = summary_of([1, 1, 1, 600_000]).unwrap();
        assert_eq!(s.p50, Duration::from_millis(1));
        assert!(close(s.p99, 600_000));
        assert_eq!(s.max, Duration::from_secs(600));
    }
}
