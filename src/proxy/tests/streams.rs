//! Faults that alter a streamed body: truncate_stream and stream_error.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::support::*;

async fn truncated(cut: serde_json::Value, path: &str) -> Body {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    proxy
        .faults()
        .inject("cut", fault(json!({ "truncate_stream": cut })));
    let response = get(proxy.addr(), path).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = read_body(response, Instant::now(), Duration::from_millis(600)).await;
    proxy.stop().await;
    body
}

#[tokio::test]
async fn close_after_events_sends_exactly_n_events_then_an_incomplete_end() {
    let body = truncated(
        json!({"after_events": 3, "how": "close"}),
        "/sse?n=10&gap=20",
    )
    .await;
    assert_eq!(body.text(), events(0..3));
    match &body.end {
        // No terminating chunk: the client knows the body is incomplete, and it was no RST.
        End::Error(e) => assert!(!is_reset(e), "{e:?}"),
        other => panic!("expected an incomplete body, got {other:?}"),
    }
}

#[tokio::test]
async fn close_after_bytes_on_a_sized_body_leaves_it_short() {
    let body = truncated(json!({"after_bytes": 250}), "/bytes?len=1000").await;
    assert_eq!(body.bytes().len(), 250);
    let expected: Vec<u8> = (0..250u64).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(body.bytes(), expected);
    match &body.end {
        End::Error(e) => assert!(!is_reset(e), "{e:?}"),
        other => panic!("expected an incomplete body, got {other:?}"),
    }
}

#[tokio::test]
async fn cut_after_bytes_inside_an_sse_frame() {
    // Frames are 9 bytes each ("data: i\n\n"); 20 bytes ends inside the third.
    let body = truncated(json!({"after_bytes": 20}), "/sse?n=6&gap=20").await;
    assert_eq!(body.text(), events(0..6)[..20]);
    assert!(matches!(body.end, End::Error(_)), "{:?}", body.end);
}

#[tokio::test]
async fn reset_after_events_ends_with_a_rst() {
    let body = truncated(
        json!({"after_events": 2, "how": "reset"}),
        "/sse?n=10&gap=20",
    )
    .await;
    assert_eq!(body.text(), events(0..2));
    match &body.end {
        End::Error(e) => assert!(is_reset(e), "{e:?}"),
        other => panic!("expected a reset, got {other:?}"),
    }
}

#[tokio::test]
async fn stall_after_events_sends_nothing_more() {
    let body = truncated(
        json!({"after_events": 2, "how": "stall"}),
        "/sse?n=10&gap=20",
    )
    .await;
    assert_eq!(body.text(), events(0..2));
    assert!(matches!(body.end, End::Idle), "{:?}", body.end);
}

#[tokio::test]
async fn a_stream_that_ends_at_the_cut_point_is_not_truncated() {
    let body = truncated(json!({"after_events": 3}), "/sse?n=3&gap=20").await;
    assert_eq!(body.text(), events(0..3));
    assert!(matches!(body.end, End::Complete), "{:?}", body.end);
}

#[tokio::test]
async fn errors_are_not_truncated() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let faults = proxy.faults();
    faults.inject("e", fault(json!({"http_error": {"status": 500}})));
    faults.inject("cut", fault(json!({"truncate_stream": {"after_bytes": 3}})));
    let response = get(proxy.addr(), "/json").await.unwrap();
    assert_eq!(response.status(), 500);
    let body = read_all(response).await;
    assert!(matches!(body.end, End::Complete));
    assert!(body.text().len() > 3);
    proxy.stop().await;
}

async fn stream_error(shape: &str) -> Body {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let spec = json!({"stream_error": {"after_events": 2, "shape": shape}});
    proxy.faults().inject("se", fault(spec));
    let response = get(proxy.addr(), "/sse?n=10&gap=20").await.unwrap();
    assert_eq!(response.status(), 200);
    let body = read_body(response, Instant::now(), Duration::from_secs(2)).await;
    proxy.stop().await;
    body
}

#[tokio::test]
async fn stream_error_sends_an_anthropic_error_event_and_ends_cleanly() {
    let body = stream_error("anthropic").await;
    let expected = events(0..2)
        + "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    assert_eq!(body.text(), expected);
    assert!(matches!(body.end, End::Complete), "{:?}", body.end);
}

#[tokio::test]
async fn stream_error_sends_an_openai_error_chunk_and_ends_cleanly() {
    let body = stream_error("openai").await;
    let text = body.text();
    let rest = text.strip_prefix(&events(0..2)).unwrap();
    let data = rest
        .strip_prefix("data: ")
        .unwrap()
        .strip_suffix("\n\n")
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    assert!(v["error"]["message"].is_string());
    assert!(matches!(body.end, End::Complete), "{:?}", body.end);
}

#[tokio::test]
async fn stream_error_leaves_non_sse_bodies_alone() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    proxy
        .faults()
        .inject("se", fault(json!({"stream_error": {"after_events": 0}})));
    let body = read_all(get(proxy.addr(), "/json").await.unwrap()).await;
    assert_eq!(body.text(), "{\"ok\":true}");
    proxy.stop().await;
}

/// The raw bytes a client gets, and how the connection ended: `Ok` for FIN, the error for RST.
async fn raw_exchange(cut: serde_json::Value, path: &str) -> (String, std::io::Result<()>) {
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
    let mut end = Ok(());
    for _ in 0..1000 {
        match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await {
            Err(_) => panic!("the connection stayed open"),
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => {
                end = Err(e);
                break;
            }
        }
    }
    proxy.stop().await;
    (String::from_utf8(seen).unwrap(), end)
}

#[tokio::test]
async fn close_on_the_wire_is_a_fin_without_the_terminating_chunk() {
    let (wire, end) = raw_exchange(json!({"after_events": 2}), "/sse?n=10&gap=20").await;
    assert!(end.is_ok(), "{end:?}");
    assert!(wire.contains("transfer-encoding: chunked"), "{wire}");
    assert!(wire.ends_with("data: 1\n\n\r\n"), "{wire:?}");
    assert!(!wire.contains("\r\n0\r\n\r\n"), "{wire:?}");

    let (wire, end) = raw_exchange(json!({"after_bytes": 150}), "/bytes?len=1000").await;
    assert!(end.is_ok(), "{end:?}");
    assert!(wire.contains("content-length: 1000"), "{wire}");
    let body = wire.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(body.len(), 150);
}

#[tokio::test]
async fn reset_on_the_wire_is_a_rst_after_the_allowed_bytes() {
    let (wire, end) = raw_exchange(
        json!({"after_events": 2, "how": "reset"}),
        "/sse?n=10&gap=20",
    )
    .await;
    let err = end.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(wire.ends_with("data: 1\n\n\r\n"), "{wire:?}");
}
