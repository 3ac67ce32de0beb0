//! The request options a simulated host honours as vLLM does (`stream_options.include_usage`,
//! `max_tokens`, `ignore_eos`, `min_tokens`), usage in every API, and `content: plain`.

use std::time::Duration;

use hyper::StatusCode;
use serde_json::{json, Value};

use super::client::*;
use crate::experiment::schema::{Content, Exhaustion, MemorySpec};
use crate::protocol::sse;
use crate::protocol::verify::{self, Verification};
use crate::simulate::{start_gateway, start_host};
use crate::units::Dur;

/// A fault proxy in front of `upstream`, with seed 1.
async fn proxy_to(upstream: std::net::SocketAddr) -> crate::proxy::RunningProxy {
    let spec = crate::experiment::schema::ProxySpec {
        listen: any_port().into(),
        upstream: upstream.into(),
        upstream_tls: None,
        preserve_host: false,
        mode: crate::experiment::schema::ProxyMode::Http,
        driver: Default::default(),
    };
    crate::proxy::start("p", &spec, 1).await.unwrap()
}

/// The JSON chunks of an OpenAI stream, and whether it ended with `[DONE]`.
fn openai_chunks(answer: &Answer) -> (Vec<Value>, bool) {
    let events = parse_sse(&answer.text());
    let done = events.last().is_some_and(|e| e.data == sse::DONE);
    let chunks = events
        .iter()
        .filter(|e| e.data != sse::DONE)
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    (chunks, done)
}

fn content_of(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn finish_of(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .map(str::to_string)
        .collect()
}

async fn chat_with(options: Value) -> Answer {
    let host = start_host("h", &host_spec()).await.unwrap();
    let mut req = chat(true);
    if let (Some(req), Some(options)) = (req.as_object_mut(), options.as_object()) {
        req.extend(options.clone());
    }
    let answer = post_json(host.addr(), "/v1/chat/completions", req).await;
    host.stop().await;
    answer
}

#[tokio::test]
async fn include_usage_adds_a_usage_chunk_without_choices_before_done() {
    let answer = chat_with(json!({"stream_options": {"include_usage": true}})).await;
    let (chunks, done) = openai_chunks(&answer);
    assert!(done);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 8);
    assert_eq!(last["usage"]["prompt_tokens"], 1);
    assert_eq!(last["usage"]["total_tokens"], 9);
    // Every other chunk carries the field, null, as OpenAI and vLLM send it.
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c.get("usage") == Some(&Value::Null)));
    assert_eq!(content_of(&chunks).len(), 8);

    let (chunks, done) = openai_chunks(&chat_with(json!({})).await);
    assert!(done);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn max_tokens_cuts_the_completion_and_says_length() {
    let (chunks, _) = openai_chunks(&chat_with(json!({"max_tokens": 3})).await);
    assert_eq!(content_of(&chunks).len(), 3);
    assert_eq!(finish_of(&chunks), ["length"]);
    let (chunks, _) = openai_chunks(&chat_with(json!({"max_completion_tokens": 100})).await);
    assert_eq!(content_of(&chunks).len(), 8);
    assert_eq!(finish_of(&chunks), ["stop"]);
}

#[tokio::test]
async fn ignore_eos_with_max_tokens_generates_exactly_max_tokens() {
    let options = json!({"max_tokens": 20, "ignore_eos": true,
                         "stream_options": {"include_usage": true}});
    let (chunks, _) = openai_chunks(&chat_with(options).await);
    let text = content_of(&chunks);
    assert_eq!(text.len(), 20);
    assert_eq!(verify::verify(&text.concat()), Verification::Complete);
    assert_eq!(finish_of(&chunks), ["length"]);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 20);
}

#[tokio::test]
async fn min_tokens_holds_the_end_back_up_to_max_tokens() {
    let (chunks, _) = openai_chunks(&chat_with(json!({"min_tokens": 12})).await);
    assert_eq!(content_of(&chunks).len(), 12);
    assert_eq!(finish_of(&chunks), ["stop"]);
    let (chunks, _) = openai_chunks(&chat_with(json!({"min_tokens": 12, "max_tokens": 12})).await);
    assert_eq!(content_of(&chunks).len(), 12);
    let (chunks, _) = openai_chunks(&chat_with(json!({"min_tokens": 2})).await);
    assert_eq!(
        content_of(&chunks).len(),
        8,
        "the host's length is already more"
    );
}

