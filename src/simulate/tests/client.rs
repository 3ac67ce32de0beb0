//! A minimal HTTP/1.1 test client that records when each body frame arrived, an SSE parser,
//! and stub upstreams with scripted behaviour.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::experiment::schema::{GatewaySpec, Overflow, SimulateSpec, Strategy};
use crate::simulate::body::{self, Body};
use crate::simulate::server::{self, Handler, RunningServer};
use crate::units::Dur;

/// Upper bound on any single exchange, so a broken server fails a test instead of hanging it.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(10);

pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub fn host_spec() -> SimulateSpec {
    SimulateSpec {
        listen: any_port(),
        model: "sim-model".into(),
        ttft: Dur::from_millis(5),
        tokens_per_second: 1000.0,
        completion_tokens: 8,
        capacity: None,
        overflow: Overflow::Queue,
        reject_status: 429.try_into().unwrap(),
        served_by: None,
        memory: None,
        cold_start: None,
        content: Default::default(),
    }
}

pub fn gateway_spec(upstreams: Vec<SocketAddr>) -> GatewaySpec {
    GatewaySpec {
        listen: any_port(),
        upstreams,
        strategy: Strategy::Failover,
        retries: 1,
        retry_on: vec![429, 500, 502, 503, 504, 529],
        eject_after: 3,
        cooldown: Dur::from_secs(60),
        timeout: Dur::from_secs(5),
        reterminate_cut_streams: false,
        max_in_flight_per_upstream: None,
        shed_status: 429.try_into().unwrap(),
    }
}

/// What came back: status, headers, and each body frame with its arrival time since sending.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// When the response headers arrived, since sending.
    pub headers_at: Duration,
    pub frames: Vec<(Duration, Bytes)>,
    /// Set when the body ended with an error (a cut connection).
    pub body_error: Option<String>,
}

impl Answer {
    pub fn text(&self) -> String {
        let bytes: Vec<u8> = self.frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
        String::from_utf8(bytes).unwrap()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text()).unwrap()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends one request on a fresh connection and reads the whole answer.
pub async fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> Answer {
    try_send(addr, method, path, body).await.unwrap()
}

/// Like [`send`], but a refused connection or a connection closed before the response is an
/// `Err` rather than a panic: for servers that may crash.
pub async fn try_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<Answer, String> {
    tokio::time::timeout(EXCHANGE_LIMIT, exchange(addr, method, path, body))
        .await
        .expect("exchange took too long")
}

pub async fn try_post(addr: SocketAddr, body: serde_json::Value) -> Result<Answer, String> {
    try_send(addr, "POST", "/v1/chat/completions", &body.to_string()).await
}

pub async fn post_json(addr: SocketAddr, path: &str, body: serde_json::Value) -> Answer {
    send(addr, "POST", path, &body.to_string()).await
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<Answer, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let sent = Instant::now();
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let headers_at = sent.elapsed();
    let (parts, mut incoming) = resp.into_parts();
    let mut frames = Vec::new();
    let mut body_error = None;
    while let Some(frame) = incoming.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    frames.push((sent.elapsed(), data));
                }
            }
            Err(e) => {
                body_error = Some(e.to_string());
                break;
            }
        }
    }
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        headers_at,
        frames,
        body_error,
    })
}

/// The status of a POST to the chat endpoint, without waiting for the body; the connection is
/// dropped afterwards.
pub async fn status_only(addr: SocketAddr, body: serde_json::Value) -> StatusCode {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::post("/v1/chat/completions")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        sender.send_request(req).await.unwrap().status()
    };
    tokio::time::timeout(EXCHANGE_LIMIT, exchange)
        .await
        .unwrap()
}

/// One server-sent event: its `event:` name, if any, and its `data:`.
#[derive(Debug)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

/// The events of a body, read as every other stage reads them.
pub fn parse_sse(text: &str) -> Vec<Event> {
    crate::protocol::sse::decode_all(text.as_bytes())
        .into_iter()
        .map(|(name, data)| Event {
            name: (!name.is_empty()).then_some(name),
            data,
        })
        .collect()
}

/// A port nobody listens on: bound once, then released.
pub async fn closed_port() -> SocketAddr {
    let l = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    l.local_addr().unwrap()
}

/// The stubs answer without reading what they are sent; the gateway's prompts are small.
const STUB_MAX_BODY: usize = 64 * 1024;

/// A stub upstream that answers every request with `respond`, counting the requests.
pub async fn stub<F>(respond: F) -> (RunningServer, Arc<AtomicUsize>)
where
    F: Fn() -> Response<Body> + Send + Sync + 'static,
{
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let respond = Arc::new(respond);
    let handler: Handler = Arc::new(move |_req| {
        counter.fetch_add(1, Ordering::SeqCst);
        let respond = respond.clone();
        Box::pin(async move { respond() })
    });
    let crash = server::Crash::new();
    let server = server::serve(
        any_port(),
        "stub",
        handler,
        crash,
        server::Runs::WhereAccepted,
        STUB_MAX_BODY,
    )
    .await
    .unwrap();
    (server, hits)
}

/// A stub that always answers `status` with an error body, labelled `name`.
pub async fn failing_stub(status: u16, name: &'static str) -> (RunningServer, Arc<AtomicUsize>) {
    stub(move || {
        let mut resp = body::openai_error(
            StatusCode::from_u16(status).unwrap(),
            "server_error",
            "stub failure",
        );
        resp.headers_mut()
            .insert("x-served-by", name.parse().unwrap());
        resp
    })
    .await
}

pub fn chat(stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": "sim-model",
        "stream": stream,
        "messages": [{ "role": "user", "content": "ping" }],
    })
}
