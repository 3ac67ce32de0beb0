//! The controller's side of the agent API, async on hyper, plus `keep_alive`, which renews a
//! fault's lease until it is stopped or dropped: the controller's heartbeat.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::net::HostPort;
use crate::rest;

use super::model::{
    check_id, AgentStatus, FaultRequest, FaultStarted, RenewRequest, Renewed, Stopped,
};

/// Answers are small JSON documents; a bigger one is not from an agent.
const MAX_ANSWER: usize = 1024 * 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to an agent failed. Every variant names the agent, since a controller may drive
/// several hosts at once.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent {addr}: cannot send the request: {message}")]
    Request { addr: HostPort, message: String },
    #[error("agent {addr}: {message}")]
    Transport { addr: HostPort, message: String },
    #[error("agent {addr}: no answer within {}ms", .timeout.as_millis())]
    Timeout { addr: HostPort, timeout: Duration },
    #[error("agent {addr} answered {status}: {body}")]
    Status {
        addr: HostPort,
        status: StatusCode,
        body: String,
    },
    #[error("agent {addr}: unexpected answer: {message}")]
    Decode { addr: HostPort, message: String },
}

impl AgentError {
    /// The HTTP status, when the agent answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            AgentError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client for one agent. Cheap to clone; clones share a connection pool.
#[derive(Clone)]
pub struct AgentClient {
    /// As written: a name is resolved at each new connection (hyper's connector does), so an
    /// agent behind a Service whose pod moved is still reached.
    addr: HostPort,
    token: String,
    timeout: Duration,
    http: rest::JsonClient,
}

// Written by hand so the token never reaches a log line.
impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AgentClient {
    pub fn new(addr: impl Into<HostPort>, token: String) -> Self {
        AgentClient {
            addr: addr.into(),
            token,
            timeout: DEFAULT_TIMEOUT,
            http: rest::json_client(Duration::from_secs(5)),
        }
    }

    /// The limit for each call, connect to last byte [default: 10s].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn addr(&self) -> &HostPort {
        &self.addr
    }

    /// Applies a fault; the lease starts now.
    pub async fn start(&self, req: &FaultRequest) -> Result<FaultStarted, AgentError> {
        self.call(Method::POST, "/v1/faults", Some(req), StatusCode::CREATED)
            .await
    }

    /// Renews a lease, for `ttl` from now if given, else for the fault's current lease length.
    pub async fn renew(&self, id: &str, ttl: Option<Duration>) -> Result<Renewed, AgentError> {
        let path = format!("/v1/faults/{}/renew", self.segment(id)?);
        let body = RenewRequest {
            lease_ttl_ms: ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        };
        self.call(Method::POST, &path, Some(&body), StatusCode::OK)
            .await
    }

    /// Lifts a fault now.
    pub async fn stop(&self, id: &str) -> Result<Stopped, AgentError> {
        let path = format!("/v1/faults/{}", self.segment(id)?);
        self.call(Method::DELETE, &path, None::<&()>, StatusCode::OK)
            .await
    }

    pub async fn status(&self) -> Result<AgentStatus, AgentError> {
        self.call(Method::GET, "/status", None::<&()>, StatusCode::OK)
            .await
    }

    /// An id goes into the path as is, so one that would need escaping is refused here.
    fn segment<'a>(&self, id: &'a str) -> Result<&'a str, AgentError> {
        check_id(id).map_err(|message| AgentError::Request {
            addr: self.addr.clone(),
            message,
        })?;
        Ok(id)
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        expect: StatusCode,
    ) -> Result<T, AgentError> {
        let addr = &self.addr;
        let request_error = |message: String| AgentError::Request {
            addr: addr.clone(),
            message,
        };
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| request_error(e.to_string()))?,
            None => Vec::new(),
        };
        let auth = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|_| request_error("the token cannot be sent in a header".into()))?;
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| request_error(e.to_string()))?;
        let (status, body) = rest::call(&self.http, req, self.timeout, MAX_ANSWER)
            .await
            .map_err(|e| match e {
                rest::CallError::Transport(message) | rest::CallError::Body(message) => {
                    AgentError::Transport {
                        addr: addr.clone(),
                        message,
                    }
                }
                rest::CallError::Timeout => AgentError::Timeout {
                    addr: addr.clone(),
                    timeout: self.timeout,
                },
            })?;
        if status != expect {
            return Err(AgentError::Status {
                addr: addr.clone(),
                status,
                body: error_text(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| AgentError::Decode {
            addr: addr.clone(),
            message: e.to_string(),
        })
    }
}

/// The agent's `error` message, or the raw body (shortened) if it is not the agent's JSON.
fn error_text(body: &[u8]) -> String {
    rest::json_error(body)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned())
}

/// Renews a lease every `ttl / 3` until stopped or dropped. Dropping it is how a controller
/// lets a fault lapse; the agent lifts the fault once the last renewal's lease runs out.
pub struct KeepAlive {
    task: JoinHandle<AgentError>,
}

/// Starts renewing `id` (on the current tokio runtime).
pub fn keep_alive(client: AgentClient, id: impl Into<String>, ttl: Duration) -> KeepAlive {
    let id = id.into();
    // Three tries per lease: one slow or lost renewal does not cost the fault.
    // Bounded both ways: a zero period would spin, and a huge one would overflow the clock.
    let period = (ttl / 3).clamp(Duration::from_millis(10), Duration::from_secs(24 * 3600));
    let client = client.with_timeout(period.max(Duration::from_millis(50)));
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match client.renew(&id, Some(ttl)).await {
                Ok(_) => {}
                // The fault is gone (lifted, expired, agent restarted): nothing left to renew.
                Err(e) if matches!(e.status(), Some(s) if s.is_client_error()) => return e,
                // A network blip: the next tick tries again while the lease still runs.
                Err(_) => {}
            }
        }
    });
    KeepAlive { task }
}

impl KeepAlive {
    /// True once renewing has ended by itself because the fault is gone.
    pub fn is_lost(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops renewing. Returns why renewing had already ended, if it had.
    pub async fn stop(mut self) -> Option<AgentError> {
        if self.task.is_finished() {
            return (&mut self.task).await.ok();
        }
        self.task.abort();
        None
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}