#[tokio::test]
async fn impossible_lengths_are_a_400() {
    for options in [
        json!({"max_tokens": 0}),
        json!({"min_tokens": 5, "max_tokens": 3}),
    ] {
        let answer = chat_with(options.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{options}");
        assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn non_streaming_answers_always_carry_usage() {
    let host = start_host("h", &host_spec()).await.unwrap();
    let mut req = chat(false);
    req["min_tokens"] = json!(10);
    let v = post_json(host.addr(), "/v1/chat/completions", req)
        .await
        .json();
    assert_eq!(v["usage"]["completion_tokens"], 10);
    assert_eq!(v["usage"]["total_tokens"], 11);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let req = json!({"max_tokens": 4, "messages": [{"role": "user", "content": "a b c"}]});
    let v = post_json(host.addr(), "/v1/messages", req).await.json();
    assert_eq!(v["usage"], json!({"input_tokens": 3, "output_tokens": 4}));
    assert_eq!(v["stop_reason"], "max_tokens");
    host.stop().await;
}

#[tokio::test]
async fn anthropic_streams_carry_usage_in_message_start_and_message_delta() {
    let host = start_host("h", &host_spec()).await.unwrap();
    let req = json!({"stream": true, "messages": [{"role": "user", "content": "a b c"}]});
    let answer = post_json(host.addr(), "/v1/messages", req).await;
    host.stop().await;
    let events = parse_sse(&answer.text());
    let json_of = |name: &str| -> Value {
        let e = events.iter().find(|e| e.name.as_deref() == Some(name));
        serde_json::from_str(&e.unwrap().data).unwrap()
    };
    assert_eq!(
        json_of("message_start")["message"]["usage"]["input_tokens"],
        3
    );
    let delta = json_of("message_delta");
    assert_eq!(delta["usage"]["output_tokens"], 8);
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn plain_content_is_ordinary_words_one_per_token() {
    let mut spec = host_spec();
    spec.content = Content::Plain;
    let host = start_host("h", &spec).await.unwrap();
    let answer = post_json(host.addr(), "/v1/chat/completions", chat(true)).await;
    let (chunks, done) = openai_chunks(&answer);
    assert!(done);
    let words = content_of(&chunks);
    assert_eq!(words.len(), 8);
    assert!(
        words
            .iter()
            .all(|w| w.trim().chars().all(|c| c.is_ascii_lowercase())),
        "{words:?}"
    );
    assert_eq!(verify::verify(&words.concat()), Verification::Unverifiable);
    let v = post_json(host.addr(), "/v1/messages", json!({"messages": []}))
        .await
        .json();
    let text = v["content"][0]["text"].as_str().unwrap();
    assert_eq!(text.split_whitespace().count(), 8);
    assert_eq!(verify::verify(text), Verification::Unverifiable);
    host.stop().await;
}

#[tokio::test]
async fn pacing_charges_the_tokens_generated() {
    // 100 tokens a second: 8 tokens take 80 ms, `min_tokens: 30` at least 300 ms.
    let mut spec = host_spec();
    spec.tokens_per_second = 100.0;
    let host = start_host("h", &spec).await.unwrap();
    let mut req = chat(true);
    req["min_tokens"] = json!(30);
    let answer = post_json(host.addr(), "/v1/chat/completions", req).await;
    let (at, _) = answer.frames.last().unwrap();
    assert!(*at >= Duration::from_millis(290), "{at:?}");
    host.stop().await;

    // 20 tokens a second: 2 tokens are done after 105 ms, 8 would take 405 ms. The bound in
    // between leaves room for a loaded machine; it only has to tell 2 tokens from 8.
    spec.tokens_per_second = 20.0;
    let host = start_host("h", &spec).await.unwrap();
    let mut req = chat(false);
    req["max_tokens"] = json!(2);
    let started = std::time::Instant::now();
    let v = post_json(host.addr(), "/v1/chat/completions", req)
        .await
        .json();
    let took = started.elapsed();
    assert_eq!(v["usage"]["completion_tokens"], 2);
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_millis(300), "{took:?}");
    host.stop().await;
}

#[tokio::test]
async fn the_cache_is_charged_the_tokens_generated() {
    // 9 tokens of cache: a 1-token prompt and the host's 8 tokens fit, exactly.
    let mut spec = host_spec();
    spec.memory = Some(MemorySpec {
        kv_tokens: 9,
        leak_per_second: 0,
        leak_after: Dur::from_millis(0),
        on_exhaustion: Exhaustion::Reject,
    });
    let host = start_host("h", &spec).await.unwrap();
    let status = |options: Value| {
        let mut req = chat(false);
        if let (Some(req), Some(options)) = (req.as_object_mut(), options.as_object()) {
            req.extend(options.clone());
        }
        post_json(host.addr(), "/v1/chat/completions", req)
    };
    assert_eq!(status(json!({})).await.status, StatusCode::OK);
    let longer = status(json!({"min_tokens": 9})).await;
    assert_eq!(longer.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        longer.text().contains("needs 10 tokens"),
        "{}",
        longer.text()
    );
    let pinned = status(json!({"max_tokens": 20, "ignore_eos": true})).await;
    assert_eq!(pinned.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        pinned.text().contains("needs 21 tokens"),
        "{}",
        pinned.text()
    );
    host.stop().await;
}

#[tokio::test]
async fn a_re_terminated_cut_of_plain_text_lacks_the_usage_chunk() {
    // Host (plain words) -> fault proxy cutting after 4 events -> reference gateway that
    // re-terminates cut streams -> client asking for usage.
    let mut spec = host_spec();
    spec.content = Content::Plain;
    let host = start_host("h", &spec).await.unwrap();
    let proxy = proxy_to(host.addr()).await;
    let mut gw_spec = gateway_spec(vec![proxy.addr()]);
    gw_spec.reterminate_cut_streams = true;
    let gw = start_gateway("gw", &gw_spec).await.unwrap();
    let mut req = chat(true);
    req["stream_options"] = json!({"include_usage": true});

    // Whole, the stream ends with the usage chunk.
    let (whole, done) =
        openai_chunks(&post_json(gw.addr(), "/v1/chat/completions", req.clone()).await);
    assert!(done);
    assert!(whole.last().unwrap()["usage"]["completion_tokens"].is_u64());

    let cut = serde_json::from_value(json!({"truncate_stream": {"after_events": 4}})).unwrap();
    proxy.faults().inject("cut", cut);
    let answer = post_json(gw.addr(), "/v1/chat/completions", req).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body_error.is_none(), "the gateway hid the cut");
    let (chunks, done) = openai_chunks(&answer);
    assert!(done, "re-terminated with [DONE]");
    assert_eq!(finish_of(&chunks), ["stop"]);
    // The text cannot tell (plain words); the missing usage chunk can.
    assert_eq!(content_of(&chunks).len(), 3);
    assert_eq!(
        verify::verify(&content_of(&chunks).concat()),
        Verification::Unverifiable
    );
    assert!(
        chunks.iter().all(|c| !c["usage"].is_object()),
        "no usage chunk: {chunks:?}"
    );
    gw.stop().await;
    proxy.stop().await;
    host.stop().await;
}

#[tokio::test]
async fn completions_stream_text_chunks_with_usage_and_length() {
    let host = start_host("h", &host_spec()).await.unwrap();
    let req = json!({"prompt": "say hi", "stream": true, "max_tokens": 5,
                     "stream_options": {"include_usage": true}});
    let answer = post_json(host.addr(), "/v1/completions", req).await;
    let (chunks, done) = openai_chunks(&answer);
    assert!(done);
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(verify::verify(&text), Verification::Complete);
    assert_eq!(text.split_whitespace().count(), 5);
    assert_eq!(finish_of(&chunks), ["length"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7})
    );

    let v = post_json(host.addr(), "/v1/completions", json!({"prompt": "x"}))
        .await
        .json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 8);
    host.stop().await;
}

