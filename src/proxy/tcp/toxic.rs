//! Toxics as Toxiproxy names and shapes them: a type, a stream, a toxicity and typed
//! attributes with Toxiproxy's units (milliseconds, KB/s, bytes, microseconds for `slicer`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

/// Which bytes a toxic acts on: `upstream` = client -> server, `downstream` = server -> client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Upstream,
    Downstream,
}

impl Stream {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "upstream" => Some(Stream::Upstream),
            "downstream" => Some(Stream::Downstream),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// What a toxic does, with Toxiproxy's attribute names and units.
#[derive(Clone, Debug, PartialEq)]
pub enum ToxicKind {
    /// Delays every chunk by `latency` ms, plus or minus up to `jitter` ms.
    Latency { latency: u64, jitter: u64 },
    /// Caps the rate at `rate` KB/s (1 KB = 1000 bytes, as Toxiproxy counts).
    Bandwidth { rate: u64 },
    /// Delays the close (FIN) by `delay` ms once the sender has closed.
    SlowClose { delay: u64 },
    /// Swallows all data; closes the connection after `timeout` ms without data (0 = never).
    Timeout { timeout: u64 },
    /// Resets (RST) the connection `timeout` ms after the next data arrives.
    ResetPeer { timeout: u64 },
    /// Writes data in slices of `average_size` ± `size_variation` bytes, `delay` µs apart.
    Slicer {
        average_size: u64,
        size_variation: u64,
        delay: u64,
    },
    /// Closes the connection once `bytes` bytes have passed.
    LimitData { bytes: u64 },
}

/// Attribute names of each type, in the order Toxiproxy prints them.
fn attribute_names(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "latency" => &["latency", "jitter"],
        "bandwidth" => &["rate"],
        "slow_close" => &["delay"],
        "timeout" | "reset_peer" => &["timeout"],
        "slicer" => &["average_size", "size_variation", "delay"],
        "limit_data" => &["bytes"],
        _ => return None,
    })
}

impl ToxicKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicKind::Latency { .. } => "latency",
            ToxicKind::Bandwidth { .. } => "bandwidth",
            ToxicKind::SlowClose { .. } => "slow_close",
            ToxicKind::Timeout { .. } => "timeout",
            ToxicKind::ResetPeer { .. } => "reset_peer",
            ToxicKind::Slicer { .. } => "slicer",
            ToxicKind::LimitData { .. } => "limit_data",
        }
    }

    fn values(&self) -> Vec<u64> {
        match *self {
            ToxicKind::Latency { latency, jitter } => vec![latency, jitter],
            ToxicKind::Bandwidth { rate } => vec![rate],
            ToxicKind::SlowClose { delay } => vec![delay],
            ToxicKind::Timeout { timeout } | ToxicKind::ResetPeer { timeout } => vec![timeout],
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay,
            } => vec![average_size, size_variation, delay],
            ToxicKind::LimitData { bytes } => vec![bytes],
        }
    }

    /// The attributes as Toxiproxy prints them.
    pub fn attributes(&self) -> Map<String, Value> {
        let names = attribute_names(self.type_name()).unwrap_or(&[]);
        names
            .iter()
            .zip(self.values())
            .map(|(n, v)| (n.to_string(), Value::from(v)))
            .collect()
    }

    /// Builds a toxic of type `kind` from `attrs`; a missing attribute is 0, as in Toxiproxy,
    /// and unknown attributes are ignored. `base` supplies the values an update leaves out.
    pub fn from_attributes(
        kind: &str,
        attrs: &Map<String, Value>,
        base: Option<&ToxicKind>,
    ) -> Result<Self, String> {
        let names = attribute_names(kind).ok_or_else(|| "invalid toxic type".to_string())?;
        let defaults = base.map(ToxicKind::values).unwrap_or_default();
        let mut v = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let value = match attrs.get(*name) {
                None | Some(Value::Null) => defaults.get(i).copied().unwrap_or(0),
                Some(x) => x.as_u64().ok_or_else(|| {
                    format!("attribute `{name}` must be a non-negative integer, got {x}")
                })?,
            };
            v.push(value);
        }
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        Ok(match kind {
            "latency" => ToxicKind::Latency {
                latency: at(0),
                jitter: at(1),
            },
            "bandwidth" => ToxicKind::Bandwidth { rate: at(0) },
            "slow_close" => ToxicKind::SlowClose { delay: at(0) },
            "timeout" => ToxicKind::Timeout { timeout: at(0) },
            "reset_peer" => ToxicKind::ResetPeer { timeout: at(0) },
            "slicer" => ToxicKind::Slicer {
                average_size: at(0),
                size_variation: at(1),
                delay: at(2),
            },
            _ => ToxicKind::LimitData { bytes: at(0) },
        })
    }
}

/// Every add or update gets a new revision, so open connections re-decide toxicity for it
/// (Toxiproxy rebuilds a link's toxic on update and rolls again).
static NEXT_REVISION: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_revision() -> u64 {
    NEXT_REVISION.fetch_add(1, Ordering::Relaxed)
}

/// How many connections a toxic acted on: shared by every copy of one toxic (the proxy's list
/// and each connection's), compared as equal whatever the count, since it is evidence, not
/// configuration.
#[derive(Clone, Debug, Default)]
pub struct Touched(std::sync::Arc<AtomicU64>);

impl Touched {
    pub(crate) fn touch(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl PartialEq for Touched {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// One toxic on a proxy.
#[derive(Clone, Debug, PartialEq)]
pub struct Toxic {
    pub name: String,
    pub kind: ToxicKind,
    pub stream: Stream,
    /// Chance (0..=1) that the toxic acts on a given connection.
    pub toxicity: f32,
    pub(crate) revision: u64,
    /// Connections the toxic was rolled on for (its evidence of acting).
    pub touched: Touched,
}

impl Toxic {
    pub fn new(name: String, kind: ToxicKind, stream: Stream, toxicity: f32) -> Self {
        Toxic {
            name,
            kind,
            stream,
            toxicity,
            revision: next_revision(),
            touched: Touched::default(),
        }
    }

    /// Toxiproxy's JSON shape for a toxic.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "attributes": self.kind.attributes(),
            "name": self.name,
            "type": self.kind.type_name(),
            "stream": self.stream.as_str(),
            "toxicity": self.toxicity,
        })
    }
}
