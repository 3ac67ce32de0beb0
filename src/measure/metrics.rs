//! One set of records (the whole run, or one stream) -> its metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;

use super::latency::{Distribution, Recorder};
use super::phase::{Phase, Timeline};
use super::windows::{judge, Judgement, Settling, SHARE_EPSILON};
use crate::experiment::MeasureSpec;
use crate::load::record::{Outcome, RequestRecord};

/// Everything measured over one set of records.
#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    /// Whether any fault window was recorded; without one, the fault-phase budgets that need a
    /// population (latency, served-by) judge the whole run instead.
    pub fault_injected: bool,
    /// Requests intended in `measure.warmup`: sent, counted here only, judged by no budget.
    /// `None` without a warm-up.
    pub warmup: Option<PhaseMetrics>,
    /// Every request after the warm-up.
    pub whole_run: PhaseMetrics,
    pub phases: Phases,
    pub steady_state: SteadyState,
    /// Merged fault windows, each with its failover and recovery judgement.
    pub episodes: Vec<Episode>,
    /// Worst failover over the episodes; `None` when there were none.
    pub failover: Option<Settling>,
    /// Worst recovery over the episodes followed by some time; `None` when there were none.
    pub recovery: Option<Settling>,
    /// `Truncated` outcomes over the whole run, whatever the phase.
    pub truncated: u64,
    /// Requests never sent because the in-flight limit was full.
    pub dropped: u64,
    /// Requests sent more than `LATE_AFTER` after their intended time: the load generator fell
    /// behind its schedule (their latency still counts from the intended time).
    pub late: u64,
    /// How late requests left against their schedule (sent ones only).
    pub send_lag: Option<Distribution>,
}

