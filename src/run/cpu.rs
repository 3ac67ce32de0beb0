//! Whether the machine itself was the limit: the share of the run during which every CPU was
//! busy. A drill on a saturated machine measures faultline's own queueing along with the system
//! under test, and its report must say so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often `/proc/stat` is read.
const EVERY: Duration = Duration::from_millis(250);
/// A sample this busy counts as saturated.
pub const SATURATED: f64 = 0.95;

/// What the sampler saw.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuLoad {
    /// Time covered by samples.
    pub observed: Duration,
    /// Time in samples at or above [`SATURATED`].
    pub saturated: Duration,
}

/// Reads `/proc/stat` on its own thread until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<CpuLoad>>,
}

impl Sampler {
    /// Starts sampling; `None` where `/proc/stat` cannot be read (nothing to say then).
    pub fn start() -> Option<Sampler> {
        let first = read_totals()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("faultline-cpu".into())
            .spawn(move || {
                let mut load = CpuLoad::default();
                let mut last = first;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EVERY);
                    let Some(now) = read_totals() else { break };
                    if let Some(busy) = busy_share(last, now) {
                        load.observed += EVERY;
                        if busy >= SATURATED {
                            load.saturated += EVERY;
                        }
                    }
                    last = now;
                }
                load
            })
            .ok()?;
        Some(Sampler {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops sampling and returns what was seen.
    pub fn finish(mut self) -> Option<CpuLoad> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take()?.join().ok()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// (busy, total) jiffies over all CPUs, from the first line of `/proc/stat`.
fn read_totals() -> Option<(u64, u64)> {
    parse_totals(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_totals(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_ascii_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest times are inside user and nice).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// The busy share between two readings; `None` when no time passed.
fn busy_share(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1).filter(|t| *t > 0)?;
    let busy = after.0.saturating_sub(before.0);
    Some(busy as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_is_read_as_busy_and_total() {
        let text = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n";
        assert_eq!(parse_totals(text), Some((160, 980)));
        assert_eq!(busy_share((160, 980), (250, 1080)), Some(0.9));
        assert_eq!(busy_share((1, 1), (1, 1)), None);
        assert_eq!(parse_totals("intr 1 2"), None);
    }

    #[test]
    fn the_sampler_reports_the_time_it_watched() {
        let s = Sampler::start().expect("/proc/stat is readable on Linux");
        std::thread::sleep(Duration::from_millis(600));
        let load = s.finish().expect("a report");
        assert!(load.observed >= EVERY, "{load:?}");
        assert!(load.saturated <= load.observed);
    }
}
