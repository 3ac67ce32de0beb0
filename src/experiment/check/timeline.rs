//! The timeline: steps that fit the run, faults that name real targets, lifts that name real
//! faults, and no fault left in longer than the run allows.

use std::collections::HashMap;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::Checker;
use crate::experiment::schema::{ExperimentFile, RateStepSpec, StepSpec};
use crate::experiment::{
    Action, FaultTarget, Injection, LiftTarget, RateChange, ServiceSpec, Step,
};
use crate::fault::{FaultScope, FaultSpec};
use crate::units::human_duration;

pub(super) fn timeline(
    c: &mut Checker,
    file: &ExperimentFile,
    services: &[(String, ServiceSpec)],
) -> (Vec<Step>, Duration) {
    let ends: Vec<&Spanned<StepSpec>> = file
        .timeline
        .iter()
        .filter(|s| s.value.end.as_ref().is_some_and(|e| e.value))
        .collect();
    let end = match ends.as_slice() {
        [one] => one.value.at.value.0,
        [] => {
            let loc = file
                .timeline
                .first()
                .map(|s| s.referenced)
                .unwrap_or(file.version.referenced);
            c.report(loc, "the timeline needs a final step `{ at: <time>, end: true }` that says when the run ends");
            Duration::MAX
        }
        [_, second, ..] => {
            c.report(
                second.referenced,
                "the timeline has more than one `end` step",
            );
            ends[0].value.at.value.0
        }
    };

    let mut steps = Vec::new();
    let mut ids: HashMap<String, Location> = HashMap::new();
    let mut lifts: Vec<(Spanned<String>, Duration)> = Vec::new();
    let mut injected: Vec<(String, Duration, Location)> = Vec::new();
    for step in &file.timeline {
        let s = &step.value;
        let at = s.at.value.0;
        let given = [
            s.inject.is_some(),
            s.lift.is_some(),
            s.end.is_some(),
            s.rate.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            c.report(
                step.referenced,
                "a timeline step needs exactly one of `inject`, `lift`, `rate` or `end`",
            );
            continue;
        }
        if at > end {
            c.report(
                s.at.referenced,
                format!(
                    "this step at {} is past the end of the run at {}",
                    s.at.value,
                    human_duration(end)
                ),
            );
        }
        if let Some(end_flag) = &s.end {
            if !end_flag.value {
                c.report(
                    end_flag.referenced,
                    "`end` can only be `true`; leave the step out instead",
                );
            } else {
                steps.push(Step {
                    at,
                    action: Action::End,
                });
            }
        } else if let Some(rate) = &s.rate {
            if let Some(change) = rate_change(c, rate, file, at, end) {
                steps.push(Step {
                    at,
                    action: Action::Rate(change),
                });
            }
        } else if let Some(lift) = &s.lift {
            lifts.push((lift.clone(), at));
            let target = if lift.value == "all" {
                LiftTarget::All
            } else {
                LiftTarget::Fault(lift.value.clone())
            };
            steps.push(Step {
                at,
                action: Action::Lift(target),
            });
        } else if let Some(inject) = &s.inject {
            let inj = &inject.value;
            let problems_before = c.problems.len();
            let Some(target) = fault_target(c, inject, file, services) else {
                continue;
            };
            check_fault(c, &inj.fault);
            let id = match &inj.id {
                Some(id) => id.value.clone(),
                None => format!("{}/{}", target.name(), inj.fault.value.kind()),
            };
            let action = match super::action::build(&id, &target, &inj.fault.value, file) {
                Ok(action) => action,
                Err(why) => {
                    // The target checks above explain most mismatches already; say it once.
                    if c.problems.len() == problems_before {
                        c.report(inj.fault.referenced, why);
                    }
                    continue;
                }
            };
            let id_loc = inj
                .id
                .as_ref()
                .map(|i| i.referenced)
                .unwrap_or(inject.referenced);
            injected.push((id.clone(), at, inject.referenced));
            if let Some(first) = ids.insert(id.clone(), id_loc) {
                c.report(
                    id_loc,
                    format!("fault id `{id}` is already used at line {}; give this injection its own `id:`", first.line()),
                );
            }
            steps.push(Step {
                at,
                action: Action::Inject(Box::new(Injection {
                    id: id.clone(),
                    target,
                    fault: inj.fault.value.clone(),
                    action,
                })),
            });
            if let Some(d) = &inj.duration {
                let lift_at = at + d.value.0;
                if lift_at > end {
                    c.report(
                        d.referenced,
                        format!(
                            "the fault would be lifted at {}, after the end of the run",
                            human_duration(lift_at)
                        ),
                    );
                }
                steps.push(Step {
                    at: lift_at,
                    action: Action::Lift(LiftTarget::Fault(id)),
                });
            }
        }
    }
    for (lift, _) in &lifts {
        if lift.value != "all" && !ids.contains_key(&lift.value) {
            let mut known: Vec<&str> = ids.keys().map(String::as_str).collect();
            known.sort_unstable();
            c.report(
                lift.referenced,
                format!(
                    "`lift: {}` names no injected fault; use `all` or one of: {}",
                    lift.value,
                    known.join(", ")
                ),
            );
        }
    }
    // Stable: steps at the same time keep file order, and `end` sorts last among them.
    steps.sort_by_key(|s| (s.at, matches!(s.action, Action::End)));
    check_fault_durations(
        c,
        &steps,
        &injected,
        end,
        file.max_fault_duration.value.0,
        file.max_fault_duration.referenced,
    );
    (steps, end)
}

