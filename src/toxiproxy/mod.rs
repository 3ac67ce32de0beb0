//! A client for an existing Toxiproxy server's REST API (by default on port 8474): list, create
//! and delete proxies, add and remove toxics, and reset everything.
//!
//! - `model`: the JSON the API speaks.
//! - `client`: `ToxiproxyClient`, async on hyper, and `ToxiproxyError`.

pub mod client;
pub mod model;

#[cfg(test)]
mod tests;

pub use client::{ToxiproxyClient, ToxiproxyError};
pub use model::{NewProxy, NewToxic, Proxy, Toxic};
