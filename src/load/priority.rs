//! How the load generator's threads ask the kernel to run them on time.
//!
//! When the load shares a machine with what it measures (the all-in-one drill, a busy CI
//! runner), a pacer or load worker that wakes on time can still wait for a CPU while a service
//! thread finishes its slice: that wait is send lag the system under test never caused. Two
//! requests, both best-effort (a refusal leaves the thread as it was):
//!
//! - every load thread asks for a short slice (`sched_setattr` with `sched_runtime`, Linux
//!   6.12+ EEVDF, no privilege needed): its wakeups get an early deadline and preempt a
//!   longer-slice thread instead of queueing behind it. Its share of the CPU is unchanged.
//! - the pacer, which only sleeps and hands requests to the runtime, also asks for the lowest
//!   real-time priority (`SCHED_FIFO` 1; needs `CAP_SYS_NICE` or an `RLIMIT_RTPRIO`), so it
//!   wakes at its send times even when every CPU is busy. The kernel's real-time throttling
//!   bounds what even a runaway pacer could take.

/// The slice asked for; the kernel accepts 0.1 ms to 100 ms.
const SLICE_NS: u64 = 100_000;

/// What the kernel granted a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Granted {
    /// `SCHED_FIFO` priority 1.
    Realtime,
    /// A normal thread with a short slice.
    ShortSlice,
    /// Neither: the thread runs as it was.
    Nothing,
}

/// For a load worker: a short slice.
pub(crate) fn worker() -> Granted {
    if set(libc::SCHED_OTHER, 0, SLICE_NS) {
        Granted::ShortSlice
    } else {
        Granted::Nothing
    }
}

/// For a pacer: real-time priority where allowed, else a short slice.
pub(crate) fn pacer() -> Granted {
    if set(libc::SCHED_FIFO, 1, 0) {
        Granted::Realtime
    } else {
        worker()
    }
}

/// `sched_setattr` on the calling thread; false where the kernel refused.
fn set(policy: libc::c_int, priority: u32, runtime_ns: u64) -> bool {
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: policy as u32,
        sched_flags: 0,
        // Kept: `sched_setattr` sets the nice value along with the rest.
        sched_nice: current_nice(),
        sched_priority: priority,
        sched_runtime: runtime_ns,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a fully initialised sched_attr of the size it states, alive for the
    // call; pid 0 is the calling thread; flags 0.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const _, 0u32) };
    rc == 0
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

    /// The thread's scheduling as the kernel reports it: policy and, for a normal thread, its
    /// slice in ns (`se.slice` in /proc, where the kernel shows it).
    fn reported() -> (libc::c_int, Option<u64>) {
        // SAFETY: plain query of the calling thread's policy.
        let policy = unsafe { libc::sched_getscheduler(0) };
        // SAFETY: gettid has no memory effects.
        let tid = unsafe { libc::gettid() };
        let slice = std::fs::read_to_string(format!("/proc/self/task/{tid}/sched"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("se.slice"))
                    .and_then(|l| l.split(':').nth(1))
                    .and_then(|v| v.trim().parse().ok())
            });
        (policy, slice)
    }

    /// Each request changes what the kernel reports for the thread, or says it did nothing:
    /// a grant that did not happen would make the claim in the docs false.
    #[test]
    fn what_is_granted_is_what_the_kernel_reports() {
        std::thread::spawn(|| {
            let nice_before = current_nice();
            match worker() {
                Granted::ShortSlice => {
                    let (policy, slice) = reported();
                    assert_eq!(policy, libc::SCHED_OTHER);
                    if let Some(slice) = slice {
                        assert_eq!(slice, SLICE_NS);
                    }
                }
                Granted::Nothing => eprintln!("this kernel refused a short slice"),
                Granted::Realtime => panic!("a worker never asks for real time"),
            }
            assert_eq!(current_nice(), nice_before, "the nice value is kept");
        })
        .join()
        .unwrap();
        std::thread::spawn(|| match pacer() {
            Granted::Realtime => assert_eq!(reported().0, libc::SCHED_FIFO),
            Granted::ShortSlice => assert_eq!(reported().0, libc::SCHED_OTHER),
            Granted::Nothing => {}
        })
        .join()
        .unwrap();
    }
}
