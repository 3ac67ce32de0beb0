//! The ledger against real backends and scripted peers on loopback: failed lifts stay in force
//! and are tried again, a cancelled apply is still lifted, rollback runs newest first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{Ledger, LiftMode};
use crate::agent::AgentClient;
use crate::experiment::FaultTarget;
use crate::fault::action::{AgentAction, ToxiproxyAction};
use crate::fault::FaultAction;
use crate::run::targets::{Agent, Targets};
use crate::toxiproxy::{NewToxic, ToxiproxyClient};

/// What a scripted peer does with one request.
#[derive(Clone, Copy)]
enum Answer {
    /// Status and body.
    With(u16, &'static str),
    /// Echo the request body with this status.
    Echo(u16),
    /// Never answer (the connection stays open).
    Hang,
}

/// An HTTP/1.1 peer on loopback that answers by `script(method, path)` and keeps the
/// `METHOD path` of every request it saw.
async fn peer(script: fn(&str, &str) -> Answer) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
                    if let Some(end) = head_end {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let length = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            let body = buf[end + 4..end + 4 + length].to_vec();
                            let mut words = head.split_whitespace();
                            let method = words.next().unwrap_or("").to_string();
                            let path = words.next().unwrap_or("").to_string();
                            log.lock().unwrap().push(format!("{method} {path}"));
                            buf.drain(..end + 4 + length);
                            let (status, body) = match script(&method, &path) {
                                Answer::With(s, b) => (s, b.as_bytes().to_vec()),
                                Answer::Echo(s) => (s, body),
                                Answer::Hang => {
                                    tokio::time::sleep(Duration::from_secs(60)).await;
                                    return;
                                }
                            };
                            let head = format!(
                                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            let _ = conn.write_all(head.as_bytes()).await;
                            let _ = conn.write_all(&body).await;
                            continue;
                        }
                    }
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn toxic_action(name: &str) -> FaultAction {
    FaultAction::ToxiproxyToxic(ToxiproxyAction {
        proxy: "p".into(),
        toxic: NewToxic {
            name: Some(name.into()),
            kind: "latency".into(),
            stream: Some("downstream".into()),
            toxicity: Some(1.0),
            attributes: serde_json::Map::new(),
        },
    })
}

fn target() -> FaultTarget {
    FaultTarget::Proxy("p".into())
}

#[tokio::test]
async fn a_failed_lift_is_not_counted_and_stays_in_force_for_the_next_try() {
    // Toxics are added, but the server refuses to remove them.
    let (addr, seen) = peer(|method, _| match method {
        "POST" => Answer::Echo(200),
        _ => Answer::With(500, r#"{"error":"disk on fire","status":500}"#),
    })
    .await;
    let mut targets = Targets {
        toxiproxy: Some(ToxiproxyClient::new(addr)),
        ..Targets::default()
    };
    let mut ledger = Ledger::default();
    for id in ["first", "second"] {
        ledger
            .apply(id, &target(), &toxic_action(id), &mut targets)
            .await
            .unwrap();
    }

    let lifted = ledger.lift_all(&mut targets, LiftMode::RollBack).await;
    // Newest first, and neither counted as lifted.
    let ids: Vec<&str> = lifted.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids, ["second", "first"]);
    assert!(lifted.iter().all(|l| l.result.is_err()));
    let why = lifted[0].result.as_ref().unwrap_err().to_string();
    assert!(why.contains("disk on fire"), "{why}");

    // Still in force: a later rollback tries again, and a lift by id finds it.
    let again = ledger.lift_all(&mut targets, LiftMode::RollBack).await;
    assert_eq!(again.len(), 2);
    let first = ledger.lift("first", &mut targets, LiftMode::Timeline).await;
    assert!(first.is_some_and(|l| l.result.is_err()));
    let deletes = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with("DELETE /proxies/p/toxics/first"))
        .count();
    assert_eq!(deletes, 3);
}

#[tokio::test]
async fn a_successful_lift_leaves_the_ledger() {
    let (addr, _) = peer(|method, _| match method {
        "POST" => Answer::Echo(200),
        _ => Answer::With(204, ""),
    })
    .await;
    let mut targets = Targets {
        toxiproxy: Some(ToxiproxyClient::new(addr)),
        ..Targets::default()
    };
    let mut ledger = Ledger::default();
    ledger
        .apply("t", &target(), &toxic_action("t"), &mut targets)
        .await
        .unwrap();
    let lifted = ledger.lift("t", &mut targets, LiftMode::Timeline).await;
    assert!(lifted.is_some_and(|l| l.result.is_ok()));
    assert!(ledger
        .lift("t", &mut targets, LiftMode::Timeline)
        .await
        .is_none());
    assert!(ledger
        .lift_all(&mut targets, LiftMode::RollBack)
        .await
        .is_empty());
}

#[tokio::test]
async fn an_agent_fault_cancelled_mid_apply_is_still_lifted() {
    // The agent takes the request and never answers (a GPU hog still filling memory when
    // Ctrl-C arrives): the fault may be in force on the host, so rollback must stop it.
    let (addr, seen) = peer(|method, _| match method {
        "POST" => Answer::Hang,
        _ => Answer::With(404, r#"{"error":"no such fault"}"#),
    })
    .await;
    let mut targets = Targets::default();
    targets.agents.insert(
        "node".into(),
        Agent {
            client: AgentClient::new(addr, "a-test-token-that-is-long-enough".into()),
            lease: Duration::from_secs(5),
        },
    );
    let action = FaultAction::Agent(AgentAction {
        host: "node".into(),
        agent_id: "gpu-taken".into(),
        fault: crate::agent::FaultSpec::GpuMemoryPressure(Default::default()),
        wait: Some(Duration::from_secs(60)),
    });
    let mut ledger = Ledger::default();
    let target = FaultTarget::Host("node".into());
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        ledger.apply("gpu/taken", &target, &action, &mut targets),
    )
    .await;
    assert!(cancelled.is_err(), "the apply should still be waiting");

    let lifted = ledger.lift_all(&mut targets, LiftMode::RollBack).await;
    assert_eq!(lifted.len(), 1);
    assert_eq!(lifted[0].id, "gpu/taken");
    // The agent had never heard of it by then: 404 counts as lifted.
    assert!(lifted[0].result.is_ok());
    assert!(seen
        .lock()
        .unwrap()
        .contains(&"DELETE /v1/faults/gpu-taken".to_string()));
}
