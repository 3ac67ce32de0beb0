//! External processes the drill starts (`command:` services: haproxy, nginx, litellm,
//! `faultline simulate`...): start and wait for readiness, log capture, stop, and the process
//! faults (kill, pause/resume, restart).
//!
//! Each service runs as the leader of its own process group, so every signal reaches the
//! processes it starts too, and nothing it spawned survives a stop. Its stdout and stderr are
//! appended to `<log_dir>/<name>.log`; every start writes a header line there first.
//!
//! Nothing is ever left running: a failed start kills and reaps the group before returning,
//! `stop` ends with SIGKILL, and dropping a `RunningProcess` (or a `start` future, e.g. on
//! Ctrl-C) SIGKILLs the group.

mod logs;
mod process;
mod ready;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::exit::Failure;
use crate::experiment::CommandSpec;
use crate::units::human_duration;

pub use logs::log_tail;
use process::{describe_status, Leader};
use ready::{Probe, Readiness};

/// Lines of the service's log quoted in a start failure.
const TAIL_LINES: usize = 20;

/// One started `command:` service.
pub struct RunningProcess {
    name: String,
    spec: CommandSpec,
    log_path: PathBuf,
    /// None while the service is down (killed, stopped, or exited on its own).
    leader: Option<Leader>,
    /// Starts so far, numbered in the log headers.
    starts: u32,
}

/// Spawns `spec.command` and waits until it is ready.
///
/// A program named exactly `faultline` is this binary (`std::env::current_exe()`). `spec.env` is
/// added to faultline's own environment; `spec.cwd` is the working directory when set; stdin is
/// null; stdout and stderr are appended to `log_dir/<name>.log` (`log_dir` is created).
///
/// Readiness: `ready.tcp` = a TCP connect succeeds; `ready.http` = a GET answers 2xx; retried
/// every 50 ms until `ready.within`. Before spawning, the probe's address must not already
/// accept connections, or the probe would pass for whatever holds the port. With no `ready`,
/// the process must still be running after 200 ms.
///
/// Every failure is `Failure::Environment` naming the service, and leaves nothing running.
pub async fn start(
    name: &str,
    spec: &CommandSpec,
    log_dir: &Path,
) -> Result<RunningProcess, Failure> {
    let mut service = RunningProcess {
        name: name.to_string(),
        spec: spec.clone(),
        log_path: logs::log_path(log_dir, name),
        leader: None,
        starts: 0,
    };
    service.launch().await?;
    Ok(service)
}

impl RunningProcess {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The leader's pid (also its process-group id); None while the service is down.
    pub fn pid(&self) -> Option<u32> {
        self.leader.as_ref().map(Leader::pid)
    }

    /// Where its stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// SIGKILL to the whole process group, like an OOM kill, and reap it. The service stays
    /// down until `restart`. Killing a service that is already down does nothing.
    pub async fn kill(&mut self) -> Result<(), Failure> {
        let Some(mut leader) = self.leader.take() else {
            return Ok(());
        };
        let pid = leader.pid();
        leader.kill().await.map_err(|e| {
            Failure::Environment(format!(
                "service `{}` (pid {pid}) could not be killed: {e}",
                self.name
            ))
        })
    }

    /// SIGSTOP to the process group: it keeps its sockets but answers nothing (a gray failure).
    pub fn pause(&mut self) -> Result<(), Failure> {
        self.signal(libc::SIGSTOP, "pause")
    }

    /// SIGCONT to the process group.
    pub fn resume(&mut self) -> Result<(), Failure> {
        self.signal(libc::SIGCONT, "resume")
    }

    /// Starts it again and waits for readiness: after a kill or an exit, a fresh start; while
    /// running, a `stop` first. On failure the service is down and the error says why.
    pub async fn restart(&mut self) -> Result<(), Failure> {
        if let Some(mut leader) = self.leader.take() {
            // A failure here leaves nothing worth reporting: the new start below checks the
            // port and fails with a clear message if the old process still holds it.
            let _ = leader.terminate(self.spec.stop_grace.0).await;
        }
        self.launch().await
    }

    /// SIGCONT (in case it is paused), SIGTERM to the group, up to `stop_grace` for it to exit,
    /// then SIGKILL to whatever is left; reaps it. The leader's exit ends the grace: children
    /// that outlive it are killed at once.
    pub async fn stop(mut self) {
        if let Some(mut leader) = self.leader.take() {
            // Nothing to report to: the group got SIGKILL whatever happened, and a leader that
            // could not be reaped in time is collected by tokio's orphan reaper.
            let _ = leader.terminate(self.spec.stop_grace.0).await;
        }
    }

