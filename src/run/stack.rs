//! Everything a run started, in start order, so teardown can stop it in reverse; and the one
//! place faults are applied to what was started.

use std::path::Path;

use indexmap::IndexMap;

use super::console::Console;
use crate::agent::{self, AgentClient, FaultRequest, KeepAlive};
use crate::exit::Failure;
use crate::experiment::{Experiment, FaultTarget, Injection, ProxyDriver, ProxyMode, ServiceSpec};
use crate::fault::{FaultSpec, ToxicFault, ToxicStream};
use crate::gpu::RunningHog;
use crate::proxy::tcp::{
    Stream as TcpStream, TcpProxy, Toxic as TcpToxic, ToxicKind as TcpToxicKind,
};
use crate::proxy::{self, RunningProxy};
use crate::services::{self, RunningProcess};
use crate::simulate::{self, RunningServer};
use crate::toxiproxy::{NewProxy, NewToxic, ToxiproxyClient, ToxiproxyError};

/// Whether lifting a `kill` starts the service again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Restart {
    Killed,
    No,
}

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

/// A live host's agent, with the lease its faults get.
struct Agent {
    client: AgentClient,
    lease: std::time::Duration,
}

/// A toxic this run added to a Toxiproxy proxy.
struct PlacedToxic {
    id: String,
    proxy: String,
    name: String,
}

/// A fault held on a live host: the lease is renewed until it is lifted.
struct HostFault {
    /// The id in the experiment file.
    id: String,
    /// The id the agent knows it by.
    agent_id: String,
    host: String,
    renewing: KeepAlive,
}

