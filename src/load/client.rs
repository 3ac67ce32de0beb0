//! One request, start to finish, turned into a `RequestRecord`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use serde_json::json;

use super::record::{Outcome, RequestRecord};
use super::sse::{DocumentReader, Expect, StreamReader};
use crate::experiment::{Api, LoadStream};

pub type HttpClient = crate::net::HttpsClient<Full<Bytes>>;

/// A keep-alive pool shared by every request of a stream, as many idle connections as it can
/// have requests in flight; `https://` targets use `tls`.
pub fn http_client(pool_size: usize, tls: &crate::net::Tls) -> HttpClient {
    crate::net::https_client(
        crate::net::ClientConfig::new(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(pool_size),
        tls,
    )
}

/// The distinct reasons a stream's connections failed, each said once on stderr: a row of
/// `requests.csv` says only `connect_error`, and a certificate problem needs its reason.
#[derive(Debug, Default)]
pub struct ConnectErrors {
    seen: std::sync::Mutex<Vec<String>>,
}

/// Beyond this many distinct reasons a stream says no more (a flapping backend can produce
/// many variants of one refusal).
const MAX_CONNECT_ERRORS: usize = 4;

impl ConnectErrors {
    fn note(&self, stream: &str, why: String) {
        // A poisoned lock only means another request panicked while noting; nothing to say then.
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.len() < MAX_CONNECT_ERRORS && !seen.contains(&why) {
            eprintln!("load stream `{stream}`: connect_error: {why}");
            seen.push(why);
        }
    }

    /// The reasons seen so far, in the order they first happened.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// What every request of a stream shares: built once, cloned cheaply.
pub struct StreamPlan {
    pub name: Arc<str>,
    pub api: Api,
    pub stream: bool,
    pub uri: hyper::Uri,
    pub host: HeaderValue,
    pub body: Bytes,
    pub timeout: Duration,
    pub stall_timeout: Duration,
    pub served_by_header: hyper::header::HeaderName,
    /// What a whole answer must show, from what the request asked for.
    pub expect: Expect,
    /// The stream's own headers, sent last so they can replace the defaults; values from the
    /// environment are marked sensitive.
    pub headers: Vec<(hyper::header::HeaderName, HeaderValue)>,
    /// Where requests connect, and with what TLS, for connect-error messages.
    pub addr: crate::net::HostPort,
    pub tls: crate::net::Tls,
    pub connect_errors: ConnectErrors,
}

/// What a whole answer to `body` must show, read from the body as it is sent (after
/// `extra_body`), so a `stream_options` or `ignore_eos` set there counts too.
fn expectations(api: Api, stream: bool, body: &serde_json::Value) -> Expect {
    let usage = match api {
        // Anthropic streams always carry `usage` in `message_delta`.
        Api::AnthropicMessages => stream,
        Api::OpenaiChat => {
            stream
                && body
                    .pointer("/stream_options/include_usage")
                    .and_then(serde_json::Value::as_bool)
                    == Some(true)
        }
    };
    let max = body.get("max_tokens").and_then(serde_json::Value::as_u64);
    let ignore_eos = body.get("ignore_eos").and_then(serde_json::Value::as_bool) == Some(true);
    let min = body.get("min_tokens").and_then(serde_json::Value::as_u64);
    let pinned = max.filter(|m| ignore_eos || min == Some(*m));
    Expect { usage, pinned }
}

/// The header a faultline proxy marks faulted responses with, and the name LiteLLM forwards
/// upstream headers under.
const FAULT_HEADERS: [&str; 2] = ["x-faultline-fault", "llm_provider-x-faultline-fault"];

impl StreamPlan {
    pub fn new(stream: &LoadStream) -> anyhow::Result<Self> {
        let spec = &stream.spec;
        let r = &spec.request;
        let max_tokens = r.max_tokens.unwrap_or(256);
        let mut body = json!({
            "model": r.model,
            "messages": [{ "role": "user", "content": r.prompt }],
            "stream": r.stream,
            "max_tokens": max_tokens,
        });
        let include_usage = r.api == Api::OpenaiChat && r.stream && r.include_usage != Some(false);
        if include_usage {
            body["stream_options"] = json!({ "include_usage": true });
        }
        if let (Some(extra), Some(obj)) = (&r.extra_body, body.as_object_mut()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        let expect = expectations(r.api, r.stream, &body);
        // The host stays a name: the connector resolves it at each new connection.
        let uri = stream.target.uri().parse()?;
        Ok(StreamPlan {
            name: Arc::from(stream.name.as_str()),
            api: r.api,
            expect,
            headers: stream
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value().clone()))
                .collect(),
            stream: r.stream,
            uri,
            host: HeaderValue::from_str(&stream.target.authority)?,
            body: Bytes::from(serde_json::to_vec(&body)?),
            timeout: spec.timeout.0,
            stall_timeout: spec.stall_timeout.0,
            served_by_header: hyper::header::HeaderName::from_bytes(
                spec.served_by.header.as_bytes(),
            )?,
            addr: stream.target.addr.clone(),
            tls: stream.tls.clone(),
            connect_errors: ConnectErrors::default(),
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.api == Api::AnthropicMessages {
            h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        }
        for (name, value) in &self.headers {
            h.insert(name.clone(), value.clone());
        }
        req
    }
}

/// Sends one request and records how it went. `origin` is the run's start; `intended` is the
/// schedule's send time as an offset from it. Latencies are measured from `intended`.
pub async fn execute(
    client: &HttpClient,
    plan: &StreamPlan,
    origin: Instant,
    seq: u64,
    intended: Duration,
) -> RequestRecord {
    let sent = origin.elapsed();
    let mut rec = RequestRecord {
        stream: plan.name.clone(),
        seq,
        intended,
        sent: Some(sent),
        status: None,
        outcome: Outcome::Ok,
        ttfb: None,
        latency: Duration::ZERO,
        bytes: 0,
        events: 0,
        served_by: None,
        tokens: Default::default(),
        verified: false,
        faults: None,
    };
    let deadline = tokio::time::Instant::now() + plan.timeout;
    rec.outcome =
        match tokio::time::timeout_at(deadline, exchange(client, plan, origin, &mut rec)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Timeout,
        };
    rec.latency = origin.elapsed().saturating_sub(intended);
    rec
}

async fn exchange(
    client: &HttpClient,
    plan: &StreamPlan,
    origin: Instant,
    rec: &mut RequestRecord,
) -> Outcome {
    let response = match client.request(plan.request()).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => {
            // A failed TLS handshake is a connect error too: no request was sent.
            let (host, port) = (plan.addr.host(), plan.addr.port());
            let why = plan.tls.explain(host, port, &e).unwrap_or_else(|| {
                format!(
                    "cannot connect to {}: {}",
                    plan.addr,
                    crate::rest::error_chain(&e)
                )
            });
            plan.connect_errors.note(&plan.name, why);
            return Outcome::ConnectError;
        }
        Err(_) => return Outcome::Reset,
    };
    rec.status = Some(response.status().as_u16());
    rec.served_by = response
        .headers()
        .get(&plan.served_by_header)
        .and_then(|v| v.to_str().ok())
        .map(Arc::from);
    rec.faults = FAULT_HEADERS
        .iter()
        .find_map(|h| response.headers().get(*h))
        .and_then(|v| v.to_str().ok())
        .map(Arc::from);
    let success = response.status().is_success();
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let mut body = response.into_body();
    let mut reader = if plan.stream && is_sse {
        Reader::Stream(StreamReader::new(plan.api, plan.expect))
    } else {
        Reader::Document(DocumentReader::new(plan.api, plan.expect))
    };
    loop {
        match tokio::time::timeout(plan.stall_timeout, body.frame()).await {
            Err(_) => {
                return if success {
                    Outcome::Stalled
                } else {
                    Outcome::HttpError
                }
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                // The connection died mid-body: whatever had arrived is all the client gets.
                return if success {
                    Outcome::Truncated
                } else {
                    Outcome::HttpError
                };
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    let at = origin.elapsed().saturating_sub(rec.intended);
                    if rec.ttfb.is_none() && !data.is_empty() {
                        rec.ttfb = Some(at);
                    }
                    rec.bytes += data.len() as u64;
                    if success {
                        reader.feed(&data, at);
                        rec.events = reader.events();
                    }
                }
            }
        }
    }
    if !success {
        return Outcome::HttpError;
    }
    let judged = match reader {
        Reader::Stream(s) => s.finish(),
        Reader::Document(d) => d.finish(),
    };
    rec.verified = judged.verified;
    rec.tokens = judged.tokens;
    judged.outcome
}

// One per request, inside its task's future: boxing the big variant would cost an allocation
// per request for no saving.
#[allow(clippy::large_enum_variant)]
enum Reader {
    Stream(StreamReader),
    Document(DocumentReader),
}

impl Reader {
    fn feed(&mut self, data: &[u8], at: Duration) {
        match self {
            Reader::Stream(s) => s.feed(data, at),
            Reader::Document(d) => d.feed(data),
        }
    }

    fn events(&self) -> u64 {
        match self {
            Reader::Stream(s) => s.events(),
            Reader::Document(_) => 0,
        }
    }
}
