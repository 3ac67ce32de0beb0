//! Reading `/proc` to find the processes a fault aims at, and the rules that keep the agent from
//! hitting itself, the processes it depends on, or init.

use serde_json::{json, Value};

/// Walking up from the agent to init takes a few steps; the bound only guards against a
/// corrupt or cyclic `/proc` view.
const MAX_ANCESTRY: usize = 4096;

/// A `match` hitting more processes than this is almost certainly a typo (`"python"` on a
/// busy host), and stopping them all would take the host down rather than test it.
pub const MAX_MATCHED: usize = 64;

/// What the agent knows about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    /// `/proc/<pid>/cmdline` with its NUL separators turned into spaces.
    pub cmdline: String,
    /// Start time in clock ticks since boot: with the pid, it names a process for good, so a
    /// pid reused after the target died is never signalled by mistake.
    pub start_time: u64,
}

impl ProcInfo {
    pub fn to_json(&self) -> Value {
        json!({ "pid": self.pid, "cmdline": self.cmdline })
    }
}

/// The fields of `/proc/<pid>/stat` the agent uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: u32,
    pub start_time: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the name: state is field 3, ppid field 4, starttime field 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

pub fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The command line as a person would type it: arguments joined by spaces.
pub fn read_cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let joined: Vec<u8> = raw.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
    Some(String::from_utf8_lossy(&joined).trim_end().to_string())
}

pub fn read_proc(pid: u32) -> Option<ProcInfo> {
    let stat = read_stat(pid)?;
    Some(ProcInfo {
        pid,
        cmdline: read_cmdline(pid)?,
        start_time: stat.start_time,
    })
}

/// Every process visible in `/proc`. Kernel threads have an empty command line and can be
/// neither paused nor killed meaningfully, so they are left out.
pub fn list_processes() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        // A process may exit between the listing and the read: it is simply not there.
        .filter_map(read_proc)
        .filter(|p| !p.cmdline.is_empty())
        .collect()
}

/// The agent's own pid and those of its ancestors up to init. Stopping any of them would
/// stop (or orphan) the agent, and with it the dead-man's switch that lifts the fault.
pub fn protected_pids() -> Vec<u32> {
    let mut pids = vec![std::process::id()];
    let mut pid = std::process::id();
    for _ in 0..MAX_ANCESTRY {
        match read_stat(pid) {
            Some(stat) if stat.ppid > 0 && !pids.contains(&stat.ppid) => {
                pids.push(stat.ppid);
                pid = stat.ppid;
            }
            _ => break,
        }
    }
    pids
}

/// The process a pid belongs to: itself for a process, its process for a thread id. `kill`
/// on a thread id signals the whole process, so protection must look at the process.
pub fn thread_group(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Why a process may not be targeted, if it may not.
pub fn refusal(pid: u32, protected: &[u32]) -> Option<&'static str> {
    if thread_group(pid).is_some_and(|tgid| tgid != pid) {
        return Some("a thread id, not a process id (signalling it would hit its whole process)");
    }
    if pid <= 1 {
        Some("init (pid 1) is never a target")
    } else if pid == std::process::id() {
        Some("the agent itself")
    } else if protected.contains(&pid) {
        Some("an ancestor of the agent")
    } else {
        None
    }
}

/// The processes whose command line contains `pattern`, minus the protected ones.
///
/// Refusals carry every process that matched and why it was left out, so the operator sees
/// what the pattern actually hit.
pub fn select(
    processes: &[ProcInfo],
    pattern: &str,
    protected: &[u32],
) -> Result<Vec<ProcInfo>, (String, Value)> {
    let mut chosen = Vec::new();
    let mut excluded = Vec::new();
    for p in processes.iter().filter(|p| p.cmdline.contains(pattern)) {
        match refusal(p.pid, protected) {
            Some(why) => excluded.push(json!({ "pid": p.pid, "cmdline": p.cmdline, "why": why })),
            None => chosen.push(p.clone()),
        }
    }
    if chosen.is_empty() {
        let message = if excluded.is_empty() {
            format!("no process matches `{pattern}`")
        } else {
            format!("`{pattern}` matches only processes the agent must not touch")
        };
        return Err((message, json!({ "excluded": excluded })));
    }
    if chosen.len() > MAX_MATCHED {
        let hit: Vec<Value> = chosen.iter().map(ProcInfo::to_json).collect();
        return Err((
            format!(
                "`{pattern}` matches {} processes (at most {MAX_MATCHED}); make it more specific",
                chosen.len()
            ),
            json!({ "matched": hit }),
        ));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, cmdline: &str) -> ProcInfo {
        ProcInfo {
            pid,
            cmdline: cmdline.into(),
            start_time: 0,
        }
    }

    #[test]
    fn stat_survives_odd_command_names() {
        let line = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 200";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                ppid: 17,
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("12 (x) T"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn matching_skips_init_self_and_ancestors() {
        let me = std::process::id();
        let parent = me.wrapping_add(100_000);
        let procs = vec![
            proc(1, "/sbin/init vllm"),
            proc(me, "faultline agent vllm"),
            proc(parent, "bash -c vllm-launcher"),
            proc(777_777, "python -m vllm serve"),
        ];
        let protected = [me, parent, 1];
        let hit = select(&procs, "vllm", &protected).unwrap();
        assert_eq!(hit, vec![proc(777_777, "python -m vllm serve")]);

        let (msg, detail) = select(&procs, "faultline", &protected).unwrap_err();
        assert!(msg.contains("must not touch"), "{msg}");
        assert_eq!(detail["excluded"][0]["why"], "the agent itself");

        let (msg, _) = select(&procs, "nothing-like-this", &protected).unwrap_err();
        assert!(msg.contains("no process matches"), "{msg}");
    }

    #[test]
    fn overly_broad_matches_are_refused() {
        let procs: Vec<ProcInfo> = (1000..1000 + MAX_MATCHED as u32 + 1)
            .map(|pid| proc(pid, "worker"))
            .collect();
        let (msg, _) = select(&procs, "worker", &[]).unwrap_err();
        assert!(msg.contains("more specific"), "{msg}");
        assert_eq!(select(&procs[..3], "worker", &[]).unwrap().len(), 3);
    }

    #[test]
    fn own_ancestry_is_protected() {
        let protected = protected_pids();
        assert_eq!(protected[0], std::process::id());
        assert_eq!(
            refusal(std::process::id(), &protected),
            Some("the agent itself")
        );
        assert!(refusal(1, &protected).is_some());
        assert!(refusal(0, &protected).is_some());
        if let Some(&parent) = protected.get(1).filter(|&&p| p > 1) {
            assert_eq!(
                refusal(parent, &protected),
                Some("an ancestor of the agent")
            );
        }
        let mine = read_proc(std::process::id()).unwrap();
        assert!(!mine.cmdline.is_empty());
    }
}

#[cfg(test)]
mod threads {
    use super::*;

    #[test]
    fn a_thread_of_the_agent_is_refused_like_the_agent() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done, wait_done) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions and only returns the caller's thread id.
            let tid = unsafe { libc::gettid() } as u32;
            tx.send(tid).unwrap();
            // Alive until the checks are done (however slow the machine), not for a guessed
            // while: a finished thread's id would no longer be in /proc.
            let _ = wait_done.recv();
        });
        let tid = rx.recv().unwrap();
        assert_eq!(thread_group(tid), Some(std::process::id()));
        assert!(refusal(tid, &[]).unwrap().contains("thread id"));
        drop(done);
        handle.join().unwrap();
    }
}
