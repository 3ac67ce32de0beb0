//! The client against scripted servers on loopback, and its framing byte by byte.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::body::Decoder;
use super::head::{self, Framing};
use super::*;

const DEADLINE: Duration = Duration::from_secs(5);

const REQUEST: &[u8] = b"POST /v1/x HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\n{}";

/// Every payload `decoder` gives for `wire` fed in pieces of `step` bytes, and whether it ended.
fn decode_in_steps(mut decoder: Decoder, wire: &[u8], step: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    for piece in wire.chunks(step) {
        let mut at = 0;
        while at < piece.len() && !decoder.is_done() {
            let (used, data) = decoder.decode(&piece[at..]).unwrap();
            if let Some((s, e)) = data {
                out.extend_from_slice(&piece[at + s..at + e]);
            }
            at += used;
        }
    }
    (out, decoder.is_done())
}

#[test]
fn chunked_bodies_decode_whatever_the_reads_cut() {
    let wire = b"5\r\nhello\r\n7 \t;name=value\r\n, world\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: 1\r\n\r\n";
    for step in 1..=wire.len() {
        let (out, done) = decode_in_steps(Decoder::new(Framing::Chunked), wire, step);
        assert_eq!(
            out, b"hello, worldabcdefghijklmnopqrstuvwxyz",
            "step {step}"
        );
        assert!(done, "step {step}");
    }
}

#[test]
fn a_chunked_body_without_its_last_chunk_has_not_ended() {
    let (out, done) = decode_in_steps(Decoder::new(Framing::Chunked), b"3\r\nabc\r\n", 2);
    assert_eq!(out, b"abc");
    assert!(!done);
}

#[test]
fn broken_chunked_framing_is_an_error() {
    for wire in [
        &b"zz\r\n"[..],
        b"\r\n",
        b"3\r\nabcX",
        b"3\rX",
        b"11111111111111111\r\n",
        // A bare LF ends no line of the framing: after a size, in an extension, after the
        // data, in the trailer.
        b"3\nabc\r\n",
        b"3;x\nabc\r\n",
        b"3\r\nabc\n0\r\n\r\n",
        b"0\r\nx-trailer: 1\n\r\n",
        b"0\r\n\n",
        // Only spaces or tabs between a size and its extension.
        b"3 zz\r\n",
        b"3 4\r\n",
    ] {
        let mut decoder = Decoder::new(Framing::Chunked);
        let mut at = 0;
        let failed = loop {
            match decoder.decode(&wire[at..]) {
                Err(_) => break true,
                Ok((used, _)) if at + used >= wire.len() => break false,
                Ok((used, _)) => at += used,
            }
        };
        assert!(failed, "{:?}", String::from_utf8_lossy(wire));
    }
}

#[test]
fn a_length_body_ends_at_its_length() {
    let (out, done) = decode_in_steps(Decoder::new(Framing::Length(4)), b"abcd", 3);
    assert_eq!(out, b"abcd");
    assert!(done);
    assert!(Decoder::new(Framing::Length(0)).is_done());
    assert!(Decoder::new(Framing::Empty).is_done());
}

fn parsed(wire: &str) -> head::Head {
    let (head, len) = head::parse(wire.as_bytes()).unwrap().unwrap();
    assert_eq!(len, wire.len());
    head
}

#[test]
fn heads_say_how_their_bodies_end_and_whether_the_connection_stays() {
    let h = parsed("HTTP/1.1 200 OK\r\ncontent-length: 12\r\nx-a: b\r\n\r\n");
    assert_eq!(h.status, 200);
    assert_eq!(h.headers["x-a"], "b");
    for (wire, framing, keep_alive) in [
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n",
            Framing::Length(12),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Framing::Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
            Framing::Chunked,
            false,
        ),
        // A final coding other than chunked runs until the close, whatever the length says.
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ncontent-length: 3\r\n\r\n",
            Framing::UntilClose,
            false,
        ),
        // Chunked with a length beside it: the length is ignored, the connection not trusted.
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 9\r\n\r\n",
            Framing::Chunked,
            false,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose, false),
        ("HTTP/1.1 204 No Content\r\n\r\n", Framing::Empty, true),
        (
            "HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n",
            Framing::Length(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\ncontent-length: 1\r\nConnection: Keep-Alive\r\n\r\n",
            Framing::Length(1),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n",
            Framing::Length(5),
            true,
        ),
    ] {
        let h = parsed(wire);
        assert_eq!((h.framing, h.keep_alive), (framing, keep_alive), "{wire:?}");
    }
}

#[test]
fn incomplete_heads_wait_and_broken_ones_are_errors() {
    assert!(head::parse(b"HTTP/1.1 200 OK\r\ncontent-le")
        .unwrap()
        .is_none());
    for wire in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: five\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
    ] {
        assert!(head::parse(wire.as_bytes()).is_err(), "{wire:?}");
    }
}