/// A `rate:` step: a stream the file declares, and a ramp that ends within the run.
fn rate_change(
    c: &mut Checker,
    rate: &Spanned<RateStepSpec>,
    file: &ExperimentFile,
    at: Duration,
    end: Duration,
) -> Option<RateChange> {
    let r = &rate.value;
    let over = r.over.as_ref().map_or(Duration::ZERO, |o| o.value.0);
    if let Some(o) = &r.over {
        let until = at.saturating_add(over);
        if until > end {
            c.report(
                o.referenced,
                format!(
                    "this ramp would end at {}, after the end of the run at {}",
                    human_duration(until),
                    human_duration(end)
                ),
            );
        }
    }
    if !file.load.contains_key(&r.stream.value) {
        let known: Vec<&str> = file.load.keys().map(String::as_str).collect();
        c.report(
            r.stream.referenced,
            format!(
                "`rate` names no load stream `{}`; streams: {}",
                r.stream.value,
                known.join(", ")
            ),
        );
        return None;
    }
    Some(RateChange {
        stream: r.stream.value.clone(),
        to: r.to,
        over,
    })
}

fn check_fault(c: &mut Checker, fault: &Spanned<FaultSpec>) {
    match &fault.value {
        FaultSpec::HostProcess(p) => {
            if let Err(why) = p.target() {
                c.report(fault.referenced, why);
            }
        }
        FaultSpec::GpuMemoryPressure(g) => {
            if let Err(why) = g.to_pressure() {
                c.report(fault.referenced, format!("gpu_memory_pressure: {why}"));
            }
        }
        FaultSpec::Toxic(t) => {
            let known = t.kind.attributes();
            for (name, value) in &t.attributes {
                if !known.contains(&name.as_str()) {
                    c.report(
                        fault.referenced,
                        format!(
                            "toxic `{}` has no attribute `{name}`; it takes {}",
                            t.kind.as_str(),
                            known.join(", ")
                        ),
                    );
                }
                if *value < 0 {
                    c.report(
                        fault.referenced,
                        format!("toxic attribute `{name}` must not be negative"),
                    );
                }
            }
            if !(0.0..=1.0).contains(&t.toxicity) {
                c.report(
                    fault.referenced,
                    "`toxicity` is a share between 0.0 and 1.0",
                );
            }
        }
        FaultSpec::TruncateStream(t) if t.after_bytes.is_some() && t.after_events.is_some() => {
            c.report(
                fault.referenced,
                "truncate_stream takes `after_bytes` or `after_events`, not both",
            );
        }
        FaultSpec::HttpError(e) => {
            for (name, value) in &e.headers {
                if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    c.report(
                        fault.referenced,
                        format!("`{name}` is not a valid HTTP header name"),
                    );
                }
                if hyper::header::HeaderValue::from_str(value).is_err() {
                    c.report(
                        fault.referenced,
                        format!("the value of header `{name}` is not a valid HTTP header value"),
                    );
                }
            }
            if let Some(b) = e.burst {
                if b.on.0.is_zero() {
                    c.report(
                        fault.referenced,
                        "a burst's `on` period must be longer than zero",
                    );
                }
            }
        }
        _ => {}
    }
}

