//! The simulated host over real sockets.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{json, Value};

use super::client::*;
use crate::exit::Failure;
use crate::experiment::schema::Overflow;
use crate::protocol::verify::{self, Verification};
use crate::simulate::start_host;
use crate::units::Dur;

#[tokio::test]
async fn openai_stream_ends_with_done_and_verifies() {
    let host = start_host("primary", &host_spec()).await.unwrap();
    let answer = post_json(host.addr(), "/v1/chat/completions", chat(true)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), Some("text/event-stream"));
    assert_eq!(answer.header("x-served-by"), Some("primary"));
    assert!(answer.text().ends_with("data: [DONE]\n\n"));

    let events = parse_sse(&answer.text());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let finish = chunks.last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(verify::verify(&text), Verification::Complete);
    assert_eq!(chunks.len(), 1 + 8 + 1, "role, one chunk per token, finish");
    // One token per frame: the body is streamed, not built whole.
    assert!(answer.frames.len() >= 9);
    host.stop().await;
}

#[tokio::test]
async fn anthropic_stream_follows_the_event_flow_and_verifies() {
    let mut spec = host_spec();
    spec.served_by = Some("claude-sim".into());
    let host = start_host("fallback", &spec).await.unwrap();
    let req = json!({
        "model": "m", "max_tokens": 5, "stream": true,
        "messages": [{ "role": "user", "content": "ping" }],
    });
    let answer = post_json(host.addr(), "/v1/messages", req).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("x-served-by"), Some("claude-sim"));
    let events = parse_sse(&answer.text());
    let names: Vec<&str> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", 5));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    let text: String = events
        .iter()
        .filter(|e| e.name.as_deref() == Some("content_block_delta"))
        .map(|e| {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(v["delta"]["type"], "text_delta");
            v["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(verify::verify(&text), Verification::Complete);
    let delta: Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
    // `max_tokens: 5` cut the host's 8 tokens short.
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 5);
    host.stop().await;
}

#[tokio::test]
async fn non_streaming_answers_in_both_apis() {
    let host = start_host("h", &host_spec()).await.unwrap();
    let mut req = chat(false);
    req["max_tokens"] = json!(3);
    let openai = post_json(host.addr(), "/v1/chat/completions", req).await;
    assert_eq!(openai.status, StatusCode::OK);
    let v = openai.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "sim-model");
    // `max_tokens: 3` cut the host's 8 tokens short.
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(text, verify::completion(3));

    let req = json!({ "model": "m", "messages": [{ "role": "user", "content": "hi there" }] });
    let anthropic = post_json(host.addr(), "/v1/messages", req).await;
    assert_eq!(anthropic.status, StatusCode::OK);
    let v = anthropic.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["content"][0]["type"], "text");
    let text = v["content"][0]["text"].as_str().unwrap();
    assert_eq!(verify::verify(text), Verification::Complete);
    assert_eq!(v["usage"]["output_tokens"], 8);
    assert_eq!(v["usage"]["input_tokens"], 2);
    assert_eq!(anthropic.header("x-served-by"), Some("h"));
    host.stop().await;
}

#[tokio::test]
async fn ttft_and_token_rate_are_honoured() {
    let mut spec = host_spec();
    spec.ttft = Dur::from_millis(100);
    spec.tokens_per_second = 50.0; // 20 ms a token
    spec.completion_tokens = 5;
    let host = start_host("slow", &spec).await.unwrap();
    let answer = post_json(host.addr(), "/v1/chat/completions", chat(true)).await;
    let token_times: Vec<Duration> = answer
        .frames
        .iter()
        .filter(|(_, b)| String::from_utf8_lossy(b).contains("\"content\":\"t"))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(token_times.len(), 5);
    let first_byte = answer.frames[0].0;
    assert!(
        first_byte >= Duration::from_millis(100),
        "first byte after ttft: {first_byte:?}"
    );
    assert!(answer.headers_at < first_byte, "headers are not held back");
    assert!(
        token_times[0] >= Duration::from_millis(100),
        "{token_times:?}"
    );
    let last = *token_times.last().unwrap();
    assert!(last >= Duration::from_millis(180), "{token_times:?}");
    assert!(last < Duration::from_secs(2), "{token_times:?}");

    // Non-streaming: the whole answer after ttft + n / tps.
    let started = std::time::Instant::now();
    let answer = post_json(host.addr(), "/v1/messages", json!({ "messages": [] })).await;
    assert_eq!(answer.status, StatusCode::OK);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    host.stop().await;
}

