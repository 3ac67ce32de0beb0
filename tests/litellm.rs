//! A real LiteLLM proxy under faultline: the shipped drills experiments/gateways/litellm-good.yaml
//! (a model-group fallback on another host) and litellm-bad.yaml (a fallback group served by the
//! failing host itself), with the master key sent from an environment variable through
//! `load.<stream>.headers`. The good one meets its budgets, the bad one misses `max_error_rate`
//! with the statuses LiteLLM really answers, and the key is written nowhere.
//!
//! LiteLLM is found through `FAULTLINE_LITELLM` (the `litellm` program; .ci/run installs the
//! pinned `litellm[proxy]==1.106.2` into target/litellm-venv and sets it), else on PATH. Without
//! it the test says SKIPPED loudly; under CI=true it fails.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{faultline, on_path, report, require_tool};

/// The directory holding the `litellm` program, if there is one.
fn litellm_bin_dir() -> Option<PathBuf> {
    if let Some(program) = std::env::var_os("FAULTLINE_LITELLM") {
        let program = PathBuf::from(program);
        assert!(
            program.is_file(),
            "FAULTLINE_LITELLM names {}, which is not a file",
            program.display()
        );
        assert_eq!(
            program.file_name().and_then(|n| n.to_str()),
            Some("litellm"),
            "FAULTLINE_LITELLM must name the `litellm` program (the drills run it by that name)"
        );
        return Some(program.parent().expect("a file has a parent").to_path_buf());
    }
    on_path("litellm").then(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .find(|dir| dir.join("litellm").is_file())
            .expect("on_path found it")
    })
}

/// A master key of this run's own: not one LiteLLM refuses as publicly known, and unlike
/// anything else in the output, so that finding it anywhere is a leak.
fn fresh_key() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("sk-fltest-{nanos:x}{:x}", std::process::id())
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if String::from_utf8_lossy(&std::fs::read(&path).unwrap()).contains(needle) {
            found.push(path);
        }
    }
    found
}

/// Runs one drill with LiteLLM on PATH and `LITELLM_MASTER_KEY` set; checks the exit code and
/// that the key appears in neither output stream nor any file of the out dir. Returns the report.
fn drill(file: &str, bin_dir: &Path, key: &str, expected_exit: i32) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut path = OsString::from(bin_dir);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let assert = faultline()
        .args(["run", file, "--out"])
        .arg(&out)
        .env("PATH", path)
        .env("LITELLM_MASTER_KEY", key)
        .assert();
    let output = assert.get_output();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let gateway_log = std::fs::read_to_string(out.join("gateway.log")).unwrap_or_default();
    assert_eq!(
        output.status.code(),
        Some(expected_exit),
        "{file}\nstdout:\n{stdout}\nstderr:\n{stderr}\ngateway.log (tail):\n{}",
        tail(&gateway_log, 40)
    );
    assert!(
        !stdout.contains(key) && !stderr.contains(key),
        "{file}: the master key reached faultline's output"
    );
    let leaks = files_containing(&out, key);
    assert!(
        leaks.is_empty(),
        "{file}: the master key was written to {leaks:?}"
    );
    report(&out)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn rows(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["evaluation"]["verdict"]["rows"].as_array().unwrap()
}

fn failed_budgets(report: &serde_json::Value) -> Vec<String> {
    rows(report)
        .iter()
        .filter(|r| r["passed"] == false)
        .map(|r| r["budget"].as_str().unwrap().to_string())
        .collect()
}

/// The evidence of the fault window `id`.
fn evidence<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    &report["fault_windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == id)
        .unwrap_or_else(|| panic!("no fault window {id}"))["evidence"]
}

#[test]
fn litellm_with_a_fallback_group_passes_and_with_one_on_the_same_host_fails() {
    let bin_dir = litellm_bin_dir();
    if !require_tool(
        "LiteLLM (FAULTLINE_LITELLM naming the `litellm` of a venv with \
         `pip install 'litellm[proxy]==1.106.2'`, or `litellm` on PATH)",
        bin_dir.is_some(),
    ) {
        return;
    }
    let bin_dir = bin_dir.expect("checked just above");
    let key = fresh_key();

    // Good: every budget met, the fallback host (named by LiteLLM's llm_provider-x-served-by)
    // served the fault phase, and no faulted answer reached a client although the proxy
    // faulted the primary's.
    let good = drill("experiments/gateways/litellm-good.yaml", &bin_dir, &key, 0);
    assert!(failed_budgets(&good).is_empty(), "{:#?}", rows(&good));
    assert!(
        rows(&good)
            .iter()
            .any(|r| r["budget"] == "min_served_by.fallback" && r["passed"] == true),
        "{:#?}",
        rows(&good)
    );
    let burst = evidence(&good, "error-burst");
    assert!(burst["touched"].as_u64().unwrap() > 0, "{burst}");
    assert_eq!(burst["seen_by_clients"], 0, "{burst}");

    // Bad: the fallback group lives on the failing host, so LiteLLM answers 503 during the
    // burst (the fallback got the same 503) and 500 ("Connection error.") while the host is
    // dead; the 503s carry the fault's mark, forwarded as llm_provider-x-faultline-fault.
    let bad = drill("experiments/gateways/litellm-bad.yaml", &bin_dir, &key, 1);
    let failed = failed_budgets(&bad);
    assert!(
        failed.contains(&"max_error_rate".to_string()),
        "failed budgets {failed:?}"
    );
    let detail = rows(&bad)
        .iter()
        .find(|r| r["budget"] == "max_error_rate")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("× 503") && detail.contains("× 500"),
        "max_error_rate: {detail}"
    );
    let burst = evidence(&bad, "error-burst");
    assert!(
        burst["seen_by_clients"].as_u64().unwrap() > 0,
        "the burst's 503s should reach clients marked: {burst}"
    );
}
