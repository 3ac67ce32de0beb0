//! `truncate_stream` with `how: end` and `how: reterminate`: the cut is invisible at the HTTP
//! level, and with `reterminate` at the protocol level too; only the content tells.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::support::*;
use crate::experiment::schema::{LoadStreamSpec, SimulateSpec};
use crate::experiment::{LoadStream, Target};
use crate::load::Outcome;
use crate::protocol::sse;

async fn cut(spec: serde_json::Value, path: &str) -> Body {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    proxy
        .faults()
        .inject("cut", fault(json!({ "truncate_stream": spec })));
    let response = get(proxy.addr(), path).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-faultline-fault"], "cut");
    let body = read_body(response, Instant::now(), Duration::from_secs(2)).await;
    proxy.stop().await;
    body
}

#[tokio::test]
async fn end_gives_a_complete_response_with_n_events_and_no_terminator() {
    let body = cut(json!({"after_events": 3, "how": "end"}), "/sse?n=10&gap=20").await;
    assert_eq!(body.text(), events(0..3));
    // The HTTP client sees a body that ended well: no error, no idle wait.
    assert!(matches!(body.end, End::Complete), "{:?}", body.end);
}

#[tokio::test]
async fn end_keeps_the_connection_for_the_next_request() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let spec = json!({"truncate_stream": {"after_events": 2, "how": "end"}});
    proxy.faults().inject("cut", fault(spec));
    let mut conn = connect(proxy.addr()).await;
    for _ in 0..2 {
        let response = conn.get("/sse?n=10&gap=5").await.unwrap();
        let body = read_body(response, Instant::now(), Duration::from_secs(2)).await;
        assert_eq!(body.text(), events(0..2));
        assert!(matches!(body.end, End::Complete), "{:?}", body.end);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn end_on_the_wire_is_the_final_chunk_and_a_sized_body_goes_chunked() {
    let (wire, _) = raw_request(json!({"after_events": 2, "how": "end"}), "/sse?n=10&gap=20").await;
    assert!(wire.contains("transfer-encoding: chunked"), "{wire}");
    assert!(wire.ends_with("data: 1\n\n\r\n0\r\n\r\n"), "{wire:?}");

    // The upstream announced 1000 bytes; the client must not be told a length the body no
    // longer has.
    let (wire, head) =
        raw_request(json!({"after_bytes": 150, "how": "end"}), "/bytes?len=1000").await;
    assert!(!head.contains("content-length"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(wire.ends_with("\r\n0\r\n\r\n"), "{wire:?}");
    let response = cut(json!({"after_bytes": 150, "how": "end"}), "/bytes?len=1000").await;
    assert_eq!(response.bytes().len(), 150);
    assert!(matches!(response.end, End::Complete), "{:?}", response.end);
}

#[tokio::test]
async fn reterminate_sends_n_events_then_a_synthetic_stop_and_done() {
    let body = cut(
        json!({"after_events": 3, "how": "reterminate"}),
        "/sse?n=10&gap=20",
    )
    .await;
    assert!(matches!(body.end, End::Complete), "{:?}", body.end);
    let text = body.text();
    let rest = text.strip_prefix(&events(0..3)).unwrap();
    let added = sse::decode_all(rest.as_bytes());
    assert_eq!(added.len(), 2, "{rest:?}");
    let stop: serde_json::Value = serde_json::from_str(&added[0].1).unwrap();
    assert_eq!(stop["choices"][0]["finish_reason"], "stop");
    assert!(stop.get("usage").is_none());
    assert_eq!(added[1].1, sse::DONE);
}

#[tokio::test]
async fn reterminate_speaks_anthropic_on_a_messages_path() {
    let body = cut(
        json!({"after_events": 2, "how": "reterminate"}),
        "/v1/messages?n=10&gap=20",
    )
    .await;
    let text = body.text();
    let rest = text.strip_prefix(&events(0..2)).unwrap();
    let names: Vec<String> = sse::decode_all(rest.as_bytes())
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["message_delta", "message_stop"]);
    assert!(matches!(body.end, End::Complete), "{:?}", body.end);
}

#[tokio::test]
async fn a_stream_shorter_than_the_cut_is_left_alone() {
    let body = cut(
        json!({"after_events": 5, "how": "reterminate"}),
        "/sse?n=3&gap=5",
    )
    .await;
    assert_eq!(body.text(), events(0..3));
    assert!(matches!(body.end, End::Complete), "{:?}", body.end);
}

/// The raw bytes of one exchange with `cut` in force, and the response head; the proxy's
/// answer ends with the final chunk, so reading stops there (with a deadline).
async fn raw_request(cut: serde_json::Value, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    proxy
        .faults()
        .inject("cut", fault(json!({ "truncate_stream": cut })));
    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen.ends_with(b"\r\n0\r\n\r\n") {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("the response ended before the deadline")
            .unwrap();
        assert!(
            n > 0,
            "the connection closed: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    proxy.stop().await;
    let wire = String::from_utf8(seen).unwrap();
    let head = wire.split_once("\r\n\r\n").unwrap().0.to_ascii_lowercase();
    (wire, head)
}

/// A simulated host (verifiable text) behind the proxy, and one request of the real load
/// generator through it, as a drill sends it.
async fn load_outcome(api: &str, path: &str, how: &str) -> (Outcome, u64) {
    let host_spec: SimulateSpec = serde_saphyr::from_str(
        "{ listen: \"127.0.0.1:0\", ttft: 1ms, tokens_per_second: 2000, completion_tokens: 8 }",
    )
    .unwrap();
    let host = crate::simulate::start_host("h", &host_spec).await.unwrap();
    let proxy = crate::proxy::start("p", &spec(host.addr()), 1)
        .await
        .unwrap();
    proxy.faults().inject(
        "cut",
        fault(json!({"truncate_stream": {"after_events": 4, "how": how}})),
    );
    let yaml = format!(
        "{{ url: \"http://{0}{path}\", rate: 1/s, request: {{ api: {api} }} }}",
        proxy.addr()
    );
    let spec: LoadStreamSpec = serde_saphyr::from_str(&yaml).unwrap();
    let stream = LoadStream {
        name: "s".into(),
        target: Target {
            scheme: crate::net::Scheme::Http,
            addr: crate::net::HostPort::new("127.0.0.1", proxy.addr().port()),
            authority: proxy.addr().to_string(),
            path_and_query: path.into(),
        },
        spec,
        headers: Vec::new(),
        prompts: None,
        rate_changes: Vec::new(),
        tls: crate::net::Tls::system().unwrap(),
    };
    let plan = crate::load::client::StreamPlan::new(&stream, 0).unwrap();
    let client = crate::load::client::http_client(&stream.target, 1, &stream.tls).unwrap();
    let record =
        crate::load::client::execute(&client, &plan, std::time::Instant::now(), 0, Duration::ZERO)
            .await;
    proxy.stop().await;
    host.stop().await;
    assert_eq!(record.status, Some(200));
    (record.outcome, record.events)
}

#[tokio::test]
async fn the_load_generator_counts_both_clean_cuts_truncated() {
    for (api, path) in [
        ("openai-chat", "/v1/chat/completions"),
        ("anthropic-messages", "/v1/messages"),
    ] {
        // `end`: 4 events and a clean end; no terminator.
        assert_eq!(
            load_outcome(api, path, "end").await,
            (Outcome::Truncated, 4),
            "{api}"
        );
        // `reterminate`: 4 events, then the synthetic events that claim a finished stream
        // (stop and [DONE]; message_delta and message_stop, after closing the open block). Only
        // the verifiable text shows the cut.
        let synthetic = if api == "openai-chat" { 2 } else { 3 };
        assert_eq!(
            load_outcome(api, path, "reterminate").await,
            (Outcome::Truncated, 4 + synthetic),
            "{api}"
        );
    }
}
