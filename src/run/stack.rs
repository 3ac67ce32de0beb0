//! Everything a run started, in start order, so teardown can stop it in reverse; and the one
//! place faults are applied to what was started.

use std::path::Path;

use indexmap::IndexMap;

use super::console::Console;
use crate::exit::Failure;
use crate::experiment::{Experiment, FaultTarget, Injection, ServiceSpec};
use crate::proxy::{self, RunningProxy};
use crate::simulate::{self, RunningServer};

#[derive(Default)]
pub struct Stack {
    services: Vec<(String, RunningServer)>,
    proxies: IndexMap<String, RunningProxy>,
}

impl Stack {
    /// Starts services in file order, then proxies. Stops at the first failure; what did start
    /// stays in the stack for `teardown`.
    pub async fn start(
        &mut self,
        exp: &Experiment,
        seed: u64,
        log_dir: &Path,
        console: &Console,
    ) -> Result<(), Failure> {
        let _ = log_dir;
        for svc in &exp.services {
            let running = match &svc.spec {
                ServiceSpec::Simulate(spec) => simulate::start_host(&svc.name, spec).await?,
                ServiceSpec::Gateway(spec) => simulate::start_gateway(&svc.name, spec).await?,
                ServiceSpec::Command(_) => {
                    return Err(Failure::Environment(format!(
                        "service `{}`: command services are not started by this build yet",
                        svc.name
                    )))
                }
            };
            console.say(format!(
                "service {} listening on {}",
                svc.name,
                running.addr()
            ));
            self.services.push((svc.name.clone(), running));
        }
        for p in &exp.proxies {
            let running = proxy::start(&p.name, &p.spec, seed).await?;
            console.say(format!(
                "proxy {} on {} -> {}",
                p.name,
                running.addr(),
                p.spec.upstream
            ));
            self.proxies.insert(p.name.clone(), running);
        }
        Ok(())
    }

    /// Applies a fault to its target.
    pub async fn inject(&mut self, inj: &Injection) -> Result<(), String> {
        match &inj.target {
            FaultTarget::Proxy(name) => {
                let p = self
                    .proxies
                    .get(name)
                    .ok_or_else(|| format!("proxy `{name}` is not running"))?;
                p.faults().inject(&inj.id, inj.fault.clone());
                Ok(())
            }
            FaultTarget::Service(name) => Err(format!(
                "service `{name}`: process faults are not applied by this build yet"
            )),
        }
    }

    /// Lifts fault `id` from its target.
    pub async fn lift(&mut self, id: &str, target: &FaultTarget) -> Result<(), String> {
        match target {
            FaultTarget::Proxy(name) => {
                if let Some(p) = self.proxies.get(name) {
                    p.faults().lift(id);
                }
                Ok(())
            }
            FaultTarget::Service(name) => Err(format!(
                "service `{name}`: process faults are not applied by this build yet"
            )),
        }
    }

    /// Lifts every fault on every target; returns how many were active.
    pub async fn lift_all(&mut self, console: &Console) -> usize {
        let _ = console;
        self.proxies.values().map(|p| p.faults().lift_all()).sum()
    }

    /// Lifts every fault, then stops proxies and services in reverse start order.
    pub async fn teardown(&mut self, console: &Console) {
        self.lift_all(console).await;
        while let Some((name, p)) = self.proxies.pop() {
            p.stop().await;
            console.say(format!("proxy {name} stopped"));
        }
        while let Some((name, s)) = self.services.pop() {
            s.stop().await;
            console.say(format!("service {name} stopped"));
        }
    }
}
