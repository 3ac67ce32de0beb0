//! The memory model (KV cache, leak, OOM crash) and the cold start, over real sockets.
//!
//! Every chat request here has the prompt "ping" (1 token) and 8 completion tokens, so it holds
//! 9 tokens of cache: 20 tokens fit two at once, not three.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;
use tokio::time::Instant;

use super::client::*;
use crate::experiment::schema::{Exhaustion, MemorySpec, Overflow, SimulateSpec};
use crate::simulate::{start_host, RunningServer};
use crate::units::Dur;

const CRASH_LIMIT: Duration = Duration::from_secs(3);

fn with_memory(kv_tokens: u64, on_exhaustion: Exhaustion) -> SimulateSpec {
    let mut spec = host_spec();
    spec.memory = Some(MemorySpec {
        kv_tokens,
        leak_per_second: 0,
        leak_after: Dur::from_millis(0),
        on_exhaustion,
    });
    spec
}

fn leaking(kv_tokens: u64, leak_per_second: u64, leak_after: Dur) -> SimulateSpec {
    let mut spec = with_memory(kv_tokens, Exhaustion::Crash);
    if let Some(m) = spec.memory.as_mut() {
        m.leak_per_second = leak_per_second;
        m.leak_after = leak_after;
    }
    spec
}

fn spawn_stream(addr: std::net::SocketAddr) -> tokio::task::JoinHandle<Result<Answer, String>> {
    tokio::spawn(async move { try_post(addr, chat(true)).await })
}

/// A stream cut by a crash: the client saw an error or an early end, never `[DONE]`.
fn assert_cut(result: Result<Answer, String>) {
    if let Ok(answer) = result {
        assert!(!answer.text().contains("[DONE]"), "{}", answer.text());
        assert!(answer.body_error.is_some(), "the connection was cut");
    }
}

async fn wait_crashed(host: &RunningServer) {
    tokio::time::timeout(CRASH_LIMIT, host.wait_crashed())
        .await
        .expect("the host crashed in time");
    assert!(host.crashed());
}

#[tokio::test]
async fn a_request_that_does_not_fit_is_rejected() {
    let mut spec = with_memory(20, Exhaustion::Reject);
    spec.ttft = Dur::from_millis(400);
    let host = start_host("h", &spec).await.unwrap();
    let addr = host.addr();
    let (a, b) = (spawn_stream(addr), spawn_stream(addr));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let third = post_json(addr, "/v1/chat/completions", chat(true)).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.header("retry-after"), Some("1"));
    let message = third.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("needs 9 tokens, 2 of 20 free"),
        "{message}"
    );
    let anthropic = post_json(addr, "/v1/messages", json!({ "messages": [] })).await;
    assert_eq!(anthropic.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(anthropic.json()["type"], "error");

    for first in [a, b] {
        let answer = first.await.unwrap().unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.text().ends_with("data: [DONE]\n\n"));
    }
    let again = post_json(addr, "/v1/chat/completions", chat(true)).await;
    assert_eq!(again.status, StatusCode::OK, "the cache came back");
    assert!(!host.crashed());
    host.stop().await;
}

#[tokio::test]
async fn a_request_that_does_not_fit_crashes_the_host() {
    let mut spec = with_memory(20, Exhaustion::Crash);
    spec.ttft = Dur::from_secs(30);
    let host = start_host("h", &spec).await.unwrap();
    let addr = host.addr();
    let (a, b) = (spawn_stream(addr), spawn_stream(addr));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!host.crashed());

    let third = try_post(addr, chat(true)).await;
    assert!(third.is_err(), "the crashing request gets no answer");
    wait_crashed(&host).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    for first in [a, b] {
        assert_cut(first.await.unwrap());
    }
    host.stop().await;
}

#[tokio::test]
async fn a_leak_crashes_a_host_with_a_long_stream_in_flight() {
    let started = Instant::now();
    let mut spec = leaking(1000, 10_000, Dur::from_millis(200));
    spec.ttft = Dur::from_secs(30);
    let host = start_host("leaky", &spec).await.unwrap();
    let stream = spawn_stream(host.addr());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!host.crashed(), "no leak before leak_after");

    wait_crashed(&host).await;
    // Capacity falls below the 9 held tokens ~99 ms into the leak; the watchdog looks every
    // 50 ms.
    let at = started.elapsed();
    assert!(at >= Duration::from_millis(290), "{at:?}");
    assert!(at < Duration::from_secs(2), "{at:?}");
    assert_cut(stream.await.unwrap());
    assert!(tokio::net::TcpStream::connect(host.addr()).await.is_err());
    host.stop().await;
}