#[tokio::test]
async fn full_host_rejects_with_retry_after() {
    let mut spec = host_spec();
    spec.capacity = Some(1);
    spec.overflow = Overflow::Reject;
    spec.reject_status = 529.try_into().unwrap();
    spec.ttft = Dur::from_millis(400);
    let host = start_host("small", &spec).await.unwrap();
    let addr = host.addr();
    let busy =
        tokio::spawn(async move { post_json(addr, "/v1/chat/completions", chat(true)).await });
    // Bounded wait until the first request holds the slot.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rejected = post_json(addr, "/v1/messages", json!({ "messages": [] })).await;
    assert_eq!(rejected.status.as_u16(), 529);
    assert_eq!(rejected.header("retry-after"), Some("1"));
    assert_eq!(rejected.json()["error"]["type"], "overloaded_error");
    assert_eq!(rejected.json()["type"], "error");
    // Health and models never count against capacity.
    assert_eq!(
        send(addr, "GET", "/health", "").await.status,
        StatusCode::OK
    );
    assert_eq!(busy.await.unwrap().status, StatusCode::OK);
    // The slot is free again once the stream finished.
    let again = post_json(addr, "/v1/chat/completions", chat(false)).await;
    assert_eq!(again.status, StatusCode::OK);
    host.stop().await;
}

#[tokio::test]
async fn full_host_queues_when_told_to() {
    let mut spec = host_spec();
    spec.capacity = Some(1);
    spec.overflow = Overflow::Queue;
    spec.ttft = Dur::from_millis(200);
    spec.completion_tokens = 1;
    let host = start_host("queue", &spec).await.unwrap();
    let addr = host.addr();
    let first =
        tokio::spawn(async move { post_json(addr, "/v1/chat/completions", chat(false)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    let second = post_json(addr, "/v1/chat/completions", chat(false)).await;
    let took = started.elapsed();
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    // It waited for the first to finish (~150 ms) and then took its own 200 ms.
    assert!(took >= Duration::from_millis(300), "{took:?}");
    host.stop().await;
}

#[tokio::test]
async fn models_health_and_errors() {
    let host = start_host("h", &host_spec()).await.unwrap();
    let addr = host.addr();
    let models = send(addr, "GET", "/v1/models", "").await;
    assert_eq!(models.status, StatusCode::OK);
    assert_eq!(models.json()["data"][0]["id"], "sim-model");
    assert_eq!(models.json()["object"], "list");
    let health = send(addr, "GET", "/health", "").await;
    assert_eq!(health.json(), json!({ "status": "ok" }));
    assert_eq!(health.header("x-served-by"), Some("h"));

    let missing = send(addr, "GET", "/v2/nothing", "").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.json()["error"]["message"].is_string());
    assert_eq!(missing.header("x-served-by"), Some("h"));

    let bad = send(addr, "POST", "/v1/chat/completions", "{not json").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["type"], "invalid_request_error");
    let bad = send(addr, "POST", "/v1/messages", "[]").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["type"], "invalid_request_error");

    let wrong = send(addr, "GET", "/v1/chat/completions", "").await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    host.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    use http_body_util::{BodyExt, Empty};
    let host = start_host("h", &host_spec()).await.unwrap();
    let stream = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = hyper::Request::get("/health")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.unwrap();
    }
    host.stop().await;
}

#[tokio::test]
async fn a_taken_port_is_an_environment_failure() {
    let taken = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    let mut spec = host_spec();
    spec.listen = taken.local_addr().unwrap();
    match start_host("primary", &spec).await {
        Err(Failure::Environment(msg)) => {
            assert!(msg.contains(&spec.listen.to_string()), "{msg}");
            assert!(msg.contains("primary"), "{msg}");
        }
        other => panic!("expected an environment failure, got {other:?}"),
    }
}

#[tokio::test]
async fn stop_drops_open_streams() {
    let mut spec = host_spec();
    spec.ttft = Dur::from_secs(30);
    let host = start_host("h", &spec).await.unwrap();
    let addr = host.addr();
    let pending =
        tokio::spawn(async move { post_json(addr, "/v1/chat/completions", chat(true)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(2), host.stop())
        .await
        .expect("stop waits for nothing but its own tasks");
    let cut = pending.await.unwrap();
    assert!(cut.body_error.is_some() || cut.frames.is_empty());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_client_that_goes_away_frees_its_slot() {
    for stream in [true, false] {
        let mut spec = host_spec();
        spec.capacity = Some(1);
        spec.overflow = Overflow::Reject;
        spec.ttft = Dur::from_secs(30);
        let host = start_host("h", &spec).await.unwrap();
        let addr = host.addr();
        let gone =
            tokio::spawn(
                async move { post_json(addr, "/v1/chat/completions", chat(stream)).await },
            );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let full = post_json(addr, "/v1/chat/completions", chat(false)).await;
        assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(full.json()["error"]["type"], "rate_limit_exceeded");
        // Aborting the task drops its connection.
        gone.abort();
        let _ = gone.await;
        let mut freed = false;
        for _ in 0..50 {
            if status_only(addr, chat(true)).await == StatusCode::OK {
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(freed, "the slot came back (stream: {stream})");
        host.stop().await;
    }
}
