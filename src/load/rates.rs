//! A stream's rate over the run: its `rate`, then the steps and ramps of the timeline, as a
//! piecewise-linear function. Request k is intended at the time the integral of the rate
//! reaches k, computed from k itself (never by adding gaps), so the schedule cannot drift.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::experiment::RateChange;

/// One piece of the rate: from `start` (seconds) the rate is `r0 + slope * (t - start)`, until
/// the next piece starts.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Piece {
    start: f64,
    r0: f64,
    slope: f64,
    /// Requests intended before `start`: the integral of the rate up to it.
    before: f64,
}

/// The rate of one stream over time.
#[derive(Clone, Debug, PartialEq)]
pub struct RateProfile {
    pieces: Vec<Piece>,
}

/// A rate change as it goes into the report: when, from what, to what, over how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateMark {
    pub stream: String,
    #[serde(
        rename = "at_ms",
        serialize_with = "crate::measure::ms::serialize",
        deserialize_with = "crate::measure::ms::deserialize"
    )]
    pub at: Duration,
    /// The rate just before the change (mid-ramp, if another ramp was under way).
    pub from_per_second: f64,
    pub to_per_second: f64,
    /// 0 for a step.
    #[serde(
        rename = "over_ms",
        serialize_with = "crate::measure::ms::serialize",
        deserialize_with = "crate::measure::ms::deserialize"
    )]
    pub over: Duration,
}

impl RateProfile {
    /// `base` from the start, then each change in time order. Rates are positive (a `Rate` is),
    /// so the integral only grows and every request has a time.
    pub fn new(base: f64, changes: &[(Duration, RateChange)]) -> Self {
        // Knots of the piecewise-linear rate: a step is two knots at one time.
        let mut knots: Vec<(f64, f64)> = vec![(0.0, base)];
        for (at, change) in changes {
            let t = at.as_secs_f64();
            let from = rate_at(&knots, t);
            // A later change overrides whatever an earlier ramp still had planned.
            knots.retain(|k| k.0 <= t);
            knots.push((t, from));
            let to = change.to.as_per_second();
            if change.over.is_zero() {
                knots.push((t, to));
            } else {
                knots.push((t + change.over.as_secs_f64(), to));
            }
        }
        let mut pieces: Vec<Piece> = Vec::new();
        let mut before = 0.0;
        for (i, &(start, r0)) in knots.iter().enumerate() {
            let slope = match knots.get(i + 1) {
                Some(&(next, _)) if next <= start => continue, // a step: zero width
                Some(&(next, r1)) => (r1 - r0) / (next - start),
                None => 0.0,
            };
            if let Some(last) = pieces.last() {
                let width = start - last.start;
                before = last.before + last.r0 * width + last.slope * width * width / 2.0;
            }
            pieces.push(Piece {
                start,
                r0,
                slope,
                before,
            });
        }
        RateProfile { pieces }
    }

    /// When request `k` (from 0) is intended, in seconds from the start. `cursor` remembers the
    /// piece of the previous call, so a pacer walking k upwards never searches.
    pub fn intended(&self, k: u64, cursor: &mut usize) -> f64 {
        let k = k as f64;
        while let Some(next) = self.pieces.get(*cursor + 1) {
            if next.before > k {
                break;
            }
            *cursor += 1;
        }
        while *cursor > 0 && self.pieces.get(*cursor).is_some_and(|p| p.before > k) {
            *cursor -= 1;
        }
        let Some(p) = self.pieces.get(*cursor) else {
            return f64::INFINITY;
        };
        let n = k - p.before;
        if p.slope == 0.0 {
            return p.start + n / p.r0;
        }
        // Solves r0*dt + slope*dt^2/2 = n in the form that stays exact as the slope nears 0.
        let disc = (p.r0 * p.r0 + 2.0 * p.slope * n).max(0.0);
        p.start + 2.0 * n / (p.r0 + disc.sqrt())
    }

    /// The rate at `t` seconds (the rate after a step at exactly `t`).
    pub fn rate(&self, t: f64) -> f64 {
        let p = self
            .pieces
            .iter()
            .rev()
            .find(|p| p.start <= t)
            .or(self.pieces.first());
        p.map_or(0.0, |p| p.r0 + p.slope * (t - p.start))
    }
}

