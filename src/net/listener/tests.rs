//! The listener: serving, stops with and without grace, connections on cores, the stop value,
//! bind errors.

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::*;

/// Every wait in these tests ends within this.
const DEADLINE: Duration = Duration::from_secs(5);

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A server answering "ok" after `delay`, stopped by the returned sender.
fn start(
    opts: Serve,
    delay: Duration,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    start_on(None, opts, delay)
}

/// [`start`], its connections run on `cores` when given.
fn start_on(
    cores: Option<Arc<Cores>>,
    opts: Serve,
    delay: Duration,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let mut listener = Listener::bind(local(), "the test server").unwrap();
    if let Some(cores) = cores {
        listener = listener.spread(cores);
    }
    let addr = listener.local_addr();
    assert_ne!(addr.port(), 0, "the real port is reported");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(listener.serve(
        opts,
        async {
            let _ = stopped.await;
        },
        move |conn| {
            let service = service_fn(move |_req| async move {
                tokio::time::sleep(delay).await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            conn.serve_http(Http1::new(), service)
        },
    ));
    (addr, stop, task)
}

/// Sends one keep-alive GET and reads until the 2-byte body arrived.
async fn get(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let read = async {
        while !got.ends_with(b"\r\n\r\nok") {
            let n = stream.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed before the answer: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("no answer in time");
    String::from_utf8_lossy(&got).into_owned()
}

/// True if the peer closes (EOF or reset) within the deadline.
async fn closed(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn serves_and_a_stop_cuts_idle_keep_alive_connections() {
    let (addr, stop, task) = start(Serve::default(), Duration::ZERO);
    let mut client = TcpStream::connect(addr).await.unwrap();
    assert!(get(&mut client).await.starts_with("HTTP/1.1 200"));
    // Kept alive: a second request on the same connection is served too.
    assert!(get(&mut client).await.starts_with("HTTP/1.1 200"));
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the server did not stop in time")
        .unwrap();
    assert!(
        closed(&mut client, DEADLINE).await,
        "the idle connection stayed open"
    );
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test]
async fn a_grace_period_answers_the_request_in_flight_and_closes_idle_ones_at_once() {
    grace_answers_in_flight(None).await;
}

#[tokio::test]
async fn a_grace_period_works_on_cores_too() {
    grace_answers_in_flight(Some(two_cores())).await;
}

async fn grace_answers_in_flight(cores: Option<Arc<Cores>>) {
    let opts = Serve {
        grace: Duration::from_secs(30),
        ..Serve::default()
    };
    let (addr, stop, task) = start_on(cores, opts, Duration::from_millis(300));
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert!(get(&mut idle).await.starts_with("HTTP/1.1 200"));
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    // Let the request reach the handler before stopping.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let began = Instant::now();
    stop.send(()).unwrap();
    // Idle connections close long before the 30 s grace: they had nothing left to do.
    assert!(
        closed(&mut idle, DEADLINE).await,
        "the idle connection stayed open"
    );
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, busy.read_to_end(&mut answer))
        .await
        .expect("the request in flight was never finished")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
        "{answer}"
    );
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the server did not stop once its connections ended")
        .unwrap();
    assert!(began.elapsed() < DEADLINE);
}

#[tokio::test]
async fn a_stop_without_grace_cuts_the_request_in_flight() {
    stop_cuts_in_flight(None).await;
}

#[tokio::test]
async fn a_stop_without_grace_cuts_requests_in_flight_on_every_core() {
    stop_cuts_in_flight(Some(two_cores())).await;
}

/// Two requests held by the server (one per core when there are two), both cut by a stop.
async fn stop_cuts_in_flight(cores: Option<Arc<Cores>>) {
    let (addr, stop, task) = start_on(cores, Serve::default(), Duration::from_secs(60));
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut busy = TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        held.push(busy);
    }
    // Let the requests reach the handler before stopping.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    for busy in &mut held {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(DEADLINE, busy.read_to_end(&mut answer))
            .await
            .expect("the connection was not cut");
        assert!(read.is_err() || answer.is_empty(), "answered: {answer:?}");
    }
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
}

fn two_cores() -> Arc<Cores> {
    let cores = Cores::start("test-listen", std::num::NonZeroUsize::new(2).unwrap());
    Arc::new(cores.unwrap())
}

/// Each connection runs on the core it was given, on that core's thread, with its socket
/// registered there (it reads and writes), and a stop closes them all.
#[tokio::test]
async fn a_connection_on_a_core_runs_on_that_cores_thread() {
    let listener = Listener::bind(local(), "the test server")
        .unwrap()
        .spread(two_cores());
    let addr = listener.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(listener.serve(
        Serve::default(),
        async {
            let _ = stopped.await;
        },
        |conn: Connection| async move {
            let core = conn.core();
            let Ok(mut stream) = conn.into_stream() else {
                return;
            };
            let mut byte = [0u8; 1];
            if stream.read_exact(&mut byte).await.is_err() {
                return;
            }
            let thread = std::thread::current().name().unwrap_or("").to_string();
            let answer = format!("{} {core} {thread}\n", byte[0] as char);
            let _ = stream.write_all(answer.as_bytes()).await;
            // Held open until the stop cuts it.
            let _ = stream.read(&mut byte).await;
        },
    ));
    let mut answers = Vec::new();
    let mut clients = Vec::new();
    for letter in ["a", "b", "c"] {
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(letter.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.ends_with(b"\n") {
            let n = tokio::time::timeout(DEADLINE, client.read(&mut buf))
                .await
                .expect("no echo in time")
                .unwrap();
            assert_ne!(n, 0, "closed before echoing");
            got.extend_from_slice(&buf[..n]);
        }
        answers.push(String::from_utf8(got).unwrap());
        clients.push(client);
    }
    assert_eq!(
        answers,
        [
            "a 0 test-listen-0\n",
            "b 1 test-listen-1\n",
            "c 0 test-listen-0\n"
        ],
        "round robin, each connection served on its core's thread"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    for client in &mut clients {
        assert!(closed(client, DEADLINE).await, "a connection stayed open");
    }
}

#[tokio::test]
async fn the_stop_value_is_returned() {
    let listener = Listener::bind(local(), "the test server").unwrap();
    let out = tokio::time::timeout(
        DEADLINE,
        listener.serve(Serve::default(), async { 42 }, |c: Connection| async move {
            drop(c)
        }),
    )
    .await
    .unwrap();
    assert_eq!(out, 42);
}

#[tokio::test]
async fn a_taken_port_names_the_address_and_the_owner() {
    let first = Listener::bind(local(), "the first").unwrap();
    let addr = first.local_addr();
    let err = Listener::bind(addr, "service `primary`").unwrap_err();
    assert!(matches!(err, BindError::Listen { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot listen on {addr} for service `primary`: the address is already in use \
             (another process, or an earlier run still holding it)"
        )
    );
}
