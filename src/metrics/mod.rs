//! Live metrics for Prometheus: what a run has done so far, served while it goes
//! (`faultline run --metrics ADDR`) so a dashboard can follow a drill as it happens.
//!
//! It only watches: the load generator shows it each request as it leaves and ends (through
//! `load::live::Observer`), the timeline tells it when a fault window opens and closes, and it
//! keeps counters and histograms from that. Nothing here feeds the verdict; the reports are
//! still computed from the full records at the end. Phases are those of the reports: a request
//! belongs to the phase of its intended send time ([`crate::measure::Timeline`]).

mod families;
mod server;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

use crate::experiment::{Action, Experiment};
use crate::load::live::Observer;
use crate::load::{Outcome, RequestRecord};
use crate::measure::{FaultWindow, Phase, Timeline};

pub use families::PHASE_LABELS;
use families::{Families, FaultLabels, StreamMetrics};
pub use server::{Exporter, DEFAULT_LINGER};

/// A send later than this against its schedule is counted as late: the reports' definition.
pub const LATE_AFTER: Duration = crate::measure::LATE_AFTER;

/// One fault window as the exporter knows it: open while `end` is `None`.
struct Window {
    labels: FaultLabels,
    start: Duration,
    end: Option<Duration>,
}

/// The live state of one run, shared by the load generator's threads, the timeline and the
/// HTTP endpoint.
pub struct Live {
    registry: Registry,
    families: Families,
    streams: HashMap<Arc<str>, StreamMetrics>,
    warmup: Duration,
    windows: Mutex<Vec<Window>>,
    /// The phases as the windows so far make them; rebuilt at each open and close (a few per
    /// run), read at every finished request.
    phases: RwLock<Timeline>,
    /// When the load started; unset before.
    origin: OnceLock<Instant>,
    /// How long the run took, once it is over.
    finished: OnceLock<Duration>,
}

impl Live {
    /// Every series the run will have, created now at zero: the streams' requests by outcome
    /// and phase, and a `fault_active` of 0 for each injection on the timeline, so a rate or a
    /// fault panel has a series from the first scrape on.
    pub fn new(exp: &Experiment, seed: u64) -> Live {
        let mut registry = Registry::with_prefix("faultline");
        let families = Families::register(&mut registry, exp, seed);
        let streams = exp
            .streams
            .iter()
            .map(|s| (Arc::from(s.name.as_str()), families.stream(&s.name)))
            .collect();
        for step in &exp.timeline {
            if let Action::Inject(inj) = &step.action {
                families
                    .faults
                    .get_or_create(&FaultLabels::new(
                        &inj.id,
                        inj.fault.kind(),
                        inj.target.name(),
                    ))
                    .set(0);
            }
        }
        let warmup = exp.measure.warmup.map_or(Duration::ZERO, |w| w.0);
        Live {
            registry,
            families,
            streams,
            warmup,
            windows: Mutex::new(Vec::new()),
            phases: RwLock::new(Timeline::new(&[], Duration::MAX).with_warmup(warmup)),
            origin: OnceLock::new(),
            finished: OnceLock::new(),
        }
    }

    /// The load started at `origin`: elapsed time counts from here.
    pub fn started(&self, origin: Instant) {
        let _ = self.origin.set(origin);
    }

    /// The run is over and its records are collected: the elapsed time stops, `run_finished`
    /// turns 1, and requests abandoned in flight (after an abort) are no longer counted as such.
    pub fn finish(&self) {
        let took = self.origin.get().map_or(Duration::ZERO, Instant::elapsed);
        let _ = self.finished.set(took);
        for s in self.streams.values() {
            s.in_flight.set(0);
        }
        self.families.finished.set(1);
    }

    /// Fault `id` (a `kind` on `target`) is in force from `at`.
    pub fn fault_opened(&self, id: &str, kind: &str, target: &str, at: Duration) {
        let labels = FaultLabels::new(id, kind, target);
        self.families.faults.get_or_create(&labels).set(1);
        self.update_windows(|windows| {
            close(windows, id, at);
            windows.push(Window {
                labels,
                start: at,
                end: None,
            });
        });
    }

