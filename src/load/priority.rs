//! How the load generator's threads ask the kernel to run them on time.
//!
//! When the load shares a machine with what it measures (the all-in-one drill, a busy CI
//! runner), a pacer or load worker that wakes on time can still wait for a CPU while a service
//! thread finishes its slice: that wait is send lag the system under test never caused. Two
//! requests, both best-effort (a refusal leaves the thread as it was):
//!
//! - every load thread asks for a short slice (`sched_setattr` with `sched_runtime`, honoured
//!   by Linux 6.12+'s EEVDF scheduler, no privilege needed): its wake-ups get an early deadline
//!   and preempt a longer-slice thread instead of queueing behind it. Its share of the CPU is
//!   unchanged.
//! - the pacer, which only sleeps and hands requests to the runtime, also asks for the lowest
//!   real-time priority (`SCHED_FIFO` 1; granted with `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` of
//!   at least 1), so it wakes at its send times even when every CPU is busy. A pacer that falls
//!   behind its schedule would run without sleeping, so it gives the priority up then
//!   ([`Pacing::behind`]): real time is for being punctual, never for catching up.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The slice asked for; the kernel accepts 0.1 ms to 100 ms.
const SLICE_NS: u64 = 100_000;

/// How far behind its schedule a real-time pacer may fall before it gives the priority up.
pub(crate) const BEHIND: Duration = Duration::from_millis(5);

/// What the kernel granted a thread, as it reports it afterwards. Ordered from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granted {
    /// Neither of the others: the thread runs as it was (or as a normal thread, after
    /// `behind`).
    Normal,
    /// A normal thread with the short slice.
    ShortSlice,
    /// `SCHED_FIFO` priority 1.
    Realtime,
}

impl Granted {
    /// In words, for the reports.
    pub fn text(self) -> &'static str {
        match self {
            Granted::Normal => "normal scheduling",
            Granted::ShortSlice => "a 0.1 ms slice",
            Granted::Realtime => "real-time priority (SCHED_FIFO 1)",
        }
    }
}

/// What the load's threads got from the kernel during a run, the least any of them got: send
/// lag measured by a real-time pacer is a stronger claim than one measured without.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheduling {
    /// The pacers' (which sleep until each send time).
    pub pacer: Granted,
    /// A real-time pacer fell more than 5 ms behind its schedule and gave real time up for
    /// the rest of the run.
    pub pacer_gave_up_realtime: bool,
    /// The load runtime's threads' (which send and read).
    pub workers: Granted,
}

impl Scheduling {
    /// The least of two (two processes' loads, as in a merge of segments).
    pub fn least(self, other: Scheduling) -> Scheduling {
        Scheduling {
            pacer: self.pacer.min(other.pacer),
            pacer_gave_up_realtime: self.pacer_gave_up_realtime || other.pacer_gave_up_realtime,
            workers: self.workers.min(other.workers),
        }
    }

    /// One line for the human reports.
    pub fn text(&self) -> String {
        let gave_up = if self.pacer_gave_up_realtime {
            "; a real-time pacer gave real-time priority up, having fallen 5 ms behind its schedule"
        } else {
            ""
        };
        format!(
            "load scheduling: pacer {}, load threads {}{gave_up}",
            self.pacer.text(),
            self.workers.text()
        )
    }
}

/// Where the load's threads say what they were granted, from any thread.
#[derive(Debug)]
pub(crate) struct Grants {
    /// The least granted so far, as `Granted as u8`; `UNSET` before the first.
    pacer: AtomicU8,
    workers: AtomicU8,
    gave_up: AtomicBool,
}

const UNSET: u8 = u8::MAX;

impl Default for Grants {
    fn default() -> Self {
        Grants {
            pacer: AtomicU8::new(UNSET),
            workers: AtomicU8::new(UNSET),
            gave_up: AtomicBool::new(false),
        }
    }
}

impl Grants {
    /// For a load worker: asks for a short slice and records what it got.
    pub(crate) fn worker(&self) {
        self.workers.fetch_min(worker() as u8, Ordering::Relaxed);
    }

    /// What was recorded: `None` until a pacer and a worker have said.
    pub(crate) fn scheduling(&self) -> Option<Scheduling> {
        Some(Scheduling {
            pacer: decode(self.pacer.load(Ordering::Relaxed))?,
            pacer_gave_up_realtime: self.gave_up.load(Ordering::Relaxed),
            workers: decode(self.workers.load(Ordering::Relaxed))?,
        })
    }
}

