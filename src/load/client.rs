//! One request, start to finish, turned into a `RequestRecord`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{
    HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING,
};
use serde_json::json;

use super::record::{Outcome, RequestRecord};
use super::sse::{DocumentReader, Expect, StreamReader};
use super::workload::{length_field, Workload, DEFAULT_MAX_TOKENS};
use crate::experiment::{Api, LoadStream, RequestSpec, Target};
use crate::net::h1;

pub type HttpClient = h1::Client;

/// A keep-alive pool shared by every request of a stream, as many idle connections as it can
/// have requests in flight; `https://` targets use `tls`.
pub fn http_client(
    target: &Target,
    pool_size: usize,
    tls: &crate::net::Tls,
) -> anyhow::Result<HttpClient> {
    let https = (target.scheme == crate::net::Scheme::Https).then_some(tls);
    HttpClient::new(
        target.addr.host(),
        target.addr.port(),
        https,
        Duration::from_secs(5),
        pool_size,
        Duration::from_secs(30),
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
    /// The request line and headers, all but `content-length`, which each request adds.
    pub head: Vec<u8>,
    /// Connections are kept for the next request, unless the stream's headers say
    /// `connection: close`.
    pub reuse: bool,
    /// The body when every request sends the same one.
    pub body: Bytes,
    /// Set when requests draw their prompts or lengths: each builds its own body from it.
    pub workload: Option<Workload>,
    pub timeout: Duration,
    pub stall_timeout: Duration,
    pub served_by_header: hyper::header::HeaderName,
    /// What a whole answer must show, from what the request asked for.
    pub expect: Expect,
    /// Where requests connect, and with what TLS, for connect-error messages.
    pub addr: crate::net::HostPort,
    pub tls: crate::net::Tls,
    pub connect_errors: ConnectErrors,
}

/// What a whole answer to `body` must show, read from the body as it is sent (after
/// `extra_body`), so a `stream_options` or `ignore_eos` set there counts too.
fn expectations(api: Api, stream: bool, body: &serde_json::Value) -> Expect {
    let usage = match api {
        // Anthropic streams always carry `usage` in `message_delta`, Responses streams in the
        // response of `response.completed`.
        Api::AnthropicMessages | Api::OpenaiResponses => stream,
        Api::OpenaiChat | Api::OpenaiCompletions => {
            stream
                && body
                    .pointer("/stream_options/include_usage")
                    .and_then(serde_json::Value::as_bool)
                    == Some(true)
        }
    };
    let max = body
        .get(length_field(api))
        .and_then(serde_json::Value::as_u64);
    let ignore_eos = body.get("ignore_eos").and_then(serde_json::Value::as_bool) == Some(true);
    let min = body.get("min_tokens").and_then(serde_json::Value::as_u64);
    let pinned = max.filter(|m| ignore_eos || min == Some(*m));
    Expect { usage, pinned }
}

/// The JSON body template of a stream's requests: the prompt where the API takes it, the length
/// limit under the API's name, and the usage chunk asked for where it is optional. The caller
/// marks the drawn parts, then merges `extra_body`, which may replace any of them.
fn request_body(r: &RequestSpec) -> serde_json::Value {
    let mut body = match r.api {
        Api::OpenaiChat | Api::AnthropicMessages => json!({
            "model": r.model,
            "messages": [{ "role": "user", "content": r.prompt }],
            "stream": r.stream,
        }),
        Api::OpenaiCompletions => {
            json!({ "model": r.model, "prompt": r.prompt, "stream": r.stream })
        }
        Api::OpenaiResponses => json!({ "model": r.model, "input": r.prompt, "stream": r.stream }),
    };
    let max_tokens = match r.max_tokens {
        Some(crate::experiment::schema::Tokens::Fixed(n)) => n,
        _ => DEFAULT_MAX_TOKENS,
    };
    body[length_field(r.api)] = json!(max_tokens);
    let optional_usage = matches!(r.api, Api::OpenaiChat | Api::OpenaiCompletions);
    if optional_usage && r.stream && r.include_usage != Some(false) {
        body["stream_options"] = json!({ "include_usage": true });
    }
    body
}

/// The body as sent: the template with the drawn parts marked, then `extra_body` merged (so
/// it may replace any field, a drawn one included); true when parts are drawn per request.
fn request_template(r: &RequestSpec, has_prompts: bool) -> (serde_json::Value, bool) {
    let mut body = request_body(r);
    let drawn = Workload::mark(&mut body, r, has_prompts);
    if let (Some(extra), Some(obj)) = (&r.extra_body, body.as_object_mut()) {
        obj.extend(extra.clone());
    }
    (body, drawn)
}

/// The header a faultline proxy marks faulted responses with, and the name LiteLLM forwards
/// upstream headers under.
const FAULT_HEADERS: [&str; 2] = ["x-faultline-fault", "llm_provider-x-faultline-fault"];

impl StreamPlan {
    /// `seed` keys the stream's draws of prompts and lengths.
    pub fn new(stream: &LoadStream, seed: u64) -> anyhow::Result<Self> {
        let spec = &stream.spec;
        let r = &spec.request;
        let (body, drawn) = request_template(r, stream.prompts.is_some());
        let expect = expectations(r.api, r.stream, &body);
        let bytes = serde_json::to_vec(&body)?;
        let workload = if drawn {
            let prompts = stream.prompts.as_deref();
            Some(Workload::new(
                &stream.name,
                seed,
                r,
                prompts,
                &body,
                &bytes,
            )?)
        } else {
            None
        };
        let own: Vec<_> = stream
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.value().clone()))
            .collect();
        let headers = request_headers(&stream.target, r.api, &own)?;
        Ok(StreamPlan {
            name: Arc::from(stream.name.as_str()),
            api: r.api,
            expect,
            head: h1::request::head("POST", &stream.target.path_and_query, &headers),
            reuse: !h1::request::says_close(&headers),
            stream: r.stream,
            body: Bytes::from(bytes),
            workload,
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

    /// Request `seq`'s body, and what its whole answer must show.
    pub fn body(&self, seq: u64) -> (Bytes, Expect) {
        match &self.workload {
            Some(w) => w.body(seq, self.expect),
            None => (self.body.clone(), self.expect),
        }
    }

    /// Request `seq` as written on the connection, and what its whole answer must show.
    fn request(&self, seq: u64) -> (Vec<u8>, Expect) {
        let (body, expect) = self.body(seq);
        let wire = h1::request::finish(&self.head, &body, true);
        (wire, expect)
    }
}

/// The headers of a `POST` to `target`: the defaults, then the stream's own (which replace a
/// default of the same name). The framing is the client's: a `content-length` or
/// `transfer-encoding` of the stream's is left out.
fn request_headers(
    target: &Target,
    api: Api,
    own: &[(hyper::header::HeaderName, HeaderValue)],
) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_str(&target.authority)?);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if api == Api::AnthropicMessages {
        headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    }
    for (name, value) in own {
        headers.insert(name.clone(), value.clone());
    }
    headers.remove(CONTENT_LENGTH);
    headers.remove(TRANSFER_ENCODING);
    Ok(headers)
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
    let (request, expect) = plan.request(rec.seq);
    let response = match client
        .send(h1::Request {
            wire: &request,
            reuse: plan.reuse,
            bodiless: false,
        })
        .await
    {
        Ok(r) => r,
        Err(h1::Error::Connect(e)) => {
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
        Err(h1::Error::Lost(_)) => return Outcome::Reset,
    };
    rec.status = Some(response.status.as_u16());
    rec.served_by = response
        .headers
        .get(&plan.served_by_header)
        .and_then(|v| v.to_str().ok())
        .map(Arc::from);
    rec.faults = FAULT_HEADERS
        .iter()
        .find_map(|h| response.headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .map(Arc::from);
    let success = response.status.is_success();
    let is_sse = response
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let mut body = response.body;
    let mut reader = if plan.stream && is_sse {
        Reader::Stream(StreamReader::new(plan.api, expect))
    } else {
        Reader::Document(DocumentReader::new(plan.api, expect))
    };
    // One stall timer per request, moved only when it fires: arming a fresh timeout for every
    // read put a timer-wheel insert and removal on each token's path.
    let stall = tokio::time::sleep(plan.stall_timeout);
    tokio::pin!(stall);
    let mut last_read = tokio::time::Instant::now();
    loop {
        let read = tokio::select! {
            biased;
            read = body.next() => read,
            () = &mut stall => {
                let due = last_read + plan.stall_timeout;
                if due > tokio::time::Instant::now() {
                    stall.as_mut().reset(due);
                    continue;
                }
                return if success {
                    Outcome::Stalled
                } else {
                    Outcome::HttpError
                };
            }
        };
        last_read = tokio::time::Instant::now();
        match read {
            Ok(None) => break,
            Err(_) => {
                // The connection died mid-body: whatever had arrived is all the client gets.
                return if success {
                    Outcome::Truncated
                } else {
                    Outcome::HttpError
                };
            }
            Ok(Some(data)) => {
                let at = origin.elapsed().saturating_sub(rec.intended);
                if rec.ttfb.is_none() {
                    rec.ttfb = Some(at);
                }
                rec.bytes += data.len() as u64;
                if success {
                    reader.feed(data, at);
                    rec.events = reader.events();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(request: serde_json::Value) -> RequestSpec {
        serde_json::from_value(request).unwrap()
    }

    /// The body as `StreamPlan::new` builds it, and what it expects.
    fn built(request: serde_json::Value) -> (serde_json::Value, Expect) {
        let r = spec(request);
        let (body, _) = request_template(&r, false);
        let expect = expectations(r.api, r.stream, &body);
        (body, expect)
    }

    #[test]
    fn completions_bodies_send_a_prompt_and_ask_for_usage() {
        let (body, expect) =
            built(json!({"api": "openai-completions", "prompt": "hi", "max_tokens": 5}));
        assert_eq!(
            body,
            json!({"model": "sim", "prompt": "hi", "stream": true, "max_tokens": 5,
                   "stream_options": {"include_usage": true}})
        );
        assert_eq!(
            expect,
            Expect {
                usage: true,
                pinned: None
            }
        );
        let (body, expect) = built(json!({"api": "openai-completions", "stream": false}));
        assert!(body.get("stream_options").is_none());
        assert!(!expect.usage);
        let (_, expect) = built(json!({"api": "openai-completions", "include_usage": false}));
        assert!(!expect.usage);
    }

    #[test]
    fn responses_bodies_send_input_and_max_output_tokens_and_expect_usage_when_streamed() {
        let (body, expect) =
            built(json!({"api": "openai-responses", "prompt": "hi", "max_tokens": 7}));
        assert_eq!(
            body,
            json!({"model": "sim", "input": "hi", "stream": true, "max_output_tokens": 7})
        );
        assert_eq!(
            expect,
            Expect {
                usage: true,
                pinned: None
            }
        );
        let (body, expect) = built(json!({"api": "openai-responses", "stream": false}));
        assert_eq!(body["max_output_tokens"], 256);
        assert!(!expect.usage);
        // A length pinned through `extra_body` is read from the Responses API's field.
        let (_, expect) = built(json!({"api": "openai-responses", "max_tokens": 9,
                                        "extra_body": {"ignore_eos": true}}));
        assert_eq!(expect.pinned, Some(9));
    }

    #[test]
    fn drawn_prompts_go_where_each_api_takes_its_prompt() {
        for (api, field, want) in [
            ("openai-completions", "prompt", json!("alpha bravo charlie")),
            ("openai-responses", "input", json!("alpha bravo charlie")),
            (
                "openai-chat",
                "messages",
                json!([{"role": "user", "content": "alpha bravo charlie"}]),
            ),
        ] {
            let r = spec(json!({"api": api, "prompt_tokens": 3}));
            let (body, drawn) = request_template(&r, false);
            assert!(drawn, "{api}");
            let bytes = serde_json::to_vec(&body).unwrap();
            let w = Workload::new("s", 1, &r, None, &body, &bytes).unwrap();
            let (sent, _) = w.body(0, Expect::default());
            let sent: serde_json::Value = serde_json::from_slice(&sent).unwrap();
            assert_eq!(sent[field], want, "{api}");
        }
    }

    #[test]
    fn chat_and_anthropic_bodies_keep_their_messages() {
        let (body, _) = built(json!({"api": "openai-chat", "prompt": "hi"}));
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        let (body, expect) = built(json!({"api": "anthropic-messages", "prompt": "hi"}));
        assert_eq!(body["messages"][0]["content"], "hi");
        assert_eq!(body["max_tokens"], 256);
        assert!(body.get("stream_options").is_none());
        assert!(expect.usage);
    }
}
