//! End-to-end tests over real sockets on 127.0.0.1: a small hand-written client, stub upstreams,
//! and the host and gateway tests built on them.

mod client;
mod gateway;
mod host;
mod memory;
mod options;
mod shed;
