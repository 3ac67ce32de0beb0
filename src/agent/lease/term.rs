//! The arithmetic of one lease: when it runs out, when the fault must end regardless, and
//! why a fault is lifted. Pure functions of `now`, so they are tested without waiting.

use std::fmt;
use std::time::{Duration, Instant};

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
