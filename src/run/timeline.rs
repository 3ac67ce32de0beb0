//! Follows the timeline: each step at its time, measured from the run's origin.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::console::Console;
use super::{fmt_at, stack::Stack, window};
use crate::experiment::{Action, Experiment, FaultTarget, LiftTarget};
use crate::fault::FaultSpec;
use crate::measure::FaultWindow;

/// An injected fault whose window is still open.
struct Open {
    id: String,
    target: FaultTarget,
    kind: String,
    start: Duration,
}

/// Fault windows as they happened.
#[derive(Default)]
pub struct Windows {
    open: Vec<Open>,
    closed: Vec<FaultWindow>,
}

impl Windows {
    fn open(&mut self, id: &str, target: &FaultTarget, kind: &str, at: Duration) {
        self.close(id, at);
        self.open.push(Open {
            id: id.into(),
            target: target.clone(),
            kind: kind.into(),
            start: at,
        });
    }

    /// Closes the window of fault `id`; returns its target if it was open.
    fn close(&mut self, id: &str, at: Duration) -> Option<FaultTarget> {
        let pos = self.open.iter().position(|w| w.id == id)?;
        let w = self.open.remove(pos);
        self.closed
            .push(window(&w.id, w.target.name(), &w.kind, w.start, at));
        Some(w.target)
    }

    pub fn close_all(&mut self, at: Duration) {
        for w in self.open.drain(..) {
            self.closed
                .push(window(&w.id, w.target.name(), &w.kind, w.start, at));
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

    pub fn into_windows(mut self, end: Duration) -> Vec<FaultWindow> {
        self.close_all(end);
        self.closed.sort_by_key(|w| w.start);
        self.closed
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
        tokio::select! {
            () = wait_until(origin + step.at) => {}
            reason = stop.as_mut() => {
                console.say(format!("[{:>7}] {reason}", fmt_at(origin.elapsed())));
                return Ending::Stopped(reason);
            }
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
                        // A restart's window is the outage itself: from the stop to ready again.
                        let now = if matches!(inj.fault, FaultSpec::Restart(_)) {
                            now
                        } else {
                            effective(now, origin, &inj.id, console)
                        };
                        windows.open(&inj.id, &inj.target, inj.fault.kind(), now);
                        console.say(format!(
                            "[{:>7}] inject {} ({}) on {}",
                            fmt_at(now),
                            inj.id,
                            inj.fault.kind(),
                            inj.target.name()
                        ));
                        if matches!(inj.fault, FaultSpec::Restart(_)) {
                            // A restart is over once the service is ready again.
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
                        let reason = format!(
                            "could not inject {} on {}: {why}",
                            inj.id,
                            inj.target.name()
                        );
                        console.say(format!("[{:>7}] {reason}", fmt_at(now)));
                        return Ending::Failed(reason);
                    }
                }
            }
            Action::Lift(LiftTarget::All) => {
                let n = tokio::select! {
                    n = stack.lift_all(console) => n,
                    reason = stop.as_mut() => {
                        console.say(format!("[{:>7}] {reason}", fmt_at(origin.elapsed())));
                        return Ending::Stopped(reason);
                    }
                };
                windows.close_all(now);
                console.say(format!("[{:>7}] lift all ({n} fault(s))", fmt_at(now)));
            }
            Action::Lift(LiftTarget::Fault(id)) => {
                if let Some(target) = windows.close(id, now) {
                    let lifted = tokio::select! {
                        r = stack.lift(id, &target) => r,
                        reason = stop.as_mut() => {
                            console.say(format!("[{:>7}] {reason}", fmt_at(origin.elapsed())));
                            return Ending::Stopped(reason);
                        }
                    };
                    if let Err(why) = lifted {
                        console.say(format!("[{:>7}] could not lift {id}: {why}", fmt_at(now)));
                    } else {
                        console.say(format!("[{:>7}] lift {id}", fmt_at(now)));
                    }
                }
            }
            Action::End => break,
        }
        let _ = phase.send(windows.phase());
    }
    Ending::Completed
}

/// When an injection really took effect: its scheduled time, unless applying it took long
/// enough to matter (then the window starts when it was in place, and the log says so).
fn effective(scheduled: Duration, origin: Instant, id: &str, console: &Console) -> Duration {
    let done = origin.elapsed();
    if done.saturating_sub(scheduled) > Duration::from_millis(50) {
        console.say(format!(
            "[{:>7}] {id} took {} to apply; its window starts when it was in place",
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
    Failed(String),
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
