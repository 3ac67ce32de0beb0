//! The gateway's load shedding and its behaviour over hosts that crash: the cascade of 2026 in
//! miniature, and the protection that stops it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;

use super::client::*;
use crate::experiment::schema::{Exhaustion, MemorySpec, SimulateSpec, Strategy};
use crate::simulate::{start_gateway, start_host, RunningServer};
use crate::units::Dur;

const CRASH_LIMIT: Duration = Duration::from_secs(3);

fn slow_host(ttft_ms: u64) -> SimulateSpec {
    let mut spec = host_spec();
    spec.ttft = Dur::from_millis(ttft_ms);
    spec
}

/// A host whose cache holds two requests (9 tokens each) and that crashes on a third.
fn small_host(ttft_ms: u64) -> SimulateSpec {
    let mut spec = slow_host(ttft_ms);
    spec.memory = Some(MemorySpec {
        kv_tokens: 20,
        leak_per_second: 0,
        leak_after: Dur::from_millis(0),
        on_exhaustion: Exhaustion::Crash,
    });
    spec
}

fn spawn_post(addr: SocketAddr) -> tokio::task::JoinHandle<Result<Answer, String>> {
    tokio::spawn(async move { try_post(addr, chat(true)).await })
}

/// A prompt of 30 words: 38 tokens of cache, more than a `small_host` has.
fn huge_chat() -> serde_json::Value {
    json!({ "stream": true, "messages": [{ "role": "user", "content": "w ".repeat(30) }] })
}

async fn crash(host: &RunningServer) {
    assert!(try_post(host.addr(), huge_chat()).await.is_err());
    tokio::time::timeout(CRASH_LIMIT, host.wait_crashed())
        .await
        .expect("the host crashed");
}

#[tokio::test]
async fn a_full_upstream_sheds_at_once_until_it_has_room() {
    let slow = start_host("slow", &slow_host(400)).await.unwrap();
    let mut spec = gateway_spec(vec![slow.addr()]);
    spec.max_in_flight_per_upstream = Some(1);
    let gw = start_gateway("gw", &spec).await.unwrap();
    let addr = gw.addr();
    // Streamed: the upstream's headers come at once, so only a ticket held by the body keeps
    // the request counted while its tokens flow.
    let first = spawn_post(addr);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = std::time::Instant::now();
    let shed = post_json(addr, "/v1/chat/completions", chat(true)).await;
    let took = started.elapsed();
    assert_eq!(shed.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(took < Duration::from_millis(150), "shed at once: {took:?}");
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(
        shed.json(),
        json!({ "error": {
            "message": "gateway is shedding load: every upstream is at its in-flight limit",
            "type": "rate_limit_error",
        } })
    );
    assert!(!first.is_finished(), "shed well before the first finished");

    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("x-served-by"), Some("slow"));
    assert!(first.text().ends_with("data: [DONE]\n\n"));
    let next = post_json(addr, "/v1/chat/completions", chat(true)).await;
    assert_eq!(
        next.status,
        StatusCode::OK,
        "room again after the first ended"
    );
    gw.stop().await;
    slow.stop().await;
}

#[tokio::test]
async fn the_shed_status_is_configurable_and_checked() {
    let slow = start_host("slow", &slow_host(300)).await.unwrap();
    let mut spec = gateway_spec(vec![slow.addr()]);
    spec.max_in_flight_per_upstream = Some(1);
    spec.shed_status = 503.try_into().unwrap();
    let gw = start_gateway("gw", &spec).await.unwrap();
    let first = spawn_post(gw.addr());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shed = post_json(gw.addr(), "/v1/chat/completions", chat(false)).await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(first.await.unwrap().unwrap().status, StatusCode::OK);
    gw.stop().await;
    slow.stop().await;

    // A shed status that is not an error cannot be written at all (`ErrorStatus`); a limit of
    // zero would shed everything.
    {
        let mut spec = gateway_spec(vec![any_port()]);
        spec.max_in_flight_per_upstream = Some(0);
        assert!(matches!(
            start_gateway("gw", &spec).await,
            Err(crate::exit::Failure::Usage(_))
        ));
    }
}