fn decode(code: u8) -> Option<Granted> {
    [Granted::Normal, Granted::ShortSlice, Granted::Realtime]
        .into_iter()
        .find(|g| *g as u8 == code)
}

/// For a load worker: a short slice.
fn worker() -> Granted {
    if set(libc::SCHED_OTHER, 0, SLICE_NS) {
        Granted::ShortSlice
    } else {
        Granted::Normal
    }
}

/// A pacer thread's scheduling, which it gives up when it falls behind.
#[derive(Debug)]
pub(crate) struct Pacing<'a> {
    granted: Granted,
    grants: &'a Grants,
}

impl Pacing<'_> {
    /// For a pacer: real-time priority where allowed, else a short slice; recorded in `grants`.
    pub(crate) fn start(grants: &Grants) -> Pacing<'_> {
        let granted = if set(libc::SCHED_FIFO, 1, 0) {
            Granted::Realtime
        } else {
            worker()
        };
        grants.pacer.fetch_min(granted as u8, Ordering::Relaxed);
        Pacing { granted, grants }
    }

    /// The pacer is `late` behind a send time: past [`BEHIND`], a real-time pacer becomes a
    /// normal thread again (with the short slice) for the rest of the run.
    pub(crate) fn behind(&mut self, late: Duration) {
        if self.granted == Granted::Realtime && late > BEHIND {
            self.granted = worker();
            // What it runs with now counts too: the record is the least it got.
            self.grants
                .pacer
                .fetch_min(self.granted as u8, Ordering::Relaxed);
            self.grants.gave_up.store(true, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    fn granted(&self) -> Granted {
        self.granted
    }
}

/// `sched_setattr` on the calling thread, then `sched_getattr` to see what the kernel kept;
/// false where it refused, or where it took the call but not the slice (kernels before 6.12
/// accept `sched_runtime` for a normal thread and ignore it).
fn set(policy: libc::c_int, priority: u32, runtime_ns: u64) -> bool {
    // The nice value is kept: `sched_setattr` sets it along with the rest.
    let attr = attributes(policy as u32, priority, runtime_ns, current_nice());
    // SAFETY: `attr` is a fully initialised sched_attr of the size it states, alive for the
    // call; pid 0 is the calling thread; flags 0.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const _, 0u32) };
    if rc != 0 {
        return false;
    }
    match current() {
        Some(now) => {
            now.sched_policy == attr.sched_policy
                && now.sched_priority == priority
                && (runtime_ns == 0 || now.sched_runtime == runtime_ns)
        }
        None => false,
    }
}

/// A `sched_attr` of this libc's size (the kernel's first version, which every kernel since
/// 3.14 takes) with no flags, deadline or period.
fn attributes(policy: u32, priority: u32, runtime_ns: u64, nice: i32) -> libc::sched_attr {
    libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: policy,
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: priority,
        sched_runtime: runtime_ns,
        sched_deadline: 0,
        sched_period: 0,
    }
}

/// The calling thread's scheduling attributes as the kernel reports them.
fn current() -> Option<libc::sched_attr> {
    let mut attr = attributes(0, 0, 0, 0);
    let size = attr.size;
    // SAFETY: the kernel writes at most `size` bytes into `attr`, which is that large and
    // alive for the call; pid 0 is the calling thread; flags 0.
    let rc = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut _, size, 0u32) };
    (rc == 0).then_some(attr)
}

