//! The server against a raw client on loopback: the bytes it writes, and when it closes.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::server::{serve, Server, TooLarge, Upload};

const DEADLINE: Duration = Duration::from_secs(5);

/// The head limit is far beyond [`DEADLINE`], so no test passes by the server timing out a
/// connection it should have closed itself.
const SERVER: Server = Server {
    header_read_timeout: Some(Duration::from_secs(60)),
    max_body: 64,
};

type Boxed = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

fn full(text: &str) -> Boxed {
    Full::new(Bytes::from(text.to_string()))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A body of `frames`, each after `gap`; `Err` items fail it there.
fn paced(frames: Vec<Result<&'static str, ()>>, gap: Duration) -> Boxed {
    let stream = futures_util::stream::iter(frames).then(move |item| async move {
        tokio::time::sleep(gap).await;
        item.map(|text| Frame::data(Bytes::from_static(text.as_bytes())))
            .map_err(|()| std::io::Error::other("the body failed"))
    });
    StreamBody::new(stream).boxed_unsync()
}

/// Serves one connection on a loopback port with `handler`; returns the client's socket and
/// the drain switch.
async fn connect<F, Fut>(server: Server, handler: F) -> (TcpStream, watch::Sender<bool>)
where
    F: FnMut(Request<Upload>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Response<Boxed>> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (drain, draining) = watch::channel(false);
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream, server, draining, handler).await;
    });
    (TcpStream::connect(addr).await.unwrap(), drain)
}

/// What the server writes until it closes the connection.
async fn read_to_close(client: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(DEADLINE, client.read_to_end(&mut all))
        .await
        .expect("the server closed the connection")
        .unwrap();
    String::from_utf8(all).unwrap()
}

