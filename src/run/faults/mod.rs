//! The fault engine: one backend per kind of action, one ledger of what is in force.
//!
//! A backend applies its action and returns what it applied; what was applied knows how to
//! lift itself. The ledger keeps applied faults in order, so rollback lifts them in reverse.
//! Adding a kind of fault means one module implementing [`Backend`] plus one line in
//! `registry!` below.

mod agent;
mod error;
mod http;
mod leak;
mod local_gpu;
mod signal;
mod tcp_toxic;
mod toxiproxy;

use std::future::Future;

pub use error::FaultError;

use super::targets::Targets;
use crate::experiment::FaultTarget;
use crate::fault::{Evidence, FaultAction};

/// Whether lifting a `kill` starts the service again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiftMode {
    /// A lift on the timeline (`lift: <id>` or `lift: all`): as if the fault had never been.
    Timeline,
    /// The end of a run, or an abort: killed services are not started again only to be
    /// stopped by the teardown that follows.
    RollBack,
}

/// One kind of fault: how to apply it, and how to lift what was applied.
pub(super) trait Backend {
    /// The checked action this backend applies.
    type Action;
    /// What is in force once applied.
    type Held;

    /// What a cancelled apply may already have left in force, recorded before applying so a
    /// signal that arrives mid-apply cannot lose it. `None` where applying is all-or-nothing.
    fn provisional(_action: &Self::Action) -> Option<Self::Held> {
        None
    }

    /// What shows the fault acted, looked at just before it is lifted; `None` where this
    /// backend cannot tell.
    fn evidence(_held: &Self::Held, _targets: &Targets) -> Option<Evidence> {
        None
    }

    fn apply(
        action: &Self::Action,
        targets: &mut Targets,
    ) -> impl Future<Output = Result<Self::Held, FaultError>>;

    /// Lifts the fault. On an error the fault is taken to be still in force: the ledger keeps
    /// it, and rollback tries again.
    fn lift(
        held: &mut Self::Held,
        targets: &mut Targets,
        mode: LiftMode,
    ) -> impl Future<Output = Result<(), FaultError>>;
}

/// Maps each action variant to its backend, and generates what was applied (`Held`) with its
/// dispatch.
macro_rules! registry {
    ($($variant:ident => $backend:ty),* $(,)?) => {
        /// What one applied fault holds, whatever its kind.
        enum Held {
            $($variant(<$backend as Backend>::Held),)*
        }

        fn provisional(action: &FaultAction) -> Option<Held> {
            match action {
                $(FaultAction::$variant(a) => <$backend>::provisional(a).map(Held::$variant),)*
            }
        }

        async fn apply(action: &FaultAction, targets: &mut Targets) -> Result<Held, FaultError> {
            match action {
                $(FaultAction::$variant(a) => <$backend>::apply(a, targets).await.map(Held::$variant),)*
            }
        }

        impl Held {
            fn evidence(&self, targets: &Targets) -> Option<Evidence> {
                match self {
                    $(Held::$variant(h) => <$backend>::evidence(h, targets),)*
                }
            }

            async fn lift(&mut self, targets: &mut Targets, mode: LiftMode) -> Result<(), FaultError> {
                match self {
                    $(Held::$variant(h) => <$backend>::lift(h, targets, mode).await,)*
                }
            }
        }
    };
}

registry! {
    Http => http::HttpFault,
    TcpToxic => tcp_toxic::TcpToxic,
    ToxiproxyToxic => toxiproxy::ToxiproxyToxic,
    Signal => signal::ProcessSignal,
    SimulatedLeak => leak::SimulatedLeak,
    Agent => agent::AgentFault,
    LocalGpu => local_gpu::LocalGpu,
}

/// One fault in force.
struct Entry {
    id: String,
    target: FaultTarget,
    /// `None` while applying, when the backend has nothing provisional to record.
    held: Option<Held>,
}

/// The faults in force, in the order they were applied.
#[derive(Default)]
pub(super) struct Ledger {
    entries: Vec<Entry>,
}

/// The outcome of lifting one fault.
pub struct Lifted {
    pub id: String,
    pub target: FaultTarget,
    pub result: Result<(), FaultError>,
    /// What showed the fault acted, seen just before the lift.
    pub evidence: Option<Evidence>,
}

impl Ledger {
    /// Applies `action` and records it under `id`. The record is made before the apply, so if
    /// this future is dropped mid-way (a signal), whatever the backend may already have left
    /// in force is still in the ledger for rollback to lift.
    pub async fn apply(
        &mut self,
        id: &str,
        target: &FaultTarget,
        action: &FaultAction,
        targets: &mut Targets,
    ) -> Result<(), FaultError> {
        self.entries.push(Entry {
            id: id.to_string(),
            target: target.clone(),
            held: provisional(action),
        });
        let result = apply(action, targets).await;
        let Some(entry) = self.entries.iter_mut().rev().find(|e| e.id == id) else {
            return result.map(|_| ());
        };
        match result {
            Ok(held) => {
                entry.held = Some(held);
                Ok(())
            }
            Err(e) => {
                // Undo whatever the failed apply may have left (an agent that got the request
                // but whose answer was lost), rather than leave it to a lease.
                if let Some(mut held) = entry.held.take() {
                    let _ = held.lift(targets, LiftMode::RollBack).await;
                }
                self.entries.retain(|e| e.id != id);
                Err(e)
            }
        }
    }

    /// Lifts fault `id`. `None` when no such fault is in force. A failed lift stays in the
    /// ledger.
    pub async fn lift(
        &mut self,
        id: &str,
        targets: &mut Targets,
        mode: LiftMode,
    ) -> Option<Lifted> {
        let pos = self.entries.iter().position(|e| e.id == id)?;
        let lifted = Self::lift_entry(&mut self.entries[pos], targets, mode).await;
        if lifted.result.is_ok() {
            self.entries.remove(pos);
        }
        Some(lifted)
    }

    /// Lifts every fault in force, newest first. Failed lifts stay in the ledger.
    pub async fn lift_all(&mut self, targets: &mut Targets, mode: LiftMode) -> Vec<Lifted> {
        let mut out = Vec::new();
        let mut kept = Vec::new();
        while let Some(mut entry) = self.entries.pop() {
            let lifted = Self::lift_entry(&mut entry, targets, mode).await;
            if lifted.result.is_err() {
                kept.push(entry);
            }
            out.push(lifted);
        }
        kept.reverse();
        self.entries = kept;
        out
    }

    async fn lift_entry(entry: &mut Entry, targets: &mut Targets, mode: LiftMode) -> Lifted {
        let (evidence, result) = match &mut entry.held {
            Some(held) => (held.evidence(targets), held.lift(targets, mode).await),
            // Cancelled before anything was in force.
            None => (None, Ok(())),
        };
        Lifted {
            id: entry.id.clone(),
            target: entry.target.clone(),
            result,
            evidence,
        }
    }
}

#[cfg(test)]
mod tests;
