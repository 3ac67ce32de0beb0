//! Every way a run can end leaves its reports, with the exit code that ending gets and the
//! reason: an interruption during start-up, a fault that cannot be applied mid-drill.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_ports, report, run_experiment, write};

#[test]
fn a_fault_that_cannot_be_applied_mid_drill_still_leaves_its_reports() {
    // GPU memory pressure on this machine, which has no CUDA driver (CI machines have none):
    // the injection at 1s fails, the run rolls back and exits 4, and says so in report.json.
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let yaml = format!(
        r#"version: 1
name: fault-fails
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{port}", ttft: 5ms, tokens_per_second: 1000, completion_tokens: 4 }} }}
load:
  s: {{ url: "http://127.0.0.1:{port}/v1/chat/completions", rate: 10/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 1s, inject: {{ id: hog, fault: {{ gpu_memory_pressure: {{ allocate: 1GiB }} }} }} }}
  - {{ at: 3s, end: true }}
"#
    );
    // No real or fake libcuda where the hog looks first.
    let libs = dir.path().display().to_string();
    let run = run_experiment(dir.path(), "gpu.yaml", &yaml, &[("LD_LIBRARY_PATH", &libs)]);
    let stderr = &run.stderr;
    assert_eq!(run.code, Some(4), "{stderr}");
    assert!(stderr.contains("could not inject hog on local"), "{stderr}");
    let report = run.report();
    let out = &run.out;
    assert_eq!(report["exit_code"], 4);
    let why = report["ended_early"].as_str().unwrap_or_default();
    assert!(why.starts_with("could not inject hog on local: "), "{why}");
    // What ran before the failure is there: a second of baseline traffic.
    let baseline = &report["evaluation"]["overall"]["phases"]["baseline"]["requests"];
    assert!(baseline.as_u64().unwrap_or(0) >= 5, "{baseline}");
    assert!(out.join("requests.csv").exists());
    assert!(out.join("junit.xml").exists() && out.join("report.html").exists());
}

#[test]
fn a_run_interrupted_during_start_up_still_leaves_its_reports() {
    // A service that never gets ready holds the run in start-up; SIGTERM arrives there.
    let dir = tempfile::tempdir().unwrap();
    let [port, never] = free_ports(2)[..] else {
        unreachable!()
    };
    let yaml = format!(
        r#"version: 1
name: interrupted-start
services:
  slow:
    command: [sleep, "60"]
    ready: {{ tcp: "127.0.0.1:{never}", within: 60s }}
load:
  s: {{ url: "http://127.0.0.1:{port}/v1/chat/completions", rate: 5/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 2s, end: true }}
"#
    );
    let file = write(dir.path(), "slow.yaml", &yaml);
    let out = dir.path().join("out");
    // Through the harness: a deadline, and nothing left behind if an assertion fails first.
    let mut child = common::spawn_run(&file, &out);
    // The service's log appears once faultline has started it: the run is in start-up then.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&out)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("slow"))
        })
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "the service was never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 20 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(code, Some(3), "{stderr}");
    let report = report(&out);
    assert_eq!(report["exit_code"], 3);
    let why = report["ended_early"].as_str().unwrap_or_default();
    assert!(why.contains("SIGTERM while starting services"), "{why}");
}

/// A service that dies mid-run on its own (here it SIGKILLs itself a second in) is named as
/// such at the teardown, with how it ended: "stopped" would hide that the drill judged a dead
/// service. One taken down by a `kill` fault is not reported this way.
#[test]
fn a_service_that_died_mid_run_is_said_when_it_dies_at_the_teardown_and_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let [host] = free_ports(1)[..] else {
        unreachable!()
    };
    let yaml = format!(
        r#"version: 1
name: dies-mid-run
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}" }} }}
  flaky:
    command: [sh, -c, "sleep 1; kill -KILL $$"]
load:
  s: {{ url: "http://127.0.0.1:{host}/v1/chat/completions", rate: 5/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 2500ms, end: true }}
"#
    );
    let ran = run_experiment(dir.path(), "dies.yaml", &yaml, &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // In the timeline when it happens, about 1 s in, before the end at 2.5 s.
    let said = ran
        .stderr
        .lines()
        .find(|l| {
            l.contains("service flaky exited on its own: it was killed by signal 9 (SIGKILL)")
        })
        .unwrap_or_else(|| panic!("no line when it died:\n{}", ran.stderr));
    let at: f64 = said
        .trim_start_matches('[')
        .split('s')
        .next()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no time in {said:?}"));
    assert!(at < 2.5, "{said}");
    assert!(
        ran.stderr
            .contains("service flaky had exited on its own at "),
        "{}",
        ran.stderr
    );
    let json = report(&ran.out);
    let warnings = json["evaluation"]["verdict"]["warnings"]
        .as_array()
        .unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .starts_with("service `flaky` exited on its own at ")),
        "{warnings:?}"
    );
    assert!(
        ran.stderr.contains("service host stopped"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_killed_service_is_not_said_to_have_died_on_its_own_and_one_dying_after_the_end_is() {
    let dir = tempfile::tempdir().unwrap();
    let [host] = free_ports(1)[..] else {
        unreachable!()
    };
    // `late` dies about 3 s in: after the end at 2.5 s, while the last 2-second streams finish.
    let yaml = format!(
        r#"version: 1
name: kill-and-late
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}", ttft: 10ms, tokens_per_second: 10, completion_tokens: 20 }} }}
  victim:
    command: [sleep, "600"]
  late:
    command: [sh, -c, "sleep 3; kill -KILL $$"]
load:
  s: {{ url: "http://127.0.0.1:{host}/v1/chat/completions", rate: 5/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 1s, inject: {{ service: victim, fault: {{ kill: {{}} }} }} }}
  - {{ at: 2500ms, end: true }}
"#
    );
    let ran = run_experiment(dir.path(), "late.yaml", &yaml, &[]);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        !ran.stderr.contains("service victim exited on its own")
            && !ran.stderr.contains("service victim had exited on its own"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr
            .contains("service late exited on its own: it was killed by signal 9"),
        "{}",
        ran.stderr
    );
    let json = report(&ran.out);
    let warnings: Vec<&str> = json["evaluation"]["verdict"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("service `late` exited on its own at "),
        "{warnings:?}"
    );
}