    /// Fault `id` was lifted at `at`.
    pub fn fault_closed(&self, id: &str, at: Duration) {
        self.update_windows(|windows| {
            if let Some(labels) = close(windows, id, at) {
                self.families.faults.get_or_create(&labels).set(0);
            }
        });
    }

    fn update_windows(&self, change: impl FnOnce(&mut Vec<Window>)) {
        // A poisoned lock means a panic elsewhere mid-update; the data is still the best there is.
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut windows);
        let as_run: Vec<FaultWindow> = windows
            .iter()
            .map(|w| FaultWindow {
                id: w.labels.id.clone(),
                target: w.labels.target.clone(),
                kind: w.labels.kind.clone(),
                start: w.start,
                // Still open: in force for as long as the run can last.
                end: w.end.unwrap_or(Duration::MAX),
                lift_error: None,
                evidence: None,
            })
            .collect();
        let timeline = Timeline::new(&as_run, Duration::MAX).with_warmup(self.warmup);
        *self.phases.write().unwrap_or_else(|p| p.into_inner()) = timeline;
    }

    /// The phase label of a request intended at `t`.
    fn phase_of(&self, t: Duration) -> usize {
        let phases = self.phases.read().unwrap_or_else(|p| p.into_inner());
        match phases.phase_of(t) {
            None => families::WARMUP,
            Some(Phase::Baseline) => 0,
            Some(Phase::Fault) => 1,
            Some(Phase::Recovery) => 2,
        }
    }

    /// The exposition of every series now, in the OpenMetrics text format when `openmetrics`
    /// (what Prometheus asks for), else the classic Prometheus text format (what a browser or
    /// curl gets).
    pub fn encode(&self, openmetrics: bool) -> String {
        let elapsed = match (self.finished.get(), self.origin.get()) {
            (Some(took), _) => *took,
            (None, Some(origin)) => origin.elapsed(),
            (None, None) => Duration::ZERO,
        };
        self.families.elapsed.set(elapsed.as_secs_f64());
        let mut out = String::new();
        // Writing into a String cannot fail; an error could only come from a metric's own
        // encoder, and then the scrape gets what was written so far.
        let _ = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        out
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("streams", &self.streams.len())
            .field("finished", &self.finished.get())
            .finish_non_exhaustive()
    }
}

/// Closes the open window of `id` at `at`; its labels, if one was open.
fn close(windows: &mut [Window], id: &str, at: Duration) -> Option<FaultLabels> {
    let w = windows
        .iter_mut()
        .find(|w| w.end.is_none() && w.labels.id == id)?;
    w.end = Some(at.max(w.start));
    Some(w.labels.clone())
}

impl Observer for Live {
    fn sent(&self, stream: &str) {
        if let Some(s) = self.streams.get(stream) {
            s.in_flight.inc();
        }
    }

    fn finished(&self, r: &RequestRecord) {
        let Some(s) = self.streams.get(&*r.stream) else {
            return;
        };
        let outcome = Outcome::ALL
            .iter()
            .position(|o| *o == r.outcome)
            .unwrap_or(0);
        s.requests[outcome][self.phase_of(r.intended)].inc();
        if r.outcome == Outcome::Dropped {
            s.dropped.inc();
            return;
        }
        s.in_flight.dec();
        // Like the reports: every sent request has a latency whatever its outcome, and token
        // timing counts for whole answers only (a cut stream's last gap is the cut).
        s.latency.observe(r.latency.as_secs_f64());
        if let Some(lag) = r.send_lag() {
            s.send_lag.observe(lag.as_secs_f64());
            if lag > LATE_AFTER {
                s.late.inc();
            }
        }
        if r.outcome.is_ok() {
            if let Some(t) = r.tokens.ttft {
                s.ttft.observe(t.as_secs_f64());
            }
            for gap in &r.tokens.itl_us {
                s.itl.observe(f64::from(*gap) / 1e6);
            }
        }
    }
}
