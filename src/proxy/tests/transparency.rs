//! With no fault in force the proxy is meant to be invisible (docs/transparency.md): a dead
//! upstream looks dead through it, a reset is a reset, silence is silence.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::support::*;
use crate::proxy::start;

/// Every wait in these tests ends within this.
const DEADLINE: Duration = Duration::from_secs(5);

/// A loopback port nobody listens on (it was free a moment ago).
fn dead_port() -> SocketAddr {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    taken.local_addr().unwrap()
}

/// Polls until a connect to `addr` is refused (true) or `within` passes (false).
async fn refused_within(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match tokio::time::timeout(DEADLINE, TcpStream::connect(addr)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    false
}

/// Polls until a connect to `addr` succeeds (true) or `within` passes (false). Once the proxy
/// listens again it stays listening while the upstream does.
async fn listening_within(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Ok(_)) = tokio::time::timeout(DEADLINE, TcpStream::connect(addr)).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// True if the peer closes (EOF or reset) within `within`.
async fn closed(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// The GET through a fresh connection fails, and with a TCP reset, not an HTTP status.
async fn assert_reset(addr: SocketAddr) {
    let got = tokio::time::timeout(DEADLINE, get(addr, "/json"))
        .await
        .expect("no answer and no reset in time");
    match got {
        Ok(response) => panic!("answered {} instead of a reset", response.status()),
        Err(e) => assert!(is_reset(&e), "not a reset: {e:?}"),
    }
}

#[tokio::test]
async fn a_dead_upstream_resets_the_request_and_the_proxy_refuses_until_it_is_back() {
    let dead = dead_port();
    let proxy = start("down", &spec(dead), 1).await.unwrap();
    // An idle client connection, open before the upstream is found dead.
    let mut idle = TcpStream::connect(proxy.addr()).await.unwrap();

    assert_reset(proxy.addr()).await;
    assert!(
        refused_within(proxy.addr(), Duration::from_secs(2)).await,
        "the proxy still accepts connections while its upstream refuses them"
    );
    assert!(
        closed(&mut idle, DEADLINE).await,
        "the idle connection stayed open"
    );

    let up = upstream_at(dead).await;
    assert!(
        listening_within(proxy.addr(), Duration::from_secs(3)).await,
        "the proxy did not listen again within 3 s of the upstream"
    );
    let status = get(proxy.addr(), "/json").await.unwrap().status();
    assert_eq!(status, 200);
    assert_eq!(up.hits(), 1);
    let addr = proxy.addr();
    tokio::time::timeout(DEADLINE, proxy.stop())
        .await
        .expect("the proxy did not stop");
    assert!(
        TcpListener::bind(addr).await.is_ok(),
        "the port is still held"
    );
}

#[tokio::test]
async fn a_closed_proxy_stops_and_leaves_the_port_free() {
    let proxy = start("down", &spec(dead_port()), 1).await.unwrap();
    let addr = proxy.addr();
    assert_reset(addr).await;
    assert!(refused_within(addr, Duration::from_secs(2)).await);
    tokio::time::timeout(DEADLINE, proxy.stop())
        .await
        .expect("the proxy did not stop while closed");
    // Nothing binds it again behind the stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(TcpListener::bind(addr).await.is_ok(), "the port is held");
}

#[tokio::test]
async fn a_fault_injected_while_closed_opens_the_proxy_so_that_it_acts() {
    let proxy = start("down", &spec(dead_port()), 1).await.unwrap();
    assert_reset(proxy.addr()).await;
    assert!(refused_within(proxy.addr(), Duration::from_secs(2)).await);
    proxy.faults().inject(
        "burst",
        fault(serde_json::json!({"http_error": {"status": 503}})),
    );
    assert!(
        listening_within(proxy.addr(), Duration::from_secs(3)).await,
        "still closed with a fault in force"
    );
    let status = get(proxy.addr(), "/json").await.unwrap().status();
    assert_eq!(status, 503);
    proxy.stop().await;
}

/// An upstream that sends headers and part of a 100-byte body, then ends the connection: with
/// a RST when `reset`, else with a FIN.
async fn cutting_upstream(reset: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                if reset {
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                }
            });
        }
    });
    addr
}

/// Reads one answer from `addr`: a 200 whose body breaks after `hello`. Returns whether the
/// break was a reset.
async fn broken_body_is_a_reset(what: &str, addr: SocketAddr) -> bool {
    let response = tokio::time::timeout(DEADLINE, get(addr, "/"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200, "{what}");
    let body = read_all(response).await;
    assert_eq!(body.bytes(), b"hello", "{what}");
    match body.end {
        End::Error(e) => is_reset(&e),
        other => panic!("{what}: the body ended {other:?}"),
    }
}

#[tokio::test]
async fn an_upstream_reset_mid_body_resets_the_client_as_it_would_directly() {
    let up = cutting_upstream(true).await;
    let proxy = start("p", &spec(up), 1).await.unwrap();
    for (what, addr) in [("directly", up), ("through the proxy", proxy.addr())] {
        assert!(
            broken_body_is_a_reset(what, addr).await,
            "{what}: not a reset"
        );
    }
    proxy.stop().await;
}

/// A close short of the length stays a close, with a fault in force too: the proxy's server
/// would otherwise reset a sized body that broke, and a client can tell the two apart.
#[tokio::test]
async fn an_upstream_closing_mid_body_closes_the_client_as_it_would_directly() {
    let up = cutting_upstream(false).await;
    let proxy = start("p", &spec(up), 1).await.unwrap();
    assert!(!broken_body_is_a_reset("directly", up).await);
    assert!(!broken_body_is_a_reset("through the proxy", proxy.addr()).await);
    proxy.faults().inject(
        "slow",
        fault(serde_json::json!({"latency": {"delay": "1ms"}})),
    );
    assert!(!broken_body_is_a_reset("through the proxy, a fault in force", proxy.addr()).await);
    proxy.stop().await;
}

#[tokio::test]
async fn a_silent_upstream_is_silence_through_the_proxy() {
    // Accepts and reads, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let proxy = start("p", &spec(up), 1).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(1), get(proxy.addr(), "/json")).await;
    assert!(
        waited.is_err(),
        "the proxy ended a silent exchange on its own: {waited:?}"
    );
    proxy.stop().await;
}
