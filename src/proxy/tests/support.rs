//! A tiny upstream and client for the proxy's tests, both on 127.0.0.1 with real sockets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::experiment::schema::{ProxyMode, ProxySpec};
use crate::fault::FaultSpec;
use crate::proxy::{start, RunningProxy};

type UpBody = BoxBody<Bytes, Infallible>;

pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Routes: `/json` (a sized JSON body), `/sse?n=N&gap=MS` (N events `data: i`, one per frame,
/// MS apart, chunked; `/v1/messages` is the same, under a path that names a dialect), `/bytes?len=N` (N sized bytes in 100-byte frames), `/echo` (the request
/// body back, the path in `x-path`).
pub async fn upstream() -> Upstream {
    upstream_at("127.0.0.1:0".parse().unwrap()).await
}

/// [`upstream`] on `addr` (an upstream coming back on the port it left).
pub async fn upstream_at(addr: SocketAddr) -> Upstream {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    route(req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream { addr, hits }
}

fn param(req: &Request<Incoming>, key: &str, default: u64) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

async fn route(req: Request<Incoming>) -> Result<Response<UpBody>, Infallible> {
    let response = match req.uri().path() {
        "/json" => Response::builder()
            .header("content-type", "application/json")
            .header("x-upstream", "yes")
            .body(Full::new(Bytes::from_static(b"{\"ok\":true}")).boxed()),
        "/sse" | "/v1/messages" => {
            let n = param(&req, "n", 5);
            let gap = Duration::from_millis(param(&req, "gap", 20));
            let events = futures_util::stream::unfold(0u64, move |i| async move {
                if i >= n {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(gap).await;
                }
                let frame = Frame::data(Bytes::from(format!("data: {i}\n\n")));
                Some((Ok::<_, Infallible>(frame), i + 1))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(events).boxed())
        }
        "/bytes" => {
            let len = param(&req, "len", 1000);
            let chunks = futures_util::stream::unfold(0u64, move |sent| async move {
                if sent >= len {
                    return None;
                }
                let n = (len - sent).min(100);
                let data: Vec<u8> = (sent..sent + n).map(|i| b'a' + (i % 26) as u8).collect();
                tokio::time::sleep(Duration::from_millis(5)).await;
                Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from(data))),
                    sent + n,
                ))
            });
            Response::builder()
                .header("content-length", len.to_string())
                .body(StreamBody::new(chunks).boxed())
        }
        _ => {
            let path = req.uri().to_string();
            let method = req.method().to_string();
            let host = req.headers().get("host").cloned();
            let length = req.headers().get("content-length").cloned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut response = Response::builder();
            if let Some(host) = host {
                response = response.header("x-host", host);
            }
            if let Some(length) = length {
                response = response.header("x-content-length", length);
            }
            response
                .header("x-path", path)
                .header("x-method", method)
                .body(Full::new(body).boxed())
        }
    };
    Ok(response.unwrap())
}

pub fn spec(upstream: SocketAddr) -> ProxySpec {
    ProxySpec {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.into(),
        upstream_tls: None,
        preserve_host: false,
        mode: ProxyMode::Http,
        driver: Default::default(),
    }
}

pub async fn proxy_to(up: &Upstream, seed: u64) -> RunningProxy {
    start("test-proxy", &spec(up.addr), seed).await.unwrap()
}

pub fn fault(v: serde_json::Value) -> FaultSpec {
    serde_json::from_value(v).unwrap()
}

/// One client connection; requests go one after another on it.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

pub async fn connect(addr: SocketAddr) -> Conn {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    Conn { sender }
}

impl Conn {
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> hyper::Result<Response<Incoming>> {
        self.sender.ready().await?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "faultline.test")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        self.sender.send_request(req).await
    }

    pub async fn get(&mut self, path: &str) -> hyper::Result<Response<Incoming>> {
        self.send("GET", path, "").await
    }
}

/// A GET on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> hyper::Result<Response<Incoming>> {
    connect(addr).await.get(path).await
}

/// How a response body ended.
#[derive(Debug)]
pub enum End {
    Complete,
    Error(hyper::Error),
    /// Nothing arrived for the idle limit.
    Idle,
}

pub struct Body {
    pub frames: Vec<(Duration, Bytes)>,
    pub end: End,
}

impl Body {
    pub fn bytes(&self) -> Vec<u8> {
        self.frames
            .iter()
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.bytes()).unwrap()
    }
}

/// Reads a body frame by frame, timing each from `since`, giving up after `idle` of silence.
pub async fn read_body(response: Response<Incoming>, since: Instant, idle: Duration) -> Body {
    let mut body = response.into_body();
    let mut frames = Vec::new();
    // Bounded: the tests' bodies have at most a few hundred frames.
    for _ in 0..10_000 {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Body {
                    frames,
                    end: End::Idle,
                }
            }
            Ok(None) => {
                return Body {
                    frames,
                    end: End::Complete,
                }
            }
            Ok(Some(Err(e))) => {
                return Body {
                    frames,
                    end: End::Error(e),
                }
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    frames.push((since.elapsed(), data));
                }
            }
        }
    }
    panic!("body never ended");
}

pub async fn read_all(response: Response<Incoming>) -> Body {
    read_body(response, Instant::now(), Duration::from_secs(5)).await
}

/// Whether an error was caused by a TCP reset.
pub fn is_reset(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionReset {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// `data: i\n\n` for `i` in `range`.
pub fn events(range: std::ops::Range<u64>) -> String {
    range.map(|i| format!("data: {i}\n\n")).collect()
}
