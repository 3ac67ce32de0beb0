//! Everything a run started, in start order, so teardown can stop it in reverse.

use indexmap::IndexMap;

use crate::exit::Failure;
use crate::experiment::{Experiment, ServiceSpec};
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
        say: &impl Fn(String),
    ) -> Result<(), Failure> {
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
            say(format!(
                "service {} listening on {}",
                svc.name,
                running.addr()
            ));
            self.services.push((svc.name.clone(), running));
        }
        for p in &exp.proxies {
            let running = proxy::start(&p.name, &p.spec, seed).await?;
            say(format!(
                "proxy {} on {} -> {}",
                p.name,
                running.addr(),
                p.spec.upstream
            ));
            self.proxies.insert(p.name.clone(), running);
        }
        Ok(())
    }

    pub fn proxy(&self, name: &str) -> Option<&RunningProxy> {
        self.proxies.get(name)
    }

    /// Lifts every fault on every proxy; returns how many were active.
    pub fn lift_all(&self) -> usize {
        self.proxies.values().map(|p| p.faults().lift_all()).sum()
    }

    /// Lifts every fault, then stops proxies and services in reverse start order.
    pub async fn teardown(&mut self, say: &impl Fn(String)) {
        self.lift_all();
        while let Some((name, p)) = self.proxies.pop() {
            p.stop().await;
            say(format!("proxy {name} stopped"));
        }
        while let Some((name, s)) = self.services.pop() {
            s.stop().await;
            say(format!("service {name} stopped"));
        }
    }
}
