//! Process faults on the agent's host: SIGKILL (a crash) and SIGSTOP (a gray failure: the
//! process holds its sockets and memory but answers nothing) until the lift sends SIGCONT.
//!
//! Signals go to each matched pid, not to process groups: the controller names processes, and
//! a group may well include the very supervisor whose reaction the drill is meant to observe.

use std::io;

use futures_util::future::BoxFuture;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::fault::Applied;
use super::model::{ApiError, ProcessAction, ProcessFault, Target};
use super::procfs::{self, ProcInfo};

/// Starts a process fault: finds its targets, then signals them.
pub async fn apply(spec: ProcessFault) -> Result<Box<dyn Applied>, ApiError> {
    let target = spec.target().map_err(ApiError::bad_request)?;
    let action = spec.action;
    // /proc reads are blocking file I/O, and a `match` reads every process on the host.
    let victims = tokio::task::spawn_blocking(move || resolve(&target))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("looking up processes failed: {e}"),
            )
        })??;
    match action {
        ProcessAction::Kill => kill(victims),
        ProcessAction::Pause => pause(victims),
    }
}

/// The processes `target` names, or why none may be touched.
fn resolve(target: &Target) -> Result<Vec<ProcInfo>, ApiError> {
    let protected = procfs::protected_pids();
    match target {
        Target::Pid(pid) => {
            if i32::try_from(*pid).is_err() {
                return Err(ApiError::bad_request(format!("pid {pid} is out of range")));
            }
            if let Some(why) = procfs::refusal(*pid, &protected) {
                return Err(ApiError::conflict(format!("refusing pid {pid}: {why}")));
            }
            match procfs::read_proc(*pid) {
                Some(p) if p.cmdline.is_empty() => Err(ApiError::conflict(format!(
                    "pid {pid} is a kernel thread, which cannot be killed or paused"
                ))),
                Some(p) => Ok(vec![p]),
                None => Err(ApiError::conflict(format!("no process with pid {pid}"))),
            }
        }
        Target::Match(pattern) => procfs::select(&procfs::list_processes(), pattern, &protected)
            .map_err(|(message, detail)| ApiError::conflict(message).with_detail(detail)),
    }
}

/// Sends `sig` to `p` if it is still the process that was matched: a pid reused since then
/// belongs to a stranger. A process that is gone comes back as ESRCH.
fn signal(p: &ProcInfo, sig: libc::c_int) -> io::Result<()> {
    match procfs::read_stat(p.pid) {
        Some(stat) if stat.start_time == p.start_time => {}
        _ => return Err(io::Error::from_raw_os_error(libc::ESRCH)),
    }
    let pid = i32::try_from(p.pid)
        .ok()
        .filter(|&pid| pid > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) takes two integers and touches no memory of ours. pid > 1 (checked just
    // above), so this is never our process group (0), every process (-1) or init.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn failure(p: &ProcInfo, e: &io::Error) -> Value {
    json!({ "pid": p.pid, "cmdline": p.cmdline, "error": e.to_string() })
}

fn listing(procs: &[ProcInfo]) -> Vec<Value> {
    procs.iter().map(ProcInfo::to_json).collect()
}

/// SIGKILL to every target. There is nothing to undo, so a partial success stands and the
/// failures are reported with it; only a kill that reached no process is refused.
fn kill(victims: Vec<ProcInfo>) -> Result<Box<dyn Applied>, ApiError> {
    let mut killed = Vec::new();
    let mut failed = Vec::new();
    for p in victims {
        match signal(&p, libc::SIGKILL) {
            Ok(()) => killed.push(p),
            Err(e) => failed.push(failure(&p, &e)),
        }
    }
    if killed.is_empty() {
        return Err(ApiError::conflict("no process could be killed")
            .with_detail(json!({ "failed": failed })));
    }
    Ok(Box::new(Killed { killed, failed }))
}

/// SIGSTOP to every target, all or nothing: a half-paused service is not the fault that was
/// asked for, so on any failure the ones already stopped are resumed and the fault refused.
fn pause(victims: Vec<ProcInfo>) -> Result<Box<dyn Applied>, ApiError> {
    let mut paused = Vec::new();
    for p in victims {
        match signal(&p, libc::SIGSTOP) {
            Ok(()) => paused.push(p),
            Err(e) => {
                let failed = failure(&p, &e);
                for done in &paused {
                    let _ = signal(done, libc::SIGCONT);
                }
                let status = if e.raw_os_error() == Some(libc::EPERM) {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::CONFLICT
                };
                return Err(
                    ApiError::new(status, format!("cannot pause pid {}: {e}", p.pid))
                        .with_detail(json!({ "failed": [failed] })),
                );
            }
        }
    }
    Ok(Box::new(Paused { paused }))
}

struct Killed {
    killed: Vec<ProcInfo>,
    failed: Vec<Value>,
}

impl Applied for Killed {
    fn describe(&self) -> Value {
        json!({
            "action": "kill",
            "signal": "SIGKILL",
            "processes": listing(&self.killed),
            "failed": self.failed,
        })
    }

    fn lift(self: Box<Self>) -> BoxFuture<'static, Result<(), String>> {
        // A killed process stays killed; whatever supervises it decides what comes next.
        Box::pin(async { Ok(()) })
    }
}

struct Paused {
    paused: Vec<ProcInfo>,
}

impl Applied for Paused {
    fn describe(&self) -> Value {
        json!({
            "action": "pause",
            "signal": "SIGSTOP",
            "processes": listing(&self.paused),
        })
    }

    fn lift(self: Box<Self>) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let errors: Vec<String> = self
                .paused
                .iter()
                .filter_map(|p| match signal(p, libc::SIGCONT) {
                    Ok(()) => None,
                    // It died (or was killed) while paused: nothing left to resume.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => None,
                    Err(e) => Some(format!("SIGCONT to pid {}: {e}", p.pid)),
                })
                .collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that is gone, or whose pid now belongs to another process, is never signalled.
    #[test]
    fn stale_targets_are_not_signalled() {
        let mut me = procfs::read_proc(std::process::id()).unwrap();
        me.start_time = me.start_time.wrapping_add(1);
        let err = signal(&me, 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn pids_that_must_not_be_touched_are_refused() {
        for pid in [1, std::process::id()] {
            let err = resolve(&Target::Pid(pid)).unwrap_err();
            assert_eq!(err.status, StatusCode::CONFLICT, "{}", err.message);
        }
        let err = resolve(&Target::Pid(u32::MAX)).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }
}
