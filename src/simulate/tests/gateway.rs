//! The reference gateway over real sockets, in front of simulated hosts and stub upstreams.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use super::client::*;
use crate::experiment::schema::Strategy;
use crate::protocol::verify::{self, Verification};
use crate::simulate::body;
use crate::simulate::RunningServer;
use crate::simulate::{start_gateway, start_host};
use crate::units::Dur;

async fn named_host(name: &str) -> crate::simulate::RunningServer {
    start_host(name, &host_spec()).await.unwrap()
}

#[tokio::test]
async fn fails_over_when_the_first_answers_503() {
    let (bad, bad_hits) = failing_stub(503, "bad").await;
    let good = named_host("good").await;
    let gw = start_gateway("gw", &gateway_spec(vec![bad.addr(), good.addr()]))
        .await
        .unwrap();
    let answer = post_json(gw.addr(), "/v1/chat/completions", chat(true)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("x-served-by"), Some("good"));
    let text: String = parse_sse(&answer.text())
        .iter()
        .filter(|e| e.data != "[DONE]")
        .filter_map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(verify::verify(&text), Verification::Complete);
    assert_eq!(bad_hits.load(Ordering::SeqCst), 1);
    gw.stop().await;
    bad.stop().await;
    good.stop().await;
}

#[tokio::test]
async fn ejects_after_repeated_failures() {
    let (bad, bad_hits) = failing_stub(500, "bad").await;
    let good = named_host("good").await;
    let mut spec = gateway_spec(vec![bad.addr(), good.addr()]);
    spec.eject_after = 2;
    let gw = start_gateway("gw", &spec).await.unwrap();
    for _ in 0..5 {
        let answer = post_json(gw.addr(), "/v1/chat/completions", chat(false)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("x-served-by"), Some("good"));
    }
    assert_eq!(
        bad_hits.load(Ordering::SeqCst),
        2,
        "after two failures the bad upstream is out for the cooldown"
    );
    gw.stop().await;
    bad.stop().await;
    good.stop().await;
}

#[tokio::test]
async fn an_ejected_upstream_comes_back_after_its_cooldown() {
    let refused = closed_port().await;
    let good = named_host("good").await;
    let mut spec = gateway_spec(vec![refused, good.addr()]);
    spec.eject_after = 1;
    spec.cooldown = Dur::from_millis(100);
    let gw = start_gateway("gw", &spec).await.unwrap();
    let answer = post_json(gw.addr(), "/v1/chat/completions", chat(false)).await;
    assert_eq!(answer.header("x-served-by"), Some("good"));

    // The first upstream starts answering on the same port; after the cooldown it is
    // preferred again (failover order).
    let mut revived = host_spec();
    revived.listen = refused;
    let revived = start_host("revived", &revived).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let answer = post_json(gw.addr(), "/v1/chat/completions", chat(false)).await;
    assert_eq!(answer.header("x-served-by"), Some("revived"));
    gw.stop().await;
    revived.stop().await;
    good.stop().await;
}

#[tokio::test]
async fn round_robin_alternates() {
    let a = named_host("a").await;
    let b = named_host("b").await;
    let mut spec = gateway_spec(vec![a.addr(), b.addr()]);
    spec.strategy = Strategy::RoundRobin;
    let gw = start_gateway("gw", &spec).await.unwrap();
    let mut served = Vec::new();
    for _ in 0..4 {
        let answer = post_json(gw.addr(), "/v1/chat/completions", chat(false)).await;
        served.push(answer.header("x-served-by").unwrap().to_string());
    }
    assert_eq!(served, ["a", "b", "a", "b"]);
    gw.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn all_failing_returns_the_last_status_or_502() {
    let (x, _) = failing_stub(503, "x").await;
    let (y, _) = failing_stub(529, "y").await;
    let gw = start_gateway("gw", &gateway_spec(vec![x.addr(), y.addr()]))
        .await
        .unwrap();
    let answer = post_json(gw.addr(), "/v1/chat/completions", chat(false)).await;
    assert_eq!(answer.status.as_u16(), 529);
    assert_eq!(answer.header("x-served-by"), Some("y"));
    assert_eq!(answer.json()["error"]["message"], "stub failure");
    gw.stop().await;

    let refused = vec![closed_port().await, closed_port().await];
    let gw = start_gateway("gw", &gateway_spec(refused)).await.unwrap();
    let answer = post_json(gw.addr(), "/v1/chat/completions", chat(false)).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.json()["error"]["type"], "gateway_error");
    assert!(answer.header("x-served-by").is_none());
    gw.stop().await;
    x.stop().await;
    y.stop().await;
}

#[tokio::test]
async fn a_slow_upstream_times_out_and_the_next_one_answers() {
    let (slow, _) = stub(|| Response::new(body::full("late"))).await;
    // A stub that never answers: accepted connections just sit there.
    let silent = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    let good = named_host("good").await;
    let mut spec = gateway_spec(vec![silent.local_addr().unwrap(), good.addr()]);
    spec.timeout = Dur::from_millis(200);
    let gw = start_gateway("gw", &spec).await.unwrap();
    let started = std::time::Instant::now();
    let answer = post_json(gw.addr(), "/v1/chat/completions", chat(false)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("x-served-by"), Some("good"));
    assert!(started.elapsed() >= Duration::from_millis(200));
    gw.stop().await;
    slow.stop().await;
    good.stop().await;
}