#[derive(Default)]
pub struct Stack {
    services: IndexMap<String, Started>,
    proxies: IndexMap<String, RunningProxy>,
    service_faults: Vec<ServiceFault>,
    agents: IndexMap<String, Agent>,
    host_faults: Vec<HostFault>,
    /// GPU memory held on this machine, by fault id.
    local_gpu: Vec<(String, RunningHog)>,
    /// The Toxiproxy server, and what this run created on it.
    toxiproxy: Option<ToxiproxyClient>,
    toxiproxy_proxies: Vec<String>,
    /// Built-in TCP proxies (`mode: tcp`).
    tcp_proxies: IndexMap<String, TcpProxy>,
    toxics: Vec<PlacedToxic>,
    max_fault_duration: std::time::Duration,
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
        self.max_fault_duration = exp.max_fault_duration;
        for (name, host) in &exp.hosts {
            self.agents
                .insert(name.clone(), connect_agent(name, host).await?);
            console.say(format!("host {name}: agent at {} answers", host.agent));
        }
        if let Some(server) = &exp.toxiproxy {
            self.toxiproxy = Some(connect_toxiproxy(server.server).await?);
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
                    &p.spec.listen.to_string(),
                    &p.spec.upstream.to_string(),
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
                self.tcp_proxies.insert(p.name.clone(), tcp);
                continue;
            }
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
                if let FaultSpec::Toxic(toxic) = &inj.fault {
                    return self.add_toxic(name, &inj.id, toxic).await;
                }
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
            FaultTarget::Host(host) => {
                let agent = self
                    .agents
                    .get(host)
                    .ok_or_else(|| format!("host `{host}` has no agent"))?;
                // Waiting for a GPU hog to hold its memory can take minutes (driver start-up, a
                // ramp); anything else answers at once.
                let (fault, wait) = match &inj.fault {
                    FaultSpec::HostProcess(p) => (agent::FaultSpec::Process(p.clone()), None),
                    FaultSpec::GpuMemoryPressure(g) => {
                        let ramp = g.to_pressure()?.ramp.unwrap_or_default();
                        (
                            agent::FaultSpec::GpuMemoryPressure(g.clone()),
                            Some(
                                crate::gpu::START_LIMIT + ramp + std::time::Duration::from_secs(30),
                            ),
                        )
                    }
                    other => return Err(format!("`{}` cannot be sent to an agent", other.kind())),
                };
                let agent_id = agent_fault_id(&inj.id);
                let request = FaultRequest {
                    fault,
                    lease_ttl_ms: Some(millis(agent.lease)),
                    max_duration_ms: Some(millis(self.max_fault_duration)),
                    id: Some(agent_id.clone()),
                };
                let client = match wait {
                    Some(limit) => agent.client.clone().with_timeout(limit),
                    None => agent.client.clone(),
                };
                let started = match client.start(&request).await {
                    Ok(started) => started,
                    Err(e) => {
                        // If only the answer was lost, the agent may hold the fault: undo it
                        // now rather than leave it to the lease.
                        if e.status().is_none() {
                            let _ = agent.client.stop(&agent_id).await;
                        }
                        return Err(e.to_string());
                    }
                };
                let renewing =
                    agent::keep_alive(agent.client.clone(), started.id.clone(), agent.lease);
                self.host_faults.push(HostFault {
                    id: inj.id.clone(),
                    agent_id: started.id,
                    host: host.clone(),
                    renewing,
                });
                Ok(())
            }
            FaultTarget::Local => {
                let FaultSpec::GpuMemoryPressure(spec) = &inj.fault else {
                    return Err(format!("`{}` cannot act on this machine", inj.fault.kind()));
                };
                let pressure = spec.to_pressure()?;
                let hog = RunningHog::start(&pressure)
                    .await
                    .map_err(|e| e.to_string())?;
                self.local_gpu.push((inj.id.clone(), hog));
                Ok(())
            }
        }
    }

    /// Lifts fault `id` from its target: a paused process resumes, a killed one starts again,
    /// a leak stops.
    pub async fn lift(&mut self, id: &str, target: &FaultTarget) -> Result<(), String> {
        match target {
            FaultTarget::Proxy(name) => {
                if let Some(pos) = self.toxics.iter().position(|t| t.id == id) {
                    let toxic = self.toxics.remove(pos);
                    return self.remove_toxic(&toxic).await;
                }
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
            FaultTarget::Host(_) => match self.host_faults.iter().position(|f| f.id == id) {
                Some(pos) => {
                    let fault = self.host_faults.remove(pos);
                    self.lift_host_fault(fault).await
                }
                None => Ok(()),
            },
            FaultTarget::Local => match self.local_gpu.iter().position(|(held, _)| held == id) {
                Some(pos) => {
                    let (_, hog) = self.local_gpu.remove(pos);
                    hog.release().await.map(|_| ()).map_err(|e| e.to_string())
                }
                None => Ok(()),
            },
        }
    }

    /// Stops renewing, then asks the agent to lift. If the agent cannot be reached, the lease
    /// runs out and it lifts the fault by itself.
    async fn lift_host_fault(&mut self, fault: HostFault) -> Result<(), String> {
        fault.renewing.stop().await;
        let agent = self
            .agents
            .get(&fault.host)
            .ok_or_else(|| format!("host `{}` has no agent", fault.host))?;
        match agent.client.stop(&fault.agent_id).await {
            Ok(_) => Ok(()),
            // Already gone: lifted by its lease or its maximum duration.
            Err(e) if e.status() == Some(hyper::StatusCode::NOT_FOUND) => Ok(()),
            Err(e) => Err(format!(
                "{e}; the agent lifts it by itself within {}",
                crate::units::human_duration(agent.lease)
            )),
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

    /// `lift: all` in the timeline: every fault lifted as if one by one, so a killed service
    /// is started again. Returns how many were in force.
    pub async fn lift_all(&mut self, console: &Console) -> usize {
        self.lift_everything(console, Restart::Killed).await
    }

    /// The end of a run, or an abort: every fault lifted, but killed services are not started
    /// again only to be stopped by the teardown that follows.
    pub async fn roll_back(&mut self, console: &Console) -> usize {
        self.lift_everything(console, Restart::No).await
    }

    async fn lift_everything(&mut self, console: &Console, restart: Restart) -> usize {
        let mut lifted: usize = self.proxies.values().map(|p| p.faults().lift_all()).sum();
        for toxic in std::mem::take(&mut self.toxics) {
            if let Err(why) = self.remove_toxic(&toxic).await {
                console.say(format!("could not lift {}: {why}", toxic.id));
            }
            lifted += 1;
        }
        for (id, hog) in std::mem::take(&mut self.local_gpu) {
            if let Err(why) = hog.release().await {
                console.say(format!("could not release the GPU memory of {id}: {why}"));
            }
            lifted += 1;
        }
        for fault in std::mem::take(&mut self.host_faults) {
            let id = fault.id.clone();
            if let Err(why) = self.lift_host_fault(fault).await {
                console.say(format!("could not lift {id}: {why}"));
            }
            lifted += 1;
        }
        for fault in std::mem::take(&mut self.service_faults) {
            if let Err(why) = self.undo(&fault, restart == Restart::Killed).await {
                console.say(format!("could not lift {}: {why}", fault.id));
            }
            lifted += 1;
        }
        lifted
    }

    /// Lifts every fault, then stops services in reverse start order, then the proxies.
    pub async fn teardown(&mut self, console: &Console) {
        self.roll_back(console).await;
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
        while let Some((name, tcp)) = self.tcp_proxies.pop() {
            tcp.stop().await;
            console.say(format!("tcp proxy {name} stopped"));
        }
        if let Some(client) = &self.toxiproxy {
            for name in std::mem::take(&mut self.toxiproxy_proxies)
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
        let client = self
            .toxiproxy
            .as_ref()
            .ok_or_else(|| Failure::Environment(format!("proxy `{name}`: no Toxiproxy server")))?;
        let new = NewProxy {
            name: name.to_string(),
            listen: spec.listen.to_string(),
            upstream: spec.upstream.to_string(),
            enabled: true,
        };
        client.create_proxy(&new).await.map_err(|e| match e {
            ToxiproxyError::Conflict { .. } => Failure::Environment(format!(
                "proxy `{name}` already exists on the Toxiproxy server at {}; faultline does not take over proxies it did not create (delete it, or rename this one)",
                client.addr()
            )),
            other => Failure::Environment(format!("proxy `{name}`: {other}")),
        })?;
        self.toxiproxy_proxies.push(name.to_string());
        Ok(())
    }

    async fn add_toxic(&mut self, proxy: &str, id: &str, toxic: &ToxicFault) -> Result<(), String> {
        let name = agent_fault_id(id);
        let attributes: serde_json::Map<String, serde_json::Value> = toxic
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
            .collect();
        if let Some(tcp) = self.tcp_proxies.get(proxy) {
            let kind = TcpToxicKind::from_attributes(toxic.kind.as_str(), &attributes, None)?;
            let stream = match toxic.stream {
                ToxicStream::Upstream => TcpStream::Upstream,
                ToxicStream::Downstream => TcpStream::Downstream,
            };
            tcp.add_toxic(TcpToxic::new(name.clone(), kind, stream, toxic.toxicity))
                .map_err(|e| e.to_string())?;
        } else {
            let client = self
                .toxiproxy
                .as_ref()
                .ok_or_else(|| format!("proxy `{proxy}` is not on a Toxiproxy server"))?;
            let new = NewToxic {
                name: Some(name.clone()),
                kind: toxic.kind.as_str().to_string(),
                stream: Some(toxic.stream.as_str().to_string()),
                toxicity: Some(toxic.toxicity),
                attributes,
            };
            client
                .add_toxic(proxy, &new)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.toxics.push(PlacedToxic {
            id: id.to_string(),
            proxy: proxy.to_string(),
            name,
        });
        Ok(())
    }

    async fn remove_toxic(&self, toxic: &PlacedToxic) -> Result<(), String> {
        if let Some(tcp) = self.tcp_proxies.get(&toxic.proxy) {
            return tcp.remove_toxic(&toxic.name).map_err(|e| e.to_string());
        }
        let Some(client) = &self.toxiproxy else {
            return Ok(());
        };
        match client.remove_toxic(&toxic.proxy, &toxic.name).await {
            Ok(()) | Err(ToxiproxyError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
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

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
    let client = AgentClient::new(host.agent, token.trim().to_string());
    client.status().await.map_err(|e| {
        Failure::Environment(format!("host `{name}`: the agent does not answer: {e}"))
    })?;
    Ok(Agent {
        client,
        lease: host.lease.0,
    })
}

/// The experiment's fault id in the characters the agent accepts (ids such as the default
/// `node/process` contain a slash).
fn agent_fault_id(id: &str) -> String {
    let cleaned: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if cleaned.trim_matches('.').is_empty() {
        "fault".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::agent_fault_id;

    #[test]
    fn agent_ids_keep_what_the_agent_accepts() {
        assert_eq!(agent_fault_id("node/process"), "node-process");
        assert_eq!(agent_fault_id("gpu.taken_1"), "gpu.taken_1");
        assert_eq!(agent_fault_id(".."), "fault");
        assert_eq!(agent_fault_id(&"x".repeat(100)).len(), 64);
        assert!(crate::agent::model::check_id(&agent_fault_id("a b/c:d")).is_ok());
    }
}
