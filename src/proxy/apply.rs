//! One request through the proxy: decide which faults touch it, then forward it (or not) and
//! shape the response accordingly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HOST,
};
use hyper::{Method, Request, Response};
use tokio::time::Instant;

use super::body::{proxy_header, PerChunkDelay, ProxyBody, StreamError, Truncate};
use super::conn::ConnControl;
use super::control::{ActiveFault, FaultControl, Snapshot};
use super::errors;
use crate::fault::{
    selects, FaultSpec, HttpErrorFault, LatencyPoint, StreamErrorFault, TruncateFault,
};
use crate::net::h1::server::{Hangup, Upload};
use crate::protocol::ending::{Dialect, Ending};

pub(crate) type UpstreamClient = crate::net::h1::Client;

/// What every request of one proxy shares.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) upstream: crate::net::Upstream,
    /// The `Host` sent upstream: the upstream's authority, or `None` to keep the client's
    /// (`preserve_host`).
    pub(crate) host: Option<HeaderValue>,
    /// For messages about a failed handshake.
    pub(crate) tls: crate::net::Tls,
    /// One per core of the proxy's runtimes, so an upstream socket is polled by the runtime
    /// of the client connection using it (`net::cores`).
    pub(crate) clients: crate::net::cores::PerCore<UpstreamClient>,
    pub(crate) faults: FaultControl,
    /// Whether the proxy should be listening: false while the upstream refuses connections
    /// and no fault is in force (see `upstream_refused`).
    pub(crate) open: tokio::sync::watch::Sender<bool>,
    /// The k-th request draws stream k of each fault's generator, whatever the timing.
    pub(crate) next_index: AtomicU64,
}

/// What happens instead of a plain forward, when a fault says so.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Forward,
    Error(HttpErrorFault),
    Reset,
    Blackhole,
}

/// The faults one request meets, decided once on arrival.
#[derive(Debug, Clone)]
struct Plan {
    before_forward: Duration,
    first_byte: Duration,
    per_chunk: Duration,
    outcome: Outcome,
    truncate: Option<TruncateFault>,
    stream_error: Option<StreamErrorFault>,
    /// The faults that act on this request whatever the answer (latencies, the one that
    /// replaces it).
    acting: Vec<Arc<ActiveFault>>,
    /// The faults behind `truncate` and `stream_error`, which act only on a successful
    /// (streamed) answer.
    truncating: Option<Arc<ActiveFault>>,
    erroring_stream: Option<Arc<ActiveFault>>,
}

impl Plan {
    /// Every fault decides independently, from its own generator. Latencies add up; among the
    /// faults that replace the answer (`http_error`, `reset`, `blackhole`) the earliest
    /// injected wins, and likewise for one `truncate_stream` and one `stream_error`.
    fn decide(faults: &Snapshot, index: u64, now: Instant) -> Plan {
        let mut plan = Plan {
            before_forward: Duration::ZERO,
            first_byte: Duration::ZERO,
            per_chunk: Duration::ZERO,
            outcome: Outcome::Forward,
            truncate: None,
            stream_error: None,
            acting: Vec::new(),
            truncating: None,
            erroring_stream: None,
        };
        for fault in faults.iter() {
            let mut draw = fault.decider.draw(index);
            let since = now.saturating_duration_since(fault.injected_at);
            if !selects(fault.spec.selection(), &mut draw, since) {
                continue;
            }
            let replaces = plan.outcome == Outcome::Forward;
            match &fault.spec {
                FaultSpec::Latency(l) => {
                    let wait = l.delay.0.saturating_add(draw.jitter(l.jitter.0));
                    let slot = match l.point {
                        LatencyPoint::BeforeForward => &mut plan.before_forward,
                        LatencyPoint::FirstByte => &mut plan.first_byte,
                        LatencyPoint::PerChunk => &mut plan.per_chunk,
                    };
                    *slot = slot.saturating_add(wait);
                    plan.acting.push(Arc::clone(fault));
                }
                FaultSpec::HttpError(e) if replaces => {
                    plan.outcome = Outcome::Error(e.clone());
                    plan.acting.push(Arc::clone(fault));
                }
                FaultSpec::Reset(_) if replaces => {
                    plan.outcome = Outcome::Reset;
                    plan.acting.push(Arc::clone(fault));
                }
                FaultSpec::Blackhole(_) if replaces => {
                    plan.outcome = Outcome::Blackhole;
                    plan.acting.push(Arc::clone(fault));
                }
                FaultSpec::TruncateStream(t) if plan.truncate.is_none() => {
                    plan.truncate = Some(t.clone());
                    plan.truncating = Some(Arc::clone(fault));
                }
                FaultSpec::StreamError(s) if plan.stream_error.is_none() => {
                    plan.stream_error = Some(s.clone());
                    plan.erroring_stream = Some(Arc::clone(fault));
                }
                _ => {}
            }
        }
        plan
    }
}

