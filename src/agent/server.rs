//! The agent's HTTP API: authentication first, then one route per operation on the table.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::auth::{self, Token};
use super::fault;
use super::lease::{self, LiftReason, Table};
use super::model::{self, AgentInfo, AgentStatus, ApiError, FaultRequest, RenewRequest, Stopped};
use crate::net::{Connection, Http1, Listener, Serve};

/// Requests are small JSON documents; anything bigger is a mistake or an attack.
const MAX_BODY: usize = 64 * 1024;
/// A client trickling its body must not hold a connection (and its task) for ever.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The bounds the operator set on the command line.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_fault_duration: Duration,
    pub max_lease_ttl: Duration,
}

impl Limits {
    fn lease_ttl(&self, ms: Option<u64>) -> Result<Duration, ApiError> {
        // Short enough that a dead controller's faults do not linger; within the operator's cap.
        let default = Duration::from_secs(10).min(self.max_lease_ttl);
        check(
            "lease_ttl_ms",
            ms,
            default,
            self.max_lease_ttl,
            "--max-lease-ttl",
        )
    }

    fn max_duration(&self, ms: Option<u64>) -> Result<Duration, ApiError> {
        let cap = self.max_fault_duration;
        check("max_duration_ms", ms, cap, cap, "--max-fault-duration")
    }
}

fn check(
    field: &str,
    ms: Option<u64>,
    default: Duration,
    cap: Duration,
    flag: &str,
) -> Result<Duration, ApiError> {
    let Some(ms) = ms else { return Ok(default) };
    let d = Duration::from_millis(ms);
    if d.is_zero() {
        return Err(ApiError::bad_request(format!("{field} must be above zero")));
    }
    if d > cap {
        return Err(ApiError::bad_request(format!(
            "{field} {ms} is over this agent's {flag} of {}ms",
            cap.as_millis()
        )));
    }
    Ok(d)
}

/// Everything a request handler needs.
pub struct State {
    pub table: Arc<Table>,
    pub journal: Arc<super::journal::Journal>,
    pub token: Token,
    pub limits: Limits,
    pub listen: SocketAddr,
}

/// A client trickling its request head must not hold a connection for ever either.
const HTTP: Http1 = Http1::new().header_read_timeout(BODY_TIMEOUT);

/// Accepts connections until `stop` fires (or its sender is dropped).
pub async fn accept_loop(listener: Listener, state: Arc<State>, stop: oneshot::Receiver<()>) {
    // Applies and lifts run on tasks of their own, so cutting the connections cancels none.
    // A stop and a dropped sender (the owner gone) both end it.
    let _ = listener
        .serve(Serve::default(), stop, move |conn| {
            serve_connection(conn, Arc::clone(&state))
        })
        .await;
}

async fn serve_connection(conn: Connection, state: Arc<State>) {
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(req, &state).await) }
    });
    conn.serve_http(HTTP, service).await;
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn refuse(err: &ApiError) -> Response<Full<Bytes>> {
    respond(err.status, &err.body())
}

fn ok(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_value(body) {
        Ok(v) => respond(status, &v),
        Err(e) => refuse(&ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the answer: {e}"),
        )),
    }
}

/// One request: nothing but the 401 happens without the token.
pub async fn handle(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if let Err(denied) = auth::authorize(&state.token, req.headers().get(AUTHORIZATION)) {
        let mut resp = respond(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": denied.message() }),
        );
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result = match (segments.as_slice(), &method) {
        (["status"] | ["v1", "faults"], &Method::GET) => Ok(ok(StatusCode::OK, &status(state))),
        (["v1", "faults"], &Method::POST) => match read_body(req).await {
            Ok(body) => create(state, &body).await,
            Err(e) => Err(e),
        },
        (["v1", "faults", id, "renew"], &Method::POST) if !id.is_empty() => {
            let id = id.to_string();
            match read_body(req).await {
                Ok(body) => renew(state, &id, &body),
                Err(e) => Err(e),
            }
        }
        (["v1", "faults", id], &Method::DELETE) if !id.is_empty() => stop(state, id).await,
        (["status"], _) => Err(wrong_method("GET")),
        (["v1", "faults"], _) => Err(wrong_method("GET, POST")),
        (["v1", "faults", id, "renew"], _) if !id.is_empty() => Err(wrong_method("POST")),
        (["v1", "faults", id], _) if !id.is_empty() => Err(wrong_method("DELETE")),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no route {method} {path}"),
        )),
    };
    match result {
        Ok(resp) => resp,
        Err(err) => {
            let mut resp = refuse(&err);
            if let Some(Value::String(allow)) = err.detail.as_ref().and_then(|d| d.get("allow")) {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    resp.headers_mut().insert(ALLOW, v);
                }
            }
            resp
        }
    }
}

