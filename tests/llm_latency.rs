//! LLM latency measures end to end: a slow-token fault on the proxy moves the inter-token
//! latency the load generator measures by exactly its delay, and the budgets see it.

mod common;

use common::{free_ports, run_experiment};

fn ms(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_per_chunk_latency_fault_moves_p50_itl_by_its_delay() {
    let dir = tempfile::tempdir().unwrap();
    let [host, proxy] = free_ports(2)[..] else {
        unreachable!()
    };
    // A fast host (0.5 ms between tokens), so the gaps the client sees under the fault are the
    // proxy's 50 ms and nothing else.
    let yaml = format!(
        r#"version: 1
name: slow-tokens
seed: 5
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}", ttft: 5ms, tokens_per_second: 2000, completion_tokens: 12 }} }}
proxies:
  p: {{ listen: "127.0.0.1:{proxy}", upstream: "127.0.0.1:{host}" }}
load:
  s:
    url: http://127.0.0.1:{proxy}/v1/chat/completions
    rate: 20/s
    request: {{ api: openai-chat }}
timeline:
  - {{ at: 2s, inject: {{ id: slow, proxy: p, fault: {{ latency: {{ delay: 50ms, where: per_chunk }} }} }} }}
  - {{ at: 4s, lift: slow }}
  - {{ at: 5s, end: true }}
expect:
  max_p50_itl: 20ms
  max_p99_tpot: 1s
  max_unverified: 0
"#
    );
    let run = run_experiment(dir.path(), "slow.yaml", &yaml, &[]);
    // The ITL budget fails: the fault made tokens slow.
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let report = run.report();
    let out = &run.out;
    let phases = &report["evaluation"]["overall"]["phases"];
    let base = ms(&phases["baseline"]["itl"]["p50_ms"]);
    let fault = ms(&phases["fault"]["itl"]["p50_ms"]);
    let shift = fault - base;
    assert!(
        (shift - 50.0).abs() <= 2.0,
        "p50 ITL moved by {shift:.2} ms (baseline {base:.2}, fault {fault:.2}), not 50 ± 2"
    );
    // TTFT counts the first content event; TPOT the tokens after it.
    assert!(ms(&phases["baseline"]["ttft"]["p50_ms"]) >= 5.0);
    assert!(ms(&phases["fault"]["tpot"]["p50_ms"]) >= 45.0);
    let rows = report["evaluation"]["verdict"]["rows"].as_array().unwrap();
    let row = |b: &str| rows.iter().find(|r| r["budget"] == b).unwrap().clone();
    assert_eq!(row("max_p50_itl")["passed"], false);
    assert_eq!(row("max_p99_tpot")["passed"], true);
    // The simulator's text is verifiable and its stream carries usage: nothing unverified.
    assert_eq!(row("max_unverified")["passed"], true);
    // The CSV carries the per-request measures.
    let csv = std::fs::read_to_string(out.join("requests.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    for col in [
        "ttft_ms",
        "itl_p50_ms",
        "tpot_ms",
        "output_tokens",
        "verified",
        "faults",
    ] {
        assert!(header.split(',').any(|h| h == col), "no column {col}");
    }
    assert!(csv.contains(",slow"), "no request marked with the fault id");
}
