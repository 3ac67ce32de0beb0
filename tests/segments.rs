//! One drill run as one process and as four segment processes sharing one `--start-at`, then
//! `faultline merge`: the same requests, the same outcomes within the spread of two
//! independent runs, the same verdict; and the refusals of a late segment and a short merge.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::{faultline, faultline_std, free_ports, report, requests_csv, run_experiment, spawn};

/// Two simulated hosts, the reference gateway without retries in front of them (so the fault
/// reaches clients until the gateway ejects the primary), a proxy before the primary that
/// answers 503 from 2 s to 5 s, 50 chat requests a second for 7 s (350) and 2 long ones a
/// second (14, a second of tokens each): 364 requests. Chat completion lengths are drawn per
/// request, so a share that drew differently from the whole run shows. The last long request
/// (segment 2's, intended at 6.5 s) streams to 7.5 s: a leader that stopped its services at its
/// own end under the other segments' last requests would cut it (`max_truncated`).
fn drill(ports: &[u16]) -> String {
    let [primary, fallback, gateway, proxy] = ports[..] else {
        unreachable!()
    };
    format!(
        r#"version: 1
name: segments-drill
seed: 11
services:
  primary: {{ simulate: {{ listen: "127.0.0.1:{primary}", ttft: 5ms, tokens_per_second: 100, completion_tokens: 100 }} }}
  fallback: {{ simulate: {{ listen: "127.0.0.1:{fallback}", ttft: 5ms, tokens_per_second: 100, completion_tokens: 100, served_by: fallback }} }}
  gateway:
    gateway: {{ listen: "127.0.0.1:{gateway}", upstreams: ["127.0.0.1:{proxy}", "127.0.0.1:{fallback}"], retries: 0, eject_after: 3, cooldown: 1s }}
proxies:
  pp: {{ listen: "127.0.0.1:{proxy}", upstream: "127.0.0.1:{primary}" }}
load:
  chat:
    url: http://127.0.0.1:{gateway}/v1/chat/completions
    rate: 50/s
    request: {{ api: openai-chat, stream: true, max_tokens: {{ min: 2, max: 10 }} }}
    timeout: 5s
  long:
    url: http://127.0.0.1:{gateway}/v1/chat/completions
    rate: 2/s
    request: {{ api: openai-chat, stream: true, max_tokens: 100 }}
    timeout: 5s
timeline:
  - {{ at: 2s, inject: {{ id: burst, proxy: pp, fault: {{ http_error: {{ status: 503 }} }} }} }}
  - {{ at: 5s, lift: burst }}
  - {{ at: 7s, end: true }}
expect:
  failover_within: 2s
  max_error_rate: 15%
  max_p99_latency: 3s
  max_truncated: 0
  faults_must_act: true
"#
    )
}

