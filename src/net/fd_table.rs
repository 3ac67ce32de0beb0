//! The process's file-descriptor table, grown once, at start-up.
//!
//! Linux grows a process's fd table by doubling when an fd past its end is opened (at 256,
//! 512, 1,024, ...), and in a multi-threaded process each growth waits for an RCU grace period
//! (about 10 ms here) while every thread opening an fd waits behind it. The load generator,
//! opening thousands of connections, hit that at every doubling: a 1,000/s run sent requests
//! 245-256, 501-512, 2,037-2,048 and 8,181-8,192 up to 19 ms late, all at once. The same stall
//! hits a simulated host or a proxy accepting them. Growing the table while the process still
//! has one thread costs no grace period, and the kernel never shrinks it.

use std::os::fd::AsRawFd;

/// The largest table reserved (64 Ki descriptors, 512 KiB of kernel memory); past it the
/// kernel grows the table as before.
const MOST: u64 = 1 << 16;

/// Grows the fd table to the soft limit on open files (at most [`MOST`]). Call it before the
/// first thread is started. Best effort: where it fails, the table grows on demand as it
/// always did, so nothing is said.
pub fn reserve() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let top = limit.rlim_cur.min(MOST);
    let Ok(top) = libc::c_int::try_from(top) else {
        return;
    };
    if top <= 256 {
        return;
    }
    let Ok(null) = std::fs::File::open("/dev/null") else {
        return;
    };
    // A duplicate at the table's last slot grows the table to hold it; closed at once.
    // SAFETY: F_DUPFD_CLOEXEC duplicates an fd this function owns; the new one is closed here
    // and never used.
    let high = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, top - 1) };
    if high >= 0 {
        // SAFETY: `high` was just returned by fcntl and is closed exactly once.
        unsafe { libc::close(high) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_table_is_grown_to_the_open_files_limit() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        reserve();
        let want = limit.rlim_cur.min(MOST);
        if want > 256 {
            assert!(fd_size() >= want, "FDSize {} below {want}", fd_size());
        }
    }
}
