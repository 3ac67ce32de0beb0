//! Undoing what a predecessor left in force: the journal of an agent that died without lifting
//! its faults (SIGKILL, a crash, an OOM kill) names processes still stopped and GPU hogs still
//! running. Each is acted on only if it is still the very process recorded (same pid, same
//! start time), and each outcome is one log line.

use std::time::{Duration, Instant};

use super::journal::{Record, What};
use super::procfs;

/// How long a leftover hog has to release after SIGTERM before SIGKILL, as for a live one.
const HOG_GRACE: Duration = Duration::from_secs(5);
/// How long a SIGKILLed hog may take to disappear before we say it did not.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// Undoes every record; returns one line per record, saying what was done. Blocking: waits for
/// leftover hogs to exit.
pub fn undo(records: &[Record]) -> Vec<String> {
    let protected = procfs::protected_pids();
    records.iter().map(|r| undo_one(r, &protected)).collect()
}

/// Whether `r` still names a live process: the pid exists with the recorded start time. A
/// zombie has exited already, so it counts as gone.
fn still_there(r: &Record) -> bool {
    procfs::read_stat(r.pid).is_some_and(|s| s.start_time == r.start_time && s.state != 'Z')
}

fn undo_one(r: &Record, protected: &[u32]) -> String {
    let who = format!("pid {} (`{}`)", r.pid, r.cmdline);
    let what = match r.what {
        What::Paused => "paused",
        What::GpuHog => "GPU hog",
    };
    if let Some(why) = procfs::refusal(r.pid, protected) {
        return format!("left {who} alone ({what} by a previous agent): {why}");
    }
    if !still_there(r) {
        return format!(
            "{what} {who} of a previous agent is gone (or its pid is another process's now); \
             nothing to undo"
        );
    }
    match r.what {
        What::Paused => match signal(r, libc::SIGCONT) {
            Ok(()) => format!(
                "resumed pid {} (`{}`), left paused by a previous agent",
                r.pid, r.cmdline
            ),
            Err(e) => format!("resuming {who}, left paused by a previous agent, FAILED: {e}"),
        },
        What::GpuHog => end_hog(r, &who),
    }
}

/// SIGTERM (the hog frees its memory and exits), then SIGKILL if it lingers; the driver frees a
/// dead process's memory either way. It is not our child, so its exit is seen in /proc.
fn end_hog(r: &Record, who: &str) -> String {
    // The start time alone identifies it; the command line check is a second guard before a
    // signal that ends a process.
    let is_hog = procfs::read_cmdline(r.pid).is_some_and(|c| c.contains("gpu-hog"));
    if !is_hog {
        return format!("left {who} alone: recorded as a GPU hog, but it does not run `gpu-hog`");
    }
    if let Err(e) = signal(r, libc::SIGTERM) {
        return format!("ending the GPU hog {who} left by a previous agent FAILED: {e}");
    }
    if gone_within(r, HOG_GRACE) {
        return format!(
            "ended the GPU hog {who} left by a previous agent (SIGTERM): its memory is free"
        );
    }
    if let Err(e) = signal(r, libc::SIGKILL) {
        return format!(
            "the GPU hog {who} left by a previous agent ignored SIGTERM, and SIGKILL FAILED: {e}"
        );
    }
    if gone_within(r, KILL_WAIT) {
        format!(
            "ended the GPU hog {who} left by a previous agent (SIGKILL after {}s): the driver \
             frees its memory",
            HOG_GRACE.as_secs()
        )
    } else {
        format!("the GPU hog {who} left by a previous agent is still there after SIGKILL")
    }
}

fn gone_within(r: &Record, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !still_there(r) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !still_there(r)
}

/// `kill(pid, sig)` if `r` is still the recorded process.
fn signal(r: &Record, sig: libc::c_int) -> std::io::Result<()> {
    let pid = i32::try_from(r.pid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    if !still_there(r) {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours; pid > 1 (checked
    // above), so never our group (0), every process (-1) or init.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn state(pid: u32) -> Option<char> {
        procfs::read_stat(pid).map(|s| s.state)
    }

    fn wait_state(pid: u32, want: char) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if state(pid) == Some(want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    struct Sleep(std::process::Child);
    impl Drop for Sleep {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn stopped_sleep() -> (Sleep, procfs::ProcInfo) {
        let child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let s = Sleep(child);
        let pid = s.0.id();
        assert!(wait_state(pid, 'S'));
        // SAFETY: kill(2) on our own child, which is alive (just checked).
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        assert!(wait_state(pid, 'T'));
        let info = procfs::read_proc(pid).unwrap();
        (s, info)
    }

    fn record(info: &procfs::ProcInfo, start_time: u64) -> Record {
        Record {
            id: 1,
            what: What::Paused,
            pid: info.pid,
            start_time,
            cmdline: info.cmdline.clone(),
        }
    }

    /// A recorded pid whose start time differs is another process: it stays as it is.
    #[test]
    fn a_recycled_pid_is_not_touched() {
        let (_s, info) = stopped_sleep();
        let lines = undo(&[record(&info, info.start_time + 1)]);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("is gone"), "{}", lines[0]);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(state(info.pid), Some('T'), "a stranger was resumed");
    }

    #[test]
    fn the_recorded_process_is_resumed() {
        let (_s, info) = stopped_sleep();
        let lines = undo(&[record(&info, info.start_time)]);
        assert!(
            lines[0].starts_with(&format!("resumed pid {}", info.pid)),
            "{}",
            lines[0]
        );
        assert!(wait_state(info.pid, 'S'), "not resumed");
    }

    #[test]
    fn a_hog_record_on_something_else_is_left_alone() {
        let (_s, info) = stopped_sleep();
        let mut r = record(&info, info.start_time);
        r.what = What::GpuHog;
        let lines = undo(&[r]);
        assert!(lines[0].contains("does not run `gpu-hog`"), "{}", lines[0]);
        assert_eq!(state(info.pid), Some('T'));
    }

    /// A leftover hog (here a `sleep` named like one) is ended with SIGTERM.
    #[test]
    fn a_leftover_hog_is_ended() {
        let child = Command::new("bash")
            .args(["-c", "exec -a 'faultline gpu-hog' sleep 30"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let s = Sleep(child);
        let pid = s.0.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        let info = loop {
            match procfs::read_proc(pid) {
                Some(p) if p.cmdline.contains("gpu-hog") => break p,
                _ => assert!(Instant::now() < deadline, "the fake hog did not start"),
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut r = record(&info, info.start_time);
        r.what = What::GpuHog;
        let lines = undo(&[r]);
        assert!(lines[0].starts_with("ended the GPU hog"), "{}", lines[0]);
        // Our child, so a zombie until reaped: exited all the same.
        assert!(matches!(state(pid), Some('Z') | None));
    }

    #[test]
    fn init_and_the_agent_are_never_signalled() {
        let me = procfs::read_proc(std::process::id()).unwrap();
        let lines = undo(&[record(&me, me.start_time)]);
        assert!(lines[0].starts_with("left pid"), "{}", lines[0]);
    }
}
