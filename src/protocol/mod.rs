//! Wire conventions more than one stage speaks: `sse` (server-sent events, read by the proxy and
//! the load generator, written by the simulator and the gateway) and `verify` (the verifiable
//! completion text the simulator writes and the load generator checks). Living here, above the
//! stages, neither side can drift from the other.

pub mod sse;
pub mod verify;