#[tokio::test]
async fn a_proxy_re_terminates_a_completions_stream_in_its_own_dialect() {
    let host = start_host("h", &host_spec()).await.unwrap();
    let proxy = proxy_to(host.addr()).await;
    let cut = json!({"truncate_stream": {"after_events": 3, "how": "reterminate"}});
    proxy
        .faults()
        .inject("cut", serde_json::from_value(cut).unwrap());
    let req = json!({"prompt": "x", "stream": true, "stream_options": {"include_usage": true}});
    let answer = post_json(proxy.addr(), "/v1/completions", req).await;
    proxy.stop().await;
    host.stop().await;
    assert!(answer.body_error.is_none());
    let (chunks, done) = openai_chunks(&answer);
    assert!(done);
    assert_eq!(
        chunks.len(),
        4,
        "3 tokens and the synthetic stop: {chunks:?}"
    );
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert_eq!(chunks[3]["choices"][0]["text"], "");
    assert_eq!(chunks[3]["id"], chunks[0]["id"]);
    assert_eq!(finish_of(&chunks), ["stop"]);
    assert!(chunks.iter().all(|c| !c["usage"].is_object()));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert!(matches!(
        verify::verify(&text),
        Verification::Incomplete {
            received: 3,
            expected: 8
        }
    ));
}

/// The events of a Responses stream: name and JSON data.
fn responses_events(answer: &Answer) -> Vec<(String, Value)> {
    parse_sse(&answer.text())
        .into_iter()
        .map(|e| {
            let data = serde_json::from_str(&e.data).unwrap();
            (e.name.unwrap_or_default(), data)
        })
        .collect()
}

