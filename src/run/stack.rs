//! Everything a run started, in start order, so teardown can stop it in reverse; faults on it
//! go through the fault engine's ledger.

use std::path::Path;

use super::console::Console;
pub use super::faults::Lifted;
use super::faults::{FaultError, Ledger, LiftMode};
use super::targets::{Agent, Started, Targets};
use crate::agent::AgentClient;
use crate::exit::Failure;
use crate::experiment::{Experiment, Injection, ProxyDriver, ProxyMode, ServiceSpec};
use crate::measure::ServiceExit;
use crate::proxy::{self, tcp::TcpProxy};
use crate::services;
use crate::simulate;
use crate::toxiproxy::{NewProxy, ToxiproxyClient, ToxiproxyError};

/// What the run started, and the faults in force on it.
#[derive(Default)]
pub struct Stack {
    targets: Targets,
    ledger: Ledger,
    /// Services that exited on their own, with their logs, as the run saw them.
    exits: Vec<(ServiceExit, String)>,
}

impl Stack {
    /// Starts the proxies, then the services in file order (a gateway in front of a proxy then
    /// finds it listening). Stops at the first failure; what did start stays in the stack for
    /// `teardown`.
    pub async fn start(
        &mut self,
        exp: &Experiment,
        seed: u64,
        log_dir: &Path,
        console: &Console,
    ) -> Result<(), Failure> {
        self.targets.max_fault_duration = exp.max_fault_duration;
        for (name, host) in &exp.hosts {
            self.targets
                .agents
                .insert(name.clone(), connect_agent(name, host).await?);
            console.say(format!("host {name}: agent at {} answers", host.agent));
        }
        if let Some(server) = &exp.toxiproxy {
            self.targets.toxiproxy = Some(connect_toxiproxy(server.server).await?);
        }
        for p in &exp.proxies {
            if p.spec.driver == ProxyDriver::Toxiproxy {
                self.create_toxiproxy_proxy(&p.name, &p.spec).await?;
                console.say(format!(
                    "proxy {} on {} -> {} (on the Toxiproxy server)",
                    p.name, p.spec.listen, p.spec.upstream
                ));
                continue;
            }
            if p.spec.mode == ProxyMode::Tcp {
                let tcp = TcpProxy::new(
                    &p.name,
                    &p.spec.listen.addr().to_string(),
                    &p.spec.upstream.addr().to_string(),
                )
                .with_seed(seed);
                let addr = tcp
                    .start()
                    .await
                    .map_err(|e| Failure::Environment(format!("proxy `{}`: {e}", p.name)))?;
                console.say(format!(
                    "tcp proxy {} on {addr} -> {}",
                    p.name, p.spec.upstream
                ));
                self.targets.tcp_proxies.insert(p.name.clone(), tcp);
                continue;
            }
            let running = proxy::start_with_tls(&p.name, &p.spec, &p.tls, seed).await?;
            console.say(format!(
                "proxy {} on {} -> {}",
                p.name,
                running.addr(),
                p.spec.upstream
            ));
            self.targets.proxies.insert(p.name.clone(), running);
        }
        for svc in &exp.services {
            let started = match &svc.spec {
                ServiceSpec::Simulate(spec) => {
                    Started::InProcess(simulate::start_host(&svc.name, spec).await?)
                }
                ServiceSpec::Gateway(spec) => {
                    Started::InProcess(simulate::start_gateway(&svc.name, spec).await?)
                }
                ServiceSpec::Command(spec) => {
                    // Lets a command keep its scratch files in the run's directory, e.g. nginx -p.
                    let mut spec = spec.clone();
                    spec.env
                        .entry("FAULTLINE_RUN_DIR".into())
                        .or_insert_with(|| absolute(log_dir));
                    Started::Process(Box::new(services::start(&svc.name, &spec, log_dir).await?))
                }
            };
            match &started {
                Started::InProcess(s) => {
                    console.say(format!("service {} listening on {}", svc.name, s.addr()))
                }
                Started::Process(p) => console.say(format!(
                    "service {} started (pid {}), log {}",
                    svc.name,
                    p.pid().map_or_else(|| "?".into(), |p| p.to_string()),
                    p.log_path().display()
                )),
            }
            self.targets.services.insert(svc.name.clone(), started);
        }
        Ok(())
    }

