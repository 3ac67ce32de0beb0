//! Cross-checks that no single field can make: names that must resolve, steps that must fit the
//! timeline, listeners that must not collide, budgets that the run must be able to measure.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::schema::{Budgets, ExperimentFile, ServiceSpec, StepSpec};
use super::{
    Action, Experiment, ExperimentError, Injection, LiftTarget, LoadStream, Problem, Proxy,
    Service, Step, Target,
};
use crate::fault::FaultSpec;

struct Checker<'a> {
    path: &'a Path,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, loc: Location, message: impl Into<String>) {
        self.problems.push(Problem::at(self.path, loc, message));
    }
}

pub(super) fn check(
    path: &Path,
    source: String,
    file: ExperimentFile,
) -> Result<Experiment, ExperimentError> {
    let mut c = Checker {
        path,
        problems: Vec::new(),
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
    check_listeners(&mut c, &file);
    check_gateways(&mut c, &file);
    let streams = check_streams(&mut c, &file);
    let (timeline, end) = check_timeline(&mut c, &file);
    check_budgets(&mut c, &file.expect, &file, &timeline, end);

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
        services: file
            .services
            .into_iter()
            .map(|(name, s)| Service {
                name,
                spec: s.value,
            })
            .collect(),
        proxies: file
            .proxies
            .into_iter()
            .map(|(name, p)| Proxy {
                name,
                spec: p.value,
            })
            .collect(),
        streams,
        timeline,
        end,
        budgets: file.expect.value,
        measure: file.measure,
    })
}

/// Two listeners on one address would make the second service fail to start mid-drill.
fn check_listeners(c: &mut Checker, file: &ExperimentFile) {
    let mut seen: HashMap<SocketAddr, String> = HashMap::new();
    let listeners = file
        .services
        .iter()
        .map(|(name, s)| (format!("service `{name}`"), s.value.listen(), s.referenced))
        .chain(
            file.proxies
                .iter()
                .map(|(name, p)| (format!("proxy `{name}`"), p.value.listen, p.referenced)),
        );
    for (owner, addr, loc) in listeners {
        let clash = seen
            .iter()
            .find(|(other, _)| same_port(**other, addr))
            .map(|(_, o)| o.clone());
        match clash {
            Some(first) => c.report(
                loc,
                format!("{owner} listens on {addr}, which {first} already listens on"),
            ),
            None => {
                seen.insert(addr, owner);
            }
        }
    }
}

/// 0.0.0.0:80 and 127.0.0.1:80 collide too.
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn check_gateways(c: &mut Checker, file: &ExperimentFile) {
    for (name, s) in &file.services {
        if let ServiceSpec::Gateway(g) = &s.value {
            if g.upstreams.is_empty() {
                c.report(
                    s.referenced,
                    format!("gateway `{name}` needs at least one upstream"),
                );
            }
        }
        if let ServiceSpec::Simulate(sim) = &s.value {
            if !(sim.tokens_per_second.is_finite() && sim.tokens_per_second > 0.0) {
                c.report(
                    s.referenced,
                    format!("service `{name}`: tokens_per_second must be above zero"),
                );
            }
            if sim.capacity == Some(0) {
                c.report(
                    s.referenced,
                    format!("service `{name}`: capacity must be at least 1"),
                );
            }
        }
    }
}

fn check_streams(c: &mut Checker, file: &ExperimentFile) -> Vec<LoadStream> {
    if file.load.is_empty() {
        c.report(file.version.referenced, "`load` needs at least one stream");
    }
    let mut streams = Vec::new();
    for (name, s) in &file.load {
        match parse_target(&s.value.url.value) {
            Ok(target) => streams.push(LoadStream {
                name: name.clone(),
                target,
                spec: s.value.clone(),
            }),
            Err(why) => c.report(
                s.value.url.referenced,
                format!("load stream `{name}`: {why}"),
            ),
        }
        if s.value.max_in_flight == 0 {
            c.report(
                s.referenced,
                format!("load stream `{name}`: max_in_flight must be at least 1"),
            );
        }
    }
    streams
}

/// Only plain HTTP to a literal or resolvable host and an explicit or default port.
pub(super) fn parse_target(url: &str) -> Result<Target, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "`{url}`: only http:// is supported, not {other}://"
            ))
        }
        None => {
            return Err(format!(
                "`{url}` needs a scheme, like http://127.0.0.1:8080/v1/chat/completions"
            ))
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("`{url}` has no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let addr = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("`{url}`: cannot resolve host `{host}`"))?;
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    Ok(Target {
        addr,
        authority: authority.as_str().to_string(),
        path_and_query,
    })
}

fn check_timeline(c: &mut Checker, file: &ExperimentFile) -> (Vec<Step>, Duration) {
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
    for step in &file.timeline {
        let s = &step.value;
        let at = s.at.value.0;
        let given = [s.inject.is_some(), s.lift.is_some(), s.end.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if given != 1 {
            c.report(
                step.referenced,
                "a timeline step needs exactly one of `inject`, `lift` or `end`",
            );
            continue;
        }
        if at > end {
            c.report(
                s.at.referenced,
                format!(
                    "this step at {} is past the end of the run at {}",
                    s.at.value,
                    super::units::human_duration(end)
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
            if !file.proxies.contains_key(&inj.proxy.value) {
                let known: Vec<&str> = file.proxies.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    "no proxies are declared under `proxies:`".to_string()
                } else {
                    format!("declared proxies: {}", known.join(", "))
                };
                c.report(
                    inj.proxy.referenced,
                    format!("unknown proxy `{}`; {hint}", inj.proxy.value),
                );
            }
            check_fault(c, &inj.fault);
            let id = match &inj.id {
                Some(id) => id.value.clone(),
                None => format!("{}/{}", inj.proxy.value, inj.fault.value.kind()),
            };
            let id_loc = inj
                .id
                .as_ref()
                .map(|i| i.referenced)
                .unwrap_or(inject.referenced);
            if let Some(first) = ids.insert(id.clone(), id_loc) {
                c.report(
                    id_loc,
                    format!("fault id `{id}` is already used at line {}; give this injection its own `id:`", first.line()),
                );
            }
            steps.push(Step {
                at,
                action: Action::Inject(Injection {
                    id: id.clone(),
                    proxy: inj.proxy.value.clone(),
                    fault: inj.fault.value.clone(),
                }),
            });
            if let Some(d) = &inj.duration {
                let lift_at = at + d.value.0;
                if lift_at > end {
                    c.report(
                        d.referenced,
                        format!(
                            "the fault would be lifted at {}, after the end of the run",
                            super::units::human_duration(lift_at)
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
    (steps, end)
}

fn check_fault(c: &mut Checker, fault: &Spanned<FaultSpec>) {
    match &fault.value {
        FaultSpec::HttpError(e) if !(400..=599).contains(&e.status) => {
            c.report(
                fault.referenced,
                format!(
                    "http_error status {} is not an error status (400-599)",
                    e.status
                ),
            );
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

/// A budget the run cannot measure is a mistake in the file, not a pass.
fn check_budgets(
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
        check_budgets(c, sb, file, timeline, end);
    }
}
