//! The fault table and its dead-man's switch. Every fault holds a lease the controller must
//! renew; a task lifts any fault whose lease ran out (the controller died or lost the network)
//! or whose maximum duration is over, whatever the controller does.
//!
//! Lifts run on their own tasks and are tracked, so neither a dropped HTTP connection nor the
//! agent's shutdown can cancel one halfway: shutdown waits for every apply and lift in flight.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hyper::StatusCode;
use indexmap::IndexMap;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

mod term;

pub use term::{Lease, LiftReason};

use super::fault::Applied;
use super::model::{ApiError, FaultStarted, FaultStatus, Renewed};

/// How often the dead-man's switch looks for expired leases: a fault outlives its lease by at
/// most this much.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// A lift that takes longer is reported as failed rather than holding up shutdown for ever.
const LIFT_LIMIT: Duration = Duration::from_secs(30);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// One fault in force.
pub struct Entry {
    pub id: String,
    pub kind: &'static str,
    applied: Box<dyn Applied>,
    started_at: SystemTime,
    lease: Lease,
}

/// Held by every apply and lift in flight; shutdown waits until none is left.
pub struct InFlight {
    _tx: mpsc::Sender<()>,
}

struct Inner {
    faults: IndexMap<String, Entry>,
    /// Taken (None) at shutdown: no new work may start after that.
    inflight: Option<mpsc::Sender<()>>,
    next_id: u64,
}