    /// Applies one injection through its backend and records it in the ledger.
    pub async fn inject(&mut self, inj: &Injection) -> Result<(), FaultError> {
        self.ledger
            .apply(&inj.id, &inj.target, &inj.action, &mut self.targets)
            .await
    }

    /// `lift: <id>` on the timeline: a paused process resumes, a killed one starts again, a
    /// leak stops. `None` when the fault is not in force (lifted already, or by its duration).
    pub async fn lift(&mut self, id: &str) -> Option<Lifted> {
        self.ledger
            .lift(id, &mut self.targets, LiftMode::Timeline)
            .await
    }

    /// `lift: all` on the timeline: every fault lifted as if one by one, so a killed service
    /// is started again.
    pub async fn lift_all(&mut self) -> Vec<Lifted> {
        self.ledger
            .lift_all(&mut self.targets, LiftMode::Timeline)
            .await
    }

    /// The end of a run, or an abort: every fault lifted, newest first, but killed services
    /// are not started again only to be stopped by the teardown that follows. Faults whose
    /// lift failed stay in the ledger for the teardown's last try.
    pub async fn roll_back(&mut self) -> Vec<Lifted> {
        self.ledger
            .lift_all(&mut self.targets, LiftMode::RollBack)
            .await
    }

    /// Resolves when a service's process exits on its own (not through a fault, which takes it
    /// first), with the service's name, how it ended and its log; the service is down from then
    /// on (a `restart` brings it back). Never resolves while no service process runs.
    /// Cancel-safe.
    async fn service_exit(&mut self) -> (String, String, String) {
        let waits: Vec<_> = self
            .targets
            .services
            .iter_mut()
            .filter_map(|(name, started)| match started {
                Started::Process(p) => Some(Box::pin(async move {
                    let how = p.exited().await;
                    (name.clone(), how, p.log_path().display().to_string())
                })),
                Started::InProcess(_) => None,
            })
            .collect();
        if waits.is_empty() {
            return std::future::pending().await;
        }
        futures_util::future::select_all(waits).await.0
    }

