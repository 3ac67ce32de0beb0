//! Simulated inference hosts and the reference gateway.

pub mod content;