/// Outcome counts of a report's whole run, `ok` included.
fn outcomes(report: &serde_json::Value) -> BTreeMap<String, u64> {
    let whole = &report["evaluation"]["overall"]["whole_run"];
    let mut counts: BTreeMap<String, u64> = whole["errors_by_class"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    counts.insert("ok".into(), whole["ok"].as_u64().unwrap());
    counts
}

fn verdict(report: &serde_json::Value) -> Vec<(String, bool)> {
    report["evaluation"]["verdict"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["budget"].as_str().unwrap().to_string(),
                r["passed"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn ms(report: &serde_json::Value, path: &[&str]) -> f64 {
    let mut v = &report["evaluation"]["overall"];
    for p in path {
        v = &v[*p];
    }
    v.as_f64().unwrap_or(f64::NAN)
}

/// Output tokens by stream and sequence number, of the requests that came back whole.
fn lengths(out: &Path) -> BTreeMap<(String, u64), String> {
    requests_csv(out)
        .into_iter()
        .filter(|r| r.get("outcome") == "ok")
        .map(|r| {
            let key = (r.get("stream").to_string(), r.num("seq") as u64);
            (key, r.get("output_tokens").to_string())
        })
        .collect()
}

/// Runs segments 1..=4 of `file` with one `--start-at` `lead` ahead, the leader first; returns
/// their out dirs once all have exited 0.
fn run_segments(dir: &Path, file: &Path, lead: Duration) -> Vec<PathBuf> {
    let at = humantime::format_rfc3339_millis(SystemTime::now() + lead).to_string();
    let mut procs = Vec::new();
    for k in 1..=4 {
        let out = dir.join(format!("segment-{k}"));
        let proc = spawn(
            faultline_std()
                .arg("run")
                .arg(file)
                .args(["--segment", &format!("{k}/4"), "--start-at", &at, "--out"])
                .arg(&out)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        procs.push((out, proc));
    }
    procs
        .into_iter()
        .map(|(out, proc)| {
            let o = proc.output();
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(0), "{}:\n{stderr}", out.display());
            let stdout = String::from_utf8_lossy(&o.stdout);
            assert!(
                stdout.contains("the drill's verdict is `faultline merge`'s"),
                "{stdout}"
            );
            let leader = out.ends_with("segment-1");
            // Only the leader starts the services and applies the fault.
            assert_eq!(
                stderr.contains("service gateway listening"),
                leader,
                "{stderr}"
            );
            assert_eq!(stderr.contains("inject burst"), leader, "{stderr}");
            out
        })
        .collect()
}

fn merge(dirs: &[PathBuf], out: &Path) -> std::process::Output {
    faultline()
        .arg("merge")
        .args(dirs)
        .arg("--out")
        .arg(out)
        .output()
        .expect("faultline merge runs")
}

#[test]
fn four_segments_merged_report_what_one_process_reports() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = drill(&free_ports(4));
    let single = run_experiment(dir.path(), "drill.yaml", &yaml, &[]);
    assert_eq!(single.code, Some(0), "{}\n{}", single.stdout, single.stderr);
    let one = single.report();

    let file = dir.path().join("drill.yaml");
    let segments = run_segments(dir.path(), &file, Duration::from_secs(5));
    let merged_out = dir.path().join("merged");
    // In another order than 1..4: the merge's order is its own.
    let shuffled: Vec<PathBuf> = [2, 0, 3, 1].iter().map(|&i| segments[i].clone()).collect();
    let m = merge(&shuffled, &merged_out);
    let stdout = String::from_utf8_lossy(&m.stdout);
    assert_eq!(
        m.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&m.stderr)
    );
    assert!(stdout.contains("PASS"), "{stdout}");
    let merged = report(&merged_out);

    // Exactly the one schedule: every request once, whoever sent it.
    let requests = |r: &serde_json::Value| {
        r["evaluation"]["overall"]["whole_run"]["requests"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(requests(&one), 364);
    assert_eq!(requests(&merged), requests(&one));
    for (stream, n) in [("chat", 350), ("long", 14)] {
        let mut seqs: Vec<u64> = requests_csv(&merged_out)
            .iter()
            .filter(|r| r.get("stream") == stream)
            .map(|r| r.num("seq") as u64)
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..n).collect::<Vec<u64>>(), "{stream}");
    }
    // Each segment drew what the one process drew for the same request.
    let (a, b) = (lengths(&single.out), lengths(&merged_out));
    let common: Vec<&(String, u64)> = a.keys().filter(|k| b.contains_key(*k)).collect();
    assert!(common.len() > 300, "{} requests ok in both", common.len());
    for key in common {
        assert_eq!(a[key], b[key], "output tokens of request {key:?}");
    }

    // Outcomes: within the spread of two independent runs of this drill, at most 5 requests
    // plus 2% of the schedule (12 of 364) apart per outcome; where the gateway ejects the
    // primary moves by a request or two from run to run.
    let (o1, o2) = (outcomes(&one), outcomes(&merged));
    for class in o1.keys().chain(o2.keys()) {
        let (x, y) = (
            o1.get(class).copied().unwrap_or(0),
            o2.get(class).copied().unwrap_or(0),
        );
        assert!(
            x.abs_diff(y) <= 12,
            "{class}: {x} in one process, {y} merged ({o1:?} vs {o2:?})"
        );
    }
    assert_eq!(verdict(&merged), verdict(&one));
    // The leader's window, with every segment's marked responses counted.
    let window = &merged["fault_windows"][0];
    assert_eq!(window["id"], "burst");
    let errors = o2.get("http_error").copied().unwrap_or(0);
    assert!(errors > 0, "{o2:?}");
    assert_eq!(window["evidence"]["seen_by_clients"].as_u64(), Some(errors));
    eprintln!(
        "figures: one process {o1:?}, p50 {:.2} ms, p99 {:.2} ms, failover {}; 4 segments merged {o2:?}, p50 {:.2} ms, p99 {:.2} ms, failover {}",
        ms(&one, &["whole_run", "latency", "p50_ms"]),
        ms(&one, &["whole_run", "latency", "p99_ms"]),
        one["evaluation"]["overall"]["failover"],
        ms(&merged, &["whole_run", "latency", "p50_ms"]),
        ms(&merged, &["whole_run", "latency", "p99_ms"]),
        merged["evaluation"]["overall"]["failover"],
    );

    // Deterministic: the same segments give the same report, byte for byte.
    let again = dir.path().join("again");
    assert_eq!(merge(&segments, &again).status.code(), Some(0));
    assert_eq!(
        std::fs::read(again.join("report.json")).unwrap(),
        std::fs::read(merged_out.join("report.json")).unwrap()
    );
    assert_eq!(
        std::fs::read(again.join("requests.csv")).unwrap(),
        std::fs::read(merged_out.join("requests.csv")).unwrap()
    );

    // Three of four is not the drill: refused, naming what is missing.
    let short = merge(&segments[..3], &dir.path().join("short"));
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert_eq!(short.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing segment(s) 4 of 4"), "{stderr}");
}

#[test]
fn a_segment_started_after_start_at_refuses_and_says_how_late() {
    let dir = tempfile::tempdir().unwrap();
    let file = common::write(dir.path(), "drill.yaml", &drill(&free_ports(4)));
    let at = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(90));
    let out = dir.path().join("late");
    let run = faultline()
        .arg("run")
        .arg(&file)
        .args(["--segment", "3/4", "--start-at", &at.to_string(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("has passed: segment 3/4 started 1m"),
        "{stderr}"
    );
    // Its manifest says so, for the merge.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("segment.json")).unwrap()).unwrap();
    assert_eq!(manifest["exit_code"], 2);
    assert_eq!(manifest["records"], 0);

    // And N segments without one time zero are refused before anything runs.
    let run = faultline()
        .arg("run")
        .arg(&file)
        .args(["--segment", "2/4"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--segment 2/4 needs --start-at"),
        "{stderr}"
    );
}

/// A leader whose services are not ready by `--start-at` exits 4 (the environment failed, not
/// the drill), says how late they were and what to do, and leaves nothing running: the other
/// segments would otherwise send into a system that was never in place.
#[test]
fn a_leader_whose_services_miss_start_at_exits_4_and_stops_them() {
    if !common::require_tool(
        "python3 (the slow-starting service)",
        common::on_path("python3"),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [host] = free_ports(1)[..] else {
        unreachable!()
    };
    // Time zero is 5 s away (so the binary is surely up before it, however loaded the
    // machine); the service listens 2 s after it.
    let start = SystemTime::now() + Duration::from_secs(5);
    let listen_at = (start + Duration::from_secs(2))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let yaml = format!(
        r#"version: 1
name: slow-leader
services:
  slow:
    command: [python3, -c, "import socket,time; time.sleep(max(0, {listen_at} - time.time())); s=socket.socket(); s.bind(('127.0.0.1', {host})); s.listen(); time.sleep(60)"]
    ready: {{ tcp: "127.0.0.1:{host}", within: 20s }}
load:
  s: {{ url: "http://127.0.0.1:{host}/v1/chat/completions", rate: 5/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 2s, end: true }}
"#
    );
    let file = common::write(dir.path(), "slow.yaml", &yaml);
    let at = humantime::format_rfc3339_millis(start);
    let out = dir.path().join("leader");
    let run = faultline()
        .arg("run")
        .arg(&file)
        .args(["--segment", "1/2", "--start-at", &at.to_string(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("the services were not ready by --start-at: ready")
            && stderr.contains("after it; give the leader more lead time"),
        "{stderr}"
    );
    // Torn down: nothing listens on the service's port once the run has exited.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", host)).is_err(),
        "the slow service was left running"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("segment.json")).unwrap()).unwrap();
    assert_eq!(manifest["exit_code"], 4);
    assert_eq!(manifest["records"], 0);
}