/// A server on loopback that answers each request (read up to its two-byte body) with what
/// `answer` gives for the connection's number and the request's, and closes the connection
/// after the last request `answer` has an answer for. Counts the connections it accepted.
async fn server(
    answer: impl Fn(usize, usize) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let conn = count.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for seq in 0.. {
                    // The request ends with its body, `{}`.
                    while !buf.ends_with(b"{}") {
                        let mut piece = [0u8; 512];
                        match socket.read(&mut piece).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&piece[..n]),
                        }
                    }
                    buf.clear();
                    let Some(reply) = answer(conn, seq) else {
                        return;
                    };
                    // The connection closes as soon as it has no answer for a next request.
                    if socket.write_all(&reply).await.is_err() || answer(conn, seq + 1).is_none() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn client(addr: SocketAddr) -> Client {
    Client::new(
        "127.0.0.1",
        addr.port(),
        None,
        DEADLINE,
        4,
        Duration::from_secs(30),
    )
    .unwrap()
}

/// Sends `wire` as a kept request, within the test's deadline.
async fn send(client: &Client, wire: &[u8]) -> Result<Response, Error> {
    tokio::time::timeout(DEADLINE, client.send(Request::new(wire)))
        .await
        .expect("an answer or an error within the deadline")
}

/// Sends one request and reads its whole body.
async fn exchange(client: &Client) -> Result<(u16, Vec<u8>), String> {
    let run = async {
        let mut response = client
            .send(Request::new(REQUEST))
            .await
            .map_err(|e| format!("{e:?}"))?;
        let mut body = Vec::new();
        while let Some(data) = response.body.next().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(data);
        }
        Ok((response.status.as_u16(), body))
    };
    tokio::time::timeout(DEADLINE, run).await.unwrap()
}

const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
      6\r\ndata: \r\n3\r\nhi\n\r\n0\r\n\r\n";

/// How many connections three whole exchanges took against a server answering `reply` (to the
/// first request of each connection only, when `once`), every answer checked against `want`.
async fn connections_for(reply: &'static [u8], once: bool, want: &[u8]) -> usize {
    let (addr, accepted) = server(move |_, seq| (!once || seq == 0).then(|| reply.to_vec())).await;
    let client = client(addr);
    for _ in 0..3 {
        assert_eq!(exchange(&client).await.unwrap(), (200, want.to_vec()));
    }
    accepted.load(Ordering::SeqCst)
}

#[tokio::test]
async fn keep_alive_connections_carry_the_next_requests() {
    assert_eq!(connections_for(CHUNKED, false, b"data: hi\n").await, 1);
}

#[tokio::test]
async fn a_connection_the_server_closes_is_not_used_again() {
    let close = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
    assert_eq!(connections_for(close, false, b"ok").await, 3);
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_server_is_replaced_without_an_error() {
    // Each connection answers one request and then closes, without saying so in the head, as
    // a server closes an idle keep-alive connection.
    let (addr, accepted) = server(|_, seq| (seq == 0).then(|| CHUNKED.to_vec())).await;
    let client = client(addr);
    for i in 1..=3 {
        assert_eq!(exchange(&client).await.unwrap().0, 200);
        // Until the close has reached this side, which the pool must then see.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while client.inner.pool.idle.lock().unwrap()[0].0.io.is_quiet() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the close never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), i);
    }
}

#[tokio::test]
async fn a_body_cut_before_its_end_is_an_error() {
    let cut = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\ndata: \r\n".to_vec();
    let (addr, _) = server(move |_, seq| (seq == 0).then(|| cut.clone())).await;
    let err = exchange(&client(addr)).await.unwrap_err();
    assert!(err.contains("closed before the body's end"), "{err}");
}

#[tokio::test]
async fn a_body_until_the_close_ends_at_the_close() {
    let reply = b"HTTP/1.1 200 OK\r\n\r\nall of it";
    assert_eq!(connections_for(reply, true, b"all of it").await, 3);
}

#[tokio::test]
async fn informational_heads_are_skipped_and_long_heads_are_read_whole() {
    let long = "x".repeat(10_000);
    let reply = format!(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nx-long: {long}\r\n\
         content-length: 4\r\n\r\nbusy"
    )
    .into_bytes();
    let (addr, _) = server(move |_, _| Some(reply.clone())).await;
    let client = client(addr);
    let mut response = send(&client, REQUEST).await.unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.headers["x-long"].len(), 10_000);
    assert_eq!(response.body.next().await.unwrap(), Some(&b"busy"[..]));
    assert_eq!(response.body.next().await.unwrap(), None);
}

#[tokio::test]
async fn an_answer_that_is_not_http_loses_the_request() {
    let (addr, _) = server(|_, _| Some(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec())).await;
    let client = client(addr);
    let sent = send(&client, REQUEST).await;
    assert!(matches!(sent, Err(Error::Lost(_))));
}