#[tokio::test]
async fn concurrent_requests_spread_over_upstreams_with_room() {
    let a = start_host("a", &slow_host(300)).await.unwrap();
    let b = start_host("b", &slow_host(300)).await.unwrap();
    let mut spec = gateway_spec(vec![a.addr(), b.addr()]);
    spec.max_in_flight_per_upstream = Some(1);
    let gw = start_gateway("gw", &spec).await.unwrap();
    let first = spawn_post(gw.addr());
    let second = spawn_post(gw.addr());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = post_json(gw.addr(), "/v1/chat/completions", chat(true)).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS, "both are full");

    let mut served = BTreeSet::new();
    for task in [first, second] {
        let answer = task.await.unwrap().unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        served.insert(answer.header("x-served-by").unwrap().to_string());
    }
    assert_eq!(served, BTreeSet::from(["a".to_string(), "b".to_string()]));
    gw.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_crashed_upstream_is_failed_over_and_ejected() {
    let doomed = start_host("doomed", &small_host(5)).await.unwrap();
    let good = start_host("good", &host_spec()).await.unwrap();
    let mut spec = gateway_spec(vec![doomed.addr(), good.addr()]);
    spec.eject_after = 2;
    let gw = start_gateway("gw", &spec).await.unwrap();
    let before = post_json(gw.addr(), "/v1/chat/completions", chat(true)).await;
    assert_eq!(before.header("x-served-by"), Some("doomed"));

    // The request that crashes the first upstream is retried on the second.
    let crashing = post_json(gw.addr(), "/v1/chat/completions", huge_chat()).await;
    assert_eq!(crashing.status, StatusCode::OK);
    assert_eq!(crashing.header("x-served-by"), Some("good"));
    tokio::time::timeout(CRASH_LIMIT, doomed.wait_crashed())
        .await
        .expect("the first upstream crashed");
    for _ in 0..5 {
        let answer = post_json(gw.addr(), "/v1/chat/completions", chat(true)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.header("x-served-by"), Some("good"));
        assert!(answer.text().ends_with("data: [DONE]\n\n"));
    }
    // Ejected, not merely failed over each time: a host answering on the dead one's port is
    // not tried during the cooldown.
    let mut revived = host_spec();
    revived.listen = doomed.addr();
    let revived = start_host("revived", &revived).await.unwrap();
    for _ in 0..3 {
        let answer = post_json(gw.addr(), "/v1/chat/completions", chat(false)).await;
        assert_eq!(answer.header("x-served-by"), Some("good"));
    }
    gw.stop().await;
    doomed.stop().await;
    revived.stop().await;
    good.stop().await;
}

/// One node is dead; four concurrent streams arrive. Returns the survivor's statuses in arrival
/// order, and whether the survivor crashed too.
async fn after_one_node_died(limit: Option<u32>) -> (Vec<Option<StatusCode>>, bool) {
    let dead = start_host("dead", &small_host(300)).await.unwrap();
    let survivor = start_host("survivor", &small_host(300)).await.unwrap();
    let mut spec = gateway_spec(vec![dead.addr(), survivor.addr()]);
    spec.strategy = Strategy::RoundRobin;
    spec.eject_after = 1;
    spec.max_in_flight_per_upstream = limit;
    let gw = start_gateway("gw", &spec).await.unwrap();
    crash(&dead).await;

    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(spawn_post(gw.addr()));
        // Apart, so the arrival order is the order of the list.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut statuses = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        statuses.push(match answer {
            Ok(a) if a.body_error.is_none() => Some(a.status),
            _ => None,
        });
    }
    if limit.is_none() {
        let _ = tokio::time::timeout(CRASH_LIMIT, survivor.wait_crashed()).await;
    }
    let crashed = survivor.crashed();
    gw.stop().await;
    dead.stop().await;
    survivor.stop().await;
    (statuses, crashed)
}

#[tokio::test]
async fn without_shedding_the_failover_crashes_the_survivor_too() {
    let (statuses, crashed) = after_one_node_died(None).await;
    assert!(crashed, "the survivor ran out of memory: {statuses:?}");
    assert!(
        !statuses.contains(&Some(StatusCode::OK)),
        "every stream was cut: {statuses:?}"
    );
}

#[tokio::test]
async fn shedding_keeps_the_survivor_alive() {
    let (statuses, crashed) = after_one_node_died(Some(2)).await;
    assert!(!crashed);
    let ok = Some(StatusCode::OK);
    let shed = Some(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(statuses, vec![ok, ok, shed, shed]);
}
