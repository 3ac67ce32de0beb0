//! What a run saw of each fault acting: the proof that it was on the path to the system under
//! test at all. A fault that touched nothing proves nothing, however the verdict came out.

use serde::{Deserialize, Serialize};

/// One fault window's evidence, by the kind of thing the fault acts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// An HTTP fault: the requests the proxy acted on, and how many responses reached the
    /// load generator marked with the fault's id (`x-faultline-fault`, directly or forwarded
    /// by a gateway).
    Requests {
        touched: u64,
        /// `None` until the records are read (measure fills it in).
        #[serde(skip_serializing_if = "Option::is_none")]
        seen_by_clients: Option<u64>,
    },
    /// A toxic on a built-in TCP proxy: the connections it acted on (toxicity rolled on).
    Connections { touched: u64 },
    /// A signal: the process state looked up right after it was sent.
    Process {
        /// `stopped` after a pause, `gone` after a kill.
        expected: &'static str,
        /// What `/proc` said: `stopped`, `gone`, or the state letter otherwise.
        seen: String,
    },
    /// A process fault on a live host: the processes its agent signalled.
    Processes { signalled: u64 },
    /// GPU memory pressure: what the hog allocated and holds, over every device.
    GpuMemory { held_bytes: u64 },
}

/// Evidence as read back (from a segment's manifest): the same shape, with the one
/// `&'static str` a reader cannot borrow for ever as text, mapped back to its constant.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Read {
    Requests {
        touched: u64,
        #[serde(default)]
        seen_by_clients: Option<u64>,
    },
    Connections {
        touched: u64,
    },
    Process {
        expected: String,
        seen: String,
    },
    Processes {
        signalled: u64,
    },
    GpuMemory {
        held_bytes: u64,
    },
}

impl<'de> Deserialize<'de> for Evidence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Read::deserialize(d)?
            .try_into()
            .map_err(serde::de::Error::custom)
    }
}

impl TryFrom<Read> for Evidence {
    type Error = String;

    fn try_from(r: Read) -> Result<Self, String> {
        Ok(match r {
            Read::Requests {
                touched,
                seen_by_clients,
            } => Evidence::Requests {
                touched,
                seen_by_clients,
            },
            Read::Connections { touched } => Evidence::Connections { touched },
            Read::Process { expected, seen } => Evidence::Process {
                // The states the signal faults expect (run/faults/signal.rs).
                expected: match expected.as_str() {
                    "stopped" => "stopped",
                    "gone" => "gone",
                    other => return Err(format!("unknown expected process state `{other}`")),
                },
                seen,
            },
            Read::Processes { signalled } => Evidence::Processes { signalled },
            Read::GpuMemory { held_bytes } => Evidence::GpuMemory { held_bytes },
        })
    }
}

impl Evidence {
    /// Whether the fault demonstrably acted.
    pub fn acted(&self) -> bool {
        match self {
            Evidence::Requests { touched, .. } | Evidence::Connections { touched } => *touched > 0,
            Evidence::Process { expected, seen } => expected == seen,
            Evidence::Processes { signalled } => *signalled > 0,
            Evidence::GpuMemory { held_bytes } => *held_bytes > 0,
        }
    }

    /// The evidence in words, for a warning: "touched 0 requests".
    pub fn text(&self) -> String {
        match self {
            Evidence::Requests { touched, .. } => {
                format!(
                    "touched {touched} request{}",
                    if *touched == 1 { "" } else { "s" }
                )
            }
            Evidence::Connections { touched } => {
                format!(
                    "touched {touched} connection{}",
                    if *touched == 1 { "" } else { "s" }
                )
            }
            Evidence::Process { expected, seen } => {
                format!("left the process {seen} (expected {expected})")
            }
            Evidence::Processes { signalled } => format!(
                "signalled {signalled} process{}",
                if *signalled == 1 { "" } else { "es" }
            ),
            Evidence::GpuMemory { held_bytes } => {
                format!("held {}", crate::units::Size(*held_bytes))
            }
        }
    }
}
