//! faultline: chaos drills for LLM inference stacks.
//!
//! The pipeline, one module per stage: `experiment` (file -> typed experiment) -> `run` (the
//! orchestrator: services, proxies, load, timeline, rollback) -> `load` (request records) ->
//! `measure` (records -> metrics -> verdict) -> `report` (table, JSON, CSV, JUnit, HTML,
//! Markdown); `metrics` watches the run and serves what it has done so far to Prometheus.
//! Around it: `simulate` (hosts and the reference gateway), `proxy` (the HTTP fault proxy),
//! `services` (external processes), `gpu` (GPU memory pressure), `agent` (the live-host agent),
//! `toxiproxy` (a client for an existing Toxiproxy server's API). `units` (durations, rates,
//! shares, sizes) is the vocabulary every stage shares, and `protocol` (the SSE codec, the
//! verifiable completion text) the wire conventions several stages speak.

pub mod agent;
pub mod cli;
pub mod commands;
pub mod exit;
pub mod experiment;
pub mod fault;
pub mod gpu;
pub mod kube;
pub mod load;
pub mod measure;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod proxy;
pub mod report;
pub mod rest;
pub mod run;
pub mod segment;
pub mod services;
pub mod simulate;
pub mod toxiproxy;
pub mod units;

use clap::Parser;

pub use exit::ExitCode;

/// Parses the command line and runs the chosen command.
pub fn run_cli() -> anyhow::Result<ExitCode> {
    let opts = match cli::Opts::try_parse() {
        Ok(opts) => opts,
        Err(e) => {
            let code = if e.use_stderr() {
                ExitCode::BadInput
            } else {
                ExitCode::Success
            };
            let _ = e.print();
            return Ok(code);
        }
    };
    commands::dispatch(opts)
}