#[tokio::test]
async fn a_leak_crashes_a_host_serving_a_trickle() {
    let started = Instant::now();
    let host = start_host("leaky", &leaking(1000, 10_000, Dur::from_millis(200)))
        .await
        .unwrap();
    let mut served = 0;
    let mut failed_at = None;
    for _ in 0..200 {
        match try_post(host.addr(), chat(false)).await {
            Ok(answer) => {
                assert_eq!(answer.status, StatusCode::OK);
                served += 1;
            }
            Err(_) => {
                failed_at = Some(started.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let failed_at = failed_at.expect("the host died within the trickle");
    assert!(failed_at >= Duration::from_millis(200), "{failed_at:?}");
    assert!(served >= 5, "it served until the leak caught up: {served}");
    wait_crashed(&host).await;
    host.stop().await;
}

#[tokio::test]
async fn finished_and_abandoned_requests_give_their_cache_back() {
    let host = start_host("h", &with_memory(20, Exhaustion::Crash))
        .await
        .unwrap();
    for i in 0..40 {
        let answer = if i % 3 == 2 {
            post_json(host.addr(), "/v1/messages", json!({ "messages": [] })).await
        } else {
            post_json(host.addr(), "/v1/chat/completions", chat(i % 3 == 0)).await
        };
        assert_eq!(answer.status, StatusCode::OK, "request {i}");
    }
    assert!(!host.crashed());
    host.stop().await;

    // Only one request fits; a client that leaves mid-stream must not keep it.
    let mut spec = with_memory(9, Exhaustion::Reject);
    spec.ttft = Dur::from_secs(30);
    let host = start_host("h", &spec).await.unwrap();
    let gone = spawn_stream(host.addr());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        status_only(host.addr(), chat(true)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    gone.abort();
    let _ = gone.await;
    let mut freed = false;
    for _ in 0..50 {
        if status_only(host.addr(), chat(true)).await == StatusCode::OK {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the abandoned stream's cache came back");
    host.stop().await;
}

#[tokio::test]
async fn memory_is_checked_after_the_queue_wait() {
    // One slot and cache for one request: the second waits for the slot, and by then the
    // first has given its cache back, so nothing crashes.
    let mut spec = with_memory(9, Exhaustion::Crash);
    spec.capacity = Some(1);
    spec.overflow = Overflow::Queue;
    spec.ttft = Dur::from_millis(150);
    let host = start_host("h", &spec).await.unwrap();
    let addr = host.addr();
    let first = spawn_stream(addr);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = post_json(addr, "/v1/chat/completions", chat(true)).await;
    assert_eq!(second.status, StatusCode::OK);
    assert!(second.text().ends_with("data: [DONE]\n\n"));
    assert_eq!(first.await.unwrap().unwrap().status, StatusCode::OK);
    assert!(!host.crashed());
    host.stop().await;
}

#[tokio::test]
async fn cold_start_answers_503_until_loaded() {
    let started = Instant::now();
    let mut spec = host_spec();
    spec.cold_start = Some(Dur::from_millis(300));
    let host = start_host("cold", &spec).await.unwrap();
    let addr = host.addr();
    for (method, path, body) in [
        ("GET", "/health", String::new()),
        ("GET", "/v1/models", String::new()),
        ("POST", "/v1/chat/completions", chat(true).to_string()),
        (
            "POST",
            "/v1/messages",
            json!({ "messages": [] }).to_string(),
        ),
    ] {
        let answer = send(addr, method, path, &body).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert_eq!(answer.header("x-served-by"), Some("cold"));
        let error = &answer.json()["error"];
        assert_eq!(error["message"], "model is loading");
        assert_eq!(error["type"], "service_unavailable");
    }
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "checked inside the cold start"
    );

    tokio::time::sleep_until(started + Duration::from_millis(350)).await;
    let health = send(addr, "GET", "/health", "").await;
    assert_eq!(health.status, StatusCode::OK);
    let answer = post_json(addr, "/v1/chat/completions", chat(true)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.text().ends_with("data: [DONE]\n\n"));
    host.stop().await;
}
