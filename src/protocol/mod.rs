//! Wire conventions more than one stage speaks: `sse` (server-sent events, read by the proxy and
//! the load generator, written by the simulator and the gateway), `verify` (the verifiable
//! completion text the simulator writes and the load generator checks) and `ending` (the
//! synthetic stop and terminator a repairing gateway appends to a cut stream, written by the
//! reference gateway and the fault proxy). Living here, above the stages, neither side can
//! drift from the other.

pub mod ending;
pub mod sse;
pub mod verify;
