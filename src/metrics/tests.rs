use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::load::record::TokenTiming;
use crate::measure::testutil::{rec, RecordExt};

/// Two streams, one with a secret-looking header, a fault on the timeline and a warm-up.
const FILE: &str = r#"
version: 1
name: live-test
seed: 7
services:
  host: { simulate: { listen: "127.0.0.1:9001" } }
proxies:
  p: { listen: "127.0.0.1:9011", upstream: "127.0.0.1:9001" }
load:
  chat:
    url: "http://127.0.0.1:9011/v1/chat/completions"
    rate: 10/s
    request: { api: openai-chat }
    headers: { authorization: "Bearer sk-not-for-labels" }
  other: { url: "http://127.0.0.1:9011/v1/chat/completions", rate: 1/s, request: { api: openai-chat } }
timeline:
  - { at: 1s, inject: { id: burst, proxy: p, fault: { http_error: { status: 503 } } } }
  - { at: 3s, lift: burst }
  - { at: 5s, end: true }
measure: { warmup: 500ms }
"#;

fn live() -> Live {
    let exp = crate::experiment::parse(Path::new("t.yaml"), FILE.to_string()).unwrap();
    Live::new(&exp, 99)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// The value of the sample line `series` (name and labels exactly as encoded).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample `{series}` in:\n{text}"))
        .parse()
        .unwrap()
}

fn requests(text: &str, stream: &str, outcome: &str, phase: &str) -> f64 {
    sample(
        text,
        &format!(
            "faultline_requests_total{{stream=\"{stream}\",outcome=\"{outcome}\",phase=\"{phase}\"}}"
        ),
    )
}

#[test]
fn requests_are_counted_by_stream_outcome_and_the_phase_of_their_intended_time() {
    let live = live();
    live.fault_opened("burst", "http_error", "p", ms(1_000));
    for (at, outcome) in [
        (200, Outcome::Ok),          // warm-up
        (600, Outcome::Ok),          // baseline
        (900, Outcome::Ok),          // baseline
        (1_000, Outcome::HttpError), // the fault's first instant
        (2_000, Outcome::HttpError),
    ] {
        live.sent("chat");
        live.finished(&rec("chat", at).outcome(outcome));
    }
    live.fault_closed("burst", ms(3_000));
    // Intended before the lift, recorded after it: still the fault phase.
    live.sent("chat");
    live.finished(&rec("chat", 2_900).outcome(Outcome::HttpError));
    live.sent("chat");
    live.finished(&rec("chat", 3_000));
    live.finished(&rec("other", 4_000).dropped());

    let text = live.encode(false);
    assert_eq!(requests(&text, "chat", "ok", "warmup"), 1.0);
    assert_eq!(requests(&text, "chat", "ok", "baseline"), 2.0);
    assert_eq!(requests(&text, "chat", "http_error", "fault"), 3.0);
    assert_eq!(requests(&text, "chat", "ok", "recovery"), 1.0);
    assert_eq!(requests(&text, "chat", "ok", "fault"), 0.0);
    assert_eq!(requests(&text, "other", "dropped", "recovery"), 1.0);
    assert_eq!(
        sample(&text, "faultline_dropped_requests_total{stream=\"other\"}"),
        1.0
    );
    // Every request that was sent has finished; the dropped one was never in flight.
    assert_eq!(
        sample(&text, "faultline_in_flight_requests{stream=\"chat\"}"),
        0.0
    );
    assert_eq!(
        sample(&text, "faultline_in_flight_requests{stream=\"other\"}"),
        0.0
    );
    // Every (outcome, phase) pair exists from the start, so a rate() has a series at once.
    let series = text
        .lines()
        .filter(|l| l.starts_with("faultline_requests_total{stream=\"other\""))
        .count();
    assert_eq!(series, Outcome::ALL.len() * PHASE_LABELS.len());
}

#[test]
fn latency_ttft_itl_and_send_lag_land_in_their_histograms_and_late_sends_are_counted() {
    let live = live();
    let mut whole = rec("chat", 1_000).latency_ms(300).lag_ms(2);
    whole.tokens = TokenTiming {
        ttft: Some(ms(40)),
        itl_us: vec![800, 1_200, 30_000],
        output_tokens: Some(4),
    };
    let mut cut = rec("chat", 1_100).truncated().lag_ms(25);
    cut.tokens.ttft = Some(ms(40));
    cut.tokens.itl_us = vec![5_000_000];
    for r in [whole, cut] {
        live.sent("chat");
        live.finished(&r);
    }
    let text = live.encode(false);
    let h = |name: &str, suffix: &str| {
        sample(
            &text,
            &format!("faultline_{name}_seconds_{suffix}{{stream=\"chat\"}}"),
        )
    };
    // Latency of every sent request; token timing of whole answers only.
    assert_eq!(h("request_latency", "count"), 2.0);
    assert!((h("request_latency", "sum") - 0.4).abs() < 1e-9);
    assert_eq!(h("ttft", "count"), 1.0);
    assert_eq!(h("itl", "count"), 3.0);
    assert!((h("itl", "sum") - 0.032).abs() < 1e-9);
    let bucket = |name: &str, le: &str| {
        sample(
            &text,
            &format!("faultline_{name}_seconds_bucket{{stream=\"chat\",le=\"{le}\"}}"),
        )
    };
    assert_eq!(bucket("itl", "0.001"), 1.0);
    assert_eq!(bucket("itl", "0.0025"), 2.0);
    assert_eq!(bucket("itl", "0.05"), 3.0);
    // 10 ms is the late threshold and a bucket edge: 2 ms on time, 25 ms late.
    assert_eq!(h("send_lag", "count"), 2.0);
    assert_eq!(bucket("send_lag", "0.01"), 1.0);
    assert_eq!(
        sample(&text, "faultline_late_requests_total{stream=\"chat\"}"),
        1.0
    );
}