/// `core`: the core the client's connection runs on.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnControl>,
    core: usize,
    request: Request<Upload>,
) -> Response<ProxyBody> {
    let index = shared.next_index.fetch_add(1, Ordering::Relaxed);
    let faults = shared.faults.snapshot();
    let plan = Plan::decide(&faults, index, Instant::now());
    // With no fault in force the proxy is meant to be invisible (docs/transparency.md): an
    // upstream that fails is shown to the client as it failed, not as a made-up 502.
    let transparent = faults.is_empty();
    drop(faults);

    if !matches!(plan.outcome, Outcome::Forward) {
        // The answer is replaced: every fault that acts on it has acted now.
        for fault in &plan.acting {
            fault.touch();
        }
    }
    pause(plan.before_forward).await;
    match &plan.outcome {
        Outcome::Forward => {}
        Outcome::Error(fault) => {
            // A made-up answer has no upstream headers to wait for; its first byte is now.
            pause(plan.first_byte).await;
            let mut response = errors::http_error(&shared.name, fault);
            mark(response.headers_mut(), &plan.acting);
            return response;
        }
        Outcome::Reset => {
            conn.hang_up(Hangup::Reset);
            return std::future::pending().await;
        }
        // Answered never: the connection task drops this when the client or the proxy leaves.
        Outcome::Blackhole => return std::future::pending().await,
    }

    // A re-terminated stream is ended in the dialect its path names, unless its events say
    // otherwise; an injected stream error takes the shape the path names.
    let dialect = Dialect::from_path(request.uri().path());
    let bodiless = request.method() == Method::HEAD;
    let wire = match to_upstream(&shared.upstream, shared.host.as_ref(), request).await {
        Ok(r) => r,
        Err(Unsent::TooLarge) => {
            let why = format!(
                "the request's body is over the {} the proxy reads before forwarding",
                crate::units::Size(MAX_REQUEST_BODY as u64)
            );
            return errors::too_large(&shared.name, &why);
        }
        Err(Unsent::Bad(why)) => return errors::bad_request(&shared.name, &why),
    };
    let sent = crate::net::h1::Request {
        wire: &wire,
        reuse: true,
        bodiless,
    };
    let response = match shared.clients.get(core).send(sent).await {
        Ok(r) => r,
        Err(e) if transparent => return fail_like_the_upstream(&shared, &conn, &e).await,
        Err(e) => {
            return errors::bad_gateway(
                &shared.name,
                &shared.upstream.to_string(),
                &why(&shared, &e),
            )
        }
    };
    pause(plan.first_byte).await;
    shape_response(&shared.name, &plan, &conn, dialect, response)
}

/// What the client of a transparent proxy gets when the upstream failed before its headers:
/// what it would have got talking to the upstream itself, as far as a proxy that already
/// accepted the client's connection can give it.
/// - A refused (or timed out, or unreachable) connect: a RST, and the listener closes until
///   the upstream accepts again, so the next clients are refused as the upstream refuses them.
/// - A connection the upstream reset: a RST. One it closed without an answer: a FIN.
/// - Anything else (an answer that is not HTTP): the 502 as before; no client could have read
///   that answer either, and a proxy cannot forward bytes it could not parse.
async fn fail_like_the_upstream(
    shared: &Shared,
    conn: &ConnControl,
    e: &crate::net::h1::Error,
) -> Response<ProxyBody> {
    use crate::net::h1::Error;
    match e {
        Error::Connect(_) => {
            upstream_refused(shared, e);
            conn.hang_up(Hangup::Reset);
        }
        Error::Lost(io) => match how_it_ended(io) {
            Some(how) => conn.hang_up(how),
            None => {
                return errors::bad_gateway(
                    &shared.name,
                    &shared.upstream.to_string(),
                    &why(shared, e),
                )
            }
        },
    }
    // The connection task drops this as it closes the connection.
    std::future::pending().await
}

