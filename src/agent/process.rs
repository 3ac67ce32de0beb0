//! Process faults on the agent's host: SIGKILL (a crash) and SIGSTOP (a gray failure: the
//! process holds its sockets and memory but answers nothing) until the lift sends SIGCONT.
//!
//! Signals go to each matched pid, not to process groups: the controller names processes, and
//! a group may well include the very supervisor whose reaction the drill is meant to observe.

use std::io;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::fault::Applied;
use super::journal::{Journal, What};
use super::model::{ApiError, ProcessAction, ProcessFault, Target};
use super::procfs::{self, ProcInfo};

/// Starts a process fault: finds its targets, then signals them.
pub async fn apply(
    spec: ProcessFault,
    journal: Arc<Journal>,
) -> Result<Box<dyn Applied>, ApiError> {
    let target = spec.target().map_err(ApiError::bad_request)?;
    let action = spec.action;
    // /proc reads are blocking file I/O (a `match` reads every process on the host), and so
    // is the journal's fsync.
    tokio::task::spawn_blocking(move || {
        let victims = resolve(&target)?;
        match action {
            ProcessAction::Kill => kill(victims),
            ProcessAction::Pause => pause(victims, journal),
        }
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("applying the process fault failed: {e}"),
        )
    })?
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
///
/// The targets are journaled before the first SIGSTOP: an agent killed at any point after it
/// leaves a record, so its successor resumes them.
fn pause(victims: Vec<ProcInfo>, journal: Arc<Journal>) -> Result<Box<dyn Applied>, ApiError> {
    let ids = journal.record(What::Paused, &victims).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("nothing was paused: {e}"),
        )
    })?;
    let mut paused = Vec::new();
    for (p, id) in victims.into_iter().zip(ids.iter().copied()) {
        match signal(&p, libc::SIGSTOP) {
            Ok(()) => paused.push((p, id)),
            Err(e) => {
                let failed = failure(&p, &e);
                for (done, _) in &paused {
                    let _ = signal(done, libc::SIGCONT);
                }
                if let Err(e) = journal.forget(&ids) {
                    eprintln!("faultline agent: {e}");
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
    Ok(Box::new(Paused { paused, journal }))
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
    /// Each process with its journal record.
    paused: Vec<(ProcInfo, u64)>,
    journal: Arc<Journal>,
}

impl Paused {
    /// SIGCONT to each; the journal forgets those resumed (or gone) and keeps those that
    /// could not be, for a successor to try again.
    fn resume(&self) -> Result<(), String> {
        let mut done = Vec::new();
        let mut errors = Vec::new();
        for (p, id) in &self.paused {
            match signal(p, libc::SIGCONT) {
                Ok(()) => done.push(*id),
                // It died (or was killed) while paused: nothing left to resume.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => done.push(*id),
                Err(e) => errors.push(format!("SIGCONT to pid {}: {e}", p.pid)),
            }
        }
        // Resumed either way; a stale record only makes a successor SIGCONT a running process
        // (a no-op) or find it gone, so this is worth a log line, not a failed lift.
        if let Err(e) = self.journal.forget(&done) {
            eprintln!("faultline agent: {e}");
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Applied for Paused {
    fn describe(&self) -> Value {
        let procs: Vec<Value> = self.paused.iter().map(|(p, _)| p.to_json()).collect();
        json!({
            "action": "pause",
            "signal": "SIGSTOP",
            "processes": procs,
        })
    }

    fn lift(self: Box<Self>) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            // The journal's fsync is blocking I/O.
            tokio::task::spawn_blocking(move || self.resume())
                .await
                .unwrap_or_else(|e| Err(format!("resuming failed: {e}")))
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
