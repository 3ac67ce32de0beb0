//! Real gateways under faultline: for HAProxy and nginx, a configuration that fails over meets
//! its budgets (exit 0) and a common misconfiguration misses them (exit 1, failing budget named),
//! under the same error burst and host kill. Skipped, loudly, when the gateway binary is missing
//! (and failed under CI=true, which installs both: see .ci/run).

mod common;

use common::{faultline, on_path, report, require_tool};

fn drill(file: &str, expected_exit: i32) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let assert = faultline()
        .args(["run", file, "--quiet", "--out"])
        .arg(&out)
        .assert();
    let output = assert.get_output();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(expected_exit),
        "{file}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    report(&out)
}

fn failed_budgets(report: &serde_json::Value) -> Vec<String> {
    report["evaluation"]["verdict"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["passed"] == false)
        .map(|r| r["budget"].as_str().unwrap().to_string())
        .collect()
}

fn pair(program: &str, good: &str, bad: &str) {
    if !require_tool(
        &format!("{program} (apt-get install {program})"),
        on_path(program),
    ) {
        return;
    }
    let report = drill(good, 0);
    assert!(failed_budgets(&report).is_empty());
    let report = drill(bad, 1);
    let failed = failed_budgets(&report);
    assert!(
        failed.contains(&"max_error_rate".to_string()),
        "{bad}: failed budgets {failed:?}"
    );
}

#[test]
fn haproxy_with_retries_passes_and_without_fails() {
    pair(
        "haproxy",
        "experiments/gateways/haproxy-good.yaml",
        "experiments/gateways/haproxy-bad.yaml",
    );
}

#[test]
fn nginx_retrying_posts_passes_and_without_fails() {
    pair(
        "nginx",
        "experiments/gateways/nginx-good.yaml",
        "experiments/gateways/nginx-bad.yaml",
    );
}
