//! The agent's wire format: what a controller sends and what the agent answers. Shared by the
//! server and `client`, so the two cannot drift apart.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/faults`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    pub fault: FaultSpec,
    /// How long the fault survives without a renewal [default: 10s, or `--max-lease-ttl` if
    /// lower].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl_ms: Option<u64>,
    /// The fault ends after this long however often it is renewed [default:
    /// `--max-fault-duration`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_ms: Option<u64>,
    /// Chosen by the agent when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// One fault, externally tagged: `{"process": {...}}` or `{"gpu_memory_pressure": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultSpec {
    Process(ProcessFault),
    GpuMemoryPressure(crate::gpu::GpuPressureSpec),
}

impl FaultSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            FaultSpec::Process(_) => "process",
            FaultSpec::GpuMemoryPressure(_) => "gpu_memory_pressure",
        }
    }
}

// A process fault is defined once, in `fault/`, and shared with the experiment file.
pub use crate::fault::{HostProcessFault as ProcessFault, ProcessAction, ProcessTarget as Target};

/// `201` to `POST /v1/faults`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultStarted {
    pub id: String,
    pub kind: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub lease_expires_in_ms: u64,
    pub max_duration_left_ms: u64,
    pub details: Value,
}

/// `POST /v1/faults/{id}/renew`; an empty body keeps the fault's current lease length.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl_ms: Option<u64>,
}

/// `200` to a renewal. The lease never outlives the fault's maximum duration, so
/// `lease_expires_in_ms <= max_duration_left_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Renewed {
    pub id: String,
    pub lease_expires_in_ms: u64,
    pub max_duration_left_ms: u64,
}

/// `200` to `DELETE /v1/faults/{id}`: the fault was lifted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    pub id: String,
    pub kind: String,
    pub lifted: bool,
    pub details: Value,
}

/// `GET /status` and `GET /v1/faults`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub agent: AgentInfo,
    pub faults: Vec<FaultStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub version: String,
    pub listen: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultStatus {
    pub id: String,
    pub kind: String,
    pub details: Value,
    pub started_at: String,
    pub age_ms: u64,
    pub lease_expires_in_ms: u64,
    pub max_duration_left_ms: u64,
}

/// Any refusal, answered as `{"error": "...", "detail": ...}` with its status.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub detail: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            detail: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, message)
    }
    pub fn not_found(id: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("no active fault `{id}`"))
    }
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }
    pub fn body(&self) -> Value {
        let mut body = serde_json::json!({ "error": self.message });
        if let (Some(detail), Some(map)) = (&self.detail, body.as_object_mut()) {
            map.insert("detail".into(), detail.clone());
        }
        body
    }
}

/// Ids appear in URL paths, so they are kept to characters that need no escaping.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.is_empty() || id.len() > 64 || !id.chars().all(ok_char) || id == "." || id == ".." {
        return Err(format!(
            "fault id `{id}` must be 1 to 64 characters of A-Z, a-z, 0-9, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_strictly() {
        let r: FaultRequest = serde_json::from_str(
            r#"{"fault":{"process":{"action":"pause","match":"vllm"}},"lease_ttl_ms":500}"#,
        )
        .unwrap();
        let FaultSpec::Process(p) = &r.fault else {
            panic!("a process fault")
        };
        assert_eq!(p.target(), Ok(Target::Match("vllm".into())));
        assert_eq!(r.lease_ttl_ms, Some(500));
        for bad in [
            r#"{"fault":{"process":{"action":"pause","pid":1}},"ttl":5}"#,
            r#"{"fault":{"process":{"action":"pause","pid":1,"signal":9}}}"#,
            r#"{"fault":{"process":{"action":"freeze","pid":1}}}"#,
            r#"{"fault":{"disk":{}}}"#,
            r#"{"fault":{"process":{"action":"pause","pid":-3}}}"#,
        ] {
            assert!(serde_json::from_str::<FaultRequest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_process_fault_names_exactly_one_target() {
        let p = |pid, pattern: Option<&str>| ProcessFault {
            action: ProcessAction::Kill,
            pid,
            pattern: pattern.map(String::from),
        };
        assert!(p(Some(5), Some("x")).target().is_err());
        assert!(p(None, None).target().is_err());
        assert!(p(None, Some("  ")).target().is_err());
        assert_eq!(p(Some(5), None).target(), Ok(Target::Pid(5)));
    }

    #[test]
    fn ids_stay_path_safe() {
        assert!(check_id("drill-1.pause_a").is_ok());
        for bad in ["", "a/b", "..", "a b", "é", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
