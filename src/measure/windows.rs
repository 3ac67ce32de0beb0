//! Failover and recovery time: when success, judged window by window, comes back to the steady
//! state and stays there.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::phase::Span;
use crate::load::record::RequestRecord;
use crate::units::human_duration;

/// Slack for comparing shares computed in floating point: a window of 49/50 against a threshold
/// of 100% - 2% must meet it, whatever the last bit of either says.
pub(crate) const SHARE_EPSILON: f64 = 1e-9;

/// How long success took to settle at the steady state, or that it never did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settling {
    After(Duration),
    Never,
}

impl Settling {
    /// The worse of two: `Never` beats any time, a longer time beats a shorter one.
    pub fn worse(self, other: Settling) -> Settling {
        match (self, other) {
            (Settling::After(a), Settling::After(b)) => Settling::After(a.max(b)),
            _ => Settling::Never,
        }
    }

    /// `1.5s`, or `never`.
    pub fn text(self) -> String {
        match self {
            Settling::After(d) => human_duration(d),
            Settling::Never => "never".into(),
        }
    }
}

/// `{"reached": true, "after_ms": 2000.0}` or `{"reached": false, "after_ms": null}`: one shape
/// either way, so a reader need not branch on the type.
impl Serialize for Settling {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Settling", 2)?;
        match self {
            Settling::After(d) => {
                st.serialize_field("reached", &true)?;
                st.serialize_field("after_ms", &super::ms::millis(*d))?;
            }
            Settling::Never => {
                st.serialize_field("reached", &false)?;
                st.serialize_field("after_ms", &Option::<f64>::None)?;
            }
        }
        st.end()
    }
}

/// One judging window that had requests. Windows without requests are left out: they neither
/// break nor establish a steady state.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WindowStat {
    #[serde(rename = "start_ms", serialize_with = "super::ms::serialize")]
    pub start: Duration,
    #[serde(rename = "end_ms", serialize_with = "super::ms::serialize")]
    pub end: Duration,
    pub requests: u64,
    pub ok: u64,
    /// Whether its success share met the threshold.
    pub steady: bool,
}

/// The window-by-window judgement of one span (a fault episode, or the time after one).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Judgement {
    #[serde(rename = "from_ms", serialize_with = "super::ms::serialize")]
    pub from: Duration,
    #[serde(rename = "until_ms", serialize_with = "super::ms::serialize")]
    pub until: Duration,
    pub steady: Settling,
    pub windows: Vec<WindowStat>,
}

impl Judgement {
    /// The last window below the threshold: what kept the steady state from being reached
    /// earlier (or at all).
    pub fn last_below(&self) -> Option<&WindowStat> {
        self.windows.iter().rev().find(|w| !w.steady)
    }
}

