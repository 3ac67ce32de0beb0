//! `faultline agent`: a daemon on a live inference host that applies faults there for a
//! controller, over an authenticated HTTP API.
//!
//! Every fault is held on a lease (a dead-man's switch): the controller must renew it, and if it
//! stops (it crashed, the network between them broke) the agent lifts the fault by itself.
//! Every fault also has a maximum duration that no renewal extends. On SIGTERM or SIGINT the
//! agent lifts everything before it exits.
//!
//! - `model`: the JSON the API speaks; `client`: the controller's side of it.
//! - `server`: routes; `auth`: the bearer token; `lease`: the table and its expiry task.
//! - `fault`: the `Applied` trait every fault kind implements; `process` (+ `procfs`) for
//!   process faults.
//! - `journal`: what is in force, on disk, so an agent killed with SIGKILL leaves a record;
//!   `recover`: how the next agent undoes it.

pub mod auth;
pub mod client;
pub mod fault;
mod gpu;
pub mod journal;
pub mod lease;
pub mod model;
pub mod process;
pub mod procfs;
mod recover;
pub mod server;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::exit::{ExitCode, Failure};

pub use auth::Token;
pub use client::{keep_alive, AgentClient, AgentError, KeepAlive};
pub use model::{FaultRequest, FaultSpec, ProcessAction, ProcessFault};
pub use server::Limits;

/// Settings of one agent, validated.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    pub token: Token,
    pub limits: Limits,
    /// Holds the journal (`journal::default_dir` when the operator names none).
    pub state_dir: PathBuf,
}

/// A running agent.
pub struct Agent {
    addr: SocketAddr,
    table: Arc<lease::Table>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    expiry: JoinHandle<()>,
}

impl Agent {
    /// Checks the exposure rule, undoes what a predecessor left in force, binds and starts
    /// serving.
    pub async fn start(config: AgentConfig) -> Result<Agent, Failure> {
        auth::check_exposure(config.listen, &config.token).map_err(Failure::Usage)?;
        let dir = config.state_dir.clone();
        // Blocking: file I/O with fsync, and waiting for leftover hogs to exit.
        let journal = tokio::task::spawn_blocking(move || take_over(&dir))
            .await
            .map_err(|e| {
                Failure::Environment(format!("reading the state journal failed: {e}"))
            })??;
        let listener = crate::net::Listener::bind(config.listen, "the agent")?;
        let addr = listener.local_addr();
        let table = lease::Table::new();
        let state = Arc::new(server::State {
            table: Arc::clone(&table),
            journal,
            token: config.token,
            limits: config.limits,
            listen: addr,
        });
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(server::accept_loop(listener, state, stopped));
        let expiry = lease::spawn_expiry(Arc::clone(&table));
        Ok(Agent {
            addr,
            table,
            stop: Some(stop),
            server,
            expiry,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving, lifts every fault and waits for work in flight. Returns how many lifts
    /// failed.
    pub async fn shutdown(mut self, why: &str) -> usize {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        let failed = self.table.shutdown(why).await;
        // The table is closed, so the expiry task ends at its next tick; waiting for it keeps
        // a half-finished tick from racing the exit.
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.expiry).await;
        failed
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Dropped without `shutdown` (a test, a panic): stop serving at least. The faults are
        // not lifted here, as lifting needs the runtime; the process that owns the runtime
        // is expected to call `shutdown`.
        self.server.abort();
        self.expiry.abort();
    }
}

/// Opens the journal in `dir`, undoes what it records (one log line each) and clears it.
fn take_over(dir: &std::path::Path) -> Result<Arc<journal::Journal>, Failure> {
    let env = |e: journal::JournalError| Failure::Environment(e.to_string());
    let (journal, leftover) = journal::Journal::open(dir).map_err(env)?;
    let path = journal.path().display().to_string();
    if leftover.stale > 0 {
        eprintln!(
            "faultline agent: {path} lists {} process(es) from before this host last booted;              they are gone, nothing to undo",
            leftover.stale
        );
    }
    if !leftover.records.is_empty() {
        eprintln!(
            "faultline agent: a previous agent left {} process(es) in {path}; undoing:",
            leftover.records.len()
        );
        for line in recover::undo(&leftover.records) {
            eprintln!("faultline agent: {line}");
        }
    }
    // Cleared even where an undo failed: the line above says so, and retrying at every start
    // would not make it succeed.
    journal.clear().map_err(env)?;
    eprintln!("faultline agent: state journal {path}");
    Ok(Arc::new(journal))
}

/// `faultline agent`: serves until SIGTERM or SIGINT, then lifts every fault and exits 0 (4 if
/// a lift failed, as something may still be paused).
pub async fn run(config: AgentConfig) -> Result<ExitCode, Failure> {
    // Installed before anything is applied, so a signal can never kill the agent with a fault
    // still in force.
    let mut signals = crate::net::ShutdownSignals::install()?;
    let agent = Agent::start(config.clone()).await?;
    eprintln!(
        "faultline agent listening on http://{} (faults at most {}ms, leases at most {}ms; \
         SIGTERM or Ctrl-C lifts every fault and stops)",
        agent.addr(),
        config.limits.max_fault_duration.as_millis(),
        config.limits.max_lease_ttl.as_millis()
    );
    let why = signals.recv().await;
    let failed = agent.shutdown(&why.to_string()).await;
    if failed > 0 {
        return Err(Failure::Environment(format!(
            "stopped ({why}), but {failed} fault(s) could not be lifted; see the lines above"
        )));
    }
    eprintln!("faultline agent: stopped ({why}); every fault was lifted");
    Ok(ExitCode::Success)
}
