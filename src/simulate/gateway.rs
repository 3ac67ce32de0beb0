//! The reference gateway: a stand-in for a user's own gateway (LiteLLM, Envoy and the like) so
//! a drill can run end to end without one. It forwards every request to an upstream picked by
//! the strategy, retries failed attempts on other upstreams, ejects failing upstreams for a
//! cooldown, optionally sheds load when every upstream is at its in-flight limit, and streams
//! response bodies through frame by frame.
//!
//! Like real gateways, it can only retry before a response has started: a 200 whose stream is
//! cut halfway reaches the client cut. That gap is what faultline's gray-failure drills expose.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};

use super::body::{self, Body, BoxError};
use super::health::{Next, Pool};
use super::inflight::{Guarded, Ticket};
use super::server::Handler;
use crate::exit::Failure;
use crate::experiment::schema::GatewaySpec;
use crate::net::h1::server::Upload;
use crate::net::HttpClient;
use crate::protocol::ending::{Dialect, Ending};
use crate::units::human_duration;

/// Request bodies are buffered so that they can be sent again; prompts are small.
pub(crate) const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Idle pooled connections to upstreams are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(30);

struct Gateway {
    pool: Pool,
    client: HttpClient<Full<Bytes>>,
    retries: u32,
    retry_on: Vec<u16>,
    timeout: Duration,
    reterminate: bool,
    shed_status: StatusCode,
}

const SHED_MESSAGE: &str = "gateway is shedding load: every upstream is at its in-flight limit";

/// Checks the spec and builds the request handler of gateway `name`.
pub(crate) fn handler(name: &str, spec: &GatewaySpec) -> Result<Handler, Failure> {
    if spec.upstreams.is_empty() {
        return Err(Failure::Usage(format!(
            "gateway `{name}` needs at least one upstream"
        )));
    }
    let shed_status = spec.shed_status.status();
    if spec.max_in_flight_per_upstream == Some(0) {
        return Err(Failure::Usage(format!(
            "gateway `{name}`: max_in_flight_per_upstream must be at least 1 (0 would shed \
             every request)"
        )));
    }
    let client = crate::net::http_client(
        crate::net::ClientConfig::new(spec.timeout.0).pool_idle_timeout(POOL_IDLE),
    );
    let gateway = Arc::new(Gateway {
        pool: Pool::new(
            &spec.upstreams,
            spec.strategy,
            spec.eject_after,
            spec.cooldown.0,
            spec.max_in_flight_per_upstream,
        ),
        client,
        retries: spec.retries,
        retry_on: spec.retry_on.clone(),
        timeout: spec.timeout.0,
        reterminate: spec.reterminate_cut_streams,
        shed_status,
    });
    Ok(Arc::new(move |req| {
        let gateway = gateway.clone();
        Box::pin(async move { gateway.handle(req).await })
    }))
}

impl Gateway {
    async fn handle(&self, req: Request<Upload>) -> Response<Body> {
        if req.method() == Method::GET && req.uri().path() == "/health" {
            return body::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }));
        }
        let (parts, upload) = req.into_parts();
        let request_body = match upload {
            Ok(bytes) => bytes,
            Err(too_large) => {
                return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, &too_large.to_string())
            }
        };

        let mut plan = self.pool.plan();
        let mut failures = Vec::new();
        let mut last_response = None;
        for _ in 0..=self.retries {
            // The ticket of an attempt lives as long as its response: dropped with a failed
            // attempt, moved into the relayed body otherwise.
            let (index, addr, ticket) = match self.pool.next(&mut plan) {
                Next::Try(attempt) => (attempt.index, attempt.addr, attempt.ticket),
                // Even on a retry: the upstreams left are full, and the point of the limit is
                // to never pile more work onto them. The client is told to come back.
                Next::Shed => return shed(self.shed_status),
                Next::Exhausted => break,
            };
            let upstream_req = match upstream_request(&parts, addr, request_body.clone()) {
                Ok(r) => r,
                Err(message) => return gateway_error(StatusCode::BAD_REQUEST, &message),
            };
            // A crashed upstream shows up here as a refused connection or a connection cut
            // before the response: both are failed attempts, so it is retried elsewhere and
            // ejected like any failing upstream.
            match tokio::time::timeout(self.timeout, self.client.request(upstream_req)).await {
                Ok(Ok(resp)) if self.retry_on.contains(&resp.status().as_u16()) => {
                    self.pool.record(index, false);
                    failures.push(format!("{addr} answered {}", resp.status()));
                    last_response = Some((resp, ticket));
                }
                Ok(Ok(resp)) => {
                    self.pool.record(index, true);
                    let ending = self
                        .reterminate
                        .then(|| Ending::new(Dialect::from_path(parts.uri.path())));
                    return relay(resp, ending, ticket);
                }
                Ok(Err(e)) => {
                    self.pool.record(index, false);
                    failures.push(format!("{addr}: {}", crate::rest::error_chain(&e)));
                    last_response = None;
                }
                Err(_) => {
                    self.pool.record(index, false);
                    failures.push(format!(
                        "{addr}: no response headers within {}",
                        human_duration(self.timeout)
                    ));
                    last_response = None;
                }
            }
        }
        match last_response {
            Some((resp, ticket)) => relay(resp, None, ticket),
            None if failures.is_empty() => {
                gateway_error(StatusCode::BAD_GATEWAY, "no upstream available")
            }
            None => gateway_error(
                StatusCode::BAD_GATEWAY,
                &format!("every attempt failed: {}", failures.join("; ")),
            ),
        }
    }
}