/// The rate just before `t` on the knots so far (the right end of any step before it).
fn rate_at(knots: &[(f64, f64)], t: f64) -> f64 {
    let i = knots.iter().rposition(|k| k.0 <= t).unwrap_or(0);
    match (knots.get(i), knots.get(i + 1)) {
        (Some(&(a, ra)), Some(&(b, rb))) if b > a => ra + (rb - ra) * (t - a) / (b - a),
        (Some(&(_, ra)), _) => ra,
        (None, _) => 0.0,
    }
}

/// The report's record of a stream's changes.
pub fn marks(stream: &str, base: f64, changes: &[(Duration, RateChange)]) -> Vec<RateMark> {
    changes
        .iter()
        .enumerate()
        .map(|(i, (at, c))| {
            // The rate in force just before this change: the profile of the changes before it.
            let before = RateProfile::new(base, &changes[..i]);
            RateMark {
                stream: stream.to_string(),
                at: *at,
                from_per_second: before.rate(at.as_secs_f64()),
                to_per_second: c.to.as_per_second(),
                over: c.over,
            }
        })
        .collect()
}

/// A rate for people: `40`, `12.5`, `0.33`.
pub fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Rate;

    fn change(at_s: f64, to: f64, over_s: f64) -> (Duration, RateChange) {
        (
            Duration::from_secs_f64(at_s),
            RateChange {
                stream: "s".into(),
                to: Rate::per_second(to).unwrap(),
                over: Duration::from_secs_f64(over_s),
            },
        )
    }

    fn times(p: &RateProfile, n: u64) -> Vec<f64> {
        let mut cursor = 0;
        (0..n).map(|k| p.intended(k, &mut cursor)).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_constant_rate_is_k_over_rate() {
        let p = RateProfile::new(40.0, &[]);
        for (k, t) in times(&p, 1000).into_iter().enumerate() {
            assert_eq!(t, k as f64 / 40.0);
        }
    }

    #[test]
    fn a_step_changes_the_gap_at_its_time() {
        // 10/s for 2 s (20 requests), then 100/s.
        let p = RateProfile::new(10.0, &[change(2.0, 100.0, 0.0)]);
        let t = times(&p, 40);
        assert!(close(t[19], 1.9));
        assert!(close(t[20], 2.0));
        assert!(close(t[21], 2.01));
        assert!(close(t[39], 2.19));
    }

    #[test]
    fn a_ramp_integrates_exactly() {
        // 10/s to 50/s over 4 s from 1 s: 10 requests in the first second, then the ramp's area
        // n(dt) = 10 dt + 5 dt^2 (slope 10/s^2), 120 requests over it, then 50/s.
        let p = RateProfile::new(10.0, &[change(1.0, 50.0, 4.0)]);
        let t = times(&p, 200);
        assert!(close(t[10], 1.0));
        for n in [1u64, 15, 60, 119] {
            let dt = t[10 + n as usize] - 1.0;
            assert!(close(10.0 * dt + 5.0 * dt * dt, n as f64), "n {n}: dt {dt}");
        }
        assert!(close(t[130], 5.0));
        assert!(close(t[131], 5.02));
        // Gaps shrink through the ramp and never go backwards.
        assert!(t.windows(2).all(|w| w[1] > w[0]));
        assert!(close(p.rate(3.0), 30.0));
    }

    #[test]
    fn a_downward_ramp_and_a_change_mid_ramp() {
        // 50/s to 10/s over 4 s at 0, cut at 2 s (rate 30/s) by a step to 20/s.
        let p = RateProfile::new(50.0, &[change(0.0, 10.0, 4.0), change(2.0, 20.0, 0.0)]);
        let t = times(&p, 200);
        // Area 0..2 s: 50*2 - 5*4 = 80 requests.
        assert!(close(t[80], 2.0));
        assert!(close(t[100], 3.0));
        let m = marks("s", 50.0, &[change(0.0, 10.0, 4.0), change(2.0, 20.0, 0.0)]);
        assert!(close(m[0].from_per_second, 50.0));
        assert!(close(m[1].from_per_second, 30.0));
        assert_eq!(m[1].over, Duration::ZERO);
    }

    #[test]
    fn the_cursor_gives_the_same_times_in_any_order() {
        let p = RateProfile::new(10.0, &[change(1.0, 50.0, 4.0), change(8.0, 5.0, 0.0)]);
        let forward = times(&p, 400);
        let mut cursor = 0;
        let backward: Vec<f64> = (0..400u64)
            .rev()
            .map(|k| p.intended(k, &mut cursor))
            .collect();
        let backward: Vec<f64> = backward.into_iter().rev().collect();
        assert_eq!(forward, backward);
    }
}
