//! The KV-cache memory model of a simulated host: every completion in flight holds
//! `prompt + completion` tokens of cache, a leak shrinks the cache over time, and a request that
//! does not fit is refused or crashes the host like an OOM kill.
//!
//! This is what lets a drill reproduce the cascade of 2026 in miniature: one host leaks until it
//! dies, its traffic moves to hosts that were already near capacity, and they run out too.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::server::Crash;
use crate::experiment::schema::{Exhaustion, MemorySpec};

/// How often the watchdog looks for a leak that has eaten memory already in use.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(50);

/// The KV cache of one host.
#[derive(Debug)]
pub(crate) struct Memory {
    name: String,
    kv_tokens: u64,
    leak_per_second: u64,
    leak_after: Duration,
    on_exhaustion: Exhaustion,
    started: Instant,
    /// Tokens held by the requests in flight.
    held: Mutex<u64>,
    /// A leak injected by the timeline (`memory_leak` fault), on top of the configured one.
    injected: Mutex<InjectedLeak>,
    watching: std::sync::atomic::AtomicBool,
    crash: Crash,
}

/// An injected leak: what it took while earlier injections were active, and the current one.
#[derive(Debug, Default)]
struct InjectedLeak {
    /// Tokens x 1e9 already lost (kept in nano-tokens so no rounding accumulates).
    lost_nano: u128,
    /// The active leak: tokens per second since when.
    active: Option<(u64, Instant)>,
}

impl InjectedLeak {
    fn lost_at(&self, now: Instant) -> u128 {
        let running = self.active.map_or(0, |(rate, since)| {
            u128::from(rate) * now.saturating_duration_since(since).as_nanos()
        });
        self.lost_nano + running
    }
}

/// The cache held by one request; dropping it (the response ended, or the client left, which
/// drops the body) gives the tokens back.
#[derive(Debug)]
pub(crate) struct Reservation {
    memory: Arc<Memory>,
    tokens: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut held = self.memory.held();
        *held = held.saturating_sub(self.tokens);
    }
}

/// The answer of the memory model to one request.
#[derive(Debug)]
pub(crate) enum Admission {
    Admitted(Reservation),
    /// `on_exhaustion: reject`: refuse the request with this message, the host lives on.
    Refused(String),
    /// The host is crashing (because of this request or an earlier one): answer nothing.
    Crashed,
}

impl Memory {
    /// The cache of host `name`, started at `started`; a crash goes through `crash`.
    pub(crate) fn new(name: &str, spec: &MemorySpec, started: Instant, crash: Crash) -> Arc<Self> {
        Arc::new(Memory {
            name: name.to_string(),
            kv_tokens: spec.kv_tokens,
            leak_per_second: spec.leak_per_second,
            leak_after: spec.leak_after.0,
            on_exhaustion: spec.on_exhaustion,
            started,
            held: Mutex::new(0),
            injected: Mutex::new(InjectedLeak::default()),
            watching: std::sync::atomic::AtomicBool::new(false),
            crash,
        })
    }

    fn injected(&self) -> MutexGuard<'_, InjectedLeak> {
        self.injected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts leaking `per_second` tokens of capacity (replacing an injected leak in force).
    pub(crate) fn start_leak(self: &Arc<Self>, per_second: u64) {
        let now = Instant::now();
        let mut leak = self.injected();
        leak.lost_nano = leak.lost_at(now);
        leak.active = Some((per_second, now));
        drop(leak);
        self.start_watchdog();
    }

    /// Stops the injected leak; what it took stays lost, as with a real leak.
    pub(crate) fn stop_leak(&self) {
        let now = Instant::now();
        let mut leak = self.injected();
        leak.lost_nano = leak.lost_at(now);
        leak.active = None;
    }

    fn held(&self) -> MutexGuard<'_, u64> {
        // The lock guards one number that every holder leaves consistent, so a poisoned lock
        // still holds a usable value.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Capacity in tokens at `now`: `kv_tokens - leak_per_second * max(0, t - leak_after)`,
    /// with `t` the time since the host started, never below zero.
    pub(crate) fn capacity_at(&self, now: Instant) -> u64 {
        let leaking_for = now
            .saturating_duration_since(self.started)
            .saturating_sub(self.leak_after);
        // Integer nanoseconds so the figure is exact and cannot overflow: u64 * u64 fits u128.
        let leaked = u128::from(self.leak_per_second) * leaking_for.as_nanos() / 1_000_000_000;
        let injected = self.injected().lost_at(now) / 1_000_000_000;
        let leaked = u64::try_from(leaked + injected).unwrap_or(u64::MAX);
        self.kv_tokens.saturating_sub(leaked)
    }