/// The faults in force on this host, in the order they were applied.
pub struct Table {
    inner: Mutex<Inner>,
    drained: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Table {
    pub fn new() -> Arc<Table> {
        let (tx, rx) = mpsc::channel(1);
        Arc::new(Table {
            inner: Mutex::new(Inner {
                faults: IndexMap::new(),
                inflight: Some(tx),
                next_id: 1,
            }),
            drained: Mutex::new(Some(rx)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not also lose track of the faults in force.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Permission to apply a fault; None once the agent is shutting down.
    pub fn begin(&self) -> Option<InFlight> {
        self.lock().inflight.clone().map(|_tx| InFlight { _tx })
    }

    pub fn contains(&self, id: &str) -> bool {
        self.lock().faults.contains_key(id)
    }

    /// Records an applied fault. If it cannot be recorded (id taken meanwhile, shutdown begun)
    /// the fault comes back with the refusal, for the caller to lift.
    pub fn insert(
        &self,
        id: Option<String>,
        kind: &'static str,
        applied: Box<dyn Applied>,
        ttl: Duration,
        max_duration: Duration,
    ) -> Result<FaultStarted, (ApiError, Box<dyn Applied>)> {
        let mut inner = self.lock();
        if inner.inflight.is_none() {
            let refusal = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping");
            return Err((refusal, applied));
        }
        let id = match id {
            Some(id) if inner.faults.contains_key(&id) => {
                let refusal = ApiError::conflict(format!("fault `{id}` is already active"));
                return Err((refusal, applied));
            }
            Some(id) => id,
            None => loop {
                // Skips ids a controller chose itself; terminates as the table is finite.
                let candidate = format!("f{}", inner.next_id);
                inner.next_id += 1;
                if !inner.faults.contains_key(&candidate) {
                    break candidate;
                }
            },
        };
        let now = Instant::now();
        let lease = Lease::new(now, ttl, max_duration);
        let started = FaultStarted {
            id: id.clone(),
            kind: kind.to_string(),
            started_at: rfc3339(SystemTime::now()),
            lease_expires_in_ms: ms(lease.expires_in(now)),
            max_duration_left_ms: ms(lease.duration_left(now)),
            details: applied.describe(),
        };
        let entry = Entry {
            id: id.clone(),
            kind,
            applied,
            started_at: SystemTime::now(),
            lease,
        };
        inner.faults.insert(id, entry);
        Ok(started)
    }

    pub fn renew(&self, id: &str, ttl: Option<Duration>) -> Result<Renewed, ApiError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let entry = inner
            .faults
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found(id))?;
        // Between expiry and the next check the fault is still in the table; reviving it then
        // would defeat the switch, so a late renewal is refused.
        if let Some(reason) = entry.lease.expired(now) {
            return Err(ApiError::new(
                StatusCode::GONE,
                format!("fault `{id}` is being lifted: {reason}"),
            ));
        }
        entry.lease.renew(now, ttl);
        Ok(Renewed {
            id: id.to_string(),
            lease_expires_in_ms: ms(entry.lease.expires_in(now)),
            max_duration_left_ms: ms(entry.lease.duration_left(now)),
        })
    }

    /// Takes a fault out of the table to lift it.
    pub fn remove(&self, id: &str) -> Option<(Entry, InFlight)> {
        let mut inner = self.lock();
        let guard = InFlight {
            _tx: inner.inflight.clone()?,
        };
        let entry = inner.faults.shift_remove(id)?;
        Some((entry, guard))
    }

    /// Takes out every fault that must be lifted at `now`.
    pub fn take_expired(&self, now: Instant) -> Vec<(Entry, LiftReason, InFlight)> {
        let mut inner = self.lock();
        let Some(tx) = inner.inflight.clone() else {
            return Vec::new();
        };
        let due: Vec<(String, LiftReason)> = inner
            .faults
            .values()
            .filter_map(|e| Some((e.id.clone(), e.lease.expired(now)?)))
            .collect();
        due.into_iter()
            .filter_map(|(id, reason)| {
                let entry = inner.faults.shift_remove(&id)?;
                Some((entry, reason, InFlight { _tx: tx.clone() }))
            })
            .collect()
    }

    pub fn snapshot(&self) -> Vec<FaultStatus> {
        let now = Instant::now();
        self.lock()
            .faults
            .values()
            .map(|e| FaultStatus {
                id: e.id.clone(),
                kind: e.kind.to_string(),
                details: e.applied.describe(),
                started_at: rfc3339(e.started_at),
                age_ms: ms(e.lease.age(now)),
                lease_expires_in_ms: ms(e.lease.expires_in(now)),
                max_duration_left_ms: ms(e.lease.duration_left(now)),
            })
            .collect()
    }

    /// Closes the table, lifts every fault in it and waits for every apply and lift in
    /// flight. Returns how many lifts failed.
    pub async fn shutdown(&self, why: &str) -> usize {
        let (entries, tx) = {
            let mut inner = self.lock();
            let entries: Vec<Entry> = inner.faults.drain(..).map(|(_, e)| e).collect();
            (entries, inner.inflight.take())
        };
        let Some(tx) = tx else {
            return 0; // Already shut down.
        };
        let reason = LiftReason::Shutdown(why.to_string());
        let lifts: Vec<_> = entries
            .into_iter()
            .map(|e| lift(e, reason.clone(), InFlight { _tx: tx.clone() }))
            .collect();
        drop(tx);
        let mut failed = 0;
        for handle in lifts {
            if !matches!(handle.await, Ok(Ok(()))) {
                failed += 1;
            }
        }
        // Applies and lifts started by requests before the close: an apply that finds the
        // table closed lifts its own fault before letting go of its guard.
        let rx = self
            .drained
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut rx) = rx {
            let _ = tokio::time::timeout(LIFT_LIMIT + CHECK_EVERY, rx.recv()).await;
        }
        failed
    }
}

/// Lifts `entry` on its own task, logs one line, and gives back the result.
pub fn lift(entry: Entry, reason: LiftReason, guard: InFlight) -> JoinHandle<Result<(), String>> {
    tokio::spawn(async move {
        let Entry {
            id,
            kind,
            applied,
            lease,
            ..
        } = entry;
        let result = match tokio::time::timeout(LIFT_LIMIT, applied.lift()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no result within {}s", LIFT_LIMIT.as_secs())),
        };
        let age = lease.age(Instant::now()).as_millis();
        match &result {
            Ok(()) => eprintln!("faultline agent: lifted `{id}` ({kind}) after {age}ms: {reason}"),
            Err(e) => eprintln!(
                "faultline agent: lifting `{id}` ({kind}) after {age}ms FAILED ({reason}): {e}"
            ),
        }
        drop(guard);
        result
    })
}

/// Lifts a fault that never made it into the table (refused at insert).
pub async fn lift_unrecorded(applied: Box<dyn Applied>) -> Result<(), String> {
    match tokio::time::timeout(LIFT_LIMIT, applied.lift()).await {
        Ok(result) => result,
        Err(_) => Err(format!("no result within {}s", LIFT_LIMIT.as_secs())),
    }
}

/// The dead-man's switch: every `CHECK_EVERY`, lifts what is due. Ends once the table is shut
/// down. Aborting it is also safe: taking entries out and spawning their lifts happens with no
/// await in between, so an entry is never taken and then dropped unlifted.
pub fn spawn_expiry(table: Arc<Table>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if table.begin().is_none() {
                break;
            }
            for (entry, reason, guard) in table.take_expired(Instant::now()) {
                drop(lift(entry, reason, guard));
            }
        }
    })
}

/// The `details` of an entry, for DELETE's answer.
impl Entry {
    pub fn details(&self) -> Value {
        self.applied.describe()
    }
}
