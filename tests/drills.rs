//! The shipped drills, end to end through the real binary: the quickstart meets its budgets, the
//! gray-failure drill misses one for a real reason and says why, and both JSON reports match the
//! published schema. (The shipped drills use fixed ports, so each runs in one test only.)

mod common;

use common::{faultline, report, verdict_row};
use predicates::prelude::*;

/// The JSON report validates against the schema published in docs/.
fn assert_matches_schema(report: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo_root().join("docs/report.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "report does not match its schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn quickstart_meets_its_budgets() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quickstart");
    faultline()
        .args(["run", "experiments/quickstart.yaml", "--out"])
        .arg(&out)
        .assert()
        .code(0)
        .stdout(predicate::str::contains("PASS"))
        .stdout(predicate::str::contains("load scheduling: pacer "));
    let report = report(&out);
    assert_matches_schema(&report);
    assert_eq!(report["evaluation"]["verdict"]["passed"], true);
    // What the load's threads got is recorded, whatever this machine allows.
    let scheduling = &report["evaluation"]["load_scheduling"];
    for thread in ["pacer", "workers"] {
        let got = scheduling[thread].as_str().unwrap_or_default();
        assert!(
            ["normal", "short_slice", "realtime"].contains(&got),
            "{thread}: {scheduling}"
        );
    }
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["experiment"]["seed"], 42);
    assert!(report["experiment"]["source"]
        .as_str()
        .unwrap()
        .contains("name: quickstart"));
    assert_eq!(report["fault_windows"].as_array().unwrap().len(), 2);
    for budget in [
        "failover_within",
        "max_error_rate",
        "max_truncated",
        "max_p99_latency",
        "recover_within",
    ] {
        assert_eq!(verdict_row(&report, budget)["passed"], true, "{budget}");
    }
    // The gateway really failed over: the fallback served while the primary answered 503s.
    let csv = std::fs::read_to_string(out.join("requests.csv")).unwrap();
    assert!(
        csv.contains(",fallback"),
        "no request was served by the fallback"
    );
    assert!(
        csv.contains(",primary"),
        "no request was served by the primary"
    );
}

#[test]
fn gray_failure_drill_misses_its_truncation_budget_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gray");
    faultline()
        .args(["run", "experiments/drills/gray-failure.yaml", "--out"])
        .arg(&out)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL").and(predicate::str::contains("max_truncated")));
    let report = report(&out);
    assert_matches_schema(&report);
    assert_eq!(report["evaluation"]["verdict"]["passed"], false);
    assert_eq!(report["exit_code"], 1);
    let row = verdict_row(&report, "max_truncated");
    assert_eq!(row["passed"], false);
    let measured: u64 = row["measured"].as_str().unwrap().parse().unwrap();
    assert!(measured > 10, "only {measured} truncated responses");
    assert!(
        row["detail"].as_str().unwrap().contains("truncated"),
        "detail: {}",
        row["detail"]
    );
    // Recovery after the lift is fine: the drill fails for the gray failures, nothing else.
    assert_eq!(verdict_row(&report, "recover_within")["passed"], true);
    // The stalled streams were told apart from the cut ones.
    let stalled = report["evaluation"]["overall"]["phases"]["fault"]["errors_by_class"]["stalled"]
        .as_u64()
        .unwrap_or(0);
    assert!(stalled > 5, "only {stalled} stalled responses");
}

#[test]
fn a_shared_pool_breaks_isolation_and_isolated_pools_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    faultline()
        .args([
            "run",
            "experiments/drills/shared-pool.yaml",
            "--quiet",
            "--out",
        ])
        .arg(&shared)
        .assert()
        .code(1);
    let row = verdict_row(&report(&shared), "max_error_rate").clone();
    assert_eq!(
        (row["scope"].as_str(), row["passed"].as_bool()),
        (Some("stream model-b"), Some(false))
    );
    let isolated = dir.path().join("isolated");
    faultline()
        .args([
            "run",
            "experiments/drills/isolated-pools.yaml",
            "--quiet",
            "--out",
        ])
        .arg(&isolated)
        .assert()
        .code(0);
    let report = report(&isolated);
    assert_eq!(verdict_row(&report, "max_error_rate")["passed"], true);
    // Model a did suffer: the fault was real, only its blast radius differed.
    let a_errors = report["evaluation"]["streams"]["model-a"]["phases"]["fault"]["errors"]
        .as_u64()
        .unwrap();
    assert!(a_errors > 50, "model a saw only {a_errors} errors");
}

#[test]
fn the_cascade_takes_everything_down_unless_the_gateway_sheds_load() {
    let dir = tempfile::tempdir().unwrap();
    let unprotected = dir.path().join("unprotected");
    let assert = faultline()
        .args([
            "run",
            "experiments/drills/cascading-oom.yaml",
            "--quiet",
            "--out",
        ])
        .arg(&unprotected)
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    for host in ["host-a", "host-b", "host-c"] {
        assert!(
            stderr.contains(&format!("simulated host `{host}`: out of KV-cache memory")),
            "{host} did not crash:\n{stderr}"
        );
    }
    let report_u = report(&unprotected);
    assert_eq!(verdict_row(&report_u, "max_error_rate")["passed"], false);
    assert_eq!(
        verdict_row(&report_u, "recover_within")["measured"],
        "never"
    );

    let protected = dir.path().join("protected");
    let assert = faultline()
        .args([
            "run",
            "experiments/drills/cascading-oom-protected.yaml",
            "--quiet",
            "--out",
        ])
        .arg(&protected)
        .assert()
        .code(0);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("`host-a`: out of KV-cache memory"),
        "the leak did not kill host-a:\n{stderr}"
    );
    assert!(
        !stderr.contains("`host-b`") && !stderr.contains("`host-c`"),
        "a survivor crashed:\n{stderr}"
    );
    // The survivors carried the load after host-a died.
    let served = &report(&protected)["evaluation"]["overall"]["phases"]["recovery"]["served_by"];
    assert!(
        served["host-b"]["ok"].as_u64().unwrap() > 50
            && served["host-c"]["ok"].as_u64().unwrap() > 50,
        "{served}"
    );
}

#[test]
fn a_cold_standby_makes_failover_take_its_load_time() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cold");
    faultline()
        .args([
            "run",
            "experiments/drills/cold-start.yaml",
            "--quiet",
            "--out",
        ])
        .arg(&out)
        .assert()
        .code(0);
    let report = report(&out);
    let row = verdict_row(&report, "failover_within");
    assert_eq!(row["passed"], true);
    // The fallback loads for 5 s from the start; the primary fails at 2 s: failover cannot be
    // faster than the remaining ~3 s of loading, and the 1 s windows put it at 2-4 s.
    let failover = report["evaluation"]["overall"]["failover"]["after_ms"]
        .as_f64()
        .unwrap();
    assert!(
        (2000.0..=4000.0).contains(&failover),
        "failover after {failover} ms"
    );
}
