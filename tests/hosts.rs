//! Experiments that act on a live host through its agent: a process fault is applied and
//! lifted by the run, and when the controller dies mid-fault the agent lifts it by itself
//! within the lease (the dead-man's switch), end to end with real processes.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_ports, write, AgentProcess, Proc, AGENT_TOKEN as TOKEN};

/// A process to pause, killed when dropped.
struct Target(Child);

impl Target {
    fn start() -> Target {
        Target(Command::new("sleep").arg("60").spawn().unwrap())
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    /// The state letter in /proc/<pid>/stat: S sleeping, T stopped.
    fn state(&self) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        stat.rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .chars()
            .next()
            .unwrap()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `agent` is written into the file as it is: an IP literal or a `host:port` with a name.
fn drill(agent: &str, pid: u32, lift_at: &str, end_at: &str) -> String {
    let host = free_ports(1)[0];
    format!(
        r#"version: 1
name: live-host
hosts:
  node: {{ agent: "{agent}", token_env: FAULTLINE_TEST_AGENT_TOKEN, lease: 1s }}
services:
  sim: {{ simulate: {{ listen: "127.0.0.1:{host}" }} }}
load:
  s: {{ url: "http://127.0.0.1:{host}/v1/chat/completions", rate: 5/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 1s, inject: {{ id: frozen, host: node, fault: {{ process: {{ action: pause, pid: {pid} }} }} }} }}
  - {{ at: {lift_at}, lift: frozen }}
  - {{ at: {end_at}, end: true }}
"#
    )
}

fn wait_for_state(target: &Target, state: char, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if target.state() == state {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `faultline run FILE` in the background, as the controller, with the agents' token.
fn start_run(file: &std::path::Path, dir: &std::path::Path) -> Proc {
    common::spawn(
        common::faultline_std()
            .arg("run")
            .arg(file)
            .arg("--quiet")
            .arg("--out")
            .arg(dir.join("out"))
            .env("FAULTLINE_TEST_AGENT_TOKEN", TOKEN)
            .stdout(Stdio::null()),
    )
}

/// An agent, a target process, and a run that pauses it at 1 s through the agent, named in the
/// file as `agent_host:<its port>`; returns once the target is paused.
fn paused_by_a_run(
    agent_host: &str,
    lift_at: &str,
    end_at: &str,
) -> (tempfile::TempDir, AgentProcess, Target, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(dir.path(), &[]);
    let target = Target::start();
    let named = format!("{agent_host}:{}", agent.addr.port());
    let file = write(
        dir.path(),
        "drill.yaml",
        &drill(&named, target.pid(), lift_at, end_at),
    );
    let run = start_run(&file, dir.path());
    assert!(
        wait_for_state(&target, 'T', Duration::from_secs(5)),
        "the target was never paused"
    );
    (dir, agent, target, run)
}

/// The agent is named `localhost:PORT`, as a cluster names one by its Service's DNS name: the
/// run resolves the name when it connects (localhost may give ::1 first, where nothing
/// listens; the connector goes on to 127.0.0.1).
#[test]
fn a_run_pauses_and_resumes_a_process_on_a_live_host_named_by_dns() {
    let (dir, _agent, target, mut run) = paused_by_a_run("localhost", "2500ms", "3s");
    let status = run
        .wait_within(Duration::from_secs(30))
        .expect("the run, which ends at 3 s, still running after 30 s");
    assert_eq!(status.code(), Some(0));
    // The window's evidence is what the agent said it signalled.
    let report = common::report(&dir.path().join("out"));
    let evidence = &report["fault_windows"][0]["evidence"];
    assert_eq!(evidence["kind"], "processes", "{evidence}");
    assert_eq!(evidence["signalled"], 1, "{evidence}");
    // Resumed before the run ended; a resumed process may still show 'R' for a moment.
    assert!(
        wait_for_state(&target, 'S', Duration::from_secs(2)),
        "the target was not resumed by the lift: {}",
        target.state()
    );
}

#[test]
fn when_the_controller_dies_the_agent_lifts_within_the_lease() {
    let (_dir, _agent, target, mut run) = paused_by_a_run("127.0.0.1", "50s", "60s");
    // Held across several renewals first: the lease alone would have lapsed by now.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        target.state(),
        'T',
        "the fault lapsed although the controller renewed it"
    );
    run.kill().unwrap(); // SIGKILL: no rollback, no goodbye
    let _ = run.wait();
    let killed_at = Instant::now();
    assert!(
        wait_for_state(&target, 'S', Duration::from_millis(1600)),
        "the agent did not lift the fault within the 1 s lease"
    );
    assert!(killed_at.elapsed() <= Duration::from_millis(1600));
}

#[test]
fn a_missing_agent_token_fails_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(dir.path(), &[]);
    let file = write(
        dir.path(),
        "drill.yaml",
        &drill(&agent.addr.to_string(), 1, "2s", "3s"),
    );
    let assert = common::faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .env_remove("FAULTLINE_TEST_AGENT_TOKEN")
        .assert()
        .code(4);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("FAULTLINE_TEST_AGENT_TOKEN is not set"),
        "{stderr}"
    );
}

/// Every file under `dir`, recursively, as text (lossy).
fn all_text(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out
}

/// A host's token under a custom `token_env` name is the controller's alone: a `command:`
/// service does not inherit it, and it reaches none of the run's files or output.
#[test]
fn a_custom_token_env_is_withheld_from_command_services_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(dir.path(), &[]);
    let host = free_ports(1)[0];
    let yaml = format!(
        r#"version: 1
name: withheld
hosts:
  node: {{ agent: "{agent}", token_env: FAULTLINE_TEST_AGENT_TOKEN, lease: 1s }}
services:
  sim: {{ simulate: {{ listen: "127.0.0.1:{host}" }} }}
  dump:
    command: [sh, -c, 'env > "$FAULTLINE_RUN_DIR/env.txt"; exec sleep 30']
    env: {{ FAULTLINE_TEST_MARKER: "present" }}
load:
  s: {{ url: "http://127.0.0.1:{host}/v1/chat/completions", rate: 5/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 1s, end: true }}
"#,
        agent = agent.addr
    );
    let file = write(dir.path(), "drill.yaml", &yaml);
    let out_dir = dir.path().join("out");
    let output = common::faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out_dir)
        .env("FAULTLINE_TEST_AGENT_TOKEN", TOKEN)
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let files = all_text(&out_dir);
    let (_, env) = files
        .iter()
        .find(|(p, _)| p.ends_with("env.txt"))
        .unwrap_or_else(|| panic!("the service wrote no env.txt under {}", out_dir.display()));
    // The dump is real: it holds what the service was given.
    assert!(env.contains("FAULTLINE_TEST_MARKER=present"), "{env}");
    assert!(!env.contains("FAULTLINE_TEST_AGENT_TOKEN"), "{env}");
    assert!(!env.contains(TOKEN), "{env}");
    for (path, text) in &files {
        assert!(!text.contains(TOKEN), "the token is in {}", path.display());
    }
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));
}
