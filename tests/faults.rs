//! Each fault type measurably acts on real traffic: a simulated host, the fault proxy in front of
//! it, and the load generator, all run by the real binary on loopback. Measurements come from the
//! per-request CSV, split by intended send time into before / during the fault.

mod common;

use std::path::Path;

use common::{free_ports, run_experiment};

struct Row {
    intended_ms: f64,
    outcome: String,
    status: String,
    latency_ms: f64,
}

fn rows(out: &Path) -> Vec<Row> {
    common::requests_csv(out)
        .iter()
        .map(|r| Row {
            intended_ms: r.num("intended_ms"),
            outcome: r.get("outcome").to_string(),
            status: r.get("status").to_string(),
            latency_ms: r.num("latency_ms"),
        })
        .collect()
}

fn between(rows: &[Row], from_ms: f64, to_ms: f64) -> Vec<&Row> {
    rows.iter()
        .filter(|r| r.intended_ms >= from_ms && r.intended_ms < to_ms)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn share(rows: &[&Row], outcome: &str) -> f64 {
    rows.iter().filter(|r| r.outcome == outcome).count() as f64 / rows.len() as f64
}

/// A host, a proxy in front of it, load through the proxy; `fault` is injected at 2s and lifted
/// at 4s; the run ends at 5s. Returns the out dir (kept alive by the tempdir).
fn drill_api(
    fault: &str,
    api: &str,
    stream: bool,
    rate: u32,
    extra_load: &str,
) -> (tempfile::TempDir, Vec<Row>) {
    let dir = tempfile::tempdir().unwrap();
    let [host, proxy] = free_ports(2)[..] else {
        unreachable!()
    };
    // Each API at its own route, as a client of that API sends it.
    let path = if api == "anthropic-messages" {
        "/v1/messages"
    } else {
        "/v1/chat/completions"
    };
    let yaml = format!(
        r#"version: 1
name: fault-test
seed: 11
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}", ttft: 5ms, tokens_per_second: 1000, completion_tokens: 8 }} }}
proxies:
  p: {{ listen: "127.0.0.1:{proxy}", upstream: "127.0.0.1:{host}" }}
load:
  s:
    url: http://127.0.0.1:{proxy}{path}
    rate: {rate}/s
    request: {{ api: {api}, stream: {stream} }}
    {extra_load}
timeline:
  - {{ at: 2s, inject: {{ id: f, proxy: p, fault: {fault} }} }}
  - {{ at: 4s, lift: f }}
  - {{ at: 5s, end: true }}
"#
    );
    let run = run_experiment(dir.path(), "drill.yaml", &yaml, &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let rows = rows(&run.out);
    (dir, rows)
}

fn drill(fault: &str, stream: bool, rate: u32, extra_load: &str) -> (tempfile::TempDir, Vec<Row>) {
    drill_api(fault, "openai-chat", stream, rate, extra_load)
}

#[test]
fn latency_before_forward_adds_its_delay() {
    let (_dir, rows) = drill("{ latency: { delay: 200ms } }", false, 20, "");
    let before = median(
        between(&rows, 300.0, 1900.0)
            .iter()
            .map(|r| r.latency_ms)
            .collect(),
    );
    let during = median(
        between(&rows, 2100.0, 3900.0)
            .iter()
            .map(|r| r.latency_ms)
            .collect(),
    );
    let added = during - before;
    assert!(
        (added - 200.0).abs() <= 5.0,
        "added {added:.1} ms (before {before:.1}, during {during:.1})"
    );
}

#[test]
fn per_chunk_latency_slows_every_token() {
    // 8 tokens plus the role, finish and [DONE] events: at least 8 chunks of 20 ms.
    let (_dir, rows) = drill(
        "{ latency: { delay: 20ms, where: per_chunk } }",
        true,
        10,
        "",
    );
    let before = median(
        between(&rows, 300.0, 1900.0)
            .iter()
            .map(|r| r.latency_ms)
            .collect(),
    );
    let during = median(
        between(&rows, 2100.0, 3900.0)
            .iter()
            .map(|r| r.latency_ms)
            .collect(),
    );
    assert!(
        during - before >= 160.0,
        "added only {:.1} ms",
        during - before
    );
}

#[test]
fn error_probability_is_honoured() {
    let (_dir, rows) = drill(
        "{ http_error: { status: 503, probability: 30% } }",
        false,
        150,
        "",
    );
    let during = between(&rows, 2050.0, 3950.0);
    let errors = share(&during, "http_error");
    // 285 requests: 3 standard deviations of a 30% binomial is about 8 points.
    assert!(
        (errors - 0.30).abs() <= 0.08,
        "{:.1}% errors over {} requests",
        errors * 100.0,
        during.len()
    );
    assert!(during
        .iter()
        .filter(|r| r.outcome == "http_error")
        .all(|r| r.status == "503"));
    assert_eq!(
        share(&between(&rows, 0.0, 1950.0), "ok"),
        1.0,
        "errors before the fault"
    );
    assert_eq!(
        share(&between(&rows, 4100.0, 5000.0), "ok"),
        1.0,
        "errors after the lift"
    );
}

#[test]
fn truncation_by_close_and_by_reset_is_classified_truncated() {
    for how in ["close", "reset"] {
        let (_dir, rows) = drill(
            &format!("{{ truncate_stream: {{ after_events: 3, how: {how} }} }}"),
            true,
            20,
            "",
        );
        let during = between(&rows, 2050.0, 3950.0);
        assert_eq!(share(&during, "truncated"), 1.0, "how: {how}");
        assert_eq!(share(&between(&rows, 0.0, 1950.0), "ok"), 1.0);
    }
}

#[test]
fn clean_cuts_by_end_and_by_reterminate_are_classified_truncated() {
    // `end` leaves a well-formed HTTP response without the stream's terminator; `reterminate`
    // adds a synthetic stop and [DONE], so only the verifiable text shows the cut.
    for how in ["end", "reterminate"] {
        let (_dir, rows) = drill(
            &format!("{{ truncate_stream: {{ after_events: 3, how: {how} }} }}"),
            true,
            20,
            "",
        );
        let during = between(&rows, 2050.0, 3950.0);
        assert!(!during.is_empty(), "how: {how}");
        assert_eq!(share(&during, "truncated"), 1.0, "how: {how}");
        assert!(during.iter().all(|r| r.status == "200"), "how: {how}");
        assert_eq!(share(&between(&rows, 0.0, 1950.0), "ok"), 1.0);
        assert_eq!(share(&between(&rows, 4100.0, 5000.0), "ok"), 1.0);
    }
}

#[test]
fn a_stalled_stream_is_classified_stalled() {
    let (_dir, rows) = drill(
        "{ truncate_stream: { after_events: 2, how: stall } }",
        true,
        10,
        "stall_timeout: 500ms",
    );
    assert_eq!(share(&between(&rows, 2050.0, 3950.0), "stalled"), 1.0);
}

#[test]
fn an_in_stream_error_is_classified_stream_error() {
    let (_dir, rows) = drill("{ stream_error: { after_events: 2 } }", true, 10, "");
    assert_eq!(share(&between(&rows, 2050.0, 3950.0), "stream_error"), 1.0);
}

#[test]
fn reset_and_blackhole_are_classified() {
    let (_dir, rows) = drill("{ reset: {} }", false, 10, "");
    assert_eq!(share(&between(&rows, 2050.0, 3950.0), "reset"), 1.0);
    let (_dir, rows) = drill("{ blackhole: {} }", false, 10, "timeout: 700ms");
    let during = between(&rows, 2050.0, 3950.0);
    assert_eq!(share(&during, "timeout"), 1.0);
    assert!(during.iter().all(|r| r.latency_ms >= 700.0));
}

#[test]
fn anthropic_streams_are_classified_too() {
    let (_dir, rows) = drill_api(
        "{ truncate_stream: { after_events: 4 } }",
        "anthropic-messages",
        true,
        10,
        "",
    );
    assert_eq!(
        share(&between(&rows, 0.0, 1950.0), "ok"),
        1.0,
        "whole Anthropic streams are ok"
    );
    assert_eq!(share(&between(&rows, 2050.0, 3950.0), "truncated"), 1.0);
    let (_dir, rows) = drill_api(
        "{ stream_error: { after_events: 3, shape: anthropic } }",
        "anthropic-messages",
        true,
        10,
        "",
    );
    assert_eq!(share(&between(&rows, 2050.0, 3950.0), "stream_error"), 1.0);
    let (_dir, rows) = drill_api(
        "{ http_error: { status: 529, body: anthropic } }",
        "anthropic-messages",
        false,
        10,
        "",
    );
    assert_eq!(share(&between(&rows, 2050.0, 3950.0), "http_error"), 1.0);
    assert_eq!(
        share(&between(&rows, 4100.0, 5000.0), "ok"),
        1.0,
        "non-streaming Anthropic answers are ok"
    );
}
