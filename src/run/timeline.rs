//! Follows the timeline: each step at its time, measured from the run's origin.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::console::Console;
use super::stack::Lifted;
use super::{fmt_at, stack::Stack, window};
use crate::exit::Failure;
use crate::experiment::{Action, Experiment, FaultTarget, LiftTarget};
use crate::fault::Evidence;
use crate::measure::FaultWindow;
use crate::metrics::Live;

/// An injected fault whose window is still open.
struct Open {
    id: String,
    target: FaultTarget,
    kind: String,
    start: Duration,
    /// Why the last try to lift it failed: it is still in force.
    lift_error: Option<String>,
    evidence: Option<Evidence>,
}

/// Fault windows as they happened.
#[derive(Default)]
pub struct Windows {
    open: Vec<Open>,
    closed: Vec<FaultWindow>,
    /// The live metrics, told of each window as it opens and closes.
    live: Option<Arc<Live>>,
}

impl Windows {
    /// Windows whose openings and closings `live` is told of.
    pub fn watched(live: Option<Arc<Live>>) -> Windows {
        Windows {
            live,
            ..Windows::default()
        }
    }

    fn open(&mut self, id: &str, target: &FaultTarget, kind: &str, at: Duration) {
        self.close(id, at);
        if let Some(live) = &self.live {
            live.fault_opened(id, kind, target.name(), at);
        }
        self.open.push(Open {
            id: id.into(),
            target: target.clone(),
            kind: kind.into(),
            start: at,
            lift_error: None,
            evidence: None,
        });
    }

    /// Closes the window of fault `id`, once it really was lifted.
    pub fn close(&mut self, id: &str, at: Duration) {
        if let Some(pos) = self.open.iter().position(|w| w.id == id) {
            let w = self.open.remove(pos);
            self.closed.push(w.closed_at(at));
            if let Some(live) = &self.live {
                live.fault_closed(id, at);
            }
        }
    }

    /// What showed fault `id` acted; a later look (a retried lift) replaces an earlier one.
    pub fn evidence(&mut self, id: &str, evidence: Option<Evidence>) {
        if let Some(w) = self.open.iter_mut().find(|w| w.id == id) {
            if evidence.is_some() {
                w.evidence = evidence;
            }
        }
    }

    /// A lift of `id` failed: its window stays open (the fault is still in force, so the time
    /// after it must not be judged as recovery) and the report says why.
    pub fn lift_failed(&mut self, id: &str, why: String) {
        if let Some(w) = self.open.iter_mut().find(|w| w.id == id) {
            w.lift_error = Some(why);
        }
    }

    /// What the status line calls the current phase.
    fn phase(&self) -> String {
        if self.open.is_empty() {
            if self.closed.is_empty() {
                "baseline".into()
            } else {
                "recovery".into()
            }
        } else {
            let ids: Vec<&str> = self.open.iter().map(|w| w.id.as_str()).collect();
            format!("fault ({})", ids.join(", "))
        }
    }

    /// Every window as it happened; those still open (never lifted, or whose lift failed)
    /// end at `end`.
    pub fn into_windows(mut self, end: Duration) -> Vec<FaultWindow> {
        for w in std::mem::take(&mut self.open) {
            self.closed.push(w.closed_at(end));
        }
        self.closed.sort_by_key(|w| w.start);
        self.closed
    }
}

impl Open {
    fn closed_at(self, end: Duration) -> FaultWindow {
        let mut w = window(&self.id, self.target.name(), &self.kind, self.start, end);
        w.lift_error = self.lift_error;
        w.evidence = self.evidence;
        w
    }
}

