use std::time::Duration;

use http_body_util::BodyExt;
use tokio::time::Instant;

use super::support::*;
use crate::exit::Failure;
use crate::proxy::start;

#[tokio::test]
async fn forwards_status_headers_and_body_unchanged() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;

    let direct = get(up.addr, "/json").await.unwrap();
    let proxied = get(proxy.addr(), "/json").await.unwrap();
    assert_eq!(proxied.status(), direct.status());
    for name in ["content-type", "content-length", "x-upstream"] {
        assert_eq!(
            proxied.headers().get(name),
            direct.headers().get(name),
            "{name}"
        );
    }
    assert_eq!(proxied.headers()["x-faultline-proxy"], "test-proxy");
    let a = direct.into_body().collect().await.unwrap().to_bytes();
    let b = proxied.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(a, b);

    let mut conn = connect(proxy.addr()).await;
    let echo = conn
        .send("POST", "/v1/chat?x=1&y=%20z", "hello body")
        .await
        .unwrap();
    assert_eq!(echo.headers()["x-path"], "/v1/chat?x=1&y=%20z");
    assert_eq!(echo.headers()["x-method"], "POST");
    assert_eq!(read_all(echo).await.text(), "hello body");
    // The same connection keeps working for the next request.
    let again = conn.get("/json").await.unwrap();
    assert_eq!(again.status(), 200);
    proxy.stop().await;
}

#[tokio::test]
async fn the_upstream_gets_its_own_authority_as_host_unless_told_to_keep_the_clients() {
    let up = upstream().await;
    // A name, not an address: the proxy resolves it when it connects.
    let mut by_name = spec(up.addr);
    by_name.upstream = format!("http://localhost:{}", up.addr.port())
        .parse()
        .unwrap();
    let proxy = start("named", &by_name, 1).await.unwrap();
    let mut conn = connect(proxy.addr()).await;
    let echo = conn.send("POST", "/v1/chat", "x").await.unwrap();
    assert_eq!(echo.status(), 200);
    assert_eq!(
        echo.headers()["x-host"],
        format!("localhost:{}", up.addr.port()).as_str()
    );
    proxy.stop().await;

    let mut keep = spec(up.addr);
    keep.preserve_host = true;
    let proxy = start("keep", &keep, 1).await.unwrap();
    let mut conn = connect(proxy.addr()).await;
    let echo = conn.send("POST", "/v1/chat", "x").await.unwrap();
    assert_eq!(echo.headers()["x-host"], "faultline.test");
    proxy.stop().await;
}

#[tokio::test]
async fn streams_events_as_they_come() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let start = Instant::now();
    let response = get(proxy.addr(), "/sse?n=5&gap=100").await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = read_body(response, start, Duration::from_secs(5)).await;
    assert!(matches!(body.end, End::Complete), "{:?}", body.end);
    assert_eq!(body.text(), events(0..5));
    let first = body.frames[0].0;
    let last = body.frames.last().unwrap().0;
    assert!(
        last >= Duration::from_millis(400),
        "upstream takes 400ms, last at {last:?}"
    );
    assert!(
        first + Duration::from_millis(300) <= last,
        "first {first:?} last {last:?}"
    );
    proxy.stop().await;
}

/// Only with a fault in force: with none, a dead upstream is shown as a refused connection
/// (see transparency.rs).
#[tokio::test]
async fn with_a_fault_in_force_an_unreachable_upstream_is_a_502_with_a_json_body() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = taken.local_addr().unwrap();
    drop(taken);
    let proxy = start("down", &spec(dead), 1).await.unwrap();
    proxy.faults().inject(
        "slow",
        fault(serde_json::json!({"latency": {"delay": "1ms"}})),
    );
    let response = get(proxy.addr(), "/json").await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&read_all(response).await.text()).unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&dead.to_string()), "{message}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_taken_port_is_an_environment_failure() {
    let up = upstream().await;
    let holder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut s = spec(up.addr);
    s.listen = holder.local_addr().unwrap().into();
    let err = start("clash", &s, 1).await.unwrap_err();
    assert!(matches!(err, Failure::Environment(_)), "{err:?}");
    assert!(err.to_string().contains("proxy `clash`"), "{err}");
}

#[tokio::test]
async fn stop_releases_the_port() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let addr = proxy.addr();
    proxy.stop().await;
    let mut s = spec(up.addr);
    s.listen = addr.into();
    let again = start("again", &s, 1).await.unwrap();
    assert_eq!(get(again.addr(), "/json").await.unwrap().status(), 200);
    again.stop().await;
}

#[tokio::test]
async fn a_chunked_request_body_reaches_the_upstream_whole_and_sized() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let mut client = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    client
        .write_all(
            b"POST /echo HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\
              transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("x-content-length: 11\r\n"), "{answer}");
    assert!(answer.ends_with("hello world"), "{answer}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_head_is_answered_without_a_body_and_the_connection_goes_on() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let mut conn = connect(proxy.addr()).await;
    let limit = Duration::from_secs(5);
    for _ in 0..2 {
        let head = tokio::time::timeout(limit, conn.send("HEAD", "/json", ""))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()["content-length"], "11");
        let body = tokio::time::timeout(limit, head.into_body().collect())
            .await
            .unwrap()
            .unwrap();
        assert!(body.to_bytes().is_empty());
    }
    let json = tokio::time::timeout(limit, conn.get("/json"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_all(json).await.text(), "{\"ok\":true}");
    proxy.stop().await;
}
