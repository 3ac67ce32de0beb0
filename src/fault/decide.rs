//! Seeded fault decisions. Each (run seed, proxy, fault) pair names its own ChaCha8 generator, and
//! each request draws from that generator's stream number `request_index`, so the k-th request
//! through a proxy gets the same decision in every run of the same file and seed, however the
//! requests interleave. TCP toxics use the same generators, keyed (seed, proxy, toxic name) and
//! drawn from stream number `connection index`: a connection keeps its `Draw` and takes its
//! values in order, so the k-th value of the n-th connection is the same in every run.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::spec::Selection;
use crate::units::Percent;

/// The named generator for one fault on one proxy.
#[derive(Clone, Debug)]
pub struct Decider {
    seed: u64,
}

impl Decider {
    pub fn new(run_seed: u64, proxy: &str, fault_id: &str) -> Self {
        // FNV-1a: stable across platforms and Rust versions, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ run_seed;
        for b in proxy.bytes().chain([0xff]).chain(fault_id.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Decider { seed: h }
    }

    /// The draws for one request.
    pub fn draw(&self, request_index: u64) -> Draw {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(request_index);
        Draw { rng }
    }
}

/// The random values one request may need, in a fixed order of use.
pub struct Draw {
    rng: ChaCha8Rng,
}

impl Draw {
    /// True with the given probability. Always consumes one value, so later draws do not shift.
    pub fn chance(&mut self, p: Percent) -> bool {
        self.below(p.fraction())
    }

    /// True when a uniform draw in `[0, 1)` is below `share`, Toxiproxy's toxicity roll (so 0
    /// never, 1 always). Always consumes one value.
    pub fn below(&mut self, share: f64) -> bool {
        let x: f64 = self.rng.random();
        x < share
    }

    /// A uniform value in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.rng.random()
    }

    /// A uniform integer in `[lo, hi]`; `lo` when the range is empty (never a panic).
    pub fn int_in(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        self.rng.random_range(lo..=hi)
    }

    /// A uniform integer in `[lo, hi]`; `lo` when the range is empty (never a panic).
    pub fn uint_in(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        self.rng.random_range(lo..=hi)
    }

    /// A uniform duration in `[0, max]`.
    pub fn jitter(&mut self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.random_range(0..=nanos))
    }
}

/// Whether a fault touches a request that starts `since_injection` after the fault went in.
pub fn selects(selection: Selection, draw: &mut Draw, since_injection: Duration) -> bool {
    let hit = draw.chance(selection.probability);
    if let Some(burst) = selection.burst {
        let period = burst.on.0 + burst.off.0;
        if !period.is_zero() {
            let phase = since_injection.as_nanos() % period.as_nanos();
            if phase >= burst.on.0.as_nanos() {
                return false;
            }
        }
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::spec::Burst;
    use crate::units::Dur;

    fn decisions(seed: u64, p: f64, n: u64) -> Vec<bool> {
        let d = Decider::new(seed, "primary-proxy", "errors");
        let p = Percent::from_fraction(p).unwrap();
        (0..n).map(|i| d.draw(i).chance(p)).collect()
    }

    #[test]
    fn same_seed_same_decisions() {
        assert_eq!(decisions(42, 0.3, 500), decisions(42, 0.3, 500));
        assert_ne!(decisions(42, 0.3, 500), decisions(43, 0.3, 500));
    }

    #[test]
    fn decisions_do_not_depend_on_arrival_order() {
        let d = Decider::new(7, "p", "f");
        let p = Percent::from_fraction(0.5).unwrap();
        let forward: Vec<bool> = (0..100).map(|i| d.draw(i).chance(p)).collect();
        let backward: Vec<bool> = (0..100).rev().map(|i| d.draw(i).chance(p)).collect();
        assert_eq!(forward, backward.into_iter().rev().collect::<Vec<_>>());
    }

    #[test]
    fn probability_is_honoured_over_many_requests() {
        let hits = decisions(1, 0.3, 20_000).iter().filter(|h| **h).count();
        let share = hits as f64 / 20_000.0;
        assert!((share - 0.3).abs() < 0.015, "share {share}");
    }

    #[test]
    fn different_faults_draw_independently() {
        let a = Decider::new(1, "p", "a");
        let b = Decider::new(1, "p", "b");
        let p = Percent::from_fraction(0.5).unwrap();
        let same = (0..1000)
            .filter(|i| a.draw(*i).chance(p) == b.draw(*i).chance(p))
            .count();
        assert!((400..600).contains(&same), "{same} of 1000 agree");
    }

    #[test]
    fn bursts_alternate_on_and_off() {
        let sel = Selection {
            probability: Percent::ALL,
            burst: Some(Burst {
                on: Dur::from_secs(2),
                off: Dur::from_secs(3),
            }),
        };
        let d = Decider::new(1, "p", "f");
        let at = |s: f64| selects(sel, &mut d.draw(0), Duration::from_secs_f64(s));
        assert!(at(0.0) && at(1.9) && !at(2.1) && !at(4.9) && at(5.0) && at(6.5));
    }

    #[test]
    fn jitter_stays_in_range() {
        let d = Decider::new(3, "p", "f");
        for i in 0..1000 {
            let j = d.draw(i).jitter(Duration::from_millis(10));
            assert!(j <= Duration::from_millis(10));
        }
    }
}