/// Runs the steps in order, until the end, a `stop` (a signal, `abort_if`), or a fault that
/// cannot be applied.
pub async fn follow(
    exp: &Experiment,
    stack: &mut Stack,
    origin: Instant,
    windows: &mut Windows,
    stop: impl Future<Output = String>,
    phase: &watch::Sender<String>,
    console: &Console,
) -> Ending {
    tokio::pin!(stop);
    for step in &exp.timeline {
        let due = async {
            tokio::select! {
                () = wait_until(origin + step.at) => None,
                reason = stop.as_mut() => Some(reason),
            }
        };
        if let Some(reason) = stack.watching(due, origin, console).await {
            console.say(format!("[{:>7}] {reason}", fmt_at(origin.elapsed())));
            return Ending::Stopped(reason);
        }
        // Windows use the scheduled time: the injection lands within microseconds after it, and a
        // request the schedule meant to send at that very instant must count as faulted.
        let now = step.at;
        match &step.action {
            Action::Inject(inj) => {
                // Applying can take a while (a GPU hog filling memory, an agent far away): a
                // signal or `abort_if` must still be heard meanwhile.
                let applied = tokio::select! {
                    r = stack.inject(inj) => r,
                    reason = stop.as_mut() => {
                        console.say(format!("[{:>7}] {reason}", fmt_at(origin.elapsed())));
                        return Ending::Stopped(reason);
                    }
                };
                match applied {
                    Ok(()) => {
                        let momentary = inj.action.is_momentary();
                        // A restart's window is the outage itself: from the stop to ready again.
                        let now = if momentary {
                            now
                        } else {
                            effective(now, origin, &inj.id, "apply", console)
                        };
                        windows.open(&inj.id, &inj.target, inj.fault.kind(), now);
                        console.say(format!(
                            "[{:>7}] inject {} ({}) on {}",
                            fmt_at(now),
                            inj.id,
                            inj.fault.kind(),
                            inj.target.name()
                        ));
                        if momentary {
                            // A restart is over once the service is ready again; the ledger's
                            // record of it has nothing left to undo.
                            let _ = stack.lift(&inj.id).await;
                            let ready = origin.elapsed();
                            windows.close(&inj.id, ready);
                            console.say(format!(
                                "[{:>7}] {} is back after its restart",
                                fmt_at(ready),
                                inj.target.name()
                            ));
                        }
                    }
                    Err(why) => {
                        // A drill whose fault could not be applied measures nothing: stop here.
                        console.say(format!(
                            "[{:>7}] could not inject {} on {}: {why}",
                            fmt_at(now),
                            inj.id,
                            inj.target.name()
                        ));
                        return Ending::Failed(Failure::Inject {
                            id: inj.id.clone(),
                            target: inj.target.name().to_string(),
                            source: Box::new(why),
                        });
                    }
                }
            }
            Action::Lift(LiftTarget::All) => {
                let lifted = tokio::select! {
                    l = stack.lift_all() => l,
                    reason = stop.as_mut() => {
                        console.say(format!("[{:>7}] {reason}", fmt_at(origin.elapsed())));
                        return Ending::Stopped(reason);
                    }
                };
                let at = effective(now, origin, "lift all", "lift", console);
                let n = lifted.iter().filter(|l| l.result.is_ok()).count();
                console.say(format!("[{:>7}] lift all ({n} fault(s))", fmt_at(at)));
                for l in lifted {
                    record_lift(windows, l, at, console);
                }
            }
            Action::Lift(LiftTarget::Fault(id)) => {
                let lifted = tokio::select! {
                    r = stack.lift(id) => r,
                    reason = stop.as_mut() => {
                        console.say(format!("[{:>7}] {reason}", fmt_at(origin.elapsed())));
                        return Ending::Stopped(reason);
                    }
                };
                // `None`: not in force (a restart that is over, or lifted by `lift: all`).
                if let Some(lifted) = lifted {
                    let at = effective(now, origin, id, "lift", console);
                    if lifted.result.is_ok() {
                        console.say(format!("[{:>7}] lift {id}", fmt_at(at)));
                    }
                    record_lift(windows, lifted, at, console);
                }
            }
            // The pacers planned their schedules from the rate changes before the run started,
            // so the exact intended times do not hang on this loop's timing; this only says it.
            Action::Rate(change) => {
                console.say(format!(
                    "[{:>7}] rate of {} to {}/s{}",
                    fmt_at(now),
                    change.stream,
                    crate::load::rates::number(change.to.as_per_second()),
                    if change.over.is_zero() {
                        String::new()
                    } else {
                        format!(" over {}", crate::units::human_duration(change.over))
                    }
                ));
            }
            Action::End => break,
        }
        let _ = phase.send(windows.phase());
    }
    Ending::Completed
}

