//! Request records -> metrics -> verdict.
//!
//! This stage knows nothing about proxies or processes: it reads the records the load generator
//! wrote and a few facts about the run (its length, when faults were active). Every request is
//! placed by its *intended* send time (open loop), so a stall cannot hide by delaying sends.

mod latency;
mod metrics;
pub mod ms;
mod phase;
mod verdict;
mod windows;

#[cfg(test)]
pub(crate) mod testutil;

use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::experiment::{Budgets, MeasureSpec};
use crate::load::record::RequestRecord;

pub use latency::Distribution;
pub use metrics::{
    ClassOrder, Episode, Metrics, PhaseMetrics, Phases, ServedShare, SteadyState, LATE_AFTER,
};
pub use phase::{Phase, Timeline};
pub use verdict::{percent_text, Verdict, VerdictRow};
pub use windows::{Judgement, Settling, WindowStat};

/// One fault as it really happened. Offsets are from the run's start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    pub id: String,
    /// What the fault was applied to (a proxy, a service, a device).
    pub target: String,
    /// The fault type, e.g. `http_error`.
    pub kind: String,
    #[serde(
        rename = "start_ms",
        serialize_with = "ms::serialize",
        deserialize_with = "ms::deserialize"
    )]
    pub start: Duration,
    /// The lift time, or the run's end if it was still active then.
    #[serde(
        rename = "end_ms",
        serialize_with = "ms::serialize",
        deserialize_with = "ms::deserialize"
    )]
    pub end: Duration,
    /// Set when the fault could not be lifted: it stayed in force to `end`, the run's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lift_error: Option<String>,
    /// What showed the fault acted; absent where the run cannot tell (toxics, leaks, agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<crate::fault::Evidence>,
}

/// Fills in how many responses reached the clients marked with each HTTP fault's id, so a
/// window's evidence says both what the proxy did and what the clients saw of it.
pub fn count_client_marks(windows: &mut [FaultWindow], records: &[RequestRecord]) {
    for w in windows {
        if let Some(crate::fault::Evidence::Requests {
            seen_by_clients, ..
        }) = &mut w.evidence
        {
            // The proxy sends an id that is not a valid header value in backend characters.
            let sent = crate::fault::action::backend_id(&w.id);
            let seen = records
                .iter()
                .filter(|r| {
                    r.faults.as_deref().is_some_and(|f| {
                        f.split(',')
                            .map(str::trim)
                            .any(|id| id == w.id || id == sent)
                    })
                })
                .count();
            *seen_by_clients = Some(seen as u64);
        }
    }
}

/// A service process that exited on its own during the run (not through a fault or the
/// teardown). Offsets are from the run's start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceExit {
    pub service: String,
    #[serde(
        rename = "at_ms",
        serialize_with = "ms::serialize",
        deserialize_with = "ms::deserialize"
    )]
    pub at: Duration,
    /// How it ended: "was killed by signal 9 (SIGKILL)", "exited with status 1".
    pub how: String,
}

/// What the orchestrator knows about the run, besides the records.
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    pub duration: Duration,
    pub windows: Vec<FaultWindow>,
    /// The load streams, in the experiment's order; the per-stream metrics follow it.
    pub streams: Vec<String>,
    /// How long the machine's CPUs were all busy (at least 95%) during the run, of how long
    /// they were watched; `None` where that could not be read.
    pub cpu_saturated: Option<(Duration, Duration)>,
    /// The load streams' rate steps and ramps, for the report.
    pub rate_changes: Vec<crate::load::rates::RateMark>,
    /// Services that died on their own during the run, in the order they did.
    pub service_exits: Vec<ServiceExit>,
    /// What the kernel granted the load's threads (the least of all segments' after a merge);
    /// `None` where it is not known.
    pub load_scheduling: Option<crate::load::Scheduling>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub overall: Metrics,
    pub streams: IndexMap<String, Metrics>,
    pub verdict: Verdict,
    /// Carried from the run's facts, for the reports: how far the send lag can be trusted
    /// depends on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_scheduling: Option<crate::load::Scheduling>,
}

/// Computes the metrics of the whole run and of each stream, and judges the budgets.
pub fn evaluate(
    records: &[RequestRecord],
    facts: &RunFacts,
    budgets: &Budgets,
    spec: &MeasureSpec,
) -> Evaluation {
    let warmup = spec.warmup.map_or(Duration::ZERO, |w| w.0);
    let timeline = phase::Timeline::new(&facts.windows, facts.duration).with_warmup(warmup);

    // Streams in the experiment's order, then any the records or budgets name that the facts
    // did not, so no record and no stream budget goes unmeasured.
    let mut by_stream: IndexMap<String, Vec<&RequestRecord>> = facts
        .streams
        .iter()
        .map(|s| (s.clone(), Vec::new()))
        .collect();
    for r in records {
        match by_stream.get_mut(&*r.stream) {
            Some(v) => v.push(r),
            None => {
                by_stream.insert(r.stream.to_string(), vec![r]);
            }
        }
    }
    for name in budgets.streams.keys() {
        by_stream.entry(name.clone()).or_default();
    }

    let all: Vec<&RequestRecord> = records.iter().collect();
    let overall = metrics::compute(&all, &timeline, spec);
    let streams: IndexMap<String, Metrics> = by_stream
        .into_iter()
        .map(|(name, recs)| {
            let m = metrics::compute(&recs, &timeline, spec);
            (name, m)
        })
        .collect();
    let mut verdict = verdict::judge(&overall, &streams, budgets);
    verdict::judge_evidence(&facts.windows, budgets, &mut verdict);
    if let Some((saturated, observed)) = facts.cpu_saturated {
        // A tenth of the run is enough to distort percentiles and failover windows.
        if !observed.is_zero() && saturated.as_secs_f64() >= observed.as_secs_f64() * 0.1 {
            verdict.warnings.push(format!(
                "the machine was the limit: its CPUs were saturated (at least 95% busy) for {} of \
                 the {} watched, so latencies and send lag may include faultline's own queueing",
                crate::units::human_duration(saturated),
                crate::units::human_duration(observed)
            ));
        }
    }
    for exit in &facts.service_exits {
        verdict.warnings.push(format!(
            "service `{}` exited on its own at {} (it {}): what was measured after that \
             includes a dead service, whatever the budgets say",
            exit.service,
            crate::units::human_duration(exit.at),
            exit.how
        ));
    }
    for w in &facts.windows {
        if let Some(why) = &w.lift_error {
            verdict.warnings.push(format!(
                "fault `{}` on {} could not be lifted ({why}): it stayed in force to the end of \
                 the run, so no recovery was judged after it",
                w.id, w.target
            ));
        }
    }
    Evaluation {
        overall,
        streams,
        verdict,
        load_scheduling: facts.load_scheduling,
    }
}

#[cfg(test)]
mod tests;
