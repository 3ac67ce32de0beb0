//! Which upstream the reference gateway tries next: passive health (consecutive failures eject
//! an upstream for a cooldown), load shedding (an upstream at its in-flight limit is skipped)
//! and the pick order of the strategy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::inflight::{InFlight, Ticket};
use crate::experiment::schema::Strategy;

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    ejected_until: Option<Instant>,
}

#[derive(Debug)]
struct Upstream {
    addr: SocketAddr,
    state: Mutex<State>,
    in_flight: InFlight,
}

impl Upstream {
    fn state(&self) -> MutexGuard<'_, State> {
        // The lock guards two plain numbers that are always left consistent, so a poisoned
        // lock still holds usable data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ejected_until(&self, now: Instant) -> Option<Instant> {
        self.state().ejected_until.filter(|until| *until > now)
    }
}

/// The upstreams of one gateway and their health.
#[derive(Debug)]
pub(crate) struct Pool {
    upstreams: Vec<Upstream>,
    strategy: Strategy,
    /// 0 never ejects.
    eject_after: u32,
    cooldown: Duration,
    turn: AtomicUsize,
}

/// One attempt the gateway may make: the upstream, and its place in that upstream's in-flight
/// count, to be held until the response to the client ends.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) index: usize,
    pub(crate) addr: SocketAddr,
    pub(crate) ticket: Ticket,
}

/// What the pool says about a request's next attempt.
#[derive(Debug)]
pub(crate) enum Next {
    Try(Attempt),
    /// Upstreams are left to try, but every one of them is at its in-flight limit.
    Shed,
    /// Nothing left to try.
    Exhausted,
}

/// The attempts of one request: which upstreams it already tried, and its round-robin turn.
#[derive(Debug)]
pub(crate) struct Plan {
    turn: usize,
    tried: Vec<bool>,
}

impl Pool {
    pub(crate) fn new(
        addrs: &[SocketAddr],
        strategy: Strategy,
        eject_after: u32,
        cooldown: Duration,
        max_in_flight: Option<u32>,
    ) -> Self {
        let upstreams = addrs
            .iter()
            .map(|&addr| Upstream {
                addr,
                state: Mutex::new(State::default()),
                in_flight: InFlight::new(max_in_flight),
            })
            .collect();
        Pool {
            upstreams,
            strategy,
            eject_after,
            cooldown,
            turn: AtomicUsize::new(0),
        }
    }

    pub(crate) fn plan(&self) -> Plan {
        Plan {
            turn: self.turn.fetch_add(1, Ordering::Relaxed),
            tried: vec![false; self.upstreams.len()],
        }
    }

    /// The next attempt for this request: a healthy upstream it has not tried yet, with room
    /// under its in-flight limit. When every upstream is ejected the first attempt still goes
    /// somewhere (fail open, as most gateways do): to the one whose cooldown ends first. An
    /// upstream at its limit is skipped like an ejected one; when every candidate is at its
    /// limit the answer is `Shed`, never more work for a full upstream.
    pub(crate) fn next(&self, plan: &mut Plan) -> Next {
        let now = Instant::now();
        let (mut healthy, mut ejected): (Vec<usize>, Vec<usize>) = (0..self.upstreams.len())
            .filter(|&i| !plan.tried.get(i).copied().unwrap_or(true))
            .partition(|&i| self.upstreams[i].ejected_until(now).is_none());
        let order = if !healthy.is_empty() {
            if self.strategy == Strategy::RoundRobin {
                let turn = plan.turn % healthy.len();
                healthy.rotate_left(turn);
            }
            healthy
        } else if plan.tried.iter().any(|t| *t) || ejected.is_empty() {
            return Next::Exhausted;
        } else {
            ejected.sort_by_key(|&i| self.upstreams[i].ejected_until(now));
            ejected
        };
        for index in order {
            let upstream = &self.upstreams[index];
            if let Some(ticket) = upstream.in_flight.try_take() {
                if let Some(t) = plan.tried.get_mut(index) {
                    *t = true;
                }
                return Next::Try(Attempt {
                    index,
                    addr: upstream.addr,
                    ticket,
                });
            }
        }
        Next::Shed
    }

