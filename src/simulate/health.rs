//! Which upstream the reference gateway tries next: passive health (consecutive failures eject
//! an upstream for a cooldown) and the pick order of the strategy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

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
    ) -> Self {
        let upstreams = addrs
            .iter()
            .map(|&addr| Upstream {
                addr,
                state: Mutex::new(State::default()),
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

    /// The next upstream for this request: a healthy one it has not tried yet. When every
    /// upstream is ejected the first attempt still goes somewhere (fail open, as most gateways
    /// do): to the one whose cooldown ends first.
    pub(crate) fn next(&self, plan: &mut Plan) -> Option<(usize, SocketAddr)> {
        let now = Instant::now();
        let healthy: Vec<usize> = (0..self.upstreams.len())
            .filter(|&i| !plan.tried.get(i).copied().unwrap_or(true))
            .filter(|&i| self.upstreams[i].ejected_until(now).is_none())
            .collect();
        let chosen = if healthy.is_empty() {
            if plan.tried.iter().any(|t| *t) {
                return None;
            }
            (0..self.upstreams.len()).min_by_key(|&i| self.upstreams[i].ejected_until(now))?
        } else {
            match self.strategy {
                Strategy::Failover => healthy[0],
                Strategy::RoundRobin => healthy[plan.turn % healthy.len()],
            }
        };
        if let Some(t) = plan.tried.get_mut(chosen) {
            *t = true;
        }
        Some((chosen, self.upstreams[chosen].addr))
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

    fn pick(pool: &Pool) -> usize {
        pool.next(&mut pool.plan()).unwrap().0
    }

    #[test]
    fn failover_prefers_the_first_healthy() {
        let pool = Pool::new(&addrs(2), Strategy::Failover, 2, Duration::from_secs(60));
        assert_eq!(pick(&pool), 0);
        pool.record(0, false);
        assert_eq!(pick(&pool), 0, "one failure does not eject yet");
        pool.record(0, false);
        assert_eq!(pick(&pool), 1);
    }

    #[test]
    fn a_request_never_tries_an_upstream_twice() {
        let pool = Pool::new(&addrs(2), Strategy::Failover, 3, Duration::from_secs(60));
        let mut plan = pool.plan();
        assert_eq!(pool.next(&mut plan).unwrap().0, 0);
        assert_eq!(pool.next(&mut plan).unwrap().0, 1);
        assert!(pool.next(&mut plan).is_none());
    }

    #[test]
    fn round_robin_takes_turns_among_healthy() {
        let pool = Pool::new(&addrs(3), Strategy::RoundRobin, 1, Duration::from_secs(60));
        let picks: Vec<usize> = (0..3).map(|_| pick(&pool)).collect();
        assert_eq!(picks, vec![0, 1, 2]);
        pool.record(1, false);
        for _ in 0..6 {
            assert_ne!(pick(&pool), 1);
        }
    }

    #[test]
    fn all_ejected_fails_open_to_the_soonest_back() {
        let pool = Pool::new(&addrs(2), Strategy::Failover, 1, Duration::from_secs(60));
        pool.record(1, false);
        std::thread::sleep(Duration::from_millis(5));
        pool.record(0, false);
        let mut plan = pool.plan();
        assert_eq!(pool.next(&mut plan).unwrap().0, 1);
        assert!(
            pool.next(&mut plan).is_none(),
            "no retries onto ejected upstreams"
        );
    }

    #[test]
    fn cooldown_ends_and_success_resets() {
        let pool = Pool::new(&addrs(2), Strategy::Failover, 1, Duration::from_millis(20));
        pool.record(0, false);
        assert_eq!(pick(&pool), 1);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(pick(&pool), 0);
        pool.record(0, true);
        assert_eq!(pick(&pool), 0);
    }
}
