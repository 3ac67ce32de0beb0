//! Helpers for tests/gpu.rs: build the TEST DOUBLE libcuda (fake_libcuda.c next to this file),
//! run `faultline gpu-hog` against it, and read the double's allocation log.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, Lines, Proc};

pub const MIB: u64 = 1024 * 1024;

/// The directory holding the compiled fake as `libcuda.so` and `libcuda.so.1` (both names
/// cudarc tries), or None when there is no C compiler: a loud skip, or under CI=true a failure
/// (see [`common::require_tool`]).
pub fn fake_lib_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fake_cuda");
        std::fs::create_dir_all(&dir).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_cuda/fake_libcuda.c");
        let tmp = dir.join(format!("libcuda.so.tmp{}", std::process::id()));
        let built = Command::new("cc")
            .args(["-Wall", "-Werror", "-shared", "-fPIC", "-o"])
            .arg(&tmp)
            .arg(&src)
            .status();
        match built {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("compiling the fake libcuda failed: {s}"),
            // The one way to be missing a tool here; any other failure is a real one.
            Err(e) => return Err(format!("a C compiler (`cc`: {e}) for the fake libcuda")),
        }
        std::fs::copy(&tmp, dir.join("libcuda.so.1")).unwrap();
        std::fs::rename(&tmp, dir.join("libcuda.so")).unwrap();
        Ok(dir)
    });
    match built {
        Ok(dir) => Some(dir),
        Err(what) => {
            common::require_tool(what, false);
            None
        }
    }
}

/// `faultline gpu-hog ARGS` against the fake, with the fake's settings and a log in `scratch`.
pub fn hog_command(lib: &Path, scratch: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = common::faultline_std();
    cmd.arg("gpu-hog")
        .args(args)
        .env("LD_LIBRARY_PATH", lib)
        .env("FAKE_CUDA_LOG", scratch.join("cuda.log"))
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A hog (or its parent) under the common deadline; its stdout read line by line, each line
/// within [`common::START_TIMEOUT`].
pub struct Hog {
    pub child: Proc,
    pub stdin: Option<ChildStdin>,
    pub lines: Lines,
    /// `allocated` lines seen before `holding`.
    pub progress: usize,
}

impl Hog {
    pub fn spawn(mut cmd: Command) -> Hog {
        let mut child = common::spawn(&mut cmd);
        let stdin = child.stdin.take();
        let lines = Lines::new(child.stdout.take().unwrap(), "the hog's stdout");
        Hog {
            child,
            stdin,
            lines,
            progress: 0,
        }
    }

    /// The next stdout line, which must come within the start-up deadline.
    pub fn next_line(&mut self) -> String {
        self.lines.next_line()
    }

    /// The `holding` event, counting the `allocated` lines before it.
    pub fn holding(&mut self) -> Value {
        while let Some(line) = self.lines.next_within(common::START_TIMEOUT) {
            let v: Value = serde_json::from_str(&line).unwrap();
            match v["event"].as_str() {
                Some("holding") => return v,
                Some("allocated") => self.progress += 1,
                other => panic!("unexpected event {other:?}"),
            }
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        panic!("no holding line: {stderr}");
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) takes integers only; the pid is our own unreaped child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// The `released` event and the exit status.
    pub fn released(mut self) -> (Value, std::process::ExitStatus) {
        let line = self.next_line();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "released", "{v}");
        let status = self
            .child
            .wait_within(common::START_TIMEOUT)
            .expect("the hog exits once it has released");
        (v, status)
    }
}

/// The fake's log: (ms, event, device, ptr, bytes, written).
pub fn log(scratch: &Path) -> Vec<(u64, String, u32, u64, u64, bool)> {
    let text = std::fs::read_to_string(scratch.join("cuda.log")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.contains("ctx-release"))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let field = |k: &str| {
                f.iter()
                    .find_map(|x| x.strip_prefix(&format!("{k}=")))
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            };
            let written = l.contains("written=1");
            (
                f[0].parse().unwrap(),
                f[1].to_string(),
                field("dev") as u32,
                field("ptr"),
                field("bytes"),
                written,
            )
        })
        .collect()
}

pub fn sum(log: &[(u64, String, u32, u64, u64, bool)], event: &str) -> u64 {
    log.iter().filter(|e| e.1 == event).map(|e| e.4).sum()
}

/// Every allocation was memset in full and freed, still holding what was written.
pub fn assert_all_written_and_freed(scratch: &Path, bytes: u64) {
    let log = log(scratch);
    assert_eq!(sum(&log, "alloc"), bytes, "{log:?}");
    assert_eq!(sum(&log, "memset"), bytes, "{log:?}");
    let allocs: Vec<u64> = log.iter().filter(|e| e.1 == "alloc").map(|e| e.3).collect();
    let frees: Vec<_> = log.iter().filter(|e| e.1 == "free").collect();
    assert_eq!(frees.len(), allocs.len(), "{log:?}");
    assert!(
        frees.iter().all(|f| f.5 && allocs.contains(&f.3)),
        "{log:?}"
    );
}

/// Gone, or a zombie waiting for a reaper that is not us.
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')),
    }
}

pub fn device(report: &Value, i: usize) -> (u64, u64, u64, u64, u64, bool) {
    let d = &report["devices"][i];
    let n = |k: &str| d[k].as_u64().unwrap();
    (
        n("asked"),
        n("held"),
        n("free_before"),
        n("free_after"),
        n("total"),
        d["clamped"].as_bool().unwrap(),
    )
}

/// Polls [`gone`] for up to 2 s.
pub fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    gone(pid)
}

/// `f`, which must finish within [`common::RUN_TIMEOUT`]: a hog that never says it holds, or
/// never goes, fails the test instead of hanging it.
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(common::RUN_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("the hog did not finish within {:?}", common::RUN_TIMEOUT))
}

/// A `RunningHog` command: the built binary against the fake, with 24 MiB already in use.
pub fn fake_command(lib: &Path, scratch: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.env("LD_LIBRARY_PATH", lib)
        .env("FAKE_CUDA_LOG", scratch.join("cuda.log"))
        .env("FAKE_CUDA_USED_MIB", "24");
    cmd
}