/// A lift's outcome on the fault's window: closed at `at` once lifted; left open, with the
/// reason, when the fault is still in force.
pub fn record_lift(windows: &mut Windows, lifted: Lifted, at: Duration, console: &Console) {
    let id = lifted.id.as_str();
    windows.evidence(id, lifted.evidence);
    match lifted.result {
        Ok(()) => windows.close(id, at),
        Err(why) => {
            console.say(format!(
                "[{:>7}] could not lift {id}: {why}; it is still in force",
                fmt_at(at)
            ));
            windows.lift_failed(id, why.to_string());
        }
    }
}

/// When a step really took effect: its scheduled time, unless applying or lifting took long
/// enough to matter (then the window edge is when it was done, and the log says so).
fn effective(
    scheduled: Duration,
    origin: Instant,
    id: &str,
    what: &str,
    console: &Console,
) -> Duration {
    let done = origin.elapsed();
    if done.saturating_sub(scheduled) > Duration::from_millis(50) {
        console.say(format!(
            "[{:>7}] {id} took {} to {what}; its window edge is when that was done",
            fmt_at(done),
            crate::units::human_duration(done - scheduled)
        ));
        done
    } else {
        scheduled
    }
}

/// How following the timeline ended.
pub enum Ending {
    Completed,
    /// A signal or `abort_if`: roll back and exit 3.
    Stopped(String),
    /// A fault could not be applied: roll back and fail as an environment error.
    Failed(Failure),
}

/// Waits until `due` to within tens of microseconds. tokio's timer fires up to a millisecond
/// late, which would let the requests scheduled at the very instant of a step (a round time,
/// where the open-loop schedule often has one) slip past an injection or a lift; so the last
/// two milliseconds are waited out by yielding.
async fn wait_until(due: Instant) {
    let early = due.checked_sub(Duration::from_millis(2)).unwrap_or(due);
    tokio::time::sleep_until(tokio::time::Instant::from_std(early)).await;
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn a_failed_lift_keeps_the_window_open_to_the_end_and_says_why() {
        let console = Console::new(true);
        let mut windows = Windows::default();
        let target = FaultTarget::Proxy("p".into());
        windows.open("ok", &target, "toxic", ms(1_000));
        windows.open("stuck", &target, "toxic", ms(1_000));
        let lifted = |id: &str, result| Lifted {
            id: id.into(),
            target: target.clone(),
            result,
            evidence: Some(Evidence::Requests {
                touched: 3,
                seen_by_clients: None,
            }),
        };
        record_lift(&mut windows, lifted("ok", Ok(())), ms(3_000), &console);
        let refused = crate::run::FaultError::NotRunning {
            what: "proxy",
            name: "p".into(),
        };
        record_lift(
            &mut windows,
            lifted("stuck", Err(refused)),
            ms(3_000),
            &console,
        );
        assert_eq!(windows.phase(), "fault (stuck)");

        let all = windows.into_windows(ms(9_000));
        let ok = all.iter().find(|w| w.id == "ok").unwrap();
        assert_eq!((ok.end, &ok.lift_error), (ms(3_000), &None));
        assert!(ok.evidence.as_ref().is_some_and(Evidence::acted));
        // Still in force when the run ended: no recovery may be judged after the failed lift.
        let stuck = all.iter().find(|w| w.id == "stuck").unwrap();
        assert_eq!(stuck.end, ms(9_000));
        assert_eq!(
            stuck.lift_error.as_deref(),
            Some("proxy `p` is not running")
        );
    }
}
