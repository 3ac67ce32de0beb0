//! Starting and stopping a GPU hog from the orchestrator or the live-host agent.
//!
//! The memory is held by a child process (`faultline gpu-hog`), never by the controller: the
//! driver frees a process's allocations when it dies, so no failure of the controller (a
//! panic, SIGKILL, an OOM kill) can leave the pressure applied. Three mechanisms end the hog:
//! `release` (SIGTERM), the controller's death (the hog's PR_SET_PDEATHSIG, and its stdin
//! pipe closing), and `kill_on_drop` when a `RunningHog` is dropped unreleased.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::plan::Target;
use super::report::{HogEvent, HogReport, ReleaseReport};
use crate::exit::Failure;

/// How long the hog may take to load the driver and create contexts, on top of its ramp. A
/// cold `cuInit` on a multi-GPU host without persistence mode can take tens of seconds.
pub const START_LIMIT: Duration = Duration::from_secs(120);

/// How long `release` waits after SIGTERM before SIGKILL.
const RELEASE_GRACE: Duration = Duration::from_secs(5);

/// Bounds the stderr kept for error messages.
const STDERR_LIMIT: usize = 16 * 1024;

/// A validated GPU memory pressure fault: what `faultline gpu-hog` runs.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuPressure {
    pub target: Target,
    /// Device ordinals; every device when `None`.
    pub devices: Option<Vec<u32>>,
    /// Allocation size in bytes.
    pub chunk: u64,
    /// Spread the allocations over this long; as fast as possible when `None`.
    pub ramp: Option<Duration>,
}

impl GpuPressure {
    /// The `gpu-hog` flags that reproduce this pressure exactly (bytes and nanoseconds, so
    /// nothing is rounded on the way).
    pub fn hog_args(&self) -> Vec<String> {
        let mut args = match self.target {
            Target::Allocate(b) => vec!["--allocate".to_string(), b.to_string()],
            // `{}` prints the shortest text that parses back to the same f64.
            Target::Fraction(f) => vec!["--fraction".to_string(), f.to_string()],
            Target::LeaveFree(b) => vec!["--leave-free".to_string(), b.to_string()],
        };
        for d in self.devices.iter().flatten() {
            args.extend(["--device".to_string(), d.to_string()]);
        }
        args.extend(["--chunk".to_string(), self.chunk.to_string()]);
        if let Some(ramp) = self.ramp {
            args.extend(["--ramp".to_string(), format!("{}ns", ramp.as_nanos())]);
        }
        args
    }
}

/// A hog that reported holding its memory.
#[derive(Debug)]
pub struct RunningHog {
    child: Child,
    /// Kept open: the hog releases on end of stdin, so dropping this is a release too.
    _stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Stderr,
    report: HogReport,
}

impl RunningHog {
    /// Spawns `<current exe> gpu-hog ...` and waits until it holds the memory.
    ///
    /// Call it from a thread that outlives the hog (any tokio worker thread; never inside
    /// `spawn_blocking`): Linux delivers the hog's parent-death signal when the *thread* that
    /// spawned it exits, not only the process.
    pub async fn start(p: &GpuPressure) -> Result<RunningHog, Failure> {
        let exe = std::env::current_exe().map_err(|e| {
            Failure::Environment(format!("cannot locate this faultline binary: {e}"))
        })?;
        Self::start_command(Command::new(exe), p).await
    }

