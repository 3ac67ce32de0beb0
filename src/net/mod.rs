//! The protocol plumbing every part of faultline shares, written once: the listener
//! (`listener`), its connections (`connection`), one runtime per core for the busiest server
//! (`cores`), the HTTP client (`client`), the `http://` URLs a file names
//! (`url`), proxy endpoints (`endpoint`), the fd table grown up front (`fd_table`), client TLS
//! (`tls`) and the shutdown signals (`signals`).

pub mod client;
mod connection;
pub mod cores;
pub mod endpoint;
pub mod fd_table;
pub mod h1;
pub mod listener;
pub mod signals;
pub mod tls;
pub mod url;

pub use client::{http_client, ClientConfig, HttpClient};
pub use endpoint::{HostPort, Listen, Scheme, Upstream};
pub use listener::{BindError, Connection, Http1, Listener, Serve};
pub use signals::{shutdown_signal, ShutdownSignals, Signal, SignalError};
pub use tls::{Tls, TlsSpec};
pub use url::HttpUrl;