fn deltas_of(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(name, _)| name == "response.output_text.delta")
        .filter_map(|(_, d)| d["delta"].as_str())
        .collect()
}

#[tokio::test]
async fn responses_stream_named_events_up_to_the_final_response() {
    let host = start_host("h", &host_spec()).await.unwrap();
    let req = json!({"model": "m", "input": "say hi", "stream": true});
    let answer = post_json(host.addr(), "/v1/responses", req).await;
    assert_eq!(answer.header("content-type"), Some("text/event-stream"));
    let events = responses_events(&answer);
    assert_eq!(events[0].0, "response.created");
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "response.completed", "no [DONE]: {events:?}");
    assert_eq!(data["response"]["status"], "completed");
    assert_eq!(
        data["response"]["usage"],
        json!({"input_tokens": 2, "output_tokens": 8, "total_tokens": 10})
    );
    let text = deltas_of(&events);
    assert_eq!(verify::verify(&text), Verification::Complete);
    assert_eq!(text.split_whitespace().count(), 8);

    // `max_output_tokens` ends it early, as `incomplete`.
    let req = json!({"input": "x", "stream": true, "max_output_tokens": 3});
    let events = responses_events(&post_json(host.addr(), "/v1/responses", req).await);
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "response.incomplete");
    assert_eq!(
        data["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(deltas_of(&events).split_whitespace().count(), 3);

    let v = post_json(host.addr(), "/v1/responses", json!({"input": "x"}))
        .await
        .json();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["usage"]["output_tokens"], 8);
    let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(verify::verify(text), Verification::Complete);
    let bad = post_json(
        host.addr(),
        "/v1/responses",
        json!({"input": "x", "max_output_tokens": 0}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error"]["message"].is_string());
    host.stop().await;
}

#[tokio::test]
async fn responses_are_paced_charged_and_written_plain_like_the_others() {
    // 9 tokens of cache: a 1-word input and the host's 8 tokens fit; 2 words do not.
    let mut spec = host_spec();
    spec.content = Content::Plain;
    spec.tokens_per_second = 100.0;
    spec.memory = Some(MemorySpec {
        kv_tokens: 9,
        leak_per_second: 0,
        leak_after: Dur::from_millis(0),
        on_exhaustion: Exhaustion::Reject,
    });
    let host = start_host("h", &spec).await.unwrap();
    let started = std::time::Instant::now();
    let v = post_json(host.addr(), "/v1/responses", json!({"input": "x"}))
        .await
        .json();
    // 8 tokens at 100 a second.
    assert!(started.elapsed() >= Duration::from_millis(75));
    let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(verify::verify(text), Verification::Unverifiable);
    assert_eq!(text.split_whitespace().count(), 8);
    let refused = post_json(host.addr(), "/v1/responses", json!({"input": "x y"})).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused.text().contains("needs 10 tokens"),
        "{}",
        refused.text()
    );
    host.stop().await;
}

#[tokio::test]
async fn a_proxy_and_the_gateway_re_terminate_a_responses_stream_with_response_completed() {
    let host = start_host("h", &host_spec()).await.unwrap();
    let proxy = proxy_to(host.addr()).await;
    let mut gw_spec = gateway_spec(vec![proxy.addr()]);
    gw_spec.reterminate_cut_streams = true;
    let gw = start_gateway("gw", &gw_spec).await.unwrap();
    let req = json!({"input": "x", "stream": true});
    // The opening is 4 events; 6 passes 2 tokens.
    for (how, through) in [("reterminate", proxy.addr()), ("close", gw.addr())] {
        let cut = json!({"truncate_stream": {"after_events": 6, "how": how}});
        proxy
            .faults()
            .inject("cut", serde_json::from_value(cut).unwrap());
        let answer = post_json(through, "/v1/responses", req.clone()).await;
        assert!(proxy.faults().lift("cut"));
        assert!(answer.body_error.is_none(), "{how}");
        let events = responses_events(&answer);
        assert_eq!(events.len(), 7, "{how}: {events:?}");
        let (last, data) = &events[6];
        assert_eq!(last, "response.completed", "{how}");
        assert_eq!(data["sequence_number"], 6, "{how}");
        assert_eq!(data["response"]["status"], "completed", "{how}");
        assert_eq!(
            data["response"]["id"], events[0].1["response"]["id"],
            "{how}"
        );
        assert!(data["response"].get("usage").is_none(), "{how}");
        assert!(matches!(
            verify::verify(&deltas_of(&events)),
            Verification::Incomplete {
                received: 2,
                expected: 8
            }
        ));
    }
    gw.stop().await;
    proxy.stop().await;
    host.stop().await;
}
