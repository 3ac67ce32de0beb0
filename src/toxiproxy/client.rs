//! `ToxiproxyClient`: the calls faultline makes on an existing Toxiproxy server, async on hyper.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::rest;

use super::model::{check_name, NewProxy, NewToxic, Proxy, Toxic};

/// Answers are JSON documents; the proxy list grows with the proxies, but not this far.
const MAX_ANSWER: usize = 8 * 1024 * 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a body that is not Toxiproxy's error JSON goes into an error message.
const MAX_QUOTED: usize = 500;

/// Why a call to a Toxiproxy server failed. Every variant names the server, since a run may
/// drive several.
#[derive(Debug, thiserror::Error)]
pub enum ToxiproxyError {
    /// Refused before anything was sent (e.g. a name that cannot go into a URL path).
    #[error("toxiproxy {addr}: {message}")]
    InvalidRequest { addr: SocketAddr, message: String },
    /// No HTTP answer: connection refused, reset or closed early. `reason` carries the whole
    /// cause chain as text, since hyper's top-level message ("client error (Connect)") does not
    /// say what happened; kept as text rather than as a `source` so that `{:#}` does not print
    /// the chain twice.
    #[error("toxiproxy {addr} unreachable: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("toxiproxy {addr}: no answer within {}ms", .timeout.as_millis())]
    Timeout { addr: SocketAddr, timeout: Duration },
    /// 404: `what` is the proxy, toxic or route asked for; `message` is the server's.
    #[error("toxiproxy {addr} answered 404 Not Found for {what}: {message}")]
    NotFound {
        addr: SocketAddr,
        what: String,
        message: String,
    },
    /// 409: the proxy or toxic already exists.
    #[error("toxiproxy {addr} answered 409 Conflict for {what}: {message}")]
    Conflict {
        addr: SocketAddr,
        what: String,
        message: String,
    },
    /// Any other error status; `message` is the server's `error` text, or the body itself.
    #[error("toxiproxy {addr} answered {status}: {message}")]
    Rejected {
        addr: SocketAddr,
        status: StatusCode,
        message: String,
    },
    /// A success status whose body is not what the API returns.
    #[error("toxiproxy {addr}: unexpected answer: {message}")]
    BadAnswer { addr: SocketAddr, message: String },
}

impl ToxiproxyError {
    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ToxiproxyError::NotFound { .. } => Some(StatusCode::NOT_FOUND),
            ToxiproxyError::Conflict { .. } => Some(StatusCode::CONFLICT),
            ToxiproxyError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client for one Toxiproxy server. Cheap to clone; clones share a connection pool.
#[derive(Clone)]
pub struct ToxiproxyClient {
    addr: SocketAddr,
    timeout: Duration,
    http: rest::JsonClient,
}

// Written by hand: the derived form would print the whole connection pool.
impl std::fmt::Debug for ToxiproxyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToxiproxyClient")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ToxiproxyClient {
    /// A client for the API at `addr` (Toxiproxy's default is 127.0.0.1:8474).
    pub fn new(addr: SocketAddr) -> Self {
        ToxiproxyClient {
            addr,
            timeout: DEFAULT_TIMEOUT,
            // The call's own timeout bounds connecting too; this only keeps a connect attempt
            // from outliving a long call timeout.
            http: rest::json_client(DEFAULT_TIMEOUT),
        }
    }

    /// The limit for each call, connect to last byte [default: 5s].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's version, e.g. `2.9.0`.
    pub async fn version(&self) -> Result<String, ToxiproxyError> {
        let body = self
            .exchange(Method::GET, "/version", None, || {
                "route GET /version".into()
            })
            .await?;
        parse_version(&body).ok_or_else(|| ToxiproxyError::BadAnswer {
            addr: self.addr,
            message: format!("no version in {}", quote(&body)),
        })
    }

    /// Every proxy, by name, with its toxics.
    pub async fn proxies(&self) -> Result<BTreeMap<String, Proxy>, ToxiproxyError> {
        let body = self
            .exchange(Method::GET, "/proxies", None, || {
                "route GET /proxies".into()
            })
            .await?;
        self.decode(&body)
    }

    /// Creates a proxy; `Conflict` if one of that name exists.
    pub async fn create_proxy(&self, p: &NewProxy) -> Result<Proxy, ToxiproxyError> {
        // Checked here although the name goes in the body: a proxy this client could not name
        // in a path could never be deleted through it.
        self.check("proxy", &p.name)?;
        let body = self.encode(p)?;
        let answer = self
            .exchange(Method::POST, "/proxies", Some(body), || {
                format!("proxy `{}`", p.name)
            })
            .await?;
        self.decode(&answer)
    }

    /// Deletes a proxy and its toxics; `NotFound` if there is none of that name.
    pub async fn delete_proxy(&self, name: &str) -> Result<(), ToxiproxyError> {
        self.check("proxy", name)?;
        let path = format!("/proxies/{name}");
        self.exchange(Method::DELETE, &path, None, || format!("proxy `{name}`"))
            .await?;
        Ok(())
    }

