//! Helpers shared by the integration tests: the real binary, scratch directories, free ports.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

pub fn faultline() -> Command {
    let mut cmd = Command::cargo_bin("faultline").expect("the faultline binary is built for tests");
    cmd.current_dir(repo_root());
    cmd
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Ports the OS says are free right now, all distinct.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Writes `yaml` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write experiment");
    path
}

/// Reads the run's JSON report.
pub fn report(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("report.json")).expect("report.json exists");
    serde_json::from_str(&text).expect("report.json is JSON")
}

/// The token the test agents are started with.
pub const AGENT_TOKEN: &str = "a-test-token-that-is-long-enough";

/// `faultline agent` on a free loopback port; killed when dropped.
pub struct AgentProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl AgentProcess {
    /// Starts it with `env` added (e.g. LD_LIBRARY_PATH for the fake libcuda).
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> AgentProcess {
        let log = dir.join("agent.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(["agent", "--listen", "127.0.0.1:0"])
            // Its own journal, never the user's: agents of parallel tests must not meet.
            .arg("--state-dir")
            .arg(dir.join("agent-state"))
            .env("FAULTLINE_AGENT_TOKEN", AGENT_TOKEN)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut agent = AgentProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("listening on http://").nth(1) {
                agent.addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                return agent;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