/// The client's request, re-addressed to `addr`.
fn upstream_request(
    parts: &hyper::http::request::Parts,
    addr: SocketAddr,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: Uri = format!("http://{addr}{path}")
        .parse()
        .map_err(|e| format!("cannot forward to {addr}{path}: {e}"))?;
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    *headers = parts.headers.clone();
    strip_hop_by_hop(headers);
    // The client writes Host for the upstream and the length of the buffered body.
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    Ok(req)
}

/// The upstream's response as the client gets it: same status and headers (`x-served-by`
/// included), body passed through frame by frame. An upstream error mid-body becomes a body
/// error, so the server cuts the client's connection instead of pretending the stream ended well.
/// The body holds the attempt's in-flight `ticket` until it ends or the client goes away.
/// With `reterminate`, a cut stream is ended with a synthetic terminator instead.
fn relay(resp: Response<Incoming>, reterminate: Option<Ending>, ticket: Ticket) -> Response<Body> {
    let (mut parts, incoming) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let body = match reterminate.filter(|_| is_sse && parts.status.is_success()) {
        Some(ending) => reterminated(incoming, ending),
        None => incoming.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
    };
    Response::from_parts(parts, Guarded::new(body, ticket).boxed_unsync())
}

/// Passes an SSE body through; if it breaks or ends without its terminator, ends it cleanly
/// with the synthetic stop and terminator of its dialect (see [`crate::protocol::ending`])
/// instead of cutting the client's connection: the client's stream looks finished, which is
/// exactly the gray failure faultline must still catch.
fn reterminated(incoming: Incoming, ending: Ending) -> Body {
    struct State {
        body: Incoming,
        /// Reads the events passed on, to see the terminator however it is framed, and to know
        /// where the stream stands when it breaks.
        ending: Ending,
        done: bool,
    }
    let state = State {
        body: incoming,
        ending,
        done: false,
    };
    let frames = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        match st.body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    st.ending.feed(data);
                }
                Some((Ok::<_, BoxError>(frame), st))
            }
            Some(Err(_)) | None => {
                st.done = true;
                let ending = Bytes::from(st.ending.ending());
                Some((Ok(hyper::body::Frame::data(ending)), st))
            }
        }
    });
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

/// Removes the headers that describe one connection rather than the message (RFC 9110 7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// The answer when every upstream is at its in-flight limit: at once, in the OpenAI shape of a
/// rate limit, with a hint to retry, so clients back off instead of timing out.
fn shed(status: StatusCode) -> Response<Body> {
    let mut resp = body::json(
        status,
        &serde_json::json!({ "error": { "message": SHED_MESSAGE, "type": "rate_limit_error" } }),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

fn gateway_error(status: StatusCode, message: &str) -> Response<Body> {
    body::json(
        status,
        &serde_json::json!({ "error": { "message": message, "type": "gateway_error" } }),
    )
}
