//! The orchestrator: start what the drill needs, drive load, follow the timeline, and always
//! roll back: every fault lifted and everything started stopped, however the run ends.

mod console;
mod cpu;
mod faults;
pub mod plan;
mod share;
mod stack;
mod targets;
mod timeline;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::exit::Failure;
use crate::experiment::Experiment;
use crate::load::{self, RequestRecord};
use crate::measure::{FaultWindow, RunFacts};
use crate::units::human_duration;

pub use console::Console;
pub use faults::FaultError;
pub use share::Share;
pub use stack::Stack;

/// Options for one run, already validated.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub seed: u64,
    pub quiet: bool,
    /// Where services' stdout and stderr go (the run's out dir).
    pub log_dir: PathBuf,
    /// The share of the drill this process runs (the whole of it by default).
    pub share: Share,
    /// The live metrics (`--metrics`), shown every request and fault window as they happen.
    pub live: Option<Arc<crate::metrics::Live>>,
}

/// What a run produced, for measure/ and report/.
pub struct RunRecord {
    pub started_at: SystemTime,
    pub records: Vec<RequestRecord>,
    pub facts: RunFacts,
    /// Requests still in flight when the run gave up waiting (only after an abort).
    pub unfinished: usize,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
    /// Why the run could not reach a verdict (a start-up that failed or was interrupted, a
    /// fault that could not be applied); the reports are still written with what there is.
    pub failure: Option<Failure>,
}

impl RunRecord {
    /// A run that ended before its load started: no requests, no fault windows.
    fn not_started(exp: &Experiment, failure: Failure) -> RunRecord {
        RunRecord {
            started_at: SystemTime::now(),
            records: Vec::new(),
            facts: RunFacts {
                rate_changes: Vec::new(),
                duration: Duration::ZERO,
                windows: Vec::new(),
                streams: exp.streams.iter().map(|s| s.name.clone()).collect(),
                cpu_saturated: None,
                service_exits: Vec::new(),
                load_scheduling: None,
            },
            unfinished: 0,
            aborted: matches!(failure, Failure::Aborted(_)).then(|| failure.to_string()),
            failure: Some(failure),
        }
    }
}

