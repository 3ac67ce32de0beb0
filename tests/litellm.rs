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
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{faultline, free_ports, on_path, report, require_tool, write};

/// One LiteLLM at a time: each is a Python process that takes a core to start, and the drills'
/// budgets are not about a machine shared with another one.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

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
    drill_into(file, &dir.path().join("out"), bin_dir, key, expected_exit)
}

fn drill_into(
    file: &str,
    out: &Path,
    bin_dir: &Path,
    key: &str,
    expected_exit: i32,
) -> serde_json::Value {
    let out = out.to_path_buf();
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
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());

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

/// What docs/guide.md says of LiteLLM 1.106.2 and real models' text: when the upstream stream
/// ends early but cleanly (no finish reason, no usage, no `[DONE]`), LiteLLM sends its own
/// finish, a usage chunk it counted itself and `[DONE]`, so with text that proves nothing the cut
/// passes as a verified `ok`; a pinned length (`max_tokens` with `ignore_eos`, which LiteLLM
/// passes on) catches every one. Two streams, one pinned and one not, meet the same cuts.
#[test]
fn litellm_repairs_a_clean_cut_with_its_own_usage_and_a_pinned_length_catches_it() {
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
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());

    let [gateway, host, proxy] = free_ports(3)[..] else {
        unreachable!()
    };
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "litellm.yaml",
        &format!(
            "model_list:\n  - model_name: llama-sim\n    litellm_params: {{ model: openai/llama-sim, \
             api_base: \"http://127.0.0.1:{proxy}/v1\", api_key: unused, max_retries: 0, timeout: 5 }}\n\
             router_settings: {{ num_retries: 0 }}\n\
             general_settings: {{ master_key: os.environ/LITELLM_MASTER_KEY }}\n"
        ),
    );
    let stream = |pin: &str| {
        format!(
            "    url: http://127.0.0.1:{gateway}/v1/chat/completions\n    rate: 10/s\n    \
             request: {{ api: openai-chat, stream: true, model: llama-sim{pin} }}\n    \
             headers: {{ authorization: \"Bearer ${{LITELLM_MASTER_KEY}}\" }}\n    \
             served_by: {{ header: llm_provider-x-served-by }}\n    timeout: 5s\n"
        )
    };
    let experiment = format!(
        "version: 1\nname: litellm-clean-cut\nservices:\n  host:\n    simulate: {{ listen: \
         \"127.0.0.1:{host}\", ttft: 20ms, tokens_per_second: 400, completion_tokens: 12, content: plain }}\n  \
         gateway:\n    command: [litellm, --config, litellm.yaml, --host, 127.0.0.1, --port, \"{gateway}\", \
         --num_workers, \"1\"]\n    cwd: {cwd}\n    env: {{ LITELLM_LOCAL_MODEL_COST_MAP: \"True\" }}\n    \
         ready: {{ http: \"http://127.0.0.1:{gateway}/health/liveliness\", within: 60s }}\n\
         proxies:\n  host-proxy: {{ listen: \"127.0.0.1:{proxy}\", upstream: \"127.0.0.1:{host}\" }}\n\
         load:\n  plain:\n{}  pinned:\n{}\
         timeline:\n  - {{ at: 2s, inject: {{ id: cut, proxy: host-proxy, fault: {{ truncate_stream: \
         {{ after_events: 4, how: end }} }} }} }}\n  - {{ at: 5s, lift: cut }}\n  - {{ at: 6s, end: true }}\n",
        stream(""),
        stream(", max_tokens: 12, extra_body: { ignore_eos: true }"),
        cwd = dir.path().display(),
    );
    let file = write(dir.path(), "cut.yaml", &experiment);
    let out = dir.path().join("out");
    drill_into(file.to_str().unwrap(), &out, &bin_dir, &key, 0);

    // Per stream, the outcomes of the requests the cut acted on (the CSV's `faults` column).
    let csv = std::fs::read_to_string(out.join("requests.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (stream_col, outcome_col, faults_col) = (col("stream"), col("outcome"), col("faults"));
    let cut_outcomes = |name: &str| -> Vec<String> {
        csv.lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f[stream_col] == name && f[faults_col] == "cut")
            .map(|f| f[outcome_col].to_string())
            .collect()
    };
    let plain = cut_outcomes("plain");
    let pinned = cut_outcomes("pinned");
    assert!(
        plain.len() >= 10 && pinned.len() >= 10,
        "the cut acted on too few requests: {plain:?} {pinned:?}"
    );
    assert!(
        plain.iter().all(|o| o == "ok"),
        "LiteLLM's repaired cuts were caught without a pinned length: {plain:?}; if LiteLLM no \
         longer counts usage itself, docs/guide.md (step 8) must say so"
    );
    assert!(
        pinned.iter().all(|o| o == "truncated"),
        "a pinned length must catch every cut LiteLLM repaired: {pinned:?}"
    );
}
