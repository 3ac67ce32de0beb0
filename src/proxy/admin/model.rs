//! The admin API's data: the proxy collection, Toxiproxy's JSON shapes and error body, and
//! strict readers for request fields (a wrong type is a 400 that names the field).

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use crate::proxy::tcp::{ProxyInfo, TcpError};

/// An error answer: Toxiproxy's body is `{"error": "...", "status": N}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn proxy_not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "proxy not found")
    }

    pub fn body(&self) -> Value {
        json!({ "error": self.message, "status": self.status.as_u16() })
    }
}

impl From<TcpError> for ApiError {
    fn from(e: TcpError) -> Self {
        let status = match e {
            TcpError::ToxicNotFound => StatusCode::NOT_FOUND,
            TcpError::ToxicExists => StatusCode::CONFLICT,
            TcpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            // Toxiproxy answers a listen failure with a 500 carrying the OS's reason.
            TcpError::Listen(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// Toxiproxy's JSON shape for a proxy, toxics included.
pub fn proxy_json(p: &ProxyInfo) -> Value {
    json!({
        "name": p.name,
        "listen": p.listen,
        "upstream": p.upstream,
        "enabled": p.enabled,
        "mode": "tcp",
        "toxics": p.toxics.iter().map(|t| t.to_json()).collect::<Vec<_>>(),
    })
}

/// Parses a request body as a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::bad(format!(
            "bad request body: expected a JSON object, got {}",
            kind(&other)
        ))),
        Err(e) => Err(ApiError::bad(format!("bad request body: {e}"))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(field: &str, want: &str, got: &Value) -> ApiError {
    ApiError::bad(format!(
        "bad request body: `{field}` must be {want}, got {}",
        kind(got)
    ))
}

pub fn opt_str(m: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(wrong(field, "a string", v)),
    }
}

pub fn opt_bool(m: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(wrong(field, "a boolean", v)),
    }
}

pub fn opt_f32(m: &Map<String, Value>, field: &str) -> Result<Option<f32>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(|f| Some(f as f32))
            .ok_or_else(|| ApiError::bad(format!("bad request body: `{field}` is not a number"))),
        Some(v) => Err(wrong(field, "a number", v)),
    }
}

pub fn opt_object<'a>(
    m: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => Err(wrong(field, "an object", v)),
    }
}

/// A required, non-empty string field: Toxiproxy's "missing required field: NAME".
pub fn required_str(m: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match opt_str(m, field)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ApiError::bad(format!("missing required field: {field}"))),
    }
}
