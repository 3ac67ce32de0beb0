//! Spawning a service as the leader of its own process group, signalling that group, and
//! reaping it. Signals go to the group (`kill(-pgid)`), never to the leader alone: a wrapper
//! script or a server with workers must pause, stop and die as one.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use super::logs::StartLog;
use crate::exit::Failure;
use crate::experiment::CommandSpec;

/// How long a SIGKILLed group may take to be reaped. SIGKILL cannot be caught, so only a
/// process stuck in the kernel (uninterruptible I/O) is slower; we give up waiting rather than
/// hang the teardown, and tokio's orphan reaper collects it later.
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// A program named exactly `faultline` is this binary, so an experiment can run
/// `faultline simulate` as an external process without faultline being on PATH.
pub(super) fn resolve_program(program: &str) -> Result<PathBuf, String> {
    if program == "faultline" {
        std::env::current_exe().map_err(|e| format!("cannot locate this faultline binary: {e}"))
    } else {
        Ok(PathBuf::from(program))
    }
}

/// The leader of a started service. Its pid is also the process-group id, since it was spawned
/// with `process_group(0)`.
pub(super) struct Leader {
    child: Child,
    pgid: i32,
}

/// Spawns `spec.command` with its environment, working directory and log.
pub(super) fn spawn(name: &str, spec: &CommandSpec, log: StartLog) -> Result<Leader, Failure> {
    let Some((program, args)) = spec.command.split_first() else {
        return Err(Failure::Environment(format!(
            "service `{name}` has an empty command"
        )));
    };
    let resolved = resolve_program(program)
        .map_err(|why| Failure::Environment(format!("service `{name}`: {why}")))?;
    // A missing cwd makes spawn fail with ENOENT too, which would read as "program not found".
    if let Some(cwd) = &spec.cwd {
        if !cwd.is_dir() {
            return Err(Failure::Environment(format!(
                "service `{name}`: its working directory `{}` does not exist or is not a directory",
                cwd.display()
            )));
        }
    }
    let mut cmd = Command::new(&resolved);
    cmd.args(args);
    // A service has no business with the agents' tokens (the default variable and every
    // host's `token_env`); `env:` below can still pass one on purpose.
    cmd.env_remove(crate::agent::auth::DEFAULT_TOKEN_ENV);
    for var in &spec.withheld_env {
        cmd.env_remove(var);
    }
    cmd.envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.stdout))
        .stderr(Stdio::from(log.stderr))
        // Its own group, so one signal reaches every process it starts. It also keeps the
        // terminal's Ctrl-C away from it: faultline stops services itself, in order, on Ctrl-C.
        .process_group(0)
        // The last resort if a `Leader` is dropped unreaped (its own Drop kills the group).
        .kill_on_drop(true);
    // If faultline itself is SIGKILLed, nothing runs its rollback: the kernel then kills the
    // service's leader (a paused one included), so no service outlives a run it belonged to.
    // SAFETY: runs in the child between fork and exec, where only async-signal-safe calls are
    // allowed; prctl is one, and it touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| spawn_error(name, program, &resolved, &e))?;
    match child.id().and_then(|id| i32::try_from(id).ok()) {
        // pgid 0 or 1 would turn kill(-pgid) into "our own group" or "every process".
        Some(pgid) if pgid > 1 => Ok(Leader { child, pgid }),
        _ => {
            let _ = child.start_kill();
            Err(Failure::Environment(format!(
                "service `{name}`: `{program}` started without a usable process id"
            )))
        }
    }
}

fn spawn_error(name: &str, program: &str, resolved: &std::path::Path, e: &io::Error) -> Failure {
    let why = match e.kind() {
        io::ErrorKind::NotFound if program.contains('/') && resolved.exists() => {
            "its interpreter (the #! line) was not found".to_string()
        }
        io::ErrorKind::NotFound if program.contains('/') => "no such file".to_string(),
        io::ErrorKind::NotFound => "not found on PATH".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied (is it executable?)".to_string(),
        _ => e.to_string(),
    };
    Failure::Environment(format!(
        "service `{name}`: cannot start `{}`: {why}",
        resolved.display()
    ))
}

