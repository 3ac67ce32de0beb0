//! The API in process, through the real client: refusals that never reach a process.

use std::time::Duration;

use hyper::StatusCode;

use super::*;
use crate::agent::model::FaultRequest;

const TOKEN: &str = "test-token-0123456789";

/// The agent, its client, and its state directory (removed when dropped).
async fn agent() -> (Agent, AgentClient, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let config = AgentConfig {
        state_dir: state.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        token: Token::new(TOKEN).unwrap(),
        limits: Limits {
            max_fault_duration: Duration::from_secs(60),
            max_lease_ttl: Duration::from_secs(5),
        },
    };
    let agent = Agent::start(config).await.unwrap();
    let client = AgentClient::new(agent.addr(), TOKEN.into());
    (agent, client, state)
}

fn pause_pid(pid: u32) -> FaultRequest {
    FaultRequest {
        fault: FaultSpec::Process(ProcessFault {
            action: ProcessAction::Pause,
            pid: Some(pid),
            pattern: None,
        }),
        lease_ttl_ms: Some(1000),
        max_duration_ms: None,
        id: None,
    }
}

fn status_of(r: Result<impl std::fmt::Debug, AgentError>) -> StatusCode {
    r.unwrap_err().status().expect("an HTTP error")
}

#[tokio::test]
async fn refusals_touch_nothing() {
    let (agent, client, _state) = agent().await;
    let wrong = AgentClient::new(agent.addr(), "nope".into());
    assert_eq!(status_of(wrong.status().await), StatusCode::UNAUTHORIZED);

    let mut long = pause_pid(std::process::id());
    long.lease_ttl_ms = Some(6000);
    assert_eq!(
        status_of(client.start(&long).await),
        StatusCode::BAD_REQUEST
    );
    long.lease_ttl_ms = None;
    long.max_duration_ms = Some(61_000);
    assert_eq!(
        status_of(client.start(&long).await),
        StatusCode::BAD_REQUEST
    );
    let mut bad_id = pause_pid(std::process::id());
    bad_id.id = Some("a b".into());
    assert_eq!(
        status_of(client.start(&bad_id).await),
        StatusCode::BAD_REQUEST
    );

    // The agent itself and init are never targets.
    for pid in [std::process::id(), 1] {
        assert_eq!(
            status_of(client.start(&pause_pid(pid)).await),
            StatusCode::CONFLICT
        );
    }
    // A GPU spec that says nothing about how much to take is refused before anything starts.
    let gpu = FaultRequest {
        fault: FaultSpec::GpuMemoryPressure(crate::gpu::GpuPressureSpec::default()),
        ..pause_pid(0)
    };
    let err = client.start(&gpu).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert!(
        err.to_string()
            .contains("gpu_memory_pressure: say how much GPU memory to take"),
        "{err}"
    );

    assert_eq!(
        status_of(client.renew("f1", None).await),
        StatusCode::NOT_FOUND
    );
    assert_eq!(status_of(client.stop("f1").await), StatusCode::NOT_FOUND);
    let status = client.status().await.unwrap();
    assert!(status.faults.is_empty());
    assert_eq!(status.agent.listen, agent.addr().to_string());
    assert_eq!(agent.shutdown("test").await, 0);
}

#[tokio::test]
async fn errors_name_the_agent() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = AgentClient::new(addr, TOKEN.into()).with_timeout(Duration::from_secs(2));
    let err = client.status().await.unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    assert!(client.stop("../x").await.is_err());
}