/// Runs the experiment to its end (or an interruption) and rolls everything back. However it
/// ends, what it has is returned, so the reports can always be written.
pub async fn execute(exp: &Experiment, opts: &RunOptions) -> RunRecord {
    let console = Console::new(opts.quiet);
    let mut interrupt = Box::pin(interrupted());
    let mut stack = Stack::default();

    console.say(format!("faultline: {} (seed {})", exp.name, opts.seed));
    let Share { segment, start_at } = opts.share;
    // Refused before anything starts: a late segment's share would be shifted against the rest.
    if let Some(at) = start_at {
        if let Err(late) = at.ahead_of(SystemTime::now()) {
            return RunRecord::not_started(exp, Failure::Usage(share::too_late(at, late, segment)));
        }
    }
    if segment.is_leader() {
        let started = tokio::select! {
            r = stack.start(exp, opts.seed, &opts.log_dir, &console) => r.map(|()| None),
            sig = &mut interrupt => Ok(Some(sig)),
        };
        let started = match started {
            Ok(None) => Ok(()),
            Ok(Some(sig)) => Err(Failure::Aborted(format!("{sig} while starting services"))),
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            stack.teardown(&console).await;
            return RunRecord::not_started(exp, e);
        }
    } else {
        console.say(format!(
            "segment {segment}: sending 1 request in {} of each stream, nothing else; segment 1 \
             starts the services and applies the timeline",
            segment.count()
        ));
    }

    let zero = match start_at.map(share::TimeZero::at) {
        None => share::TimeZero::now(),
        Some(Ok(zero)) => zero,
        Some(Err(late)) => {
            stack.teardown(&console).await;
            return RunRecord::not_started(
                exp,
                Failure::Environment(format!(
                    "the services were not ready by --start-at: ready {} after it; give the \
                     leader more lead time",
                    human_duration(late)
                )),
            );
        }
    };
    let origin = zero.origin;
    if let Some(live) = &opts.live {
        live.started(origin);
    }
    let observer = opts
        .live
        .clone()
        .map(|l| l as Arc<dyn load::live::Observer>);
    let load = match load::start(&exp.streams, opts.seed, segment, origin, exp.end, observer) {
        Ok(l) => l,
        Err(e) => {
            stack.teardown(&console).await;
            return RunRecord::not_started(
                exp,
                Failure::Environment(format!("cannot start the load generator: {e:#}")),
            );
        }
    };
    if let Some(at) = start_at {
        let waited = async {
            if !segment.is_leader() {
                let missing = share::wait_for_targets(&exp.streams, origin).await;
                if !missing.is_empty() {
                    console.say(format!(
                        "segment {segment}: {} did not accept connections by time zero; \
                         sending anyway (is the leader up?)",
                        missing.join(", ")
                    ));
                }
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(origin)).await;
        };
        console.say(format!("waiting for time zero, {at}"));
        tokio::select! {
            () = waited => {}
            sig = &mut interrupt => {
                load.stop_sending();
                stack.teardown(&console).await;
                return RunRecord::not_started(
                    exp,
                    Failure::Aborted(format!("{sig} while waiting for --start-at")),
                );
            }
        }
    }
    let started_at = zero.wall;
    let cpu = cpu::Sampler::start();
    console.say(format!(
        "load: {} stream(s) for {}",
        exp.streams.len(),
        human_duration(exp.end)
    ));

    let (phase_tx, phase_rx) = tokio::sync::watch::channel("baseline".to_string());
    let mut windows = timeline::Windows::watched(opts.live.clone());
    let ending = {
        let monitor = watch::watch(load.tally(), phase_rx, exp.abort_if, origin, &console);
        let stop = async {
            tokio::select! {
                sig = &mut interrupt => format!("{sig}: stopping early and rolling back"),
                reason = monitor => reason,
            }
        };
        if segment.is_leader() {
            timeline::follow(
                exp,
                &mut stack,
                origin,
                &mut windows,
                stop,
                &phase_tx,
                &console,
            )
            .await
        } else {
            let _ = phase_tx.send(format!("segment {segment}"));
            share::follow_plan(exp, origin, opts.live.as_deref(), stop).await
        }
    };
    let (aborted, failed) = match ending {
        timeline::Ending::Completed => (None, None),
        timeline::Ending::Stopped(reason) => (Some(reason), None),
        timeline::Ending::Failed(failure) => (Some(failure.to_string()), Some(failure)),
    };
    console.clear_status();

    // Lift first: on an abort nothing may stay injected while we wait for requests in flight.
    let lifted = stack.roll_back().await;
    let now = origin.elapsed();
    let n = lifted.iter().filter(|l| l.result.is_ok()).count();
    if n > 0 {
        console.say(format!("[{:>7}] lifted {n} fault(s)", fmt_at(now)));
    }
    for l in lifted {
        timeline::record_lift(&mut windows, l, now, &console);
    }
    if aborted.is_some() {
        load.stop_sending();
    }
    let longest_timeout = exp
        .streams
        .iter()
        .map(|s| s.spec.timeout.0)
        .max()
        .unwrap_or(Duration::ZERO);
    let grace = if aborted.is_some() {
        Duration::from_secs(1)
    } else {
        longest_timeout + Duration::from_secs(1)
    };
    // Services are still watched while the last requests finish.
    let load::Finished {
        records,
        unfinished,
        scheduling,
    } = stack.watching(load.finish(grace), origin, &console).await;
    if let Some(live) = &opts.live {
        live.finish();
    }
    if segment.is_leader() && segment.count() > 1 && aborted.is_none() {
        // The other segments' last requests may still be streaming through these services:
        // stopping them now would cut those. Each is over within its timeout of the end.
        let done = origin + exp.end + grace;
        console.say(format!(
            "keeping the services up for the other segments' last requests (until {} after the end)",
            human_duration(grace)
        ));
        let wait = async {
            tokio::select! {
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(done)) => {}
                _ = &mut interrupt => {}
            }
        };
        stack.watching(wait, origin, &console).await;
    }
    let cpu = cpu.and_then(cpu::Sampler::finish);
    let service_exits = stack.service_exits();
    stack.teardown(&console).await;

    let duration = if aborted.is_some() { now } else { exp.end };
    let mut windows = windows.into_windows(duration);
    crate::measure::count_client_marks(&mut windows, &records);
    let facts = RunFacts {
        duration,
        windows,
        streams: exp.streams.iter().map(|s| s.name.clone()).collect(),
        cpu_saturated: cpu.map(|c| (c.saturated, c.observed)),
        rate_changes: exp
            .streams
            .iter()
            .flat_map(|s| load::rates::marks(&s.name, s.spec.rate.as_per_second(), &s.rate_changes))
            .collect(),
        service_exits,
        load_scheduling: scheduling,
    };
    RunRecord {
        started_at,
        records,
        facts,
        unfinished,
        aborted,
        failure: failed,
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM with the signal. Should the handlers be refused, a
/// signal would kill the run without a rollback; that is said once and this never resolves,
/// rather than aborting a run nobody interrupted.
pub(crate) async fn interrupted() -> crate::net::Signal {
    match crate::net::shutdown_signal().await {
        Ok(signal) => signal,
        Err(e) => {
            eprintln!("faultline: {e}; a signal would stop this run without rolling back");
            std::future::pending().await
        }
    }
}

fn fmt_at(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

pub(crate) fn window(
    id: &str,
    target: &str,
    kind: &str,
    start: Duration,
    end: Duration,
) -> FaultWindow {
    FaultWindow {
        id: id.to_string(),
        target: target.to_string(),
        kind: kind.to_string(),
        start,
        end,
        lift_error: None,
        evidence: None,
    }
}