fn wrong_method(allow: &str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed here; use {allow}"),
    )
    .with_detail(json!({ "allow": allow }))
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let collect = Limited::new(req.into_body(), MAX_BODY).collect();
    match tokio::time::timeout(BODY_TIMEOUT, collect).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {MAX_BODY} bytes"),
        )),
        Ok(Err(e)) => Err(ApiError::bad_request(format!("cannot read the body: {e}"))),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        )),
    }
}

fn status(state: &State) -> AgentStatus {
    AgentStatus {
        agent: AgentInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            listen: state.listen.to_string(),
        },
        faults: state.table.snapshot(),
    }
}

/// `POST /v1/faults`: everything is checked before anything is touched.
async fn create(state: &State, body: &[u8]) -> Result<Response<Full<Bytes>>, ApiError> {
    let req: FaultRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid fault request: {e}")))?;
    let ttl = state.limits.lease_ttl(req.lease_ttl_ms)?;
    let max = state.limits.max_duration(req.max_duration_ms)?;
    if let Some(id) = &req.id {
        model::check_id(id).map_err(ApiError::bad_request)?;
        if state.table.contains(id) {
            return Err(ApiError::conflict(format!(
                "fault `{id}` is already active"
            )));
        }
    }
    let guard = state
        .table
        .begin()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping"))?;
    let table = Arc::clone(&state.table);
    let journal = Arc::clone(&state.journal);
    // On its own task: if the client hangs up mid-apply, the fault is still recorded (and so
    // lifted by its lease) instead of being applied and forgotten.
    let task = tokio::spawn(async move {
        let _guard = guard;
        let kind = req.fault.kind();
        let applied = fault::apply(req.fault, journal).await?;
        match table.insert(req.id, kind, applied, ttl, max) {
            Ok(started) => {
                eprintln!(
                    "faultline agent: applied `{}` ({kind}), lease {}ms, at most {}ms: {}",
                    started.id,
                    ttl.as_millis(),
                    max.as_millis(),
                    started.details
                );
                Ok(started)
            }
            Err((refusal, applied)) => {
                if let Err(e) = lease::lift_unrecorded(applied).await {
                    eprintln!("faultline agent: undoing a refused {kind} fault FAILED: {e}");
                }
                Err(refusal)
            }
        }
    });
    match task.await {
        Ok(Ok(started)) => Ok(ok(StatusCode::CREATED, &started)),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("applying the fault failed: {e}"),
        )),
    }
}

/// `POST /v1/faults/{id}/renew`, with an optional new lease length.
fn renew(state: &State, id: &str, body: &[u8]) -> Result<Response<Full<Bytes>>, ApiError> {
    let req: RenewRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RenewRequest::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid renewal: {e}")))?
    };
    let ttl = match req.lease_ttl_ms {
        Some(ms) => Some(state.limits.lease_ttl(Some(ms))?),
        None => None,
    };
    let renewed = state.table.renew(id, ttl)?;
    Ok(ok(StatusCode::OK, &renewed))
}

/// `DELETE /v1/faults/{id}`: lifts now and answers with the result.
async fn stop(state: &State, id: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let (entry, guard) = state
        .table
        .remove(id)
        .ok_or_else(|| ApiError::not_found(id))?;
    let stopped = Stopped {
        id: entry.id.clone(),
        kind: entry.kind.to_string(),
        lifted: true,
        details: entry.details(),
    };
    match lease::lift(entry, LiftReason::Stopped, guard).await {
        Ok(Ok(())) => Ok(ok(StatusCode::OK, &stopped)),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("lifting `{id}` failed: {e}"),
        )
        .with_detail(json!({ "id": id, "details": stopped.details }))),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("lifting `{id}` failed: {e}"),
        )),
    }
}