impl Leader {
    pub(super) fn pid(&self) -> u32 {
        self.pgid.unsigned_abs()
    }

    /// Sends `sig` to every process of the group. ESRCH (nothing left) comes back as an error;
    /// callers that are tearing down ignore it.
    pub(super) fn signal(&self, sig: libc::c_int) -> io::Result<()> {
        signal_group(self.pgid, sig)
    }

    /// Waits for the leader to exit and reaps it. Cancel-safe (tokio's `Child::wait` is), so it
    /// can race a probe or sit in a `select!`; after the first exit it returns the same status.
    pub(super) async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// The exit status if the leader has already exited (and reaps it), without waiting.
    pub(super) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// SIGKILL to the whole group, then reap the leader.
    ///
    /// The group signal goes out even when the leader has already exited and been reaped: it
    /// sweeps up children that outlived it, which would otherwise keep the service's port. The
    /// pid cannot have been reused in between, because the leader was reaped moments ago (or the
    /// group still has members, which keeps its id reserved).
    pub(super) async fn kill(&mut self) -> io::Result<()> {
        match self.signal(libc::SIGKILL) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e),
        }
        match tokio::time::timeout(REAP_LIMIT, self.child.wait()).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "pid {} did not exit within {}s of SIGKILL",
                    self.pgid,
                    REAP_LIMIT.as_secs()
                ),
            )),
        }
    }

    /// The polite stop: SIGCONT (a paused process cannot act on SIGTERM), SIGTERM to the group,
    /// up to `grace` for the leader to exit, then SIGKILL for whatever is left.
    ///
    /// The leader's exit ends the grace: a child still running after its parent has gone is an
    /// orphan that would hold the service's port, so it is killed at once.
    pub(super) async fn terminate(&mut self, grace: Duration) -> io::Result<()> {
        let _ = self.signal(libc::SIGCONT);
        let _ = self.signal(libc::SIGTERM);
        let _ = tokio::time::timeout(grace, self.child.wait()).await;
        self.kill().await
    }
}

impl Drop for Leader {
    /// A leader dropped unreaped (a start cancelled mid-wait, a `RunningProcess` dropped without
    /// `stop`) takes its whole group with it; `kill_on_drop` alone would only kill the leader.
    fn drop(&mut self) {
        // `id()` is None once the leader has been reaped: then the group was already killed, and
        // signalling a stale id later could hit a stranger.
        if self.child.id().is_some() {
            let _ = self.signal(libc::SIGKILL);
        }
    }
}

/// `kill(-pgid, sig)`.
fn signal_group(pgid: i32, sig: libc::c_int) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        ));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours. The target is -pgid
    // with pgid > 1 (checked above), i.e. exactly the group we created with process_group(0);
    // never 0 (our own group) or -1 (every process we may signal).
    let rc = unsafe { libc::kill(-pgid, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// "exited with status 3", "was killed by signal 9 (SIGKILL)".
pub(super) fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(sig) => {
            let dumped = if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            };
            match signal_name(sig) {
                Some(n) => format!("was killed by signal {sig} ({n}{dumped})"),
                None => format!("was killed by signal {sig}{dumped}"),
            }
        }
        None => format!("ended ({status})"),
    }
}

fn signal_name(sig: libc::c_int) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faultline_means_this_binary() {
        let me = std::env::current_exe().unwrap();
        assert_eq!(resolve_program("faultline").unwrap(), me);
        assert_eq!(
            resolve_program("./faultline").unwrap(),
            PathBuf::from("./faultline")
        );
        assert_eq!(resolve_program("sh").unwrap(), PathBuf::from("sh"));
    }

    #[test]
    fn statuses_read_like_a_shell() {
        assert_eq!(
            describe_status(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(libc::SIGKILL)),
            "was killed by signal 9 (SIGKILL)"
        );
    }

    #[test]
    fn never_signals_our_own_group_or_everyone() {
        assert!(signal_group(0, 0).is_err());
        assert!(signal_group(1, 0).is_err());
        assert!(signal_group(-5, 0).is_err());
    }
}
