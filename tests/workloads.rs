//! Workloads that look like traffic, run by the real binary on loopback against a simulated
//! host: a rate ramp on the timeline, and a warm-up that keeps a cold start out of the baseline.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{faultline, free_ports, report, write};

/// Runs `yaml` and returns its out dir; the run must exit 0 (no budgets fail).
fn run(dir: &Path, yaml: &str) -> std::path::PathBuf {
    let file = write(dir, "w.yaml", yaml);
    let out = dir.join("out");
    let run = faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

/// Rows of `requests.csv` per whole second of intended send time.
fn per_second(out: &Path, seconds: usize) -> Vec<u64> {
    let text = std::fs::read_to_string(out.join("requests.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "intended_ms").unwrap();
    let mut counts = vec![0u64; seconds];
    for line in lines {
        let ms: f64 = line.split(',').nth(col).unwrap().parse().unwrap();
        counts[(ms / 1000.0).floor() as usize] += 1;
    }
    counts
}

/// 10/s, a ramp to 50/s from 2 s to 4 s, then 50/s: the intended times integrate the rate, so
/// each second holds exactly the area under it (10, 10, 20, 40, 50, 50).
#[test]
fn a_rate_ramp_shows_in_the_requests_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let [host] = free_ports(1)[..] else {
        unreachable!()
    };
    let yaml = format!(
        r#"version: 1
name: ramp
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}", ttft: 1ms, tokens_per_second: 5000 }} }}
load:
  chat:
    url: http://127.0.0.1:{host}/v1/chat/completions
    rate: 10/s
    request: {{ api: openai-chat, stream: false }}
timeline:
  - {{ at: 2s, rate: {{ stream: chat, to: 50/s, over: 2s }} }}
  - {{ at: 6s, end: true }}
"#
    );
    let out = run(dir.path(), &yaml);
    assert_eq!(per_second(&out, 6), [10, 10, 20, 40, 50, 50]);
    let report = report(&out);
    // A rate change is load, not a fault: no window, and the whole run is one phase.
    assert_eq!(report["fault_windows"].as_array().unwrap().len(), 0);
    assert_eq!(report["evaluation"]["overall"]["fault_injected"], false);
    let change = &report["rate_changes"][0];
    assert_eq!(change["stream"], "chat");
    assert_eq!(change["at_ms"], 2000.0);
    assert_eq!(change["from_per_second"], 10.0);
    assert_eq!(change["to_per_second"], 50.0);
    assert_eq!(change["over_ms"], 2000.0);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("class=\"rate-change\" data-stream=\"chat\""));
}

/// A host that answers 503 for its first second: without a warm-up the baseline holds those
/// failures and is not steady; with `measure.warmup` covering them it is, and they are
/// reported apart.
#[test]
fn a_warmup_keeps_a_cold_start_out_of_the_baseline() {
    let drill = |warmup: &str| {
        let [host] = free_ports(1)[..] else {
            unreachable!()
        };
        format!(
            r#"version: 1
name: cold
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}", ttft: 1ms, cold_start: 1s }} }}
load:
  chat:
    url: http://127.0.0.1:{host}/v1/chat/completions
    rate: 40/s
    request: {{ api: openai-chat, stream: false }}
timeline:
  - {{ at: 4s, end: true }}
{warmup}"#
        )
    };
    let cold = tempfile::tempdir().unwrap();
    let r = report(&run(cold.path(), &drill("")));
    let overall = &r["evaluation"]["overall"];
    assert_eq!(overall["steady_state"]["steady"], false, "{overall}");
    assert!(overall["warmup"].is_null());
    assert_eq!(overall["whole_run"]["requests"], 160);

    let warm = tempfile::tempdir().unwrap();
    let out = run(warm.path(), &drill("measure: { warmup: 1500ms }\n"));
    let r = report(&out);
    let overall = &r["evaluation"]["overall"];
    assert_eq!(overall["steady_state"]["steady"], true, "{overall}");
    assert_eq!(overall["warmup"]["requests"], 60);
    assert!(
        overall["warmup"]["errors"].as_u64().unwrap() >= 30,
        "{overall}"
    );
    assert_eq!(overall["whole_run"]["requests"], 100);
    assert_eq!(overall["whole_run"]["errors"], 0, "{overall}");
    // Sent all the same: every intended request is in requests.csv.
    assert_eq!(per_second(&out, 4), [40, 40, 40, 40]);
}