    /// Awaits `work` while watching the services: each that exits on its own meanwhile is said
    /// and kept ([`Stack::say_exit`]). An exit is looked at first, so a step due at the same
    /// moment (a kill, a restart of that very service) cannot take the dead process before its
    /// death is seen.
    pub async fn watching<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
        origin: std::time::Instant,
        console: &Console,
    ) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                biased;
                died = self.service_exit() => self.say_exit(died, origin, console),
                done = &mut work => return done,
            }
        }
    }

    /// Says what [`Stack::service_exit`] saw, in the timeline's format, and keeps it for the
    /// report and the teardown. `origin`: the run's start.
    fn say_exit(
        &mut self,
        (service, how, log): (String, String, String),
        origin: std::time::Instant,
        console: &Console,
    ) {
        // Said when it happens: the failures that follow have their cause beside them, and
        // the report warns that a dead service was measured.
        let at = origin.elapsed();
        console.say(format!(
            "[{:>7}] service {service} exited on its own: it {how} (its log: {log})",
            super::fmt_at(at)
        ));
        self.exits.push((ServiceExit { service, at, how }, log));
    }

    /// The services that exited on their own, in the order they did.
    pub fn service_exits(&self) -> Vec<ServiceExit> {
        self.exits.iter().map(|(exit, _)| exit.clone()).collect()
    }

    /// Lifts every fault, then stops services in reverse start order, then the proxies.
    pub async fn teardown(&mut self, console: &Console) {
        for lifted in self.roll_back().await {
            if let Err(why) = lifted.result {
                console.say(format!(
                    "could not lift {} on {}: {why}",
                    lifted.id,
                    lifted.target.name()
                ));
            }
        }
        while let Some((name, started)) = self.targets.services.pop() {
            let seen = self
                .exits
                .iter()
                .rev()
                .find(|(exit, _)| exit.service == name)
                .map(|(exit, log)| {
                    (
                        format!("at {}", super::fmt_at(exit.at)),
                        exit.how.clone(),
                        log.clone(),
                    )
                });
            let died = match started {
                Started::InProcess(s) => {
                    s.stop().await;
                    None
                }
                Started::Process(mut p) => {
                    let died = p.exited_on_its_own().map(|how| {
                        let log = p.log_path().display().to_string();
                        ("before the teardown".to_string(), how, log)
                    });
                    p.stop().await;
                    // Seen mid-run, it is said with its time (even if a restart brought it back).
                    seen.or(died)
                }
            };
            match died {
                // Said plainly: a drill whose gateway died mid-run judged a dead gateway,
                // whatever its budgets say.
                Some((when, how, log)) => console.say(format!(
                    "service {name} had exited on its own {when}: it {how} (its log: {log})"
                )),
                None => console.say(format!("service {name} stopped")),
            }
        }
        while let Some((name, p)) = self.targets.proxies.pop() {
            p.stop().await;
            console.say(format!("proxy {name} stopped"));
        }
        while let Some((name, tcp)) = self.targets.tcp_proxies.pop() {
            tcp.stop().await;
            console.say(format!("tcp proxy {name} stopped"));
        }
        if let Some(client) = &self.targets.toxiproxy {
            for name in std::mem::take(&mut self.targets.toxiproxy_proxies)
                .into_iter()
                .rev()
            {
                match client.delete_proxy(&name).await {
                    Ok(()) => {
                        console.say(format!("proxy {name} deleted from the Toxiproxy server"))
                    }
                    Err(e) => console.say(format!(
                        "could not delete proxy {name} from the Toxiproxy server: {e}"
                    )),
                }
            }
        }
    }
}

fn absolute(dir: &Path) -> String {
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}

impl Stack {
    async fn create_toxiproxy_proxy(
        &mut self,
        name: &str,
        spec: &crate::experiment::ProxySpec,
    ) -> Result<(), Failure> {
        let client =
            self.targets.toxiproxy.as_ref().ok_or_else(|| {
                Failure::Environment(format!("proxy `{name}`: no Toxiproxy server"))
            })?;
        let new = NewProxy {
            name: name.to_string(),
            listen: spec.listen.to_string(),
            upstream: spec.upstream.addr().to_string(),
            enabled: true,
        };
        client.create_proxy(&new).await.map_err(|e| match e {
            ToxiproxyError::Conflict { .. } => Failure::Environment(format!(
                "proxy `{name}` already exists on the Toxiproxy server at {}; faultline does not take over proxies it did not create (delete it, or rename this one)",
                client.addr()
            )),
            other => Failure::Environment(format!("proxy `{name}`: {other}")),
        })?;
        self.targets.toxiproxy_proxies.push(name.to_string());
        Ok(())
    }
}

/// A client for the Toxiproxy server, checked before the drill starts.
async fn connect_toxiproxy(addr: std::net::SocketAddr) -> Result<ToxiproxyClient, Failure> {
    let client = ToxiproxyClient::new(addr);
    client
        .version()
        .await
        .map_err(|e| Failure::Environment(format!("the Toxiproxy server does not answer: {e}")))?;
    Ok(client)
}

/// A client for `host`'s agent, checked before the drill starts: the token is set and the
/// agent answers with it.
async fn connect_agent(name: &str, host: &crate::experiment::HostSpec) -> Result<Agent, Failure> {
    let token = std::env::var(&host.token_env).ok().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        Failure::Environment(format!(
            "host `{name}`: the agent token variable {} is not set (export it with the token the agent at {} was started with)",
            host.token_env, host.agent
        ))
    })?;
    let client = AgentClient::new(host.agent.clone(), token.trim().to_string());
    client.status().await.map_err(|e| {
        Failure::Environment(format!("host `{name}`: the agent does not answer: {e}"))
    })?;
    Ok(Agent {
        client,
        lease: host.lease.0,
    })
}