/// Reads until `all` ends with `end`.
async fn read_until(client: &mut TcpStream, end: &str) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while !all.ends_with(end.as_bytes()) {
        let n = tokio::time::timeout(DEADLINE, client.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {end:?} after {:?}", String::from_utf8_lossy(&all)))
            .unwrap();
        assert!(
            n > 0,
            "closed before {end:?}: {:?}",
            String::from_utf8_lossy(&all)
        );
        all.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(all).unwrap()
}

/// Echoes the method, path and body, or says the body was too large.
async fn echo(req: Request<Upload>) -> Response<Boxed> {
    let text = match req.body() {
        Ok(body) => format!(
            "{} {} {}",
            req.method(),
            req.uri().path(),
            String::from_utf8_lossy(body)
        ),
        Err(too_large) => format!("refused: {too_large}"),
    };
    Response::new(full(&text))
}

#[tokio::test]
async fn keeps_the_connection_for_request_after_request_and_answers_pipelined_ones_in_order() {
    let (mut client, _drain) = connect(SERVER, echo).await;
    client
        .write_all(b"POST /a HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\nhi")
        .await
        .unwrap();
    let first = read_until(&mut client, "POST /a hi").await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(first.contains("\r\ncontent-length: 10\r\n"), "{first}");
    assert!(first.contains("\r\ndate: "), "{first}");
    assert!(!first.contains("connection: close"), "{first}");
    // Two more in one write: the second waits in the buffer while the first is answered.
    client
        .write_all(b"GET /b HTTP/1.1\r\nhost: t\r\n\r\nGET /c HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let both = read_until(&mut client, "GET /c ").await;
    let b = both.find("GET /b ").unwrap();
    assert!(b < both.find("GET /c ").unwrap(), "{both}");
}

#[tokio::test]
async fn reads_a_chunked_request_body_and_answers_expect_continue_before_the_body() {
    let (mut client, _drain) = connect(SERVER, echo).await;
    client
        .write_all(
            b"POST /up HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let interim = read_until(&mut client, "\r\n\r\n").await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    client
        .write_all(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut client, "POST /up abcde").await;
}

#[tokio::test]
async fn a_body_over_the_limit_reaches_the_handler_as_too_large_and_the_connection_closes() {
    for request in [
        &b"POST /big HTTP/1.1\r\nhost: t\r\ncontent-length: 65\r\n\r\n"[..],
        b"POST /big HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n41\r\n",
    ] {
        let (mut client, _drain) = connect(SERVER, echo).await;
        client.write_all(request).await.unwrap();
        if request.ends_with(b"41\r\n") {
            client.write_all(&[b'x'; 65]).await.unwrap();
        }
        let answer = read_to_close(&mut client).await;
        let expected = format!("refused: {}", TooLarge { limit: 64 });
        assert!(answer.ends_with(&expected), "{answer}");
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    }
}

#[tokio::test]
async fn a_streamed_body_goes_out_in_chunks_and_ends_with_the_last_chunk() {
    let (mut client, _drain) = connect(SERVER, |_req| async {
        Response::new(paced(
            vec![Ok("data: 1\n\n"), Ok("data: 2\n\n")],
            Duration::from_millis(5),
        ))
    })
    .await;
    client
        .write_all(b"POST /s HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until(&mut client, "0\r\n\r\n").await;
    assert!(
        answer.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\n9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn an_http_1_0_client_reads_a_streamed_body_to_the_close() {
    let (mut client, _drain) = connect(SERVER, |_req| async {
        Response::new(paced(vec![Ok("a"), Ok("b")], Duration::from_millis(1)))
    })
    .await;
    client.write_all(b"GET /s HTTP/1.0\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut client).await;
    assert!(!answer.contains("chunked"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nab"), "{answer:?}");
}

#[tokio::test]
async fn a_head_request_gets_the_length_and_no_body() {
    let (mut client, _drain) = connect(SERVER, echo).await;
    client
        .write_all(b"HEAD /h HTTP/1.1\r\nhost: t\r\n\r\nGET /after HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until(&mut client, "GET /after ").await;
    let (head_answer, rest) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head_answer.contains("content-length: 8"), "{answer}");
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[tokio::test]
async fn a_body_that_fails_cuts_the_connection_without_the_last_chunk() {
    let (mut client, _drain) = connect(SERVER, |_req| async {
        Response::new(paced(
            vec![Ok("data: 1\n\n"), Err(())],
            Duration::from_millis(1),
        ))
    })
    .await;
    client
        .write_all(b"GET /s HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut client).await;
    assert!(answer.ends_with("9\r\ndata: 1\n\n\r\n"), "{answer:?}");
}

#[tokio::test]
async fn a_body_longer_than_the_length_it_announced_is_cut() {
    let (mut client, _drain) = connect(SERVER, |_req| async {
        let mut resp = Response::new(paced(vec![Ok("abc"), Ok("def")], Duration::ZERO));
        resp.headers_mut().insert(
            "content-length",
            hyper::header::HeaderValue::from_static("4"),
        );
        resp
    })
    .await;
    client
        .write_all(b"GET /s HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    // The connection ends with a reset (the body broke), after what came before it.
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    let err = loop {
        match tokio::time::timeout(DEADLINE, client.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("a close, not a reset"),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break e,
            Err(_) => panic!("the connection was not cut"),
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let answer = String::from_utf8_lossy(&all);
    assert!(answer.contains("\r\ncontent-length: 4\r\n"), "{answer}");
    assert!(!answer.contains("def"), "{answer:?}");
}

/// Sets its flag when dropped.
struct Dropped(Arc<AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_client_that_closes_its_side_ends_the_answer_it_was_waiting_for() {
    // While the handler works (a non-streamed answer), and while a stream waits for its next
    // frame: both are dropped, freeing what they hold.
    for streamed in [false, true] {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&dropped);
        let (mut client, _drain) = connect(SERVER, move |_req| {
            let guard = Dropped(Arc::clone(&flag));
            async move {
                if !streamed {
                    let _held = guard;
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                let body = futures_util::stream::once(async move {
                    let _held = guard;
                    std::future::pending::<()>().await;
                    Ok::<_, std::io::Error>(Frame::data(Bytes::new()))
                });
                Response::new(StreamBody::new(body).boxed_unsync())
            }
        })
        .await;
        client
            .write_all(b"GET /s HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        if streamed {
            read_until(&mut client, "\r\n\r\n").await;
        }
        client.shutdown().await.unwrap();
        let gone = async {
            while !dropped.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(DEADLINE, gone)
            .await
            .unwrap_or_else(|_| panic!("streamed {streamed}: still held after the client left"));
    }
}

#[tokio::test]
async fn bad_requests_get_a_400_or_431_and_the_connection_closes() {
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases = [
        (
            "GET / HTTP/1.1\r\nbad header\r\n\r\n".to_string(),
            "400 Bad Request",
        ),
        (
            "POST / HTTP/1.1\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n"
                .to_string(),
            "400 Bad Request",
        ),
        (
            "POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n".to_string(),
            "400 Bad Request",
        ),
        (
            format!("GET / HTTP/1.1\r\n{many}\r\n"),
            "431 Request Header Fields Too Large",
        ),
    ];
    for (request, status) in cases {
        let (mut client, _drain) = connect(SERVER, echo).await;
        client.write_all(request.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut client).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{request:?}: {answer}"
        );
        assert!(answer.contains("connection: close"), "{answer}");
    }
}

#[tokio::test]
async fn a_silent_or_trickling_client_is_cut_at_the_head_limit_and_a_prompt_one_is_served() {
    let limit = Duration::from_millis(300);
    let quick = Server {
        header_read_timeout: Some(limit),
        ..SERVER
    };
    let (mut silent, _d1) = connect(quick, echo).await;
    let (mut trickling, _d2) = connect(quick, echo).await;
    // A byte every 50 ms: each read comes well within the limit, the whole head does not.
    let started = std::time::Instant::now();
    let trickle = async {
        for byte in b"GET / HTTP/1.1\r\nhost: a-very-long-host-name\r\n".iter() {
            if trickling.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, trickling.read_to_end(&mut rest)).await;
        rest
    };
    assert_eq!(trickle.await, b"", "a half head gets no answer");
    assert!(
        started.elapsed() < limit * 4,
        "cut at {:?}",
        started.elapsed()
    );
    assert_eq!(read_to_close(&mut silent).await, "", "nor does silence");

    let (mut prompt, _d3) = connect(quick, echo).await;
    // The blank line that ends the first head comes in a write of its own, split in two.
    prompt
        .write_all(b"GET /1 HTTP/1.1\r\nhost: t\r\n\r")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    prompt.write_all(b"\n").await.unwrap();
    read_until(&mut prompt, "GET /1 ").await;
    prompt
        .write_all(b"\r\nGET /2 HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut prompt, "GET /2 ").await;
    // Then idle: cut at the limit, as hyper's server cut it.
    let idle_since = std::time::Instant::now();
    assert_eq!(read_to_close(&mut prompt).await, "");
    assert!(idle_since.elapsed() >= limit - Duration::from_millis(50));
}

#[tokio::test]
async fn a_drain_closes_an_idle_connection_and_lets_the_answer_in_flight_finish() {
    let (mut idle, drain) = connect(SERVER, echo).await;
    drain.send_replace(true);
    assert_eq!(read_to_close(&mut idle).await, "");

    let (mut busy, drain) = connect(SERVER, |_req| async {
        Response::new(paced(vec![Ok("a"), Ok("b")], Duration::from_millis(50)))
    })
    .await;
    busy.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut busy, "\r\n\r\n").await;
    drain.send_replace(true);
    let rest = read_to_close(&mut busy).await;
    assert!(rest.ends_with("0\r\n\r\n"), "{rest:?}");
}

#[tokio::test]
async fn status_without_content_gets_no_body_framing() {
    let (mut client, _drain) = connect(SERVER, |_req| async {
        let mut resp = Response::new(full(""));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        resp
    })
    .await;
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\nGET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut both = read_until(&mut client, "\r\n\r\n").await;
    if both.matches("\r\n\r\n").count() < 2 {
        both += &read_until(&mut client, "\r\n\r\n").await;
    }
    assert_eq!(
        both.matches("HTTP/1.1 204 No Content\r\n").count(),
        2,
        "{both}"
    );
    assert!(!both.contains("content-length"), "{both}");
    assert!(!both.contains("transfer-encoding"), "{both}");
}

#[tokio::test]
async fn a_client_still_writing_a_body_over_the_limit_reads_its_answer() {
    // The body is far over the limit and more than the kernel's buffers hold: the server must
    // not reset the connection under the client before the answer is read.
    let (mut client, _drain) = connect(SERVER, echo).await;
    let body = vec![b'x'; 4 << 20];
    let head = format!(
        "POST /big HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let (mut reader, mut writer) = client.split();
    let write = async {
        writer.write_all(head.as_bytes()).await.unwrap();
        // The server may stop reading once it has answered; the rest is its to drop.
        let _ = writer.write_all(&body).await;
        let _ = writer.shutdown().await;
    };
    let read = async {
        let mut all = Vec::new();
        reader.read_to_end(&mut all).await.map(|_| all)
    };
    let ((), answer) = tokio::time::timeout(DEADLINE, async { tokio::join!(write, read) })
        .await
        .unwrap();
    let answer = String::from_utf8(answer.expect("the answer arrived, not a reset")).unwrap();
    assert!(
        answer.ends_with(&format!("refused: {}", TooLarge { limit: 64 })),
        "{answer}"
    );
}

#[tokio::test]
async fn a_request_sent_while_an_answer_is_being_prepared_is_answered_after_it() {
    let (mut client, _drain) = connect(SERVER, |req: Request<Upload>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        echo(req).await
    })
    .await;
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    client
        .write_all(b"GET /next HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let both = read_until(&mut client, "GET /next ").await;
    assert!(both.contains("GET /slow "), "{both}");
}

#[tokio::test]
async fn an_http_1_0_client_that_asks_to_keep_the_connection_gets_it() {
    let (mut client, _drain) = connect(SERVER, echo).await;
    for path in ["/a", "/b"] {
        let request = format!("GET {path} HTTP/1.0\r\nconnection: keep-alive\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until(&mut client, &format!("GET {path} ")).await;
        assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
        assert!(
            answer.contains("\r\nconnection: keep-alive\r\n"),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn a_handler_that_says_close_closes_and_its_framing_headers_are_replaced() {
    let (mut client, _drain) = connect(SERVER, |_req| async {
        let mut resp = Response::new(paced(vec![Ok("abc")], Duration::ZERO));
        let headers = resp.headers_mut();
        headers.insert(
            "connection",
            hyper::header::HeaderValue::from_static("close"),
        );
        headers.insert(
            "transfer-encoding",
            hyper::header::HeaderValue::from_static("gzip"),
        );
        resp
    })
    .await;
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut client).await;
    assert_eq!(answer.matches("connection:").count(), 1, "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(
        answer.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{answer}"
    );
    assert!(!answer.contains("gzip"), "{answer}");
    assert!(answer.ends_with("3\r\nabc\r\n0\r\n\r\n"), "{answer:?}");
}

#[tokio::test]
async fn requests_whose_end_is_ambiguous_or_whose_head_never_ends_are_refused() {
    let endless = format!("GET / HTTP/1.1\r\nx-long: {}", "a".repeat(500 * 1024));
    let cases = [
        (
            "POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n".to_string(),
            "400 Bad Request",
        ),
        (
            "POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n".to_string(),
            "400 Bad Request",
        ),
        (
            "POST / HTTP/1.1\r\ntransfer-encoding: ,\r\n\r\n".to_string(),
            "400 Bad Request",
        ),
        (endless, "431 Request Header Fields Too Large"),
    ];
    for (request, status) in cases {
        let (mut client, _drain) = connect(SERVER, echo).await;
        let (mut reader, mut writer) = client.split();
        let write = async {
            let _ = writer.write_all(request.as_bytes()).await;
        };
        let read = async {
            let mut all = Vec::new();
            let _ = reader.read_to_end(&mut all).await;
            String::from_utf8(all).unwrap()
        };
        let ((), answer) = tokio::time::timeout(DEADLINE, async { tokio::join!(write, read) })
            .await
            .unwrap();
        let shown = &request[..request.len().min(60)];
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{shown:?}: {answer}"
        );
    }
}

#[tokio::test]
async fn a_drain_while_the_handler_works_makes_its_answer_the_last() {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started = std::sync::Mutex::new(Some(started_tx));
    let (mut client, drain) = connect(SERVER, move |req: Request<Upload>| {
        if let Some(tx) = started.lock().unwrap().take() {
            let _ = tx.send(());
        }
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            echo(req).await
        }
    })
    .await;
    client
        .write_all(b"GET /w HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, started_rx)
        .await
        .unwrap()
        .unwrap();
    drain.send_replace(true);
    let answer = read_to_close(&mut client).await;
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(answer.ends_with("GET /w "), "{answer}");
}

#[tokio::test]
async fn a_sized_body_that_fails_or_ends_short_ends_with_a_reset_not_a_close() {
    for frames in [vec![Ok("abc"), Err(())], vec![Ok("abc")]] {
        sized_body_is_reset(frames).await;
    }
}

async fn sized_body_is_reset(frames: Vec<Result<&'static str, ()>>) {
    let (mut client, _drain) = connect(SERVER, move |_req| {
        let frames = frames.clone();
        async move {
            let mut resp = Response::new(paced(frames, Duration::from_millis(1)));
            resp.headers_mut().insert(
                "content-length",
                hyper::header::HeaderValue::from_static("10"),
            );
            resp
        }
    })
    .await;
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut all = Vec::new();
    let read = tokio::time::timeout(DEADLINE, client.read_to_end(&mut all))
        .await
        .unwrap();
    let err = read.expect_err("a reset, so the client knows the body broke");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
}

#[tokio::test]
async fn a_sized_body_is_done_once_its_length_is_written_and_frees_what_it_holds_first() {
    // The body gives all it announced, then would wait for ever: the answer is whole, its
    // body (and what it holds) is gone, and the next request is served.
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&dropped);
    let (mut client, _drain) = connect(SERVER, move |req: Request<Upload>| {
        let guard = Dropped(Arc::clone(&flag));
        async move {
            if req.uri().path() == "/next" {
                return echo(req).await;
            }
            let frames = futures_util::stream::iter([Ok(Frame::data(Bytes::from_static(b"abc")))])
                .chain(futures_util::stream::once(async move {
                    let _held = guard;
                    std::future::pending::<Result<Frame<Bytes>, std::io::Error>>().await
                }));
            let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
            resp.headers_mut().insert(
                "content-length",
                hyper::header::HeaderValue::from_static("3"),
            );
            resp
        }
    })
    .await;
    client
        .write_all(b"GET /first HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut client, "abc").await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the body outlived its last bytes"
    );
    client
        .write_all(b"GET /next HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut client, "GET /next ").await;
}
