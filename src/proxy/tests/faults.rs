//! Faults that replace or delay the answer: http_error, latency, reset, blackhole.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::support::*;

async fn error_answer(shape: &str, status: u16) -> (u16, hyper::HeaderMap, String) {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let spec = json!({"http_error": {
        "status": status, "body": shape, "headers": {"retry-after": "7", "x-extra": "yes"}
    }});
    proxy.faults().inject("e", fault(spec));
    let response = get(proxy.addr(), "/json").await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = read_all(response).await.text();
    assert_eq!(up.hits(), 0, "the upstream is never contacted");
    proxy.stop().await;
    (status, headers, text)
}

#[tokio::test]
async fn http_error_in_each_provider_shape() {
    let (status, headers, text) = error_answer("openai", 429).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(headers["x-extra"], "yes");
    assert_eq!(headers["content-type"], "application/json");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["error"]["message"].is_string());
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["type"].is_string());
    assert!(v["error"]["param"].is_null());

    let (status, headers, text) = error_answer("anthropic", 529).await;
    assert_eq!(status, 529);
    assert_eq!(headers["retry-after"], "7");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert!(v["error"]["message"].is_string());

    for (status, kind) in [
        (429, "rate_limit_error"),
        (500, "api_error"),
        (400, "invalid_request_error"),
    ] {
        let (_, _, text) = error_answer("anthropic", status).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["type"], kind, "{status}");
    }

    let (status, _, text) = error_answer("vllm", 503).await;
    assert_eq!(status, 503);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "error");
    assert_eq!(v["code"], 503);
    assert!(v["param"].is_null());
    assert!(v["type"].is_string() && v["message"].is_string());

    let (status, headers, text) = error_answer("empty", 500).await;
    assert_eq!(status, 500);
    assert_eq!(headers["retry-after"], "7");
    assert!(text.is_empty());
}

#[tokio::test]
async fn latency_before_forward_delays_the_answer() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let slow = json!({"latency": {"delay": "200ms", "jitter": "50ms"}});
    proxy.faults().inject("slow", fault(slow));
    let t0 = Instant::now();
    let response = get(proxy.addr(), "/json").await.unwrap();
    let took = t0.elapsed();
    assert_eq!(response.status(), 200);
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_millis(250 + 500), "{took:?}");

    // Two latency faults add up.
    proxy
        .faults()
        .inject("slower", fault(json!({"latency": {"delay": "100ms"}})));
    let t0 = Instant::now();
    get(proxy.addr(), "/json").await.unwrap();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(350 + 500), "{took:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn latency_at_first_byte_delays_the_headers_not_the_upstream() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let ttft = json!({"latency": {"delay": "250ms", "where": "first_byte"}});
    proxy.faults().inject("ttft", fault(ttft));
    let t0 = Instant::now();
    let response = get(proxy.addr(), "/sse?n=3&gap=10").await.unwrap();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_millis(250 + 500), "{took:?}");
    assert_eq!(up.hits(), 1, "the upstream was asked before the wait");
    let body = read_all(response).await;
    assert_eq!(body.text(), events(0..3));
    proxy.stop().await;
}

#[tokio::test]
async fn latency_per_chunk_scales_with_the_number_of_chunks() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let tokens = json!({"latency": {"delay": "40ms", "where": "per_chunk"}});
    proxy.faults().inject("tokens", fault(tokens));
    let mut took = Vec::new();
    for n in [2, 10] {
        let t0 = Instant::now();
        let response = get(proxy.addr(), &format!("/sse?n={n}&gap=1"))
            .await
            .unwrap();
        let body = read_all(response).await;
        assert_eq!(body.text(), events(0..n));
        took.push(t0.elapsed());
    }
    assert!(took[0] >= Duration::from_millis(80), "{took:?}");
    // Eight more chunks, 40ms each.
    assert!(took[1] >= took[0] + Duration::from_millis(280), "{took:?}");
    assert!(took[1] < Duration::from_millis(400 + 1000), "{took:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn reset_ends_the_connection_with_a_rst_and_no_answer() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    proxy.faults().inject("rst", fault(json!({"reset": {}})));
    let err = get(proxy.addr(), "/json").await.unwrap_err();
    assert!(is_reset(&err), "{err:?}");
    assert_eq!(up.hits(), 0);
    proxy.stop().await;
}

#[tokio::test]
async fn blackhole_never_answers_until_the_proxy_stops() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    proxy
        .faults()
        .inject("hole", fault(json!({"blackhole": {}})));
    let addr = proxy.addr();
    let pending = tokio::spawn(async move { get(addr, "/json").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pending.is_finished(), "no answer within 500ms");
    assert_eq!(up.hits(), 0);

    let t0 = Instant::now();
    proxy.stop().await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "stop does not wait on the hole"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(2), pending).await;
    let answer = outcome.expect("stop ends the held connection").unwrap();
    assert!(
        answer.is_err(),
        "the client sees the connection end, not an answer"
    );
}
