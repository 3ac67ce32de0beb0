//! Each injection, once its target is known, turned into the action its backend applies: the
//! last step of the check, so the run parses nothing again.

use std::time::Duration;

use crate::experiment::schema::{ExperimentFile, ProxyDriver, ProxyMode};
use crate::experiment::FaultTarget;
use crate::fault::action::{
    backend_id, AgentAction, HttpAction, LeakAction, LocalGpuAction, Signal, SignalAction,
    TcpToxicAction, ToxiproxyAction,
};
use crate::fault::{FaultAction, FaultScope, FaultSpec, ToxicFault, ToxicStream};
use crate::proxy::tcp::{Stream, ToxicKind};
use crate::toxiproxy::NewToxic;

/// What an agent gets beyond the GPU start-up limit and the ramp before its answer counts as
/// lost: the agent's own bookkeeping and the network.
const AGENT_SLACK: Duration = Duration::from_secs(30);

/// The action for `fault` on `target`, or why there is none. The caller reports the reason
/// only when the target checks did not already explain the mismatch.
pub(super) fn build(
    id: &str,
    target: &FaultTarget,
    fault: &FaultSpec,
    file: &ExperimentFile,
) -> Result<FaultAction, String> {
    let cannot = || format!("`{}` cannot act on {}", fault.kind(), target.name());
    Ok(match (target, fault) {
        (FaultTarget::Proxy(proxy), fault) => {
            let spec = file
                .proxies
                .get(proxy)
                .map(|p| &p.value)
                .ok_or_else(|| format!("unknown proxy `{proxy}`"))?;
            match fault {
                FaultSpec::Toxic(t) if spec.driver == ProxyDriver::Toxiproxy => {
                    FaultAction::ToxiproxyToxic(ToxiproxyAction {
                        proxy: proxy.clone(),
                        toxic: toxiproxy_toxic(id, t),
                    })
                }
                FaultSpec::Toxic(t) if spec.mode == ProxyMode::Tcp => {
                    FaultAction::TcpToxic(TcpToxicAction {
                        proxy: proxy.clone(),
                        name: backend_id(id),
                        kind: ToxicKind::from_attributes(t.kind.as_str(), &attributes(t), None)?,
                        stream: match t.stream {
                            ToxicStream::Upstream => Stream::Upstream,
                            ToxicStream::Downstream => Stream::Downstream,
                        },
                        toxicity: t.toxicity,
                    })
                }
                f if f.acts_on() == FaultScope::Traffic && !spec.takes_toxics() => {
                    FaultAction::Http(HttpAction {
                        proxy: proxy.clone(),
                        id: id.to_string(),
                        fault: f.clone(),
                    })
                }
                _ => return Err(cannot()),
            }
        }
        (
            FaultTarget::Service(service),
            FaultSpec::Kill(_) | FaultSpec::Pause(_) | FaultSpec::Restart(_),
        ) => {
            let signal = match fault {
                FaultSpec::Kill(_) => Signal::Kill,
                FaultSpec::Pause(_) => Signal::Pause,
                _ => Signal::Restart,
            };
            FaultAction::Signal(SignalAction {
                service: service.clone(),
                signal,
            })
        }
        (FaultTarget::Service(service), FaultSpec::MemoryLeak(leak)) => {
            FaultAction::SimulatedLeak(LeakAction {
                service: service.clone(),
                per_second: leak.per_second,
            })
        }
        (FaultTarget::Host(host), FaultSpec::HostProcess(p)) => FaultAction::Agent(AgentAction {
            host: host.clone(),
            agent_id: backend_id(id),
            fault: crate::agent::FaultSpec::Process(p.clone()),
            wait: None,
        }),
        (FaultTarget::Host(host), FaultSpec::GpuMemoryPressure(g)) => {
            // Waiting for a GPU hog to hold its memory can take minutes (driver start-up, a
            // ramp); anything else answers at once.
            let ramp = g.to_pressure()?.ramp.unwrap_or_default();
            FaultAction::Agent(AgentAction {
                host: host.clone(),
                agent_id: backend_id(id),
                fault: crate::agent::FaultSpec::GpuMemoryPressure(g.clone()),
                wait: Some(crate::gpu::START_LIMIT + ramp + AGENT_SLACK),
            })
        }
        (FaultTarget::Local, FaultSpec::GpuMemoryPressure(g)) => {
            FaultAction::LocalGpu(LocalGpuAction {
                pressure: g.to_pressure()?,
            })
        }
        _ => return Err(cannot()),
    })
}

fn attributes(t: &ToxicFault) -> serde_json::Map<String, serde_json::Value> {
    t.attributes
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
        .collect()
}

fn toxiproxy_toxic(id: &str, t: &ToxicFault) -> NewToxic {
    NewToxic {
        name: Some(backend_id(id)),
        kind: t.kind.as_str().to_string(),
        stream: Some(t.stream.as_str().to_string()),
        toxicity: Some(t.toxicity),
        attributes: attributes(t),
    }
}
