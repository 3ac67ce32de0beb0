//! The JSON documents of Toxiproxy's API, as its server writes and reads them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A proxy to create: `POST /proxies`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProxy {
    pub name: String,
    /// Where the proxy listens, e.g. `127.0.0.1:26379` (port 0 lets the server choose).
    pub listen: String,
    /// Where it forwards to, e.g. `127.0.0.1:6379`.
    pub upstream: String,
    pub enabled: bool,
}

/// A proxy as the server reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proxy {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    /// Left out by some answers (and by older servers); no toxics then.
    #[serde(default)]
    pub toxics: Vec<Toxic>,
}

/// A toxic to add: `POST /proxies/{proxy}/toxics`. Fields left `None` are not sent, so the
/// server's defaults apply: name `{type}_{stream}`, stream `downstream`, toxicity 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewToxic {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `latency`, `bandwidth`, `slow_close`, `timeout`, `reset_peer`, `slicer`, `limit_data`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `upstream` or `downstream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The share of connections affected, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toxicity: Option<f32>,
    /// The type's own settings, e.g. `{"latency": 100, "jitter": 10}`.
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

/// A toxic as the server reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Toxic {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub stream: String,
    pub toxicity: f32,
    // Defaulted because a toxic type without settings may come back with none.
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

/// Names go into URL paths as they are, so they are kept to characters that need no escaping;
/// `.` and `..` alone would be read as path steps.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty()
        || name.len() > 200
        || !name.chars().all(ok_char)
        || name == "."
        || name == ".."
    {
        return Err(format!(
            "{kind} name `{name}` must be 1 to 200 characters of A-Z, a-z, 0-9, `-`, `_` and `.` \
             (and not `.` or `..`)"
        ));
    }
    Ok(())
}