/// Resolves an injection's `proxy:` or `service:` and checks the fault fits that kind of target.
fn fault_target(
    c: &mut Checker,
    inject: &Spanned<crate::experiment::schema::InjectSpec>,
    file: &ExperimentFile,
    services: &[(String, ServiceSpec)],
) -> Option<FaultTarget> {
    let inj = &inject.value;
    let fault = &inj.fault.value;
    match (&inj.proxy, &inj.service, &inj.host) {
        (Some(proxy), None, None) => {
            let spec = file.proxies.get(&proxy.value).map(|p| &p.value);
            match (fault.acts_on(), spec) {
                (FaultScope::Traffic, Some(p)) if p.takes_toxics() => c.report(
                    inj.fault.referenced,
                    format!("`{}` is an HTTP fault, but proxy `{}` carries bytes (mode: tcp or driver: toxiproxy): use a `toxic`", fault.kind(), proxy.value),
                ),
                (FaultScope::Bytes, Some(p)) if !p.takes_toxics() => c.report(
                    inj.fault.referenced,
                    format!("toxics act on TCP proxies: give proxy `{}` `mode: tcp` or `driver: toxiproxy`", proxy.value),
                ),
                (FaultScope::Traffic | FaultScope::Bytes, _) => {}
                _ => c.report(inj.fault.referenced, format!("`{}` does not act on traffic: inject it with `service:` or `host:`, not `proxy:`", fault.kind())),
            }
            if !file.proxies.contains_key(&proxy.value) {
                let known: Vec<&str> = file.proxies.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    "no proxies are declared under `proxies:`".to_string()
                } else {
                    format!("declared proxies: {}", known.join(", "))
                };
                c.report(
                    proxy.referenced,
                    format!("unknown proxy `{}`; {hint}", proxy.value),
                );
            }
            Some(FaultTarget::Proxy(proxy.value.clone()))
        }
        (None, Some(service), None) => {
            let found = services
                .iter()
                .find(|(name, _)| *name == service.value)
                .map(|(_, spec)| spec);
            match (fault.acts_on(), found) {
                (_, None) => {
                    let known: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
                    c.report(service.referenced, format!("unknown service `{}`; services: {}", service.value, known.join(", ")));
                }
                (FaultScope::Traffic | FaultScope::Bytes, Some(_)) => {
                    c.report(inj.fault.referenced, format!("`{}` acts on traffic: inject it on a proxy with `proxy:`", fault.kind()));
                }
                (FaultScope::LiveHost | FaultScope::HostOrLocal, Some(_)) => {
                    c.report(inj.fault.referenced, format!("`{}` acts on a live host: inject it with `host:`", fault.kind()));
                }
                (FaultScope::Process, Some(ServiceSpec::Command(_))) => {}
                (FaultScope::Process, Some(_)) => c.report(
                    service.referenced,
                    format!(
                        "process faults act on `command:` services; `{}` runs inside faultline. Run a simulated host as a process with `command: [faultline, simulate, --listen, ...]`",
                        service.value
                    ),
                ),
                (FaultScope::SimulatedHost, Some(ServiceSpec::Simulate(sim))) if sim.memory.is_some() => {}
                (FaultScope::SimulatedHost, Some(_)) => c.report(
                    service.referenced,
                    format!("`{}` needs a `simulate:` service with a `memory:` model; `{}` is not one", fault.kind(), service.value),
                ),
            }
            Some(FaultTarget::Service(service.value.clone()))
        }
        (None, None, Some(host)) => {
            if !matches!(
                fault.acts_on(),
                FaultScope::LiveHost | FaultScope::HostOrLocal
            ) {
                c.report(
                    inj.fault.referenced,
                    format!(
                        "`{}` cannot be injected through a host's agent",
                        fault.kind()
                    ),
                );
            }
            if !file.hosts.contains_key(&host.value) {
                let known: Vec<&str> = file.hosts.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    "no hosts are declared under `hosts:`".to_string()
                } else {
                    format!("declared hosts: {}", known.join(", "))
                };
                c.report(
                    host.referenced,
                    format!("unknown host `{}`; {hint}", host.value),
                );
            }
            Some(FaultTarget::Host(host.value.clone()))
        }
        (None, None, None) if fault.acts_on() == FaultScope::HostOrLocal => {
            Some(FaultTarget::Local)
        }
        _ => {
            c.report(
                inject.referenced,
                "an injection names exactly one target: `proxy:` for traffic faults, `service:` for process and simulated-host faults, `host:` for live-host faults (GPU faults with no target act on this machine)",
            );
            None
        }
    }
}

/// No fault may stay in longer than `max_fault_duration`, lifted or not by the file.
fn check_fault_durations(
    c: &mut Checker,
    steps: &[Step],
    injected: &[(String, Duration, Location)],
    end: Duration,
    max: Duration,
    max_loc: Location,
) {
    if end == Duration::MAX {
        return; // no `end` step: already reported
    }
    for (id, at, loc) in injected {
        // Steps after this injection in timeline order: a lift at the same instant but earlier
        // in the file came before it.
        let position = steps
            .iter()
            .position(|s| matches!(&s.action, Action::Inject(i) if i.id == *id));
        let lifted = steps
            .iter()
            .skip(position.map_or(0, |p| p + 1))
            .find(|s| match &s.action {
                Action::Lift(LiftTarget::All) | Action::End => true,
                Action::Lift(LiftTarget::Fault(f)) => f == id,
                Action::Inject(_) | Action::Rate(_) => false,
            })
            .map_or(end, |s| s.at);
        let active = lifted.saturating_sub(*at);
        if active > max {
            let why = if max_loc.line() == 0 {
                "the default `max_fault_duration`"
            } else {
                "`max_fault_duration`"
            };
            c.report(
                *loc,
                format!(
                    "fault `{id}` would stay injected for {}, longer than {why} of {}; lift it earlier or raise the limit",
                    human_duration(active),
                    human_duration(max)
                ),
            );
        }
    }
}
