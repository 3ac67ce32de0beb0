//! Follows the timeline: each step at its time, measured from the run's origin.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use super::{fmt_at, stack::Stack, window};
use crate::experiment::{Action, Experiment, FaultTarget, LiftTarget};
use crate::measure::FaultWindow;

/// Fault windows as they really happened (actual inject and lift times).
#[derive(Default)]
pub struct Windows {
    open: Vec<(String, String, String, Duration)>,
    closed: Vec<FaultWindow>,
}

impl Windows {
    fn open(&mut self, id: &str, proxy: &str, kind: &str, at: Duration) {
        self.close(id, at);
        self.open.push((id.into(), proxy.into(), kind.into(), at));
    }

    /// Closes the window of fault `id`; returns its proxy if it was open.
    fn close(&mut self, id: &str, at: Duration) -> Option<String> {
        let pos = self.open.iter().position(|w| w.0 == id)?;
        let (id, proxy, kind, start) = self.open.remove(pos);
        self.closed.push(window(&id, &proxy, &kind, start, at));
        Some(proxy)
    }

    pub fn close_all(&mut self, at: Duration) {
        for (id, proxy, kind, start) in self.open.drain(..) {
            self.closed.push(window(&id, &proxy, &kind, start, at));
        }
    }

    pub fn into_windows(mut self, end: Duration) -> Vec<FaultWindow> {
        self.close_all(end);
        self.closed.sort_by_key(|w| w.start);
        self.closed
    }
}

/// Runs the steps in order; returns the reason if a signal cut the run short.
pub async fn follow(
    exp: &Experiment,
    stack: &Stack,
    origin: Instant,
    windows: &mut Windows,
    interrupt: &mut Pin<Box<impl Future<Output = String>>>,
    say: &impl Fn(String),
) -> Option<String> {
    for step in &exp.timeline {
        let due = tokio::time::Instant::from_std(origin + step.at);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            sig = interrupt.as_mut() => {
                say(format!("[{:>7}] {sig}: stopping early and rolling back", fmt_at(origin.elapsed())));
                return Some(sig);
            }
        }
        // Windows use the scheduled time: the injection lands within microseconds after it, and a
        // request the schedule meant to send at that very instant must count as faulted.
        let now = step.at;
        match &step.action {
            Action::Inject(inj) => {
                let FaultTarget::Proxy(proxy) = &inj.target else {
                    continue;
                };
                if let Some(p) = stack.proxy(proxy) {
                    p.faults().inject(&inj.id, inj.fault.clone());
                    windows.open(&inj.id, proxy, inj.fault.kind(), now);
                    say(format!(
                        "[{:>7}] inject {} ({}) on {}",
                        fmt_at(now),
                        inj.id,
                        inj.fault.kind(),
                        proxy
                    ));
                }
            }
            Action::Lift(LiftTarget::All) => {
                let n = stack.lift_all();
                windows.close_all(now);
                say(format!("[{:>7}] lift all ({n} fault(s))", fmt_at(now)));
            }
            Action::Lift(LiftTarget::Fault(id)) => {
                if let Some(proxy) = windows.close(id, now) {
                    if let Some(p) = stack.proxy(&proxy) {
                        p.faults().lift(id);
                    }
                    say(format!("[{:>7}] lift {id}", fmt_at(now)));
                }
            }
            Action::End => break,
        }
    }
    None
}
