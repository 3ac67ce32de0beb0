//! How runs end: a signal mid-fault rolls back and exits 3; a taken port is an environment
//! failure (exit 4) that names the address. Afterwards no port is left held.

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_ports, write, Lines, START_TIMEOUT};

fn long_drill(ports: &[u16]) -> String {
    format!(
        r#"version: 1
name: long
services:
  host:   # a child process, so the test can check it is gone afterwards
    command: [faultline, simulate, --listen, "127.0.0.1:{h}"]
    ready: {{ tcp: "127.0.0.1:{h}", within: 5s }}
proxies:
  p: {{ listen: "127.0.0.1:{p}", upstream: "127.0.0.1:{h}" }}
load:
  s: {{ url: "http://127.0.0.1:{p}/v1/chat/completions", rate: 20/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 1s, inject: {{ proxy: p, fault: {{ blackhole: {{}} }} }} }}
  - {{ at: 60s, end: true }}
"#,
        h = ports[0],
        p = ports[1]
    )
}

fn interrupt_mid_fault(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let file = write(dir.path(), "long.yaml", &long_drill(&ports));
    let out = dir.path().join("out");
    let mut child = common::spawn_run(&file, &out);
    let mut stderr = Lines::new(child.stderr.take().unwrap(), "the run's stderr");
    // Mid-fault means after the run says the fault is in force (it prints the line once the
    // inject has been applied), however long start-up took on this machine.
    stderr.until("] inject ", START_TIMEOUT);
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child
        .wait_within(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("still running 10 s after {signal}"))
        .code();
    let stderr = stderr.read_to_end(Duration::from_secs(10));
    assert_eq!(code, Some(3), "{signal}: stderr:\n{stderr}");
    let pid = service_pid(&stderr);
    assert!(
        !alive(pid),
        "the service process {pid} outlived the run after {signal}"
    );
    assert!(stderr.contains("lifted"), "{stderr}");
    for port in &ports {
        assert!(
            TcpListener::bind(("127.0.0.1", *port)).is_ok(),
            "port {port} still held after {signal}"
        );
    }
    let report = common::report(&out);
    assert_eq!(report["exit_code"], 3);
}

/// The pid the run printed for its `host` service.
fn service_pid(stderr: &str) -> u32 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("service host started (pid "))
        .unwrap_or_else(|| panic!("no pid in:\n{stderr}"));
    line["service host started (pid ".len()..]
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A process that exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn sigint_mid_fault_rolls_back_and_exits_3() {
    interrupt_mid_fault("-INT");
}

#[test]
fn sigterm_mid_fault_rolls_back_and_exits_3() {
    interrupt_mid_fault("-TERM");
}

#[test]
fn a_taken_port_is_an_environment_failure_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let other = free_ports(1)[0];
    let file = write(dir.path(), "taken.yaml", &long_drill(&[other, port]));
    let assert = common::faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .code(4);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("already in use"),
        "{stderr}"
    );
    // The service that did start was stopped again.
    assert!(
        TcpListener::bind(("127.0.0.1", other)).is_ok(),
        "port {other} still held"
    );
}

#[test]
fn abort_if_halts_the_run_lifts_everything_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let yaml = format!(
        r#"version: 1
name: abort
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{h}" }} }}
proxies:
  p: {{ listen: "127.0.0.1:{p}", upstream: "127.0.0.1:{h}" }}
load:
  s: {{ url: "http://127.0.0.1:{p}/v1/chat/completions", rate: 50/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 1s, inject: {{ proxy: p, fault: {{ http_error: {{ status: 500 }} }} }} }}
  - {{ at: 30s, end: true }}
abort_if: {{ error_rate_over: 50%, for: 1s }}
"#,
        h = ports[0],
        p = ports[1]
    );
    let file = write(dir.path(), "abort.yaml", &yaml);
    let out = dir.path().join("out");
    let started = Instant::now();
    let assert = common::faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(3);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the run was not cut short"
    );
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("abort_if: clients saw") && stderr.contains("over the limit of 50%"),
        "{stderr}"
    );
    assert!(stderr.contains("lifted 1 fault(s)"), "{stderr}");
    for port in &ports {
        assert!(
            TcpListener::bind(("127.0.0.1", *port)).is_ok(),
            "port {port} still held"
        );
    }
    let report = common::report(&out);
    assert_eq!(report["exit_code"], 3);
}

#[test]
fn dry_run_prints_the_plan_and_starts_nothing() {
    // The quickstart, moved to free ports: its own are tests/drills.rs's, which may be running
    // it right now (under nextest every test runs at once).
    let dir = tempfile::tempdir().unwrap();
    let mut yaml =
        std::fs::read_to_string(common::repo_root().join("experiments/quickstart.yaml")).unwrap();
    let shipped = [19100, 19101, 19102, 19111];
    let ports = free_ports(shipped.len());
    for (from, to) in shipped.iter().zip(&ports) {
        assert!(
            yaml.contains(&format!("127.0.0.1:{from}")),
            "the quickstart moved off {from}"
        );
        yaml = yaml.replace(&format!("127.0.0.1:{from}"), &format!("127.0.0.1:{to}"));
    }
    let file = write(dir.path(), "quickstart.yaml", &yaml);
    // Its gateway port is taken: a real run would fail, a dry run never binds it.
    let _taken = TcpListener::bind(("127.0.0.1", ports[0])).unwrap();
    let assert = common::faultline()
        .arg("run")
        .arg(&file)
        .arg("--dry-run")
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    let host = format!("simulated host on 127.0.0.1:{}", ports[1]);
    for words in [
        host.as_str(),
        "inject `error-burst` on primary-proxy",
        "failover_within: 1s",
        "nothing was started",
    ] {
        assert!(stdout.contains(words), "no `{words}` in:\n{stdout}");
    }
}
