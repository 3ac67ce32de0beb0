//! The orchestrator: start what the drill needs, drive load, follow the timeline, and always
//! roll back: every fault lifted and everything started stopped, however the run ends.

mod stack;
mod timeline;

use std::time::{Duration, Instant, SystemTime};

use crate::exit::Failure;
use crate::experiment::Experiment;
use crate::load::{self, RequestRecord};
use crate::measure::{FaultWindow, RunFacts};

pub use stack::Stack;

/// Options for one run, already validated.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub seed: u64,
    pub quiet: bool,
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
}

/// Runs the experiment to its end (or an interruption) and rolls everything back.
pub async fn execute(exp: &Experiment, opts: &RunOptions) -> Result<RunRecord, Failure> {
    let say = |msg: String| {
        if !opts.quiet {
            eprintln!("{msg}");
        }
    };
    let mut interrupt = Box::pin(interrupted());
    let mut stack = Stack::default();

    say(format!("faultline: {} (seed {})", exp.name, opts.seed));
    let started = tokio::select! {
        r = stack.start(exp, opts.seed, &say) => r.map(|()| None),
        sig = &mut interrupt => Ok(Some(sig)),
    };
    let started = match started {
        Ok(None) => Ok(()),
        Ok(Some(sig)) => Err(Failure::Aborted(format!("{sig} while starting services"))),
        Err(e) => Err(e),
    };
    if let Err(e) = started {
        stack.teardown(&say).await;
        return Err(e);
    }

    let started_at = SystemTime::now();
    let origin = Instant::now();
    let load = match load::start(&exp.streams, origin, exp.end) {
        Ok(l) => l,
        Err(e) => {
            stack.teardown(&say).await;
            return Err(Failure::Environment(format!(
                "cannot start the load generator: {e:#}"
            )));
        }
    };
    say(format!(
        "load: {} stream(s) for {}",
        exp.streams.len(),
        crate::experiment::units::human_duration(exp.end)
    ));

    let mut windows = timeline::Windows::default();
    let aborted = timeline::follow(exp, &stack, origin, &mut windows, &mut interrupt, &say).await;

    // Lift first: on an abort nothing may stay injected while we wait for requests in flight.
    let lifted = stack.lift_all();
    let now = origin.elapsed();
    windows.close_all(now);
    if lifted > 0 {
        say(format!("[{:>7}] lifted {lifted} fault(s)", fmt_at(now)));
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
    let (records, unfinished) = load.finish(grace).await;
    stack.teardown(&say).await;

    let duration = if aborted.is_some() { now } else { exp.end };
    let facts = RunFacts {
        duration,
        windows: windows.into_windows(duration),
        streams: exp.streams.iter().map(|s| s.name.clone()).collect(),
    };
    Ok(RunRecord {
        started_at,
        records,
        facts,
        unfinished,
        aborted,
    })
}

/// Resolves on Ctrl-C or SIGTERM with the signal's name.
async fn interrupted() -> String {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT".into();
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT".into(),
            _ = term.recv() => "SIGTERM".into(),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C".into()
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
    }
}
