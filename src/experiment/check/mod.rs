//! Cross-checks that no single field can make: names that must resolve, steps that must fit the
//! timeline, listeners that must not collide, budgets that the run must be able to measure.
//! Checks go on after the first problem, so one run reports them all.

mod action;
mod budgets;
mod services;
mod streams;
mod timeline;

use std::path::Path;

use serde_saphyr::Location;

use super::schema::ExperimentFile;
use super::{Experiment, ExperimentError, Lookups, Problem, Service};

pub(super) struct Checker<'a> {
    path: &'a Path,
    problems: Vec<Problem>,
    lookups: Lookups,
}

impl Checker<'_> {
    /// Whether names are resolved and variables read here (else only their form is checked).
    fn looks_up(&self) -> bool {
        self.lookups == Lookups::Here
    }

    fn report(&mut self, loc: Location, message: impl Into<String>) {
        self.problems.push(Problem::at(self.path, loc, message));
    }
}

pub(super) fn check(
    path: &Path,
    source: String,
    file: ExperimentFile,
    lookups: Lookups,
) -> Result<Experiment, ExperimentError> {
    let mut c = Checker {
        path,
        problems: Vec::new(),
        lookups,
    };

    if file.version.value != 1 {
        c.report(
            file.version.referenced,
            format!(
                "unsupported version {}; this faultline reads version 1",
                file.version.value
            ),
        );
    }
    let services = services::services(&mut c, &file);
    services::listeners(&mut c, &file);
    let proxies = services::proxies(&mut c, &file);
    services::toxiproxy(&mut c, &file);
    services::hosts(&mut c, &file);
    let mut streams = streams::streams(&mut c, &file);
    let (timeline, end) = timeline::timeline(&mut c, &file, &services);
    // Each stream carries its own rate changes, in time order, so the load generator needs
    // nothing but the stream to plan its schedule.
    for step in &timeline {
        if let super::Action::Rate(change) = &step.action {
            if let Some(s) = streams.iter_mut().find(|s| s.name == change.stream) {
                s.rate_changes.push((step.at, change.clone()));
            }
        }
    }
    budgets::measurable(&mut c, &file.expect, &file, &timeline, end);
    budgets::warmup(&mut c, &file.measure, &timeline, end);
    if let Some(abort) = &file.abort_if {
        if abort.sustained.0.is_zero() {
            c.report(
                file.version.referenced,
                "`abort_if.for` must be longer than zero",
            );
        }
    }

    if !c.problems.is_empty() {
        return Err(ExperimentError {
            problems: c.problems,
        });
    }
    Ok(Experiment {
        path: path.to_path_buf(),
        source,
        name: file.name,
        description: file.description,
        seed: file.seed.unwrap_or(0),
        services: services
            .into_iter()
            .map(|(name, spec)| Service { name, spec })
            .collect(),
        proxies,
        hosts: file
            .hosts
            .into_iter()
            .map(|(name, h)| (name, h.value))
            .collect(),
        toxiproxy: file.toxiproxy.map(|t| t.value),
        streams,
        timeline,
        end,
        budgets: file.expect.value,
        measure: file.measure.value,
        abort_if: file.abort_if,
        max_fault_duration: file.max_fault_duration.value.0,
    })
}
