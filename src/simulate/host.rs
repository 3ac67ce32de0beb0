//! The simulated inference host: routes requests to the OpenAI chat, completions or Responses
//! dialect or the Anthropic one, plays its
//! cold start, applies the capacity and memory models, paces the answer, and labels every
//! response with `x-served-by`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderName, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::body::{self, Body};
use super::capacity::Capacity;
use super::completion::{self, Finish, Length};
use super::memory::{Admission, Memory};
use super::server::{Crash, Handler};
use super::stream::{self, Pace};
use super::{anthropic, completions, openai, responses};
use crate::exit::Failure;
use crate::experiment::schema::{Content, SimulateSpec};
use crate::net::h1::server::Upload;

/// Requests are prompts, not uploads; anything bigger is a mistake worth a 413.
pub(crate) const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

pub(crate) const SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// What the dialects read from a completion request.
pub(crate) struct Ask {
    pub(crate) stream: bool,
    pub(crate) length: Length,
    pub(crate) prompt_tokens: u32,
    /// OpenAI's `stream_options.include_usage`.
    pub(crate) include_usage: bool,
}

/// What the dialects need to write an answer.
pub(crate) struct Reply {
    pub(crate) id: String,
    pub(crate) model: String,
    pub(crate) created: u64,
    /// Completion tokens: those generated, which the pacing and the cache are charged for.
    pub(crate) total: u32,
    pub(crate) prompt_tokens: u32,
    pub(crate) include_usage: bool,
    pub(crate) finish: Finish,
    pub(crate) content: Content,
}

impl Reply {
    /// The text of token `index`.
    pub(crate) fn token(&self, index: u32) -> String {
        completion::token(self.content, index, self.total)
    }

    /// The whole completion text.
    pub(crate) fn text(&self) -> String {
        completion::text(self.content, self.total)
    }
}

#[derive(Clone, Copy)]
enum Api {
    OpenAi,
    /// OpenAI's legacy completions, as vLLM still serves them.
    OpenAiCompletions,
    /// OpenAI's Responses API.
    OpenAiResponses,
    Anthropic,
}

impl Api {
    fn parse(self, bytes: &[u8]) -> Result<Ask, String> {
        match self {
            Api::OpenAi => openai::parse(bytes),
            Api::OpenAiCompletions => completions::parse(bytes),
            Api::OpenAiResponses => responses::parse(bytes),
            Api::Anthropic => anthropic::parse(bytes),
        }
    }

    fn error(self, status: StatusCode, message: &str) -> Response<Body> {
        match self {
            Api::OpenAi | Api::OpenAiCompletions | Api::OpenAiResponses => {
                openai::error(status, message)
            }
            Api::Anthropic => anthropic::error(status, message),
        }
    }
}

struct Host {
    model: String,
    served_by: HeaderValue,
    pace: Pace,
    completion_tokens: u32,
    content: Content,
    capacity: Capacity,
    reject_status: StatusCode,
    full_message: String,
    next_id: AtomicU64,
    started: Instant,
    /// Zero when the host serves from the start.
    cold_start: Duration,
    memory: Option<Arc<Memory>>,
    crash: Crash,
}

/// Checks the spec and builds the request handler of host `name`; a crash of the memory model
/// goes through `crash`. Must run inside the runtime (it may start the memory watchdog).
pub(crate) fn handler(
    name: &str,
    spec: &SimulateSpec,
    crash: Crash,
) -> Result<(Handler, Option<Arc<Memory>>), Failure> {
    let label = spec.served_by.as_deref().unwrap_or(name);
    let served_by = HeaderValue::from_str(label).map_err(|_| {
        Failure::Usage(format!(
            "service `{name}`: `{label}` cannot be sent as an x-served-by header value"
        ))
    })?;
    let reject_status = spec.reject_status.status();
    let slots = spec
        .capacity
        .map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    // One clock for the cold start and the leak, both defined from when the host started.
    let started = Instant::now();
    let memory = spec
        .memory
        .as_ref()
        .map(|m| Memory::new(name, m, started, crash.clone()));
    if let Some(memory) = &memory {
        memory.watch();
    }
    let host = Arc::new(Host {
        model: spec.model.clone(),
        served_by,
        pace: Pace::new(spec),
        completion_tokens: spec.completion_tokens,
        content: spec.content,
        capacity: Capacity::new(spec.capacity, spec.overflow),
        reject_status,
        full_message: format!("simulated host `{name}` is at capacity ({slots} concurrent)"),
        next_id: AtomicU64::new(1),
        started,
        cold_start: spec.cold_start.map_or(Duration::ZERO, |d| d.0),
        memory: memory.clone(),
        crash,
    });
    Ok((
        Arc::new(move |req| {
            let host = host.clone();
            Box::pin(async move {
                if host.crash.is_triggered() {
                    return dead().await;
                }
                let mut resp = match host.loading() {
                    Some(resp) => resp,
                    None => route(&host, req).await,
                };
                resp.headers_mut().insert(SERVED_BY, host.served_by.clone());
                resp
            })
        }),
        memory,
    ))
}

