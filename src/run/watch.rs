//! Watches the run while it happens: redraws the status line and checks `abort_if`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::console::Console;
use crate::experiment::AbortIf;
use crate::load::live::{Counts, Tally};
use crate::measure::percent_text;
use crate::units::human_duration;

const TICK: Duration = Duration::from_millis(250);

/// Runs until `abort_if` trips (returning why) or forever; the caller drops it at the end.
pub async fn watch(
    tally: Arc<Tally>,
    phase: watch::Receiver<String>,
    abort_if: Option<AbortIf>,
    origin: Instant,
    console: &Console,
) -> String {
    let mut samples: VecDeque<(Instant, Counts)> = VecDeque::new();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let counts = tally.read();
        samples.push_back((now, counts));
        let keep = abort_if.map_or(Duration::from_secs(1), |a| {
            a.sustained.0.max(Duration::from_secs(1))
        });
        while samples.len() > 2
            && samples
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= keep)
        {
            samples.pop_front();
        }
        let last_second = samples
            .iter()
            .find(|(t, _)| now.duration_since(*t) <= Duration::from_secs(1))
            .map_or(counts, |(_, c)| *c);
        let recent = counts.since(last_second);
        console.status(&format!(
            "[{:>7.2}s] {} · {} req/s · errors {} total{}",
            origin.elapsed().as_secs_f64(),
            phase.borrow().as_str(),
            recent.finished,
            counts.errors,
            recent
                .error_rate()
                .map(|r| format!(" ({} in the last second)", percent_text(r)))
                .unwrap_or_default()
        ));
        if let Some(rule) = abort_if {
            if let Some(reason) = tripped(rule, &samples, now) {
                return reason;
            }
        }
    }
}

/// `abort_if` trips when the error share over the last `for` (by completion) exceeds the limit.
/// It waits until the run has a full `for` of history.
fn tripped(rule: AbortIf, samples: &VecDeque<(Instant, Counts)>, now: Instant) -> Option<String> {
    let (oldest_at, oldest) = samples.front()?;
    let (_, newest) = samples.back()?;
    if now.duration_since(*oldest_at) + TICK / 2 < rule.sustained.0 {
        return None;
    }
    let span = newest.since(*oldest);
    let rate = span.error_rate()?;
    (rate > rule.error_rate_over.fraction()).then(|| {
        format!(
            "abort_if: clients saw {} errors over the last {} ({} of {} finished requests), over the limit of {}",
            percent_text(rate),
            human_duration(rule.sustained.0),
            span.errors,
            span.finished,
            rule.error_rate_over
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{Dur, Percent};

    fn rule() -> AbortIf {
        AbortIf {
            error_rate_over: Percent::from_fraction(0.5).unwrap(),
            sustained: Dur::from_secs(2),
        }
    }

    fn history(points: &[(u64, u64, u64)]) -> (VecDeque<(Instant, Counts)>, Instant) {
        let start = Instant::now();
        let samples = points
            .iter()
            .map(|(ms, finished, errors)| {
                (
                    start + Duration::from_millis(*ms),
                    Counts {
                        finished: *finished,
                        errors: *errors,
                    },
                )
            })
            .collect();
        (
            samples,
            start + Duration::from_millis(points.last().map_or(0, |p| p.0)),
        )
    }

    #[test]
    fn trips_only_after_a_full_window_over_the_limit() {
        let (s, now) = history(&[(0, 0, 0), (1000, 10, 9)]);
        assert_eq!(tripped(rule(), &s, now), None, "only a second of history");
        let (s, now) = history(&[(0, 0, 0), (1000, 10, 9), (2000, 20, 19)]);
        let why = tripped(rule(), &s, now).unwrap();
        assert!(why.contains("95%") && why.contains("19 of 20"), "{why}");
    }

    #[test]
    fn does_not_trip_at_or_under_the_limit_or_without_finished_requests() {
        let (s, now) = history(&[(0, 0, 0), (2000, 20, 10)]);
        assert_eq!(tripped(rule(), &s, now), None);
        let (s, now) = history(&[(0, 5, 5), (2000, 5, 5)]);
        assert_eq!(tripped(rule(), &s, now), None);
    }
}
