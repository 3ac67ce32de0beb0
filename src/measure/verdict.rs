//! Metrics + budgets -> verdict: one row per budget set, each saying in words why it passed or
//! failed.

use indexmap::IndexMap;
use serde::Serialize;

use super::latency::Distribution;
use super::metrics::{ClassOrder, Metrics, PhaseMetrics, SteadyState};
use super::windows::{Judgement, Settling, SHARE_EPSILON};
use crate::experiment::Budgets;
use crate::fault::Evidence;
use crate::measure::FaultWindow;
use crate::units::{human_duration, Percent};

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// Every row passed (true when no budget was set).
    pub passed: bool,
    pub rows: Vec<VerdictRow>,
    /// What the reader must know beside the rows (a fault that could not be lifted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerdictRow {
    /// The budget's key, e.g. `max_error_rate`; `min_served_by.<backend>` for served-by rows.
    pub budget: String,
    /// `all`, or `stream <name>`.
    pub scope: String,
    pub limit: String,
    pub measured: String,
    pub passed: bool,
    /// Why, in words.
    pub detail: String,
}

/// A share as a percentage with at most 2 decimals: `0.42%`, `1%`, `100%`.
pub fn percent_text(fraction: f64) -> String {
    let s = format!("{:.2}", fraction * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

pub(crate) fn judge(
    overall: &Metrics,
    streams: &IndexMap<String, Metrics>,
    budgets: &Budgets,
) -> Verdict {
    let mut rows = Vec::new();
    scope_rows("all", false, overall, budgets, &mut rows);
    for (name, stream_budgets) in &budgets.streams {
        let scope = format!("stream {name}");
        // `evaluate` measures every stream a budget names, even one without records.
        if let Some(m) = streams.get(name) {
            scope_rows(&scope, true, m, &stream_budgets.value, &mut rows);
        }
    }
    Verdict {
        passed: rows.iter().all(|r| r.passed),
        rows,
        warnings: Vec::new(),
    }
}

/// Warns of every fault the run saw do nothing, and judges `faults_must_act`: a drill whose
/// fault never reached the system under test proves nothing, whatever its other rows say.
pub(crate) fn judge_evidence(windows: &[FaultWindow], budgets: &Budgets, verdict: &mut Verdict) {
    let observed: Vec<(&FaultWindow, &Evidence)> = windows
        .iter()
        .filter_map(|w| w.evidence.as_ref().map(|e| (w, e)))
        .collect();
    let idle: Vec<String> = observed
        .iter()
        .filter(|(_, e)| !e.acted())
        .map(|(w, e)| {
            let hint = match e {
                Evidence::Requests { .. } | Evidence::Connections { .. } => {
                    ": is the proxy on the path to the system under test?"
                }
                Evidence::Process { .. } => ": did the signal reach the service's process?",
                Evidence::Processes { .. } => ": does the agent's match name a running process?",
                Evidence::GpuMemory { .. } => ": was there GPU memory to take?",
            };
            format!("fault `{}` on {} {}{hint}", w.id, w.target, e.text())
        })
        .collect();
    verdict.warnings.extend(idle.iter().cloned());
    if budgets.faults_must_act != Some(true) {
        return;
    }
    let acted = observed.len() - idle.len();
    let detail = if observed.is_empty() {
        "no fault of this run has an effect faultline can observe (Toxiproxy-server toxics \
         and leaks are not counted)"
            .to_string()
    } else if idle.is_empty() {
        let list: Vec<String> = observed
            .iter()
            .map(|(w, e)| format!("`{}` {}", w.id, e.text()))
            .collect();
        list.join("; ")
    } else {
        idle.join("; ")
    };
    verdict.rows.push(VerdictRow {
        budget: "faults_must_act".into(),
        scope: "all".into(),
        limit: "every fault acts".into(),
        measured: format!("{acted} of {} acted", observed.len()),
        passed: idle.is_empty(),
        detail,
    });
    verdict.passed = verdict.rows.iter().all(|r| r.passed);
}

/// A share against its limit. Equal passes; the epsilon keeps that true when the limit was
/// written as a decimal (`0.1%`) whose binary value sits a hair off the measured fraction.
fn share_within(measured: f64, limit: Percent) -> bool {
    measured <= limit.fraction() + SHARE_EPSILON
}

/// `per_stream` marks a stream's own budgets, whose error budgets are isolation budgets.
fn scope_rows(scope: &str, per_stream: bool, m: &Metrics, b: &Budgets, rows: &mut Vec<VerdictRow>) {
    let mut push = |budget: &str, limit: String, measured: String, passed: bool, detail| {
        rows.push(VerdictRow {
            budget: budget.to_string(),
            scope: scope.to_string(),
            limit,
            measured,
            passed,
            detail,
        });
    };
    // Error budgets judge the fault phase, or the whole run when nothing was injected (a drill
    // that only watches a system must not pass by default).
    let (fault, _) = m.judged();

    if let Some(limit) = b.failover_within {
        let (measured, passed, detail) = match m.failover {
            None => (
                "no fault".to_string(),
                false,
                "no fault window was recorded, so there was nothing to fail over from".to_string(),
            ),
            Some(s) => match m.steady_state.unsteady_reason() {
                Some(reason) => (s.text(), false, reason),
                None => (
                    s.text(),
                    matches!(s, Settling::After(d) if d <= limit.0),
                    settle_detail(m, Side::Failover),
                ),
            },
        };
        push(
            "failover_within",
            limit.to_string(),
            measured,
            passed,
            detail,
        );
    }
    // A stream's own error budgets are isolation budgets ("this model must not notice that
    // one's outage"): they prove nothing unless the stream was healthy before the fault.
    let unsteady = per_stream
        .then(|| m.steady_state.unsteady_reason())
        .flatten();
    if let Some(limit) = b.max_error_rate {
        let (passed, detail) = match &unsteady {
            Some(reason) => (false, reason.clone()),
            None => (share_within(fault.error_rate, limit), errors_detail(m)),
        };
        push(
            "max_error_rate",
            limit.to_string(),
            percent_text(fault.error_rate),
            passed,
            detail,
        );
    }
    if let Some(limit) = b.max_errors {
        let (passed, detail) = match &unsteady {
            Some(reason) => (false, reason.clone()),
            None => (fault.errors <= limit, errors_detail(m)),
        };
        push(
            "max_errors",
            limit.to_string(),
            fault.errors.to_string(),
            passed,
            detail,
        );
    }
    if let Some(limit) = b.max_truncated {
        let in_phase = |p: &PhaseMetrics| p.errors_by_class.get("truncated").copied().unwrap_or(0);
        let detail = format!(
            "{} reached clients over the whole run (baseline {}, fault {}, recovery {})",
            plural(m.truncated, "truncated response"),
            in_phase(&m.phases.baseline),
            in_phase(fault),
            in_phase(&m.phases.recovery),
        );
        push(
            "max_truncated",
            limit.to_string(),
            m.truncated.to_string(),
            m.truncated <= limit,
            detail,
        );
    }
    if let Some(limit) = b.max_unverified {
        let w = &m.whole_run;
        let detail = format!(
            "{} of {} successful responses over the whole run could not be shown whole by any \
             signal (no verifiable text, no usage count, no pinned length)",
            w.unverified, w.ok
        );
        push(
            "max_unverified",
            limit.to_string(),
            w.unverified.to_string(),
            w.unverified <= limit,
            detail,
        );
    }
    for (budget, limit, quantile) in [
        ("max_p50_latency", b.max_p50_latency, Quantile::P50),
        ("max_p99_latency", b.max_p99_latency, Quantile::P99),
    ] {
        let Some(limit) = limit else { continue };
        let (phase, during) = m.judged();
        let (measured, passed, detail) = match phase.latency {
            None => (
                "n/a".to_string(),
                true,
                format!("no request was sent {during}, so there is no latency to judge"),
            ),
            Some(d) => {
                let (value, name) = (quantile.of(&d), quantile.name());
                let dropped = phase.errors_by_class.get("dropped").copied().unwrap_or(0);
                let unsent = if dropped > 0 {
                    format!(
                        "; {} never left and {} not included",
                        plural(dropped, "dropped request"),
                        if dropped == 1 { "is" } else { "are" }
                    )
                } else {
                    String::new()
                };
                let detail = format!(
                    "{name} of {} sent requests {during}, failures at their full wait \
                     (max {}){unsent}",
                    d.count,
                    human_duration(d.max)
                );
                (human_duration(value), value <= limit.0, detail)
            }
        };
        push(budget, limit.to_string(), measured, passed, detail);
    }
    // LLM serving SLOs: the same phase rule as latency, over the successful streams (a cut
    // stream's timing is the cut's, and its failure is counted by the error budgets).
    for (budget, limit, quantile, what) in [
        ("max_p50_ttft", b.max_p50_ttft, Quantile::P50, Token::Ttft),
        ("max_p99_ttft", b.max_p99_ttft, Quantile::P99, Token::Ttft),
        ("max_p50_itl", b.max_p50_itl, Quantile::P50, Token::Itl),
        ("max_p99_itl", b.max_p99_itl, Quantile::P99, Token::Itl),
        ("max_p99_tpot", b.max_p99_tpot, Quantile::P99, Token::Tpot),
    ] {
        let Some(limit) = limit else { continue };
        let (phase, during) = m.judged();
        let (dist, of) = match what {
            Token::Ttft => (phase.ttft, "first tokens of successful streams"),
            Token::Itl => (phase.itl, "gaps between the tokens of successful streams"),
            Token::Tpot => (phase.tpot, "successful streams' times per output token"),
        };
        let name = quantile.name();
        let (measured, passed, detail) = match dist {
            None => (
                "n/a".to_string(),
                false,
                format!(
                    "no successful stream {during} carried the tokens to measure it (are the \
                     load streams `stream: true`, with content events?)"
                ),
            ),
            Some(d) => {
                let value = quantile.of(&d);
                let detail = format!(
                    "{name} of {} {of} {during} (max {})",
                    d.count,
                    human_duration(d.max)
                );
                (human_duration(value), value <= limit.0, detail)
            }
        };
        push(budget, limit.to_string(), measured, passed, detail);
    }
    if let Some(limit) = b.recover_within {
        let (measured, passed, detail) = match m.recovery {
            None => (
                "n/a".to_string(),
                false,
                "no time followed a fault window, so recovery could not be seen".to_string(),
            ),
            Some(s) => match m.steady_state.unsteady_reason() {
                Some(reason) => (s.text(), false, reason),
                None => (
                    s.text(),
                    matches!(s, Settling::After(d) if d <= limit.0),
                    settle_detail(m, Side::Recovery),
                ),
            },
        };
        push(
            "recover_within",
            limit.to_string(),
            measured,
            passed,
            detail,
        );
    }
    if let Some(mins) = &b.min_served_by {
        let (phase, during) = m.judged();
        for (backend, min) in mins {
            let served = phase.served_by.get(backend);
            let share = served.map_or(0.0, |s| s.share);
            let detail = if phase.ok == 0 {
                format!("no request succeeded {during}")
            } else {
                format!(
                    "{backend} served {} of {} successful requests {during} ({}){}",
                    served.map_or(0, |s| s.ok),
                    phase.ok,
                    served_list(phase),
                    after_lift_note(phase)
                )
            };
            push(
                &format!("min_served_by.{backend}"),
                min.to_string(),
                percent_text(share),
                share + SHARE_EPSILON >= min.fraction(),
                detail,
            );
        }
    }
}

#[derive(Clone, Copy)]
enum Token {
    Ttft,
    Itl,
    Tpot,
}

#[derive(Clone, Copy)]
enum Quantile {
    P50,
    P99,
}

impl Quantile {
    fn name(self) -> &'static str {
        match self {
            Quantile::P50 => "p50",
            Quantile::P99 => "p99",
        }
    }

    fn of(self, d: &Distribution) -> std::time::Duration {
        match self {
            Quantile::P50 => d.p50,
            Quantile::P99 => d.p99,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Failover,
    Recovery,
}

/// "3 of 120 requests failed while a fault was active (2 truncated, 1 http_error)".
fn errors_detail(m: &Metrics) -> String {
    let (p, span) = m.judged();
    if p.requests == 0 {
        return format!("no requests were scheduled {span} (0%)");
    }
    let classes = p.error_classes(ClassOrder::MostFirst);
    let classes = if classes.is_empty() {
        String::new()
    } else {
        format!(" ({classes})")
    };
    format!(
        "{} of {} requests failed {span}{classes}",
        p.errors, p.requests
    )
}

/// "1 truncated response", "2 truncated responses".
pub(super) fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// "primary 40, fallback 10".
fn served_list(p: &PhaseMetrics) -> String {
    let list: Vec<String> = p
        .served_by
        .iter()
        .map(|(name, s)| format!("{name} {}", s.ok))
        .collect();
    list.join(", ")
}

/// "; first byte only after their fault was lifted: primary 25 of 25 (...)", or "" when every
/// success began to answer inside its fault episode.
fn after_lift_note(p: &PhaseMetrics) -> String {
    let late: Vec<String> = p
        .served_by
        .iter()
        .filter(|(_, s)| s.answered_after_lift > 0)
        .map(|(name, s)| format!("{name} {} of {}", s.answered_after_lift, s.ok))
        .collect();
    if late.is_empty() {
        return String::new();
    }
    format!(
        "; first byte only after their fault was lifted: {} (held past the window's edge: by a \
         queue before the backends, such as a saturated gateway, or by a slow first token)",
        late.join(", ")
    )
}

fn threshold_text(s: &SteadyState) -> String {
    if s.baseline_requests == 0 {
        format!(
            "{} (no baseline requests: steady state taken as 100%, minus {} tolerance)",
            percent_text(s.threshold),
            percent_text(s.tolerance)
        )
    } else {
        format!(
            "{} (steady state {} minus {} tolerance)",
            percent_text(s.threshold),
            percent_text(s.success_rate),
            percent_text(s.tolerance)
        )
    }
}

/// Explains the worst episode's failover or recovery.
fn settle_detail(m: &Metrics, side: Side) -> String {
    let judgements: Vec<&Judgement> = m
        .episodes
        .iter()
        .filter_map(|e| match side {
            Side::Failover => Some(&e.failover),
            Side::Recovery => e.recovery.as_ref(),
        })
        .collect();
    let rank = |j: &Judgement| match j.steady {
        Settling::After(d) => d.as_nanos(),
        Settling::Never => u128::MAX,
    };
    // The first of the worst, so ties name the earliest episode.
    let Some(worst) = judgements
        .iter()
        .copied()
        .reduce(|a, b| if rank(b) > rank(a) { b } else { a })
    else {
        return String::new();
    };

    let mut text = String::new();
    if judgements.len() > 1 {
        let what = match side {
            Side::Failover => "fault episodes",
            Side::Recovery => "recoveries",
        };
        text.push_str(&format!("worst of {} {what}; ", judgements.len()));
    }
    let (from, until) = (human_duration(worst.from), human_duration(worst.until));
    let (subject, since, ended) = match side {
        Side::Failover => (
            format!("fault {from}–{until}"),
            "injection",
            "the fault ended".to_string(),
        ),
        Side::Recovery => (
            format!("after the lift at {from}"),
            "the lift",
            until.clone(),
        ),
    };
    let threshold = threshold_text(&m.steady_state);
    let window = human_duration(m.steady_state.window);
    if worst.windows.is_empty() {
        text.push_str(&format!(
            "{subject}: no requests were scheduled, so a steady state could not be seen"
        ));
        return text;
    }
    match worst.steady {
        Settling::After(d) => {
            let from = if d.is_zero() {
                since.to_string()
            } else {
                format!("{} after {since}", human_duration(d))
            };
            text.push_str(&format!(
                "{subject}: success at or above {threshold} in every {window} window from \
                 {from} on"
            ))
        }
        Settling::Never => text.push_str(&format!(
            "{subject}: success did not stay at or above {threshold} before {ended}"
        )),
    }
    if let Some(w) = worst.last_below() {
        text.push_str(&format!(
            "; last window below: {}–{}, {} of {} ok",
            human_duration(w.start),
            human_duration(w.end),
            w.ok,
            w.requests
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_have_at_most_two_decimals() {
        assert_eq!(percent_text(0.0042), "0.42%");
        assert_eq!(percent_text(0.01), "1%");
        assert_eq!(percent_text(1.0), "100%");
        assert_eq!(percent_text(0.0), "0%");
        assert_eq!(percent_text(1.0 / 3.0), "33.33%");
        assert_eq!(percent_text(0.105), "10.5%");
    }
}