    /// How the leader ended, if it has already exited on its own (not through `kill`/`stop`,
    /// which take it first): "was killed by signal 9 (SIGKILL)". Reaps it; never waits. The
    /// teardown asks before stopping, so a service that died mid-run is said, not hidden
    /// behind "stopped".
    pub fn exited_on_its_own(&mut self) -> Option<String> {
        let status = self.leader.as_mut()?.try_wait().ok()??;
        Some(describe_status(status))
    }

    /// Resolves when the process exits on its own (not through `kill`/`stop`, which take it
    /// first), with what happened: "exited with status 137", "was killed by signal 9 (SIGKILL)".
    /// Whatever is left of its group is then killed, so it cannot hold the service's port, and
    /// the service counts as down (`pid()` is None; `restart` brings it back).
    ///
    /// Cancel-safe. While the service is down it never resolves, so it can sit in a `select!`.
    pub async fn exited(&mut self) -> String {
        let Some(leader) = self.leader.as_mut() else {
            return std::future::pending().await;
        };
        let how = match leader.wait().await {
            Ok(status) => describe_status(status),
            Err(e) => format!("could not be watched any more ({e})"),
        };
        if let Some(mut leader) = self.leader.take() {
            let _ = leader.kill().await;
        }
        how
    }

    fn signal(&mut self, sig: libc::c_int, verb: &str) -> Result<(), Failure> {
        let Some(leader) = self.leader.as_ref() else {
            return Err(Failure::Environment(format!(
                "cannot {verb} service `{}`: it is not running",
                self.name
            )));
        };
        leader.signal(sig).map_err(|e| {
            Failure::Environment(format!(
                "cannot {verb} service `{}` (pid {}): {e}",
                self.name,
                leader.pid()
            ))
        })
    }

    /// One start: check the port is free, spawn, wait for readiness; on failure kill and reap
    /// the group before returning.
    async fn launch(&mut self) -> Result<(), Failure> {
        let name = self.name.as_str();
        let probes = match &self.spec.ready {
            Some(ready) => Probe::from_spec(ready)
                .await
                .map_err(|why| Failure::Environment(format!("service `{name}`: {why}")))?,
            None => Vec::new(),
        };
        if let Some(addr) = ready::already_listening(&probes).await {
            return Err(Failure::Environment(format!(
                "service `{name}`: something already accepts connections on {addr} before it \
                 started (an earlier run still holding the port?), so its readiness probe \
                 would not tell whether it is up"
            )));
        }
        self.starts += 1;
        let log = logs::open(&self.log_path, name, &self.spec.command, self.starts)?;
        let since = log.offset;
        let mut leader = process::spawn(name, &self.spec, log)?;
        let within = self
            .spec
            .ready
            .as_ref()
            .map_or(ready::SETTLE, |r| r.within.0);
        let problem = match ready::wait_ready(&mut leader, &probes, within).await {
            Readiness::Ready => {
                self.leader = Some(leader);
                return Ok(());
            }
            // Status 0 this early is almost always a program that daemonized (forked into the
            // background and returned); faultline can only supervise a foreground process.
            Readiness::Exited { how, success: true } => format!(
                "service `{name}` {how} before it was ready (if it daemonizes, run it in the \
                 foreground, e.g. nginx `daemon off;`, haproxy without -D)"
            ),
            Readiness::Exited { how, .. } => format!("service `{name}` {how} before it was ready"),
            Readiness::TimedOut { last } => {
                let probes: Vec<String> = probes.iter().map(ToString::to_string).collect();
                format!(
                    "service `{name}` was not ready within {} (probe: {}; last attempt: {last})",
                    human_duration(within),
                    probes.join(", ")
                )
            }
        };
        // Kill before reading the log, so its last words are in it.
        let killed = leader.kill().await;
        let mut message = format!(
            "{problem}; {}",
            logs::tail_for_message(&self.log_path, since, TAIL_LINES)
        );
        if let Err(e) = killed {
            message.push_str(&format!("\n(and it could not be stopped cleanly: {e})"));
        }
        Err(Failure::Environment(message))
    }
}