    /// Records the outcome of one attempt on upstream `index`.
    pub(crate) fn record(&self, index: usize, ok: bool) {
        let Some(upstream) = self.upstreams.get(index) else {
            return;
        };
        let mut state = upstream.state();
        if ok {
            *state = State::default();
            return;
        }
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if self.eject_after > 0 && state.consecutive_failures >= self.eject_after {
            // After the cooldown the upstream gets one more chance; since the count is not
            // reset, a single further failure ejects it again.
            state.ejected_until = Instant::now().checked_add(self.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i)))
            .collect()
    }

    fn pool(n: u16, strategy: Strategy, eject_after: u32, cooldown: Duration) -> Pool {
        Pool::new(&addrs(n), strategy, eject_after, cooldown, None)
    }

    fn try_next(pool: &Pool, plan: &mut Plan) -> Option<usize> {
        match pool.next(plan) {
            Next::Try(attempt) => Some(attempt.index),
            Next::Shed => panic!("no limit was set"),
            Next::Exhausted => None,
        }
    }

    fn pick(pool: &Pool) -> usize {
        try_next(pool, &mut pool.plan()).unwrap()
    }

    #[test]
    fn failover_prefers_the_first_healthy() {
        let pool = pool(2, Strategy::Failover, 2, Duration::from_secs(60));
        assert_eq!(pick(&pool), 0);
        pool.record(0, false);
        assert_eq!(pick(&pool), 0, "one failure does not eject yet");
        pool.record(0, false);
        assert_eq!(pick(&pool), 1);
    }

    #[test]
    fn a_request_never_tries_an_upstream_twice() {
        let pool = pool(2, Strategy::Failover, 3, Duration::from_secs(60));
        let mut plan = pool.plan();
        assert_eq!(try_next(&pool, &mut plan), Some(0));
        assert_eq!(try_next(&pool, &mut plan), Some(1));
        assert_eq!(try_next(&pool, &mut plan), None);
    }

    #[test]
    fn round_robin_takes_turns_among_healthy() {
        let pool = pool(3, Strategy::RoundRobin, 1, Duration::from_secs(60));
        let picks: Vec<usize> = (0..3).map(|_| pick(&pool)).collect();
        assert_eq!(picks, vec![0, 1, 2]);
        pool.record(1, false);
        for _ in 0..6 {
            assert_ne!(pick(&pool), 1);
        }
    }

    #[test]
    fn all_ejected_fails_open_to_the_soonest_back() {
        let pool = pool(2, Strategy::Failover, 1, Duration::from_secs(60));
        pool.record(1, false);
        std::thread::sleep(Duration::from_millis(5));
        pool.record(0, false);
        let mut plan = pool.plan();
        assert_eq!(try_next(&pool, &mut plan), Some(1));
        assert_eq!(
            try_next(&pool, &mut plan),
            None,
            "no retries onto ejected upstreams"
        );
    }

    #[test]
    fn cooldown_ends_and_success_resets() {
        let pool = pool(2, Strategy::Failover, 1, Duration::from_millis(20));
        pool.record(0, false);
        assert_eq!(pick(&pool), 1);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(pick(&pool), 0);
        pool.record(0, true);
        assert_eq!(pick(&pool), 0);
    }

    #[test]
    fn a_full_upstream_is_skipped_and_all_full_sheds() {
        let pool = Pool::new(
            &addrs(2),
            Strategy::Failover,
            3,
            Duration::from_secs(60),
            Some(1),
        );
        let Next::Try(first) = pool.next(&mut pool.plan()) else {
            panic!("room on the first")
        };
        assert_eq!(first.index, 0);
        let Next::Try(second) = pool.next(&mut pool.plan()) else {
            panic!("room on the second")
        };
        assert_eq!(second.index, 1, "the full first one is skipped");
        assert!(matches!(pool.next(&mut pool.plan()), Next::Shed));
        drop(first);
        assert!(matches!(pool.next(&mut pool.plan()), Next::Try(a) if a.index == 0));
    }

    #[test]
    fn failing_open_respects_the_limit() {
        let pool = Pool::new(
            &addrs(2),
            Strategy::Failover,
            1,
            Duration::from_secs(60),
            Some(1),
        );
        pool.record(0, false);
        pool.record(1, false);
        let Next::Try(a) = pool.next(&mut pool.plan()) else {
            panic!("fails open")
        };
        let Next::Try(b) = pool.next(&mut pool.plan()) else {
            panic!("fails open to the other one")
        };
        assert_ne!(a.index, b.index);
        assert!(matches!(pool.next(&mut pool.plan()), Next::Shed));
    }

    #[test]
    fn a_full_healthy_upstream_sheds_rather_than_failing_open() {
        let pool = Pool::new(
            &addrs(2),
            Strategy::Failover,
            1,
            Duration::from_secs(60),
            Some(1),
        );
        pool.record(1, false);
        let Next::Try(_busy) = pool.next(&mut pool.plan()) else {
            panic!("room on the first")
        };
        assert!(matches!(pool.next(&mut pool.plan()), Next::Shed));
    }
}