    /// Reserves `tokens` for one request, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, tokens: u64) -> Admission {
        if self.crash.is_triggered() {
            return Admission::Crashed;
        }
        let capacity = self.capacity_at(Instant::now());
        let mut held = self.held();
        let free = capacity.saturating_sub(*held);
        if tokens <= free {
            *held = held.saturating_add(tokens);
            return Admission::Admitted(Reservation {
                memory: self.clone(),
                tokens,
            });
        }
        // A leak that has eaten memory already in use is an OOM whatever the admission policy:
        // refusing new work cannot give back what running requests hold.
        if *held > capacity {
            let in_flight = *held;
            drop(held);
            self.crash_leaked(in_flight, capacity);
            return Admission::Crashed;
        }
        match self.on_exhaustion {
            Exhaustion::Reject => Admission::Refused(format!(
                "simulated host `{}` is out of KV-cache memory (needs {tokens} tokens, \
                 {free} of {capacity} free)",
                self.name
            )),
            Exhaustion::Crash => {
                drop(held);
                if self.crash.trigger() {
                    eprintln!(
                        "simulated host `{}`: out of KV-cache memory (needs {tokens} tokens, \
                         {free} of {capacity} free); crashing",
                        self.name
                    );
                }
                Admission::Crashed
            }
        }
    }

    fn crash_leaked(&self, in_flight: u64, capacity: u64) {
        if self.crash.trigger() {
            eprintln!(
                "simulated host `{}`: out of KV-cache memory (requests in flight hold \
                 {in_flight} tokens, the leak has left {capacity}); crashing",
                self.name
            );
        }
    }

    /// One watchdog round: crashes the host if the leak has shrunk the cache below what the
    /// requests in flight hold. False once there is nothing left to watch.
    fn check(&self) -> bool {
        if self.crash.is_triggered() {
            return false;
        }
        let capacity = self.capacity_at(Instant::now());
        let in_flight = *self.held();
        if in_flight > capacity {
            self.crash_leaked(in_flight, capacity);
            return false;
        }
        // With no cache left and nothing held, nothing can be admitted again, so only the
        // admission check can still end the host.
        !(capacity == 0 && in_flight == 0)
    }

    /// Starts the watchdog when there is a leak; without one, capacity never shrinks, and the
    /// admission check alone keeps `held <= capacity`. The task holds only a weak reference,
    /// so it ends by itself once the host's handler is gone (the server stopped).
    pub(crate) fn watch(self: &Arc<Self>) {
        if self.leak_per_second == 0 {
            return;
        }
        self.start_watchdog();
    }

    fn start_watchdog(self: &Arc<Self>) {
        if self
            .watching
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let memory: Weak<Memory> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(WATCHDOG_PERIOD);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(memory) = memory.upgrade() else {
                    break;
                };
                if !memory.check() {
                    memory
                        .watching
                        .store(false, std::sync::atomic::Ordering::SeqCst);
                    break;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Dur;

    fn spec(kv_tokens: u64, leak_per_second: u64, on_exhaustion: Exhaustion) -> MemorySpec {
        MemorySpec {
            kv_tokens,
            leak_per_second,
            leak_after: Dur::from_secs(10),
            on_exhaustion,
        }
    }

    #[tokio::test]
    async fn reservations_fit_and_are_given_back() {
        let crash = Crash::new();
        let memory = Memory::new("m", &spec(20, 0, Exhaustion::Reject), Instant::now(), crash);
        let Admission::Admitted(a) = memory.admit(12) else {
            panic!("12 of 20 fits")
        };
        assert!(matches!(memory.admit(9), Admission::Refused(m) if m.contains("8 of 20 free")));
        drop(a);
        assert!(matches!(memory.admit(20), Admission::Admitted(_)));
    }

    #[tokio::test]
    async fn crash_mode_triggers_once() {
        let crash = Crash::new();
        let memory = Memory::new(
            "m",
            &spec(5, 0, Exhaustion::Crash),
            Instant::now(),
            crash.clone(),
        );
        assert!(matches!(memory.admit(6), Admission::Crashed));
        assert!(crash.is_triggered());
        assert!(
            matches!(memory.admit(1), Admission::Crashed),
            "dead stays dead"
        );
    }

    #[test]
    fn the_leak_starts_after_leak_after_and_saturates() {
        let start = Instant::now();
        let memory = Memory::new(
            "m",
            &spec(1000, 100, Exhaustion::Crash),
            start,
            Crash::new(),
        );
        assert_eq!(memory.capacity_at(start + Duration::from_secs(5)), 1000);
        assert_eq!(memory.capacity_at(start + Duration::from_secs(10)), 1000);
        assert_eq!(
            memory.capacity_at(start + Duration::from_millis(12_500)),
            750
        );
        assert_eq!(memory.capacity_at(start + Duration::from_secs(60)), 0);
        let huge = MemorySpec {
            leak_per_second: u64::MAX,
            ..spec(1000, 0, Exhaustion::Crash)
        };
        let memory = Memory::new("m", &huge, start, Crash::new());
        assert_eq!(memory.capacity_at(start + Duration::from_secs(1000)), 0);
    }

    #[tokio::test]
    async fn a_leak_below_what_is_held_crashes_even_in_reject_mode() {
        let crash = Crash::new();
        let mut s = spec(100, 1000, Exhaustion::Reject);
        s.leak_after = Dur::from_millis(0);
        let start = Instant::now() - Duration::from_millis(50);
        let memory = Memory::new("m", &s, start, crash.clone());
        // Held from before the leak took most of the cache (set directly: the leak is
        // already past 50 tokens by now).
        *memory.held() = 90;
        assert!(!memory.check());
        assert!(crash.is_triggered());
    }
}