    /// [`RunningHog::start`] with the program chosen by the caller: `cmd` names a faultline
    /// binary (and any environment for it); `gpu-hog` and the pressure's flags are appended.
    /// Tests use it to run the built binary against a fake libcuda, since inside a test the
    /// current executable is the test runner.
    pub async fn start_command(mut cmd: Command, p: &GpuPressure) -> Result<RunningHog, Failure> {
        let program = Path::new(cmd.as_std().get_program()).display().to_string();
        cmd.arg("gpu-hog")
            .args(p.hog_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            Failure::Environment(format!("cannot start the GPU hog `{program}`: {e}"))
        })?;
        let stdin = child.stdin.take();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Failure::Environment(
                "the GPU hog started without its output pipes".into(),
            ));
        };
        let mut stderr = Stderr::collect(stderr);
        let mut stdout = BufReader::new(stdout).lines();
        let limit = START_LIMIT + p.ramp.unwrap_or_default();
        let holding = tokio::time::timeout(limit, async {
            while let Ok(Some(line)) = stdout.next_line().await {
                // Progress lines and anything unexpected are skipped; only `holding` counts.
                if let Ok(HogEvent::Holding(report)) = serde_json::from_str(&line) {
                    return Some(report);
                }
            }
            None
        })
        .await;
        match holding {
            Ok(Some(report)) => Ok(RunningHog {
                child,
                _stdin: stdin,
                stdout,
                stderr,
                report,
            }),
            Ok(None) => {
                // It closed stdout: it is exiting. Its stderr says why.
                let status = reap(&mut child).await;
                Err(Failure::Environment(format!(
                    "GPU memory pressure did not start: the hog {}{}",
                    describe(status),
                    stderr.tail().await
                )))
            }
            Err(_) => {
                let _ = reap(&mut child).await;
                Err(Failure::Environment(format!(
                    "GPU memory pressure did not start: the hog did not hold its memory within \
                     {} and was killed{}",
                    crate::units::human_duration(limit),
                    stderr.tail().await
                )))
            }
        }
    }

    /// What the hog holds, per device.
    pub fn report(&self) -> &HogReport {
        &self.report
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, up to 5 s for the `released` line and the exit, then SIGKILL.
    ///
    /// `Ok` with the hog's release report when it freed everything and exited 0. Otherwise
    /// `Err`, after making sure the process is gone: the driver returns a dead process's memory,
    /// so even then nothing stays held; the error says what went wrong.
    pub async fn release(mut self) -> Result<ReleaseReport, Failure> {
        // `id()` is None once reaped; a pid we have not reaped cannot have been reused.
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .filter(|&p| p > 1)
        {
            // SAFETY: kill(2) takes two integers and touches no memory of ours; `pid` is our
            // own unreaped child (checked above), never 0, 1 or negative.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let stdout = &mut self.stdout;
        let child = &mut self.child;
        let graceful = tokio::time::timeout(RELEASE_GRACE, async {
            let mut released = None;
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Ok(HogEvent::Released(r)) = serde_json::from_str(&line) {
                    released = Some(r);
                }
            }
            (released, child.wait().await)
        })
        .await;
        match graceful {
            Ok((Some(report), Ok(status))) if status.success() => Ok(report),
            Ok((_, status)) => Err(Failure::Environment(format!(
                "the GPU hog {} while releasing its memory (the driver frees a dead \
                 process's memory){}",
                describe(status.ok()),
                self.stderr.tail().await
            ))),
            Err(_) => {
                let status = reap(&mut self.child).await;
                Err(Failure::Environment(format!(
                    "the GPU hog did not release its memory within {}s of SIGTERM and was \
                     killed ({}; the driver frees a dead process's memory){}",
                    RELEASE_GRACE.as_secs(),
                    describe(status),
                    self.stderr.tail().await
                )))
            }
        }
    }
}

/// SIGKILL (harmless if it already exited) and reap, bounded.
async fn reap(child: &mut Child) -> Option<ExitStatus> {
    let _ = child.start_kill();
    tokio::time::timeout(RELEASE_GRACE, child.wait())
        .await
        .ok()
        .and_then(Result::ok)
}

fn describe(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => "exited".to_string(),
        },
        None => "could not be reaped".to_string(),
    }
}

/// The hog's stderr, read in the background (a full pipe would block it); the first
/// `STDERR_LIMIT` bytes are kept for error messages.
#[derive(Debug)]
struct Stderr {
    text: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Stderr {
    fn collect(mut stderr: tokio::process::ChildStderr) -> Stderr {
        let text = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&text);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    if s.len() < STDERR_LIMIT {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            }
        });
        Stderr { text, reader }
    }

    /// ": <last stderr line>" or nothing, once the hog has exited: waits (briefly) for the
    /// reader to reach the end of the pipe, so the explanation is not cut off.
    async fn tail(&mut self) -> String {
        // Awaiting a finished JoinHandle again would panic; a second call just reads the text.
        if !self.reader.is_finished() {
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.reader).await;
        }
        let text = self.text.lock().map(|s| s.clone()).unwrap_or_default();
        last_line(&text)
    }
}

fn last_line(text: &str) -> String {
    match text.lines().map(str::trim).rfind(|l| !l.is_empty()) {
        Some(last) => format!(": {}", last.trim_start_matches("error: ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_stderr_line_explains_a_failure() {
        assert_eq!(
            last_line("warming up\nerror: no CUDA driver\n\n"),
            ": no CUDA driver"
        );
        assert_eq!(last_line(""), "");
    }
}
