//! Budgets: each must be measurable by the run as planned.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::Checker;
use crate::experiment::schema::{Budgets, ExperimentFile, MeasureSpec};
use crate::experiment::{Action, Step};
use crate::units::human_duration;

/// `measure.warmup` must end before the first fault (the baseline is what follows it) and
/// before the run does.
pub(super) fn warmup(
    c: &mut Checker,
    measure: &Spanned<MeasureSpec>,
    timeline: &[Step],
    end: Duration,
) {
    let Some(warmup) = measure.value.warmup else {
        return;
    };
    let first_inject = timeline
        .iter()
        .find(|s| matches!(s.action, Action::Inject(_)))
        .map(|s| s.at);
    match first_inject {
        Some(first) if warmup.0 >= first => c.report(
            measure.referenced,
            format!(
                "`measure.warmup` of {warmup} reaches the first fault at {}: the baseline is \
                 measured between the two, so end the warm-up earlier or inject later",
                human_duration(first)
            ),
        ),
        None if end != Duration::MAX && warmup.0 >= end => c.report(
            measure.referenced,
            format!(
                "`measure.warmup` of {warmup} lasts the whole run of {}: nothing would be measured",
                human_duration(end)
            ),
        ),
        _ => {}
    }
}

/// A budget the run cannot measure is a mistake in the file, not a pass.
pub(super) fn measurable(
    c: &mut Checker,
    budgets: &Spanned<Budgets>,
    file: &ExperimentFile,
    timeline: &[Step],
    end: Duration,
) {
    let loc = budgets.referenced;
    let b = &budgets.value;
    let first_inject = timeline
        .iter()
        .find(|s| matches!(s.action, Action::Inject(_)))
        .map(|s| s.at);
    if b.faults_must_act == Some(true) && first_inject.is_none() {
        c.report(
            loc,
            "`faults_must_act` needs a fault: the timeline injects none",
        );
    }
    if b.failover_within.is_some() && first_inject.is_none() {
        c.report(
            loc,
            "`failover_within` needs a fault: the timeline injects none",
        );
    }
    if b.recover_within.is_some() {
        let last_lift = timeline
            .iter()
            .filter(|s| matches!(s.action, Action::Lift(_)))
            .map(|s| s.at)
            .max();
        match last_lift {
            None => c.report(
                loc,
                "`recover_within` needs a `lift` step: the timeline never lifts its faults",
            ),
            Some(at) if at >= end => c.report(
                loc,
                "`recover_within` needs time after the last lift, but the run ends there",
            ),
            Some(_) => {}
        }
    }
    if let Some(first) = first_inject {
        if first.is_zero() && (b.failover_within.is_some() || b.recover_within.is_some()) {
            c.report(loc, "failover and recovery are judged against a baseline: inject the first fault after 0s");
        }
    }
    for (name, sb) in &b.streams {
        if !file.load.contains_key(name) {
            let known: Vec<&str> = file.load.keys().map(String::as_str).collect();
            c.report(
                sb.referenced,
                format!(
                    "budgets for unknown load stream `{name}`; streams: {}",
                    known.join(", ")
                ),
            );
        }
        if !sb.value.streams.is_empty() {
            c.report(sb.referenced, "stream budgets cannot nest `streams:`");
        }
        if sb.value.faults_must_act.is_some() {
            c.report(
                sb.referenced,
                "`faults_must_act` judges the faults, not a stream: set it at the top of `expect:`",
            );
        }
        measurable(c, sb, file, timeline, end);
    }
}
