//! The protocol plumbing every part of faultline shares, written once: the listener and its
//! connections (`listener`), the HTTP client (`client`), the `http://` URLs a file names
//! (`url`) and the shutdown signals (`signals`).

pub mod client;
pub mod listener;
pub mod signals;
pub mod url;

pub use client::{http_client, ClientConfig, HttpClient};
pub use listener::{BindError, Connection, Http1, Listener, Serve};
pub use signals::{shutdown_signal, ShutdownSignals, Signal, SignalError};
pub use url::HttpUrl;
