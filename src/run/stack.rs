//! Everything a run started, in start order, so teardown can stop it in reverse; and the one
//! place faults are applied to what was started.

use std::path::Path;

use indexmap::IndexMap;

use super::console::Console;
use crate::exit::Failure;
use crate::experiment::{Experiment, FaultTarget, Injection, ServiceSpec};
use crate::fault::FaultSpec;
use crate::proxy::{self, RunningProxy};
use crate::services::{self, RunningProcess};
use crate::simulate::{self, RunningServer};

/// A started service: served inside faultline, or an external process.
enum Started {
    InProcess(RunningServer),
    Process(Box<RunningProcess>),
}

/// A process or host fault in force, so it can be lifted.
struct ServiceFault {
    id: String,
    service: String,
    fault: FaultSpec,
}

#[derive(Default)]
pub struct Stack {
    services: IndexMap<String, Started>,
    proxies: IndexMap<String, RunningProxy>,
    service_faults: Vec<ServiceFault>,
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
            self.services.insert(svc.name.clone(), started);
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
            FaultTarget::Service(name) => {
                let started = self
                    .services
                    .get_mut(name)
                    .ok_or_else(|| format!("service `{name}` is not running"))?;
                match (started, &inj.fault) {
                    (Started::Process(p), FaultSpec::Kill(_)) => {
                        p.kill().await.map_err(|e| e.to_string())?
                    }
                    (Started::Process(p), FaultSpec::Pause(_)) => {
                        p.pause().map_err(|e| e.to_string())?
                    }
                    (Started::Process(p), FaultSpec::Restart(_)) => {
                        p.restart().await.map_err(|e| e.to_string())?
                    }
                    (Started::InProcess(s), FaultSpec::MemoryLeak(leak)) => {
                        s.inject_leak(leak.per_second).map_err(|e| e.to_string())?
                    }
                    (_, fault) => {
                        return Err(format!("`{}` cannot act on service `{name}`", fault.kind()))
                    }
                }
                if !matches!(inj.fault, FaultSpec::Restart(_)) {
                    self.service_faults.push(ServiceFault {
                        id: inj.id.clone(),
                        service: name.clone(),
                        fault: inj.fault.clone(),
                    });
                }
                Ok(())
            }
            FaultTarget::Host(_) | FaultTarget::Local => Err(format!(
                "`{}` needs live-host support, which this build lacks",
                inj.fault.kind()
            )),
        }
    }

    /// Lifts fault `id` from its target: a paused process resumes, a killed one starts again,
    /// a leak stops.
    pub async fn lift(&mut self, id: &str, target: &FaultTarget) -> Result<(), String> {
        match target {
            FaultTarget::Proxy(name) => {
                if let Some(p) = self.proxies.get(name) {
                    p.faults().lift(id);
                }
                Ok(())
            }
            FaultTarget::Service(_) => {
                let Some(pos) = self.service_faults.iter().position(|f| f.id == id) else {
                    return Ok(());
                };
                let fault = self.service_faults.remove(pos);
                self.undo(&fault, true).await
            }
            FaultTarget::Host(_) | FaultTarget::Local => Ok(()),
        }
    }

    async fn undo(&mut self, fault: &ServiceFault, restart_killed: bool) -> Result<(), String> {
        let Some(started) = self.services.get_mut(&fault.service) else {
            return Ok(());
        };
        match (started, &fault.fault) {
            (Started::Process(p), FaultSpec::Pause(_)) => p.resume().map_err(|e| e.to_string()),
            (Started::Process(p), FaultSpec::Kill(_)) if restart_killed => {
                p.restart().await.map_err(|e| e.to_string())
            }
            (Started::InProcess(s), FaultSpec::MemoryLeak(_)) => {
                s.lift_leak().map_err(|e| e.to_string())
            }
            _ => Ok(()),
        }
    }

    /// Lifts every fault on every target; returns how many were in force. Killed services are
    /// not started again here: the run is ending and teardown stops them anyway.
    pub async fn lift_all(&mut self, console: &Console) -> usize {
        let mut lifted: usize = self.proxies.values().map(|p| p.faults().lift_all()).sum();
        for fault in std::mem::take(&mut self.service_faults) {
            if let Err(why) = self.undo(&fault, false).await {
                console.say(format!("could not lift {}: {why}", fault.id));
            }
            lifted += 1;
        }
        lifted
    }

    /// Lifts every fault, then stops services in reverse start order, then the proxies.
    pub async fn teardown(&mut self, console: &Console) {
        self.lift_all(console).await;
        while let Some((name, started)) = self.services.pop() {
            match started {
                Started::InProcess(s) => s.stop().await,
                Started::Process(p) => p.stop().await,
            }
            console.say(format!("service {name} stopped"));
        }
        while let Some((name, p)) = self.proxies.pop() {
            p.stop().await;
            console.say(format!("proxy {name} stopped"));
        }
    }
}

fn absolute(dir: &Path) -> String {
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}