#[tokio::test]
async fn response_bodies_stream_through() {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let (upstream, _) = stub(move || {
        let rx = rx.lock().unwrap().take();
        let chunks = futures_util::stream::unfold(rx, |rx| async move {
            let mut rx = rx?;
            let chunk = rx.recv().await?;
            Some((chunk, Some(rx)))
        });
        let mut resp = Response::new(body::streamed(chunks));
        resp.headers_mut()
            .insert("x-served-by", "streamer".parse().unwrap());
        resp
    })
    .await;
    let gw = start_gateway("gw", &gateway_spec(vec![upstream.addr()]))
        .await
        .unwrap();

    let stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/v1/chat/completions")
        .body(http_body_util::Full::new(Bytes::from("{}")))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["x-served-by"], "streamer");
    let mut incoming = resp.into_body();
    use http_body_util::BodyExt;
    tx.send(Bytes::from("first")).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), incoming.frame())
        .await
        .expect("the first chunk arrives while the upstream is still open")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first");
    tx.send(Bytes::from("second")).await.unwrap();
    drop(tx);
    let rest = tokio::time::timeout(Duration::from_secs(5), incoming.collect())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest.to_bytes(), "second");
    gw.stop().await;
    upstream.stop().await;
}

/// An upstream that answers 200, sends one SSE event, then breaks.
async fn cutter() -> RunningServer {
    cutter_sending("data: partial\n\n").await
}

/// An upstream that answers 200, sends `first`, then breaks.
async fn cutter_sending(first: &'static str) -> RunningServer {
    let (cutter, _) = stub(move || {
        // The cut comes a little after the first chunk, so the head and the chunk are on the
        // wire first, as with a backend dying mid-stream.
        let chunks = futures_util::stream::iter([Ok(Bytes::from(first)), Err(())]);
        let body = http_body_util::StreamBody::new(futures_util::StreamExt::then(
            chunks,
            |item| async move {
                match item {
                    Ok(b) => Ok(hyper::body::Frame::data(b)),
                    Err(()) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Err(Box::<dyn std::error::Error + Send + Sync>::from("cut"))
                    }
                }
            },
        ));
        let mut resp = Response::new(http_body_util::BodyExt::boxed_unsync(body));
        resp.headers_mut()
            .insert("x-served-by", "cutter".parse().unwrap());
        resp.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        resp
    })
    .await;
    cutter
}

#[tokio::test]
async fn a_stream_cut_after_200_reaches_the_client_cut() {
    let cutter = cutter().await;
    let good = named_host("good").await;
    let gw = start_gateway("gw", &gateway_spec(vec![cutter.addr(), good.addr()]))
        .await
        .unwrap();
    let answer = post_json(gw.addr(), "/v1/chat/completions", chat(true)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("x-served-by"), Some("cutter"));
    assert!(
        answer.body_error.is_some(),
        "the cut is passed on, not hidden"
    );
    assert!(answer.text().starts_with("data: partial"));
    gw.stop().await;
    cutter.stop().await;
    good.stop().await;
}

#[tokio::test]
async fn a_synthetic_end_after_a_cut_inside_an_event_is_still_read_as_events() {
    // Cut mid-line (`\r` line ends, even): the synthetic events must not run into the
    // stub of the cut one.
    let cutter = cutter_sending("data: {\"choices\": []}\r\rdata: {\"cho").await;
    let mut spec = gateway_spec(vec![cutter.addr()]);
    spec.reterminate_cut_streams = true;
    let gw = start_gateway("gw", &spec).await.unwrap();
    let answer = post_json(gw.addr(), "/v1/chat/completions", chat(true)).await;
    let events = parse_sse(&answer.text());
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data.len(), 4, "{data:?}");
    assert_eq!(data[1], "{\"cho");
    assert!(data[2].contains("\"finish_reason\":\"stop\""), "{data:?}");
    assert_eq!(data[3], "[DONE]");
    gw.stop().await;
    cutter.stop().await;
}

#[tokio::test]
async fn reterminating_gateways_hide_the_cut_behind_a_synthetic_done() {
    let cutter = cutter().await;
    let mut spec = gateway_spec(vec![cutter.addr()]);
    spec.reterminate_cut_streams = true;
    let gw = start_gateway("gw", &spec).await.unwrap();
    let answer = post_json(gw.addr(), "/v1/chat/completions", chat(true)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body_error.is_none(), "the stream ends cleanly");
    let text = answer.text();
    assert!(text.starts_with("data: partial"));
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(text.contains("\"finish_reason\":\"stop\""));
    gw.stop().await;
    cutter.stop().await;
}

#[tokio::test]
async fn gateway_health_is_local() {
    let gw = start_gateway("gw", &gateway_spec(vec![closed_port().await]))
        .await
        .unwrap();
    let answer = send(gw.addr(), "GET", "/health", "").await;
    assert_eq!(answer.status, StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn a_gateway_without_upstreams_is_refused() {
    let spec = gateway_spec(vec![]);
    assert!(matches!(
        start_gateway("gw", &spec).await,
        Err(crate::exit::Failure::Usage(_))
    ));
}
