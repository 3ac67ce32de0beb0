//! Faults a live host's agent applies (process faults, GPU memory pressure), held by a lease
//! that is renewed until the lift.

use super::{Backend, FaultError, LiftMode};
use crate::agent::{self, FaultRequest, KeepAlive};
use crate::fault::action::AgentAction;
use crate::fault::Evidence;
use crate::run::targets::Targets;
use crate::units::human_duration;

pub(super) struct AgentFault;

pub(crate) struct Held {
    host: String,
    /// The id the agent knows the fault by.
    agent_id: String,
    /// `None` until the agent confirmed the fault (or for a provisional record).
    renewing: Option<KeepAlive>,
    /// What the agent said the fault did (`details`), once it confirmed it.
    details: Option<serde_json::Value>,
}

/// What the agent's `details` show the fault did: the hog's held bytes, or the processes
/// signalled.
fn evidence_of(details: &serde_json::Value) -> Option<Evidence> {
    if let Some(devices) = details
        .pointer("/report/devices")
        .and_then(|d| d.as_array())
    {
        let held_bytes = devices
            .iter()
            .filter_map(|d| d.get("held").and_then(serde_json::Value::as_u64))
            .sum();
        return Some(Evidence::GpuMemory { held_bytes });
    }
    let processes = details.get("processes")?.as_array()?;
    Some(Evidence::Processes {
        signalled: processes.len() as u64,
    })
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Backend for AgentFault {
    type Action = AgentAction;
    type Held = Held;

    /// The agent may hold the fault as soon as the request left, whether or not its answer
    /// arrives: the id is chosen here, so the rollback can always ask it to stop.
    fn provisional(a: &AgentAction) -> Option<Held> {
        Some(Held {
            host: a.host.clone(),
            agent_id: a.agent_id.clone(),
            renewing: None,
            details: None,
        })
    }

    fn evidence(h: &Held, _: &Targets) -> Option<Evidence> {
        h.details.as_ref().and_then(evidence_of)
    }

    async fn apply(a: &AgentAction, t: &mut Targets) -> Result<Held, FaultError> {
        let agent = t
            .agents
            .get(&a.host)
            .ok_or_else(|| FaultError::NotRunning {
                what: "agent of host",
                name: a.host.clone(),
            })?;
        let request = FaultRequest {
            fault: a.fault.clone(),
            lease_ttl_ms: Some(millis(agent.lease)),
            max_duration_ms: Some(millis(t.max_fault_duration)),
            id: Some(a.agent_id.clone()),
        };
        let client = match a.wait {
            Some(limit) => agent.client.clone().with_timeout(limit),
            None => agent.client.clone(),
        };
        let started = client.start(&request).await?;
        let renewing = agent::keep_alive(agent.client.clone(), started.id.clone(), agent.lease);
        Ok(Held {
            host: a.host.clone(),
            agent_id: started.id,
            renewing: Some(renewing),
            details: Some(started.details),
        })
    }

    /// Stops renewing, then asks the agent to lift. If the agent cannot be reached, the lease
    /// runs out and it lifts the fault by itself.
    async fn lift(h: &mut Held, t: &mut Targets, _: LiftMode) -> Result<(), FaultError> {
        if let Some(renewing) = h.renewing.take() {
            renewing.stop().await;
        }
        let Some(agent) = t.agents.get(&h.host) else {
            return Ok(());
        };
        match agent.client.stop(&h.agent_id).await {
            Ok(_) => Ok(()),
            // Already gone: lifted by its lease or its maximum duration, or never started.
            Err(e) if e.status() == Some(hyper::StatusCode::NOT_FOUND) => Ok(()),
            Err(source) => Err(FaultError::AgentLift {
                source,
                lease: human_duration(agent.lease),
            }),
        }
    }
}