async fn route(host: &Host, req: Request<Upload>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::POST, "/v1/chat/completions") => complete(host, Api::OpenAi, req).await,
        (&Method::POST, "/v1/completions") => complete(host, Api::OpenAiCompletions, req).await,
        (&Method::POST, "/v1/responses") => complete(host, Api::OpenAiResponses, req).await,
        (&Method::POST, "/v1/messages") => complete(host, Api::Anthropic, req).await,
        (&Method::GET, "/v1/models") => models(host),
        (&Method::GET, "/health") => body::json(StatusCode::OK, &json!({ "status": "ok" })),
        (_, "/v1/chat/completions" | "/v1/completions" | "/v1/responses" | "/v1/messages") => {
            wrong_method(req.method(), &path, "POST")
        }
        (_, "/v1/models" | "/health") => wrong_method(req.method(), &path, "GET"),
        (method, _) => body::openai_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            &format!("Invalid URL ({method} {path})"),
        ),
    }
}

/// What a crashed host answers: nothing, ever. The accept loop drops the connection (and with
/// it this future) as it tears the server down.
async fn dead() -> Response<Body> {
    std::future::pending().await
}

fn wrong_method(method: &Method, path: &str, allowed: &'static str) -> Response<Body> {
    let mut resp = body::openai_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        &format!("{method} is not allowed on {path}; use {allowed}"),
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    resp
}

fn models(host: &Host) -> Response<Body> {
    body::json(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": [{ "id": host.model, "object": "model", "created": 0, "owned_by": "faultline" }],
        }),
    )
}

async fn complete(host: &Host, api: Api, req: Request<Upload>) -> Response<Body> {
    let bytes = match req.into_body() {
        Ok(b) => b,
        Err(too_large) => return api.error(StatusCode::PAYLOAD_TOO_LARGE, &too_large.to_string()),
    };
    let ask = match api.parse(&bytes) {
        Ok(ask) => ask,
        Err(message) => return api.error(StatusCode::BAD_REQUEST, &message),
    };
    let Some(slot) = host.capacity.admit().await else {
        return refuse(host, api, &host.full_message);
    };
    let (total, finish) = ask.length.generate(host.completion_tokens);
    // Memory is checked once the request has a slot (after its queue wait, if it queued),
    // since that is when a real server would allocate its cache.
    let cache = match &host.memory {
        None => None,
        Some(memory) => match memory.admit(u64::from(ask.prompt_tokens) + u64::from(total)) {
            Admission::Admitted(reservation) => Some(reservation),
            Admission::Refused(message) => return refuse(host, api, &message),
            Admission::Crashed => return dead().await,
        },
    };
    // A tuple drops in order: the cache is given back before the slot, as a server frees a
    // finished request's cache before it admits the next. The other order let a queued
    // request on another thread take the slot while the memory was still held, and crash.
    let held = (cache, slot);
    let reply = host.reply(api, &ask, total, finish);
    if ask.stream {
        let events = match api {
            Api::OpenAi => body::streamed(stream::play(
                openai::Chunks::new(reply),
                host.pace,
                total,
                held,
            )),
            Api::OpenAiCompletions => body::streamed(stream::play(
                completions::Chunks::new(reply),
                host.pace,
                total,
                held,
            )),
            Api::OpenAiResponses => body::streamed(stream::play(
                responses::Events::new(reply),
                host.pace,
                total,
                held,
            )),
            Api::Anthropic => body::streamed(stream::play(
                anthropic::Events::new(reply),
                host.pace,
                total,
                held,
            )),
        };
        let mut resp = Response::new(events);
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return resp;
    }
    super::stream::wait_until(tokio::time::Instant::now() + host.pace.whole(total)).await;
    drop(held);
    let answer = match api {
        Api::OpenAi => openai::whole(&reply),
        Api::OpenAiCompletions => completions::whole(&reply),
        Api::OpenAiResponses => responses::whole(&reply),
        Api::Anthropic => anthropic::whole(&reply),
    };
    body::json(StatusCode::OK, &answer)
}

/// A request the host will not take now: `reject_status`, with a hint to come back soon.
fn refuse(host: &Host, api: Api, message: &str) -> Response<Body> {
    let mut resp = api.error(host.reject_status, message);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

impl Host {
    /// The answer to every request while the model is still loading, as vLLM and TGI give
    /// 503 until their weights are in memory; `None` once the cold start is over.
    fn loading(&self) -> Option<Response<Body>> {
        if self.started.elapsed() >= self.cold_start {
            return None;
        }
        let mut resp = body::openai_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "model is loading",
        );
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        Some(resp)
    }

    fn reply(&self, api: Api, ask: &Ask, total: u32, finish: Finish) -> Reply {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = match api {
            Api::OpenAi => format!("chatcmpl-sim{n:012}"),
            Api::OpenAiCompletions => format!("cmpl-sim{n:012}"),
            Api::OpenAiResponses => format!("resp_sim{n:012}"),
            Api::Anthropic => format!("msg_sim{n:012}"),
        };
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Reply {
            id,
            model: self.model.clone(),
            created,
            total,
            prompt_tokens: ask.prompt_tokens,
            include_usage: ask.include_usage,
            finish,
            content: self.content,
        }
    }
}

/// A rough prompt size for `usage`: words of every text found in the messages, at least 1.
pub(crate) fn prompt_words<'a>(messages: impl Iterator<Item = &'a Value>) -> u32 {
    fn words(v: &Value) -> usize {
        match v {
            Value::String(s) => s.split_whitespace().count(),
            Value::Array(items) => items.iter().map(words).sum(),
            Value::Object(map) => ["content", "text"]
                .iter()
                .filter_map(|k| map.get(*k))
                .map(words)
                .sum(),
            _ => 0,
        }
    }
    let n: usize = messages.map(words).sum();
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}