/// Cuts `span` into windows of `width` from its start (the last may be shorter) and finds the
/// first window from which every later window with requests has a success share of at least
/// `threshold`. The result is that window's start minus the span's start.
pub fn judge(records: &[&RequestRecord], span: Span, width: Duration, threshold: f64) -> Judgement {
    // A zero width would make every window empty; judge the span as one window instead.
    let width_ns = match width.as_nanos() {
        0 => span.end.saturating_sub(span.start).as_nanos().max(1),
        w => w,
    };
    // Sparse: only windows that hold requests are stored, so a tiny width over a long span
    // costs nothing beyond the records themselves.
    let mut bins: BTreeMap<u128, (u64, u64)> = BTreeMap::new();
    for r in records {
        if r.intended < span.start || r.intended >= span.end {
            continue;
        }
        let idx = r.intended.saturating_sub(span.start).as_nanos() / width_ns;
        let bin = bins.entry(idx).or_default();
        bin.0 += 1;
        if r.outcome.is_ok() {
            bin.1 += 1;
        }
    }

    let at = |idx: u128| {
        let ns = span
            .start
            .as_nanos()
            .saturating_add(idx.saturating_mul(width_ns));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)).min(span.end)
    };
    let windows: Vec<WindowStat> = bins
        .into_iter()
        .map(|(idx, (requests, ok))| WindowStat {
            start: at(idx),
            end: at(idx + 1),
            requests,
            ok,
            steady: ok as f64 / requests as f64 + SHARE_EPSILON >= threshold,
        })
        .collect();

    // Walk back from the end: the answer is the earliest window of the unbroken steady tail.
    let settled_from = windows
        .iter()
        .rev()
        .take_while(|w| w.steady)
        .last()
        .map(|w| w.start);
    Judgement {
        from: span.start,
        until: span.end,
        steady: settled_from.map_or(Settling::Never, |t| {
            Settling::After(t.saturating_sub(span.start))
        }),
        windows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::testutil::{rec, records_at, RecordExt};

    fn span(start_ms: u64, end_ms: u64) -> Span {
        Span {
            start: Duration::from_millis(start_ms),
            end: Duration::from_millis(end_ms),
        }
    }

    fn refs(v: &[RequestRecord]) -> Vec<&RequestRecord> {
        v.iter().collect()
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn errors_for_the_first_one_and_a_half_seconds_fail_over_at_two() {
        // 10 requests a second over a 5 s fault; the first 1.5 s all fail.
        let records = records_at(0..50, |i| {
            let t = 10_000 + i * 100;
            if t < 11_500 {
                rec("a", t).http_error(503)
            } else {
                rec("a", t)
            }
        });
        let j = judge(&refs(&records), span(10_000, 15_000), SEC, 0.98);
        assert_eq!(j.steady, Settling::After(Duration::from_secs(2)));
        assert_eq!(j.windows.len(), 5);
        assert_eq!(
            j.last_below().map(|w| w.start),
            Some(Duration::from_secs(11))
        );
    }

    #[test]
    fn immediate_success_fails_over_in_zero() {
        let records = records_at(0..50, |i| rec("a", 10_000 + i * 100));
        let j = judge(&refs(&records), span(10_000, 15_000), SEC, 0.98);
        assert_eq!(j.steady, Settling::After(Duration::ZERO));
    }

    #[test]
    fn failure_in_the_last_window_is_never() {
        let records = records_at(0..50, |i| {
            let t = 10_000 + i * 100;
            if t >= 14_500 {
                rec("a", t).truncated()
            } else {
                rec("a", t)
            }
        });
        let j = judge(&refs(&records), span(10_000, 15_000), SEC, 0.98);
        assert_eq!(j.steady, Settling::Never);
    }

    #[test]
    fn no_requests_is_never() {
        let j = judge(&[], span(10_000, 15_000), SEC, 0.98);
        assert_eq!(j.steady, Settling::Never);
        assert!(j.windows.is_empty());
    }

    #[test]
    fn empty_windows_neither_break_nor_establish() {
        // Failures in second 0, nothing in second 1, successes in second 2 only: the empty
        // second does not count as steady, so failover is at 2 s, not 1 s.
        let records = vec![
            rec("a", 10_100).http_error(500),
            rec("a", 12_100),
            rec("a", 12_200),
        ];
        let j = judge(&refs(&records), span(10_000, 15_000), SEC, 0.98);
        assert_eq!(j.steady, Settling::After(Duration::from_secs(2)));
    }

    #[test]
    fn a_share_exactly_at_the_threshold_is_steady() {
        // 49 of 50 = 98% against a threshold of 100% - 2%.
        let records = records_at(0..50, |i| {
            let r = rec("a", 10_000 + i * 20);
            if i == 0 {
                r.http_error(500)
            } else {
                r
            }
        });
        let j = judge(&refs(&records), span(10_000, 11_000), SEC, 1.0 - 0.02);
        assert_eq!(j.steady, Settling::After(Duration::ZERO));
    }

    #[test]
    fn the_last_window_may_be_shorter() {
        let records = vec![rec("a", 12_100).http_error(500), rec("a", 12_400)];
        let j = judge(&refs(&records), span(10_000, 12_500), SEC, 0.98);
        assert_eq!(j.windows[0].start, Duration::from_secs(12));
        assert_eq!(j.windows[0].end, Duration::from_millis(12_500));
        assert_eq!(j.steady, Settling::Never);
    }

    #[test]
    fn never_is_the_worst() {
        let a = Settling::After(SEC);
        let b = Settling::After(Duration::from_secs(3));
        assert_eq!(a.worse(b), b);
        assert_eq!(b.worse(Settling::Never), Settling::Never);
        assert_eq!(Settling::Never.text(), "never");
        assert_eq!(b.text(), "3s");
    }
}
