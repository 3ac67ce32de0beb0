//! Where a moment of the run falls: in the warm-up (no phase), before the first fault, inside
//! one, or after. Everything is
//! judged by a request's *intended* send time, so a stalled client cannot move a request out of
//! the phase it belonged to.

use std::time::Duration;

use serde::Serialize;

use super::FaultWindow;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the first fault window starts (the whole run when there are no faults).
    Baseline,
    /// Inside any fault window.
    Fault,
    /// After the first fault started, but inside no fault window.
    Recovery,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Baseline, Phase::Fault, Phase::Recovery];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Fault => "fault",
            Phase::Recovery => "recovery",
        }
    }
}

/// A stretch of time during which at least one fault was active: overlapping or touching fault
/// windows merged, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: Duration,
    pub end: Duration,
}

/// The run's fault timeline, reduced to what classification needs.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// When the first fault window starts; `None` when nothing was injected.
    first_start: Option<Duration>,
    /// Merged, sorted, non-empty episodes.
    pub episodes: Vec<Span>,
    /// The run's length: the end of the last recovery span.
    pub run_end: Duration,
    /// `measure.warmup`: what is intended before it belongs to no phase.
    warmup: Duration,
    /// Per episode: whether its end is a lift. A window whose lift failed is closed at the
    /// run's end, which is no lift at all.
    lifted: Vec<bool>,
}

impl Timeline {
    pub fn new(windows: &[FaultWindow], run_end: Duration) -> Self {
        // A window recorded with its end before its start (clock trouble, a lift racing the
        // inject) is treated as empty rather than trusted.
        let mut spans: Vec<Span> = windows
            .iter()
            .map(|w| Span {
                start: w.start,
                end: w.end.max(w.start),
            })
            .collect();
        spans.sort_by_key(|s| (s.start, s.end));
        let first_start = spans.first().map(|s| s.start);

        let mut episodes: Vec<Span> = Vec::new();
        for s in spans.into_iter().filter(|s| s.end > s.start) {
            match episodes.last_mut() {
                // Adjacent windows (one lifted as the next is injected) leave no gap in which
                // to recover, so they are one episode.
                Some(last) if s.start <= last.end => last.end = last.end.max(s.end),
                _ => episodes.push(s),
            }
        }
        let lifted = episodes
            .iter()
            .map(|e| {
                !windows
                    .iter()
                    .any(|w| w.lift_error.is_some() && w.start < e.end && e.start < w.end)
            })
            .collect();
        Timeline {
            first_start,
            episodes,
            run_end,
            warmup: Duration::ZERO,
            lifted,
        }
    }

    /// Requests intended before `warmup` belong to no phase. The check keeps the warm-up
    /// before the first fault, so it only ever shortens the baseline.
    pub fn with_warmup(mut self, warmup: Duration) -> Self {
        self.warmup = warmup;
        self
    }

    /// The phase of a request intended at `t`; `None` in the warm-up.
    pub fn phase_of(&self, t: Duration) -> Option<Phase> {
        if t < self.warmup {
            return None;
        }
        Some(self.phase_after_warmup(t))
    }

    fn phase_after_warmup(&self, t: Duration) -> Phase {
        match self.first_start {
            None => Phase::Baseline,
            Some(first) if t < first => Phase::Baseline,
            Some(_) if self.episodes.iter().any(|e| e.start <= t && t < e.end) => Phase::Fault,
            Some(_) => Phase::Recovery,
        }
    }

    /// When the fault episode holding `t` was lifted; `None` when `t` is in none, or in one
    /// that was never lifted.
    pub fn lifted_at(&self, t: Duration) -> Option<Duration> {
        self.episodes
            .iter()
            .zip(&self.lifted)
            .find(|(e, _)| e.start <= t && t < e.end)
            .and_then(|(e, lifted)| lifted.then_some(e.end))
    }

    pub fn has_faults(&self) -> bool {
        self.first_start.is_some()
    }

    /// The span after episode `i` in which recovery is judged: up to the next episode's start or
    /// the run's end. `None` when no time follows it.
    pub fn after(&self, i: usize) -> Option<Span> {
        let episode = self.episodes.get(i)?;
        let until = self
            .episodes
            .get(i + 1)
            .map_or(self.run_end, |next| next.start);
        (until > episode.end).then_some(Span {
            start: episode.end,
            end: until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start_ms: u64, end_ms: u64) -> FaultWindow {
        FaultWindow {
            id: "f".into(),
            target: "p".into(),
            kind: "http_error".into(),
            start: Duration::from_millis(start_ms),
            end: Duration::from_millis(end_ms),
            lift_error: None,
            evidence: None,
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn no_windows_means_everything_is_baseline() {
        let t = Timeline::new(&[], ms(10_000));
        assert_eq!(t.phase_of(ms(0)), Some(Phase::Baseline));
        assert_eq!(t.phase_of(ms(9_999)), Some(Phase::Baseline));
        assert!(t.episodes.is_empty());
    }

    #[test]
    fn phases_follow_the_windows() {
        let t = Timeline::new(&[window(2_000, 4_000), window(6_000, 7_000)], ms(10_000));
        assert_eq!(t.phase_of(ms(1_999)), Some(Phase::Baseline));
        assert_eq!(t.phase_of(ms(2_000)), Some(Phase::Fault));
        assert_eq!(t.phase_of(ms(3_999)), Some(Phase::Fault));
        // The end is exclusive: the lift instant already belongs to recovery.
        assert_eq!(t.phase_of(ms(4_000)), Some(Phase::Recovery));
        assert_eq!(t.phase_of(ms(5_000)), Some(Phase::Recovery));
        assert_eq!(t.phase_of(ms(6_500)), Some(Phase::Fault));
        assert_eq!(t.phase_of(ms(9_000)), Some(Phase::Recovery));
    }

    #[test]
    fn overlapping_and_adjacent_windows_merge_into_episodes() {
        let t = Timeline::new(
            &[
                window(5_000, 6_000),
                window(1_000, 3_000),
                window(2_000, 4_000),
                window(4_000, 4_500),
            ],
            ms(10_000),
        );
        assert_eq!(
            t.episodes,
            vec![
                Span {
                    start: ms(1_000),
                    end: ms(4_500)
                },
                Span {
                    start: ms(5_000),
                    end: ms(6_000)
                }
            ]
        );
        assert_eq!(
            t.after(0),
            Some(Span {
                start: ms(4_500),
                end: ms(5_000)
            })
        );
        assert_eq!(
            t.after(1),
            Some(Span {
                start: ms(6_000),
                end: ms(10_000)
            })
        );
    }

    #[test]
    fn the_warmup_belongs_to_no_phase() {
        let t = Timeline::new(&[window(5_000, 6_000)], ms(10_000)).with_warmup(ms(2_000));
        assert_eq!(t.phase_of(ms(0)), None);
        assert_eq!(t.phase_of(ms(1_999)), None);
        assert_eq!(t.phase_of(ms(2_000)), Some(Phase::Baseline));
        assert_eq!(t.phase_of(ms(5_000)), Some(Phase::Fault));
    }

    #[test]
    fn an_episode_that_lasts_to_the_end_has_no_recovery_span() {
        let t = Timeline::new(&[window(1_000, 10_000)], ms(10_000));
        assert_eq!(t.after(0), None);
    }
}