impl Metrics {
    /// The population that latency and served-by budgets judge: the fault phase, or the whole
    /// run when nothing was injected.
    pub fn judged(&self) -> (&PhaseMetrics, &'static str) {
        if self.fault_injected {
            (&self.phases.fault, "while a fault was active")
        } else {
            (
                &self.whole_run,
                "over the whole run (no fault was injected)",
            )
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Phases {
    pub baseline: PhaseMetrics,
    pub fault: PhaseMetrics,
    pub recovery: PhaseMetrics,
}

impl Phases {
    pub fn get(&self, phase: Phase) -> &PhaseMetrics {
        match phase {
            Phase::Baseline => &self.baseline,
            Phase::Fault => &self.fault,
            Phase::Recovery => &self.recovery,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseMetrics {
    /// Scheduled requests, dropped ones included.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// `errors / requests`, 0 when there were no requests.
    pub error_rate: f64,
    /// Error count per outcome class (only classes that occurred), in the classes' fixed order.
    pub errors_by_class: IndexMap<String, u64>,
    /// The `http_error` count by status, most first (ties by status): "38 × 500" hides a
    /// different failure than "38 × 401".
    pub http_error_statuses: IndexMap<u16, u64>,
    /// Latency of every sent request, whatever its outcome; a timeout counts at its full wait.
    pub latency: Option<Distribution>,
    /// Time to first byte, of the requests that received one.
    pub ttfb: Option<Distribution>,
    /// Time to first token (the first event with content), of the successful streams.
    pub ttft: Option<Distribution>,
    /// Inter-token latency: every gap between content events of the successful streams.
    pub itl: Option<Distribution>,
    /// Time per output token ((latency - TTFT) / (tokens - 1)), per successful stream.
    pub tpot: Option<Distribution>,
    /// Successful responses whose completeness no signal could establish (see `verified` on
    /// a record): they count as `ok`, and a `max_unverified` budget can limit them.
    pub unverified: u64,
    /// Which backend served the successful requests (`unknown` when none was named), most
    /// first.
    pub served_by: IndexMap<String, ServedShare>,
}

/// In what order [`PhaseMetrics::error_classes`] lists the classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassOrder {
    /// The classes' fixed order, as in tables.
    Fixed,
    /// Most first, as in a sentence explaining a verdict.
    MostFirst,
}

impl PhaseMetrics {
    /// The error classes in words, `http_error` broken down by status: "2 truncated, 1
    /// http_error". With a breakdown the classes are separated by semicolons, so the statuses'
    /// commas stay readable: "40 http_error: 38 × 500, 2 × 503; 2 truncated". Empty when
    /// nothing failed.
    pub fn error_classes(&self, order: ClassOrder) -> String {
        let mut classes: Vec<(&String, &u64)> = self.errors_by_class.iter().collect();
        if order == ClassOrder::MostFirst {
            classes.sort_by_key(|c| std::cmp::Reverse(*c.1));
        }
        let broken_down = !self.http_error_statuses.is_empty();
        let parts: Vec<String> = classes
            .iter()
            .map(|(class, n)| {
                if class.as_str() == Outcome::HttpError.as_str() && broken_down {
                    let statuses: Vec<String> = self
                        .http_error_statuses
                        .iter()
                        .map(|(status, k)| format!("{k} × {status}"))
                        .collect();
                    format!("{n} {class}: {}", statuses.join(", "))
                } else {
                    format!("{n} {class}")
                }
            })
            .collect();
        parts.join(if broken_down { "; " } else { ", " })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ServedShare {
    pub ok: u64,
    /// Share of the phase's successful requests.
    pub share: f64,
    /// Of `ok`, in the fault phase: how many began to answer (first body byte) only after the
    /// fault episode they were sent in had been lifted. A queue in front of the backends (a
    /// saturated gateway) carries requests past a window's edge, to whatever is up then, so a
    /// backend that "served during the fault" may only have served after it; a slow first
    /// token does the same. Not written when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub answered_after_lift: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The success rate the fault and recovery windows are held to.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SteadyState {
    pub baseline_requests: u64,
    pub baseline_ok: u64,
    /// Success share of the baseline; 1.0 when the baseline had no requests.
    pub success_rate: f64,
    pub tolerance: f64,
    /// `success_rate - tolerance`: the share a window needs to count as steady.
    pub threshold: f64,
    /// Width of the windows in which failover and recovery are judged.
    #[serde(rename = "window_ms", serialize_with = "super::ms::serialize")]
    pub window: Duration,
    /// `measure.min_steady_state`: the baseline success share the guard requires.
    pub min_success_rate: f64,
    /// `measure.min_baseline_requests`: the fewest baseline requests the guard requires.
    pub min_requests: u64,
    /// Whether the baseline passed the guard; failover, recovery and isolation budgets are
    /// judged only when it did (a system failing before any fault must not pass them).
    pub steady: bool,
}

impl SteadyState {
    /// Why the baseline cannot serve as a steady state, or `None` when it can.
    pub fn unsteady_reason(&self) -> Option<String> {
        if self.baseline_requests < self.min_requests {
            return Some(format!(
                "baseline too short: {} before the first fault, at least {} needed to know the \
                 steady state (start the first fault later, raise the rate, or lower \
                 measure.min_baseline_requests)",
                super::verdict::plural(self.baseline_requests, "request"),
                self.min_requests
            ));
        }
        if self.success_rate + SHARE_EPSILON < self.min_success_rate {
            return Some(format!(
                "baseline not steady: {} of {} requests ok before the first fault ({}, below \
                 measure.min_steady_state {}); the system was failing before any fault was \
                 injected",
                self.baseline_ok,
                self.baseline_requests,
                super::verdict::percent_text(self.success_rate),
                super::verdict::percent_text(self.min_success_rate)
            ));
        }
        None
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Episode {
    #[serde(rename = "start_ms", serialize_with = "super::ms::serialize")]
    pub start: Duration,
    #[serde(rename = "end_ms", serialize_with = "super::ms::serialize")]
    pub end: Duration,
    pub failover: Judgement,
    /// `None` when no time followed the episode (it lasted to the run's end).
    pub recovery: Option<Judgement>,
}

/// Counts of one phase while the records stream past.
#[derive(Default)]
struct PhaseAcc {
    requests: u64,
    ok: u64,
    by_class: [u64; Outcome::ALL.len()],
    latency: Recorder,
    ttfb: Recorder,
    ttft: Recorder,
    itl: Recorder,
    tpot: Recorder,
    unverified: u64,
    served: BTreeMap<String, ServedAcc>,
    statuses: BTreeMap<u16, u64>,
}

/// One backend's successes in a phase while the records stream past.
#[derive(Default)]
struct ServedAcc {
    ok: u64,
    /// Of `ok`, those whose first byte came after their fault episode was lifted.
    after_lift: u64,
}

impl PhaseAcc {
    /// `lifted_at`: for a request sent inside a fault episode, when that episode was lifted.
    fn add(&mut self, r: &RequestRecord, lifted_at: Option<Duration>) {
        self.requests += 1;
        if let Some(i) = Outcome::ALL.iter().position(|o| *o == r.outcome) {
            self.by_class[i] += 1;
        }
        if r.outcome == Outcome::HttpError {
            if let Some(status) = r.status {
                *self.statuses.entry(status).or_default() += 1;
            }
        }
        if r.outcome.is_ok() {
            // Token timing of whole answers only: a cut stream's last gap is the cut.
            if let Some(t) = r.tokens.ttft {
                self.ttft.record(t);
            }
            for gap in &r.tokens.itl_us {
                self.itl
                    .record(std::time::Duration::from_micros(u64::from(*gap)));
            }
            if let Some(t) = r.tokens.tpot(r.latency) {
                self.tpot.record(t);
            }
            if !r.verified {
                self.unverified += 1;
            }
            self.ok += 1;
            let by = r.served_by.as_deref().unwrap_or("unknown");
            let served = self.served.entry(by.to_string()).or_default();
            served.ok += 1;
            let after_lift = lifted_at
                .zip(r.ttfb)
                .is_some_and(|(end, ttfb)| r.intended + ttfb >= end);
            served.after_lift += u64::from(after_lift);
        }
        // A dropped request never left, so it has no latency to speak of; every sent one
        // counts, failures included, or a slow failure would hide from the percentiles.
        if r.outcome != Outcome::Dropped {
            self.latency.record(r.latency);
        }
        if let Some(t) = r.ttfb {
            self.ttfb.record(t);
        }
    }

    fn finish(self) -> PhaseMetrics {
        let errors = self.requests.saturating_sub(self.ok);
        let errors_by_class = Outcome::ALL
            .iter()
            .zip(self.by_class)
            .filter(|(o, n)| !o.is_ok() && *n > 0)
            .map(|(o, n)| (o.as_str().to_string(), n))
            .collect();
        let mut served: Vec<(String, ServedAcc)> = self.served.into_iter().collect();
        // Most first; the BTreeMap already ordered ties by name.
        served.sort_by_key(|s| std::cmp::Reverse(s.1.ok));
        let served_by = served
            .into_iter()
            .map(|(name, s)| {
                let share = s.ok as f64 / self.ok as f64;
                (
                    name,
                    ServedShare {
                        ok: s.ok,
                        share,
                        answered_after_lift: s.after_lift,
                    },
                )
            })
            .collect();
        let mut statuses: Vec<(u16, u64)> = self.statuses.into_iter().collect();
        // Most first; the BTreeMap already ordered ties by status.
        statuses.sort_by_key(|s| std::cmp::Reverse(s.1));
        PhaseMetrics {
            requests: self.requests,
            ok: self.ok,
            errors,
            error_rate: share(errors, self.requests, 0.0),
            errors_by_class,
            http_error_statuses: statuses.into_iter().collect(),
            latency: self.latency.summary(),
            ttfb: self.ttfb.summary(),
            ttft: self.ttft.summary(),
            itl: self.itl.summary(),
            tpot: self.tpot.summary(),
            unverified: self.unverified,
            served_by,
        }
    }
}

/// `part / whole`, or `empty` when `whole` is 0.
fn share(part: u64, whole: u64, empty: f64) -> f64 {
    if whole == 0 {
        empty
    } else {
        part as f64 / whole as f64
    }
}

/// A send this far behind its schedule counts as late.
pub const LATE_AFTER: std::time::Duration = std::time::Duration::from_millis(10);

pub fn compute(records: &[&RequestRecord], timeline: &Timeline, spec: &MeasureSpec) -> Metrics {
    let mut whole = PhaseAcc::default();
    let mut warmup = spec.warmup.map(|_| PhaseAcc::default());
    let mut phases: [PhaseAcc; 3] = Default::default();
    let mut lag = Recorder::default();
    let mut truncated = 0;
    let mut dropped = 0;
    let mut late = 0;
    for r in records {
        let i = match timeline.phase_of(r.intended) {
            None => {
                // Warm-up: its own counts and nothing else, so no budget sees a cold start.
                if let Some(w) = warmup.as_mut() {
                    w.add(r, None);
                }
                continue;
            }
            Some(Phase::Baseline) => 0,
            Some(Phase::Fault) => 1,
            Some(Phase::Recovery) => 2,
        };
        // Only the fault phase counts answers after a lift (the schema says so).
        whole.add(r, None);
        phases[i].add(r, timeline.lifted_at(r.intended));
        if let Some(l) = r.send_lag() {
            lag.record(l);
            if l > LATE_AFTER {
                late += 1;
            }
        }
        match r.outcome {
            Outcome::Truncated => truncated += 1,
            Outcome::Dropped => dropped += 1,
            _ => {}
        }
    }
    let [baseline, fault, recovered] = phases.map(PhaseAcc::finish);

    let success_rate = share(baseline.ok, baseline.requests, 1.0);
    let tolerance = spec.tolerance.fraction();
    let mut steady_state = SteadyState {
        baseline_requests: baseline.requests,
        baseline_ok: baseline.ok,
        success_rate,
        tolerance,
        threshold: (success_rate - tolerance).max(0.0),
        window: spec.window.0,
        min_success_rate: spec.min_steady_state.fraction(),
        min_requests: spec.min_baseline_requests,
        steady: false,
    };
    steady_state.steady = steady_state.unsteady_reason().is_none();

    let width = spec.window.0;
    let episodes: Vec<Episode> = timeline
        .episodes
        .iter()
        .enumerate()
        .map(|(i, span)| Episode {
            start: span.start,
            end: span.end,
            failover: judge(records, *span, width, steady_state.threshold),
            recovery: timeline
                .after(i)
                .map(|after| judge(records, after, width, steady_state.threshold)),
        })
        .collect();
    let failover = episodes
        .iter()
        .map(|e| e.failover.steady)
        .reduce(Settling::worse);
    let recovery = episodes
        .iter()
        .filter_map(|e| e.recovery.as_ref().map(|j| j.steady))
        .reduce(Settling::worse);

    Metrics {
        fault_injected: timeline.has_faults(),
        warmup: warmup.map(PhaseAcc::finish),
        whole_run: whole.finish(),
        phases: Phases {
            baseline,
            fault,
            recovery: recovered,
        },
        steady_state,
        episodes,
        failover,
        recovery,
        truncated,
        dropped,
        late,
        send_lag: lag.summary(),
    }
}
