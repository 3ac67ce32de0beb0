//! The fault table and its dead-man's switch. Every fault holds a lease the controller must
//! renew; a task lifts any fault whose lease ran out (the controller died or lost the network)
//! or whose maximum duration is over, whatever the controller does.
//!
//! Lifts run on their own tasks and are tracked, so neither a dropped HTTP connection nor the
//! agent's shutdown can cancel one halfway: shutdown waits for every apply and lift in flight.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hyper::StatusCode;
use indexmap::IndexMap;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::fault::Applied;
use super::model::{ApiError, FaultStarted, FaultStatus, Renewed};

/// How often the dead-man's switch looks for expired leases: a fault outlives its lease by at
/// most this much.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// A lift that takes longer is reported as failed rather than holding up shutdown for ever.
const LIFT_LIMIT: Duration = Duration::from_secs(30);

/// When a fault's lease runs out and when the fault must end regardless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    started: Instant,
    ttl: Duration,
    until: Instant,
    deadline: Instant,
}

/// `now + d`, saturating far in the future instead of panicking on overflow.
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

impl Lease {
    pub fn new(now: Instant, ttl: Duration, max_duration: Duration) -> Lease {
        let deadline = after(now, max_duration);
        Lease {
            started: now,
            ttl,
            // Capped, so a lease never promises the controller time the fault will not have.
            until: after(now, ttl).min(deadline),
            deadline,
        }
    }

    /// Extends the lease from `now`, by a new length if one is given.
    pub fn renew(&mut self, now: Instant, ttl: Option<Duration>) {
        if let Some(ttl) = ttl {
            self.ttl = ttl;
        }
        self.until = after(now, self.ttl).min(self.deadline);
    }

    /// Why the fault must be lifted at `now`, if it must. The maximum duration wins a tie: it
    /// is the reason renewing could not have helped.
    pub fn expired(&self, now: Instant) -> Option<LiftReason> {
        if now >= self.deadline {
            Some(LiftReason::MaxDuration(
                self.deadline.saturating_duration_since(self.started),
            ))
        } else if now >= self.until {
            Some(LiftReason::LeaseExpired(self.ttl))
        } else {
            None
        }
    }

    pub fn expires_in(&self, now: Instant) -> Duration {
        self.until.saturating_duration_since(now)
    }

    pub fn duration_left(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }

    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}

/// Why a fault was lifted, for the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiftReason {
    LeaseExpired(Duration),
    MaxDuration(Duration),
    Stopped,
    Shutdown(String),
}

impl fmt::Display for LiftReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiftReason::LeaseExpired(ttl) => write!(
                f,
                "lease expired (not renewed within {}ms; is the controller gone?)",
                ttl.as_millis()
            ),
            LiftReason::MaxDuration(max) => {
                write!(f, "maximum duration of {}ms reached", max.as_millis())
            }
            LiftReason::Stopped => write!(f, "stopped by the controller"),
            LiftReason::Shutdown(why) => write!(f, "agent shutting down ({why})"),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_lease_runs_out_unless_renewed() {
        let t0 = Instant::now();
        let mut lease = Lease::new(t0, 500 * MS, 10_000 * MS);
        assert_eq!(lease.expires_in(t0), 500 * MS);
        assert_eq!(lease.expired(t0 + 499 * MS), None);
        assert_eq!(
            lease.expired(t0 + 500 * MS),
            Some(LiftReason::LeaseExpired(500 * MS))
        );
        lease.renew(t0 + 400 * MS, None);
        assert_eq!(lease.expires_in(t0 + 400 * MS), 500 * MS);
        assert_eq!(lease.expired(t0 + 899 * MS), None);
        lease.renew(t0 + 800 * MS, Some(2000 * MS));
        assert_eq!(lease.expired(t0 + 2799 * MS), None);
        assert!(lease.expired(t0 + 2800 * MS).is_some());
        assert_eq!(lease.age(t0 + 2800 * MS), 2800 * MS);
    }

    #[test]
    fn renewals_never_outlive_the_maximum_duration() {
        let t0 = Instant::now();
        let mut lease = Lease::new(t0, 500 * MS, 800 * MS);
        lease.renew(t0 + 600 * MS, None);
        assert_eq!(lease.expires_in(t0 + 600 * MS), 200 * MS);
        assert_eq!(lease.duration_left(t0 + 600 * MS), 200 * MS);
        assert_eq!(
            lease.expired(t0 + 800 * MS),
            Some(LiftReason::MaxDuration(800 * MS))
        );
        // A lease longer than the maximum is cut to it from the start.
        let short = Lease::new(t0, 5000 * MS, 300 * MS);
        assert_eq!(short.expires_in(t0), 300 * MS);
        // Absurd lengths saturate instead of overflowing.
        let long = Lease::new(t0, Duration::MAX, Duration::MAX);
        assert_eq!(long.expired(t0 + 1000 * MS), None);
    }

    #[test]
    fn time_left_never_goes_negative() {
        let t0 = Instant::now();
        let lease = Lease::new(t0, 100 * MS, 200 * MS);
        assert_eq!(lease.expires_in(t0 + 5000 * MS), Duration::ZERO);
        assert_eq!(lease.duration_left(t0 + 5000 * MS), Duration::ZERO);
        assert_eq!(lease.age(t0), Duration::ZERO);
    }
}