/// The calling thread's nice value (0 where it cannot be read).
fn current_nice() -> i32 {
    // SAFETY: getpriority has no memory effects. errno is cleared first because -1 is a valid
    // nice value, so only errno tells an error apart.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        if *libc::__errno_location() == 0 {
            nice
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The call itself works on any kernel: a plain normal thread is always allowed, and the
    /// kernel reports back what was set. A wrong struct size or syscall number fails here.
    #[test]
    fn asking_for_the_default_is_granted_and_reported() {
        std::thread::spawn(|| {
            assert!(
                set(libc::SCHED_OTHER, 0, 0),
                "sched_setattr refused the default"
            );
            let now = current().expect("sched_getattr");
            assert_eq!(now.sched_policy, libc::SCHED_OTHER as u32);
        })
        .join()
        .unwrap();
    }

    /// What each request says it got is what the kernel reports afterwards, and the nice value
    /// survives it.
    #[test]
    fn what_is_granted_is_what_the_kernel_reports() {
        std::thread::spawn(|| {
            let nice_before = current_nice();
            let granted = worker();
            let now = current().expect("sched_getattr");
            assert_eq!(now.sched_policy, libc::SCHED_OTHER as u32);
            match granted {
                Granted::ShortSlice => assert_eq!(now.sched_runtime, SLICE_NS),
                Granted::Normal => {
                    eprintln!("this kernel keeps no custom slice (before Linux 6.12)");
                    assert_ne!(now.sched_runtime, SLICE_NS);
                }
                Granted::Realtime => panic!("a worker never asks for real time"),
            }
            assert_eq!(current_nice(), nice_before, "the nice value is kept");
        })
        .join()
        .unwrap();
        std::thread::spawn(|| {
            let grants = Grants::default();
            let pacing = Pacing::start(&grants);
            let now = current().expect("sched_getattr");
            match pacing.granted() {
                Granted::Realtime => {
                    assert_eq!(now.sched_policy, libc::SCHED_FIFO as u32);
                    assert_eq!(now.sched_priority, 1);
                }
                _ => assert_eq!(now.sched_policy, libc::SCHED_OTHER as u32),
            }
        })
        .join()
        .unwrap();
    }

    /// A real-time pacer that falls behind is a normal thread afterwards; a little lateness
    /// keeps it real-time.
    #[test]
    fn a_pacer_that_falls_behind_gives_real_time_up() {
        std::thread::spawn(|| {
            let grants = Grants::default();
            let mut pacing = Pacing::start(&grants);
            if pacing.granted() != Granted::Realtime {
                eprintln!("real-time priority not allowed here; nothing to give up");
                return;
            }
            pacing.behind(Duration::from_millis(1));
            assert_eq!(pacing.granted(), Granted::Realtime);
            assert_eq!(current().unwrap().sched_policy, libc::SCHED_FIFO as u32);
            assert!(!grants.gave_up.load(Ordering::Relaxed));
            pacing.behind(BEHIND + Duration::from_millis(1));
            assert_ne!(pacing.granted(), Granted::Realtime);
            assert_eq!(current().unwrap().sched_policy, libc::SCHED_OTHER as u32);
            assert!(grants.gave_up.load(Ordering::Relaxed), "the report is told");
            assert_eq!(
                grants.pacer.load(Ordering::Relaxed),
                pacing.granted() as u8,
                "and records what it runs with now"
            );
        })
        .join()
        .unwrap();
    }

    /// The record keeps the least any thread got, and says nothing until a pacer and a worker
    /// have both said.
    #[test]
    fn grants_keep_the_least_and_need_both_kinds() {
        let grants = Grants::default();
        assert_eq!(grants.scheduling(), None);
        grants
            .pacer
            .fetch_min(Granted::Realtime as u8, Ordering::Relaxed);
        assert_eq!(grants.scheduling(), None, "no worker said yet");
        grants
            .workers
            .fetch_min(Granted::ShortSlice as u8, Ordering::Relaxed);
        grants
            .workers
            .fetch_min(Granted::Normal as u8, Ordering::Relaxed);
        grants
            .workers
            .fetch_min(Granted::ShortSlice as u8, Ordering::Relaxed);
        assert_eq!(
            grants.scheduling(),
            Some(Scheduling {
                pacer: Granted::Realtime,
                pacer_gave_up_realtime: false,
                workers: Granted::Normal,
            })
        );
        let other = Scheduling {
            pacer: Granted::ShortSlice,
            pacer_gave_up_realtime: true,
            workers: Granted::ShortSlice,
        };
        assert_eq!(
            grants.scheduling().unwrap().least(other),
            Scheduling {
                pacer: Granted::ShortSlice,
                pacer_gave_up_realtime: true,
                workers: Granted::Normal,
            }
        );
        assert_eq!(
            other.text(),
            "load scheduling: pacer a 0.1 ms slice, load threads a 0.1 ms slice; a real-time \
             pacer gave real-time priority up, having fallen 5 ms behind its schedule"
        );
    }
}