#[test]
fn a_fault_is_active_from_its_opening_to_its_lift_with_its_id_kind_and_target() {
    let live = live();
    let series = "faultline_fault_active{id=\"burst\",kind=\"http_error\",target=\"p\"}";
    // Planned on the timeline: there at 0 before it is injected.
    assert_eq!(sample(&live.encode(false), series), 0.0);
    live.fault_opened("burst", "http_error", "p", ms(1_000));
    assert_eq!(sample(&live.encode(false), series), 1.0);
    live.fault_closed("burst", ms(3_000));
    assert_eq!(sample(&live.encode(false), series), 0.0);
    // Injected again under the same id: active again, one series.
    live.fault_opened("burst", "http_error", "p", ms(4_000));
    let text = live.encode(false);
    assert_eq!(sample(&text, series), 1.0);
    assert_eq!(text.matches("faultline_fault_active{").count(), 1);
}

#[test]
fn the_run_says_what_it_is_how_long_it_has_gone_and_when_it_is_over() {
    let live = live();
    let text = live.encode(false);
    assert_eq!(
        sample(
            &text,
            "faultline_run_info{experiment=\"live-test\",seed=\"99\"}"
        ),
        1.0
    );
    assert_eq!(sample(&text, "faultline_run_finished"), 0.0);
    assert_eq!(sample(&text, "faultline_run_elapsed_seconds"), 0.0);
    assert_eq!(sample(&text, "faultline_run_duration_seconds"), 5.0);
    live.started(Instant::now() - ms(2_000));
    assert!(sample(&live.encode(false), "faultline_run_elapsed_seconds") >= 2.0);
    live.sent("chat");
    live.finish();
    let first = live.encode(false);
    assert_eq!(sample(&first, "faultline_run_finished"), 1.0);
    // Abandoned in flight is not in flight any more once the run is over.
    assert_eq!(
        sample(&first, "faultline_in_flight_requests{stream=\"chat\"}"),
        0.0
    );
    // The elapsed time stops with the run.
    std::thread::sleep(ms(20));
    assert_eq!(
        sample(&first, "faultline_run_elapsed_seconds"),
        sample(&live.encode(false), "faultline_run_elapsed_seconds")
    );
}

#[test]
fn no_header_value_reaches_a_label_and_openmetrics_ends_with_eof() {
    let live = live();
    for openmetrics in [false, true] {
        let text = live.encode(openmetrics);
        assert!(!text.contains("sk-not-for-labels"), "{text}");
        assert!(!text.contains("authorization"), "{text}");
        assert_eq!(text.trim_end().ends_with("# EOF"), openmetrics, "{text}");
        assert!(text.contains("# TYPE faultline_requests"), "{text}");
    }
}

/// Sends `request` to `addr` and reads the whole answer (the request asks to close).
async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    out
}

#[tokio::test]
async fn the_endpoint_serves_metrics_in_the_format_asked_for_and_refuses_the_rest() {
    let exporter = Exporter::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Arc::new(live()),
    )
    .unwrap();
    let addr = exporter.addr();
    let get = |path: &str, accept: &str| {
        format!("GET {path} HTTP/1.1\r\nhost: x\r\naccept: {accept}\r\nconnection: close\r\n\r\n")
    };
    let text = http(addr, &get("/metrics", "*/*")).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert!(text.contains("faultline_run_finished 0"), "{text}");
    // What Prometheus sends.
    let om = http(
        addr,
        &get(
            "/metrics",
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        ),
    )
    .await;
    assert!(
        om.contains("content-type: application/openmetrics-text"),
        "{om}"
    );
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    let missing = http(addr, &get("/", "*/*")).await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let post = http(
        addr,
        "POST /metrics HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    // A short linger ends by itself and closes the listener.
    let started = Instant::now();
    assert_eq!(exporter.linger(ms(50)).await, None);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_taken_address_fails_before_anything_runs_and_names_the_flag() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = squatter.local_addr().unwrap();
    let Err(err) = Exporter::start(addr, Arc::new(live())) else {
        panic!("bound a taken address");
    };
    let msg = err.to_string();
    assert!(msg.contains("--metrics"), "{msg}");
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert!(msg.contains("already in use"), "{msg}");
    assert_eq!(err.exit_code(), crate::ExitCode::Environment);
}