/// Closes the listener (once; concurrent failures do not log again). The server's upstream
/// watch opens it again when a connect succeeds.
fn upstream_refused(shared: &Shared, e: &crate::net::h1::Error) {
    let closed = shared
        .open
        .send_if_modified(|open| std::mem::replace(open, false));
    if closed {
        eprintln!(
            "proxy `{}`: cannot connect to the upstream {}: {}; closing the proxy's listener \
             until the upstream accepts connections again",
            shared.name,
            shared.upstream,
            why(shared, e)
        );
    }
}

/// Why a forward failed: a certificate problem explained (which host, which name, why), else
/// the error's chain.
fn why(shared: &Shared, e: &crate::net::h1::Error) -> String {
    let addr = shared.upstream.addr();
    shared
        .tls
        .explain(addr.host(), addr.port(), e)
        .unwrap_or_else(|| crate::rest::error_chain(e))
}

/// How the upstream's connection ended, when that is among the causes of `e`.
fn how_the_upstream_ended(e: &(dyn std::error::Error + 'static)) -> Option<Hangup> {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(how) = err.downcast_ref::<std::io::Error>().and_then(how_it_ended) {
            return Some(how);
        }
        cause = err.source();
    }
    None
}

/// The end the client gets for an upstream connection that failed with `e`: a reset for a
/// reset; a close for a close before a whole answer (before the request was written, before
/// the head, or short of the body's end); `None` for anything else.
fn how_it_ended(e: &std::io::Error) -> Option<Hangup> {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset => Some(Hangup::Reset),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe => Some(Hangup::Fin),
        _ => None,
    }
}

async fn pause(wait: Duration) {
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// The largest request body the proxy reads before forwarding: far above any LLM request (a
/// long context with images is tens of MiB), and a bound on what one client can make the proxy
/// hold (about twice this, with the copy written upstream).
pub(super) const MAX_REQUEST_BODY: usize = 256 << 20;

/// Why a request was not forwarded.
enum Unsent {
    TooLarge,
    Bad(String),
}

/// The same request as written to the upstream: without the headers that belong to one hop,
/// with `host` as its `Host` when given (else the client's, else the upstream's authority), and
/// its body read whole and sent with its length, so the request goes out in one write (as
/// nginx buffers a request body by default).
async fn to_upstream(
    upstream: &crate::net::Upstream,
    host: Option<&HeaderValue>,
    request: Request<Upload>,
) -> Result<Vec<u8>, Unsent> {
    let (mut parts, body) = request.into_parts();
    // The server read it whole, up to the limit; a request it could not read at all (a broken
    // chunked body) it answered itself.
    let body = body.map_err(|_| Unsent::TooLarge)?;
    strip_hop_by_hop(&mut parts.headers);
    // The body is here already: nothing to wait for, and the length is the proxy's to say.
    parts.headers.remove(EXPECT);
    parts.headers.remove(CONTENT_LENGTH);
    if let Some(host) = host {
        parts.headers.insert(HOST, host.clone());
    } else if !parts.headers.contains_key(HOST) {
        let authority = HeaderValue::from_str(&upstream.addr().to_string())
            .map_err(|e| Unsent::Bad(format!("cannot address the upstream: {e}")))?;
        parts.headers.insert(HOST, authority);
    }
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    // The upstream hop is HTTP/1.1 whatever the client spoke.
    let head = crate::net::h1::request::head(parts.method.as_str(), path, &parts.headers);
    let takes_body = !matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    );
    Ok(crate::net::h1::request::finish(
        &head,
        &body,
        takes_body || !body.is_empty(),
    ))
}

