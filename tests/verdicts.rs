//! Verdicts that must FAIL: drills run by the real binary on loopback whose system under test
//! is broken in a way a naive verdict would miss.

mod common;

use std::time::Duration;

use common::{faultline, free_ports, report, write};

fn verdict_row<'a>(report: &'a serde_json::Value, budget: &str) -> &'a serde_json::Value {
    report["evaluation"]["verdict"]["rows"]
        .as_array()
        .expect("verdict rows")
        .iter()
        .find(|r| r["budget"] == budget)
        .unwrap_or_else(|| panic!("no verdict row for {budget}"))
}

/// The system answers every request with an error from the first second, before any fault: a
/// steady state of 0% must not let failover and recovery pass at 0s.
#[test]
fn a_system_down_before_any_fault_fails_its_failover_budget() {
    let dir = tempfile::tempdir().unwrap();
    // `dead` is a port nobody listens on: the proxy answers every request 502.
    let [proxy, dead] = free_ports(2)[..] else {
        unreachable!()
    };
    let yaml = format!(
        r#"version: 1
name: down-before-the-fault
seed: 3
proxies:
  p: {{ listen: "127.0.0.1:{proxy}", upstream: "127.0.0.1:{dead}" }}
load:
  s:
    url: http://127.0.0.1:{proxy}/v1/chat/completions
    rate: 30/s
    request: {{ api: openai-chat }}
timeline:
  - {{ at: 2s, inject: {{ id: burst, proxy: p, fault: {{ http_error: {{ status: 503 }} }} }} }}
  - {{ at: 3s, lift: burst }}
  - {{ at: 4s, end: true }}
expect:
  failover_within: 1s
  recover_within: 1s
"#
    );
    let file = write(dir.path(), "down.yaml", &yaml);
    let out = dir.path().join("out");
    let run = faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("the system was failing before any fault was injected"),
        "{stdout}"
    );
    let report = report(&out);
    assert_eq!(
        report["evaluation"]["overall"]["steady_state"]["steady"],
        false
    );
    for budget in ["failover_within", "recover_within"] {
        let row = verdict_row(&report, budget);
        assert_eq!(row["passed"], false, "{row}");
        let detail = row["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("baseline not steady: 0 of "),
            "{budget}: {detail}"
        );
    }
}
