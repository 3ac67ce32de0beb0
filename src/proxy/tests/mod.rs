//! End-to-end tests of the proxy: a real upstream, a real client, 127.0.0.1 port 0.

mod clean_cuts;
mod control;
mod faults;
mod passthrough;
mod streams;
mod support;
mod transparency;