fn shape_response(
    proxy: &str,
    plan: &Plan,
    conn: &Arc<ConnControl>,
    dialect: Option<Dialect>,
    response: crate::net::h1::Response,
) -> Response<ProxyBody> {
    let mut upstream = Response::new(response.body);
    *upstream.status_mut() = response.status;
    *upstream.headers_mut() = response.headers;
    let (mut parts, body) = upstream.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Ok(value) = HeaderValue::from_str(proxy) {
        parts.headers.insert(proxy_header(), value);
    }
    // An upstream that fails mid-body fails the client the same way: a reset with a RST, a
    // close short of the end with a FIN (left to itself the server would reset a body with a
    // length, which a client can tell from a close). Anything else (broken framing) the
    // server cuts as a broken body.
    let hang_up = Arc::clone(conn);
    let mut body: ProxyBody = body
        .map_err(move |e| {
            if let Some(how) = how_the_upstream_ended(&e) {
                hang_up.hang_up(how);
            }
            e.into()
        })
        .boxed_unsync();
    let success = parts.status.is_success();
    // Which faults act on this answer: the latencies always, the stream faults only on a
    // success they can cut or break.
    let mut acted: Vec<Arc<ActiveFault>> = plan.acting.clone();
    if success {
        acted.extend(plan.truncating.iter().cloned());
        if is_sse(&parts.headers) {
            acted.extend(plan.erroring_stream.iter().cloned());
        }
    }
    for fault in &acted {
        fault.touch();
    }
    mark(&mut parts.headers, &acted);
    if let Some(fault) = plan
        .stream_error
        .as_ref()
        .filter(|_| success && is_sse(&parts.headers))
    {
        // The stream changes length, so any length the upstream announced would be wrong.
        parts.headers.remove(CONTENT_LENGTH);
        let event = errors::stream_error_event(fault.shape, dialect, fault.after_events);
        body = StreamError::new(body, fault.after_events, event).boxed_unsync();
    }
    if !plan.per_chunk.is_zero() {
        body = PerChunkDelay::new(body, plan.per_chunk).boxed_unsync();
    }
    // Applied last, so the cut comes exactly when the last allowed byte goes to the client. A
    // cut that breaks the connection keeps any announced length, so a client counting bytes
    // sees the body is short. One that ends the body cleanly (`end`, `reterminate`) cannot
    // keep it, as the body no longer has that length: the length is removed and the server sends
    // the body chunked (close-delimited to an HTTP/1.0 client), so the response is well formed.
    if let Some(fault) = plan.truncate.as_ref().filter(|_| success) {
        if fault.how.ends_cleanly() {
            parts.headers.remove(CONTENT_LENGTH);
        }
        let ending = is_sse(&parts.headers).then(|| Ending::new(dialect));
        body = Truncate::new(body, fault.cut_point(), fault.how, Arc::clone(conn), ending)
            .boxed_unsync();
    }
    Response::from_parts(parts, body)
}

/// The response header that names the faults that acted on a response, so a client (or the
/// load generator, through a gateway that forwards upstream headers) can tell a faulted answer
/// from a plain one.
pub const FAULT_HEADER: &str = "x-faultline-fault";

/// Sets [`FAULT_HEADER`] to the ids of `acted`, comma-separated; an id that is not a valid
/// header value is sent in the characters backends accept.
fn mark(headers: &mut HeaderMap, acted: &[Arc<ActiveFault>]) {
    if acted.is_empty() {
        return;
    }
    let ids: Vec<String> = acted
        .iter()
        .map(|f| {
            if f.id.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                f.id.clone()
            } else {
                crate::fault::action::backend_id(&f.id)
            }
        })
        .collect();
    if let Ok(value) = HeaderValue::from_str(&ids.join(", ")) {
        headers.insert(HeaderName::from_static(FAULT_HEADER), value);
    }
}

fn is_sse(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// RFC 9110 section 7.6.1: these describe one connection, not the message.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
    // The server frames each hop itself (chunked or by length) from the body it is given.
    headers.remove(hyper::header::TRANSFER_ENCODING);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> FaultSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn latencies_add_up_and_the_first_replacement_wins() {
        let control = FaultControl::new("p", 9);
        control.inject(
            "l1",
            spec(serde_json::json!({"latency": {"delay": "100ms"}})),
        );
        control.inject(
            "l2",
            spec(serde_json::json!({"latency": {"delay": "50ms"}})),
        );
        control.inject(
            "e",
            spec(serde_json::json!({"http_error": {"status": 503}})),
        );
        control.inject("r", spec(serde_json::json!({"reset": {}})));
        let plan = Plan::decide(&control.snapshot(), 0, Instant::now());
        assert_eq!(plan.before_forward, Duration::from_millis(150));
        assert!(matches!(plan.outcome, Outcome::Error(ref e) if e.status.code() == 503));
    }

    #[test]
    fn jitter_stays_within_bounds_and_repeats() {
        let control = FaultControl::new("p", 9);
        let l = serde_json::json!({"latency": {"delay": "10ms", "jitter": "5ms", "where": "per_chunk"}});
        control.inject("l", spec(l));
        let now = Instant::now();
        for i in 0..100 {
            let a = Plan::decide(&control.snapshot(), i, now);
            let b = Plan::decide(&control.snapshot(), i, now);
            let key = |p: &Plan| {
                (
                    p.before_forward,
                    p.first_byte,
                    p.per_chunk,
                    p.outcome.clone(),
                )
            };
            assert_eq!(key(&a), key(&b));
            assert!(a.per_chunk >= Duration::from_millis(10));
            assert!(a.per_chunk <= Duration::from_millis(15));
        }
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