#[tokio::test]
async fn no_listener_is_a_connect_error() {
    // Bound and closed: nothing listens there now.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let client = client(addr);
    let sent = send(&client, REQUEST).await;
    match sent {
        Err(Error::Connect(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("{:?}", other.map(|r| r.status)),
    }
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let (addr, accepted) = server(|_, _| Some(CHUNKED.to_vec())).await;
    let client = client(addr);
    let response = send(&client, REQUEST).await.unwrap();
    drop(response);
    assert_eq!(exchange(&client).await.unwrap().0, 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_that_says_close_does_not_keep_its_connection() {
    let (addr, accepted) = server(|_, _| Some(CHUNKED.to_vec())).await;
    let client = client(addr);
    for _ in 0..2 {
        let mut response = tokio::time::timeout(
            DEADLINE,
            client.send(Request {
                reuse: false,
                ..Request::new(REQUEST)
            }),
        )
        .await
        .unwrap()
        .unwrap();
        while response.body.next().await.unwrap().is_some() {}
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_answer_before_the_request_is_whole_is_read_and_the_connection_not_kept() {
    // A server that refuses a long request after its head and never reads the rest of it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 64];
        socket.read_exact(&mut head).await.unwrap();
        socket
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        // Held open and unread until the test ends.
        tokio::time::sleep(DEADLINE * 2).await;
        drop(socket);
    });
    // Far more than loopback's socket buffers hold, so the write cannot finish.
    let mut request = b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 67108864\r\n\r\n".to_vec();
    request.resize(request.len() + (64 << 20), b'x');
    let client = client(addr);
    let mut response = send(&client, &request).await.unwrap();
    assert_eq!(response.status, 413);
    assert_eq!(response.body.next().await.unwrap(), None);
    assert!(client.inner.pool.idle.lock().unwrap().is_empty());
}

#[tokio::test]
async fn endless_informational_heads_are_refused() {
    let (addr, _) = server(|_, _| Some(b"HTTP/1.1 100 Continue\r\n\r\n".repeat(40))).await;
    let client = client(addr);
    let sent = send(&client, REQUEST).await;
    assert!(matches!(sent, Err(Error::Lost(_))));
}

#[tokio::test]
async fn a_sized_body_read_as_a_hyper_body_frees_its_connection_with_its_last_bytes() {
    use http_body_util::BodyExt;
    let sized = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody".to_vec();
    let (addr, accepted) = server(move |_, _| Some(sized.clone())).await;
    let client = client(addr);
    for _ in 0..3 {
        let mut response = send(&client, REQUEST).await.unwrap();
        // As a server forwarding it does: it stops asking once the announced length is written.
        let frame = response.body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "body");
        assert!(hyper::body::Body::is_end_stream(&response.body));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_interim_answer_during_a_long_write_lets_the_request_finish() {
    const LEN: usize = 64 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let head = format!("POST / HTTP/1.1\r\nhost: t\r\ncontent-length: {LEN}\r\n\r\n");
    let head_len = head.len();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // An unasked `100 Continue`, then the whole request read, then the answer.
        socket
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        let mut left = head_len + LEN;
        let mut piece = vec![0u8; 1 << 16];
        while left > 0 {
            let n = socket.read(&mut piece).await.unwrap();
            assert!(n > 0, "the client stopped writing with {left} bytes to go");
            left -= n.min(left);
        }
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
    });
    let mut request = head.into_bytes();
    request.resize(request.len() + LEN, b'x');
    let client = client(addr);
    let mut response = send(&client, &request).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body.next().await.unwrap(), Some(&b"ok"[..]));
}

#[tokio::test]
async fn an_answer_without_a_body_frees_its_connection_at_once() {
    let (addr, accepted) = server(|_, _| Some(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())).await;
    let client = client(addr);
    for _ in 0..3 {
        // Never read: a server forwarding a 204 does not poll its body.
        let response = send(&client, REQUEST).await.unwrap();
        assert_eq!(response.status, 204);
        assert!(hyper::body::Body::is_end_stream(&response.body));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn idle_connections_are_closed_after_their_timeout_without_a_request() {
    let (addr, _) = server(|_, _| Some(CHUNKED.to_vec())).await;
    let client = Client::new(
        "127.0.0.1",
        addr.port(),
        None,
        DEADLINE,
        4,
        Duration::from_millis(100),
    )
    .unwrap();
    exchange(&client).await.unwrap();
    assert_eq!(client.inner.pool.idle.lock().unwrap().len(), 1);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !client.inner.pool.idle.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still idle in the pool"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The sweeper is done, and a connection put back later gets one again.
    exchange(&client).await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !client.inner.pool.idle.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second one stayed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