    /// Adds a toxic to a proxy; `NotFound` if the proxy does not exist, `Conflict` if a toxic
    /// of that name does.
    pub async fn add_toxic(&self, proxy: &str, t: &NewToxic) -> Result<Toxic, ToxiproxyError> {
        self.check("proxy", proxy)?;
        if let Some(name) = &t.name {
            self.check("toxic", name)?;
        }
        if let Some(toxicity) = t.toxicity {
            // NaN would go out as `null` and be read as the default, 1: the opposite of a
            // mistake being caught.
            if !(0.0..=1.0).contains(&toxicity) {
                return Err(ToxiproxyError::InvalidRequest {
                    addr: self.addr,
                    message: format!("toxicity {toxicity} is not between 0 and 1"),
                });
            }
        }
        let body = self.encode(t)?;
        let path = format!("/proxies/{proxy}/toxics");
        let answer = self
            .exchange(Method::POST, &path, Some(body), || match &t.name {
                Some(name) => format!("toxic `{name}` on proxy `{proxy}`"),
                None => format!("a `{}` toxic on proxy `{proxy}`", t.kind),
            })
            .await?;
        self.decode(&answer)
    }

    /// Removes a toxic; `NotFound` if the proxy or the toxic does not exist (the message says
    /// which).
    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ToxiproxyError> {
        self.check("proxy", proxy)?;
        self.check("toxic", toxic)?;
        let path = format!("/proxies/{proxy}/toxics/{toxic}");
        self.exchange(Method::DELETE, &path, None, || {
            format!("toxic `{toxic}` on proxy `{proxy}`")
        })
        .await?;
        Ok(())
    }

    /// Enables every proxy and removes every toxic.
    pub async fn reset(&self) -> Result<(), ToxiproxyError> {
        self.exchange(Method::POST, "/reset", None, || "route POST /reset".into())
            .await?;
        Ok(())
    }

    fn check(&self, kind: &str, name: &str) -> Result<(), ToxiproxyError> {
        check_name(kind, name).map_err(|message| ToxiproxyError::InvalidRequest {
            addr: self.addr,
            message,
        })
    }

    fn encode<B: Serialize>(&self, body: &B) -> Result<Vec<u8>, ToxiproxyError> {
        serde_json::to_vec(body).map_err(|e| ToxiproxyError::InvalidRequest {
            addr: self.addr,
            message: format!("cannot encode the request: {e}"),
        })
    }

    fn decode<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, ToxiproxyError> {
        serde_json::from_slice(body).map_err(|e| ToxiproxyError::BadAnswer {
            addr: self.addr,
            message: format!("{e} in {}", quote(body)),
        })
    }

    /// One request; the body of a success (any 2xx) or the error it maps to. `what` names the
    /// thing asked for, for 404 and 409, and is only built when needed.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        what: impl FnOnce() -> String,
    ) -> Result<Bytes, ToxiproxyError> {
        let addr = self.addr;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if body.is_some() {
            req = req.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ToxiproxyError::InvalidRequest {
                addr,
                message: format!("cannot build the request: {e}"),
            })?;
        let (status, body) = rest::call(&self.http, req, self.timeout, MAX_ANSWER)
            .await
            .map_err(|e| match e {
                rest::CallError::Transport(reason) => ToxiproxyError::Unreachable { addr, reason },
                rest::CallError::Body(message) => ToxiproxyError::BadAnswer { addr, message },
                rest::CallError::Timeout => ToxiproxyError::Timeout {
                    addr,
                    timeout: self.timeout,
                },
            })?;
        // Any 2xx is a success: the API's own codes (200, 201, 204) differ by route, and a
        // compatible server answering 200 where Toxiproxy says 201 means the same.
        if status.is_success() {
            return Ok(body);
        }
        let message = error_text(&body);
        Err(match status {
            StatusCode::NOT_FOUND => ToxiproxyError::NotFound {
                addr,
                what: what(),
                message,
            },
            StatusCode::CONFLICT => ToxiproxyError::Conflict {
                addr,
                what: what(),
                message,
            },
            _ => ToxiproxyError::Rejected {
                addr,
                status,
                message,
            },
        })
    }
}

/// `{"version": "2.9.0"}` from current servers; older ones (before 2.2) answer the bare text.
fn parse_version(body: &[u8]) -> Option<String> {
    let version = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => v.get("version")?.as_str()?.trim().to_string(),
        Err(_) => std::str::from_utf8(body).ok()?.trim().to_string(),
    };
    // Anything long or spaced is a page from something else, not a version.
    let plausible = !version.is_empty()
        && version.len() <= 64
        && !version.chars().any(|c| c.is_whitespace() || c.is_control());
    plausible.then_some(version)
}

/// Toxiproxy's error bodies are `{"error": "...", "status": N}`: the `error` text, or the body
/// itself (shortened) if it is not that JSON.
fn error_text(body: &[u8]) -> String {
    rest::json_error(body).unwrap_or_else(|| {
        let text = quote(body);
        if text.is_empty() {
            "(no body)".into()
        } else {
            text
        }
    })
}

/// A body for a message: trimmed and shortened; lossy, so any bytes are safe to slice.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_QUOTED)]);
    let mut text = text.trim().to_string();
    if body.len() > MAX_QUOTED {
        text.push('…');
    }
    text
}
