//! Faults come and go while traffic flows; decisions are seeded.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::support::*;
use crate::proxy::start;

#[tokio::test]
async fn inject_and_lift_touch_only_requests_that_start_afterwards() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let faults = proxy.faults();

    // In flight before the injection: must run to its end untouched.
    let before = get(proxy.addr(), "/sse?n=6&gap=60").await.unwrap();
    let cut = json!({"truncate_stream": {"after_events": 2}});
    faults.inject("cut", fault(cut));
    faults.inject("slow", fault(json!({"latency": {"delay": "1ms"}})));
    assert_eq!(faults.active(), ["cut", "slow"]);

    let during = get(proxy.addr(), "/sse?n=6&gap=10").await.unwrap();
    let during = read_all(during).await;
    assert_eq!(during.text(), events(0..2));
    assert!(matches!(during.end, End::Error(_)), "{:?}", during.end);

    let before = read_all(before).await;
    assert_eq!(before.text(), events(0..6));
    assert!(matches!(before.end, End::Complete), "{:?}", before.end);

    assert!(faults.lift("cut"));
    assert!(!faults.lift("cut"));
    let after = read_all(get(proxy.addr(), "/sse?n=6&gap=10").await.unwrap()).await;
    assert_eq!(after.text(), events(0..6));
    assert!(matches!(after.end, End::Complete));
    assert_eq!(faults.lift_all(), 1);
    assert!(faults.active().is_empty());
    proxy.stop().await;
}

/// Statuses of `n` sequential requests on one connection.
async fn statuses(addr: std::net::SocketAddr, n: usize) -> Vec<u16> {
    let mut conn = connect(addr).await;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let response = conn.get("/json").await.unwrap();
        out.push(response.status().as_u16());
        read_all(response).await;
    }
    out
}

#[tokio::test]
async fn probability_is_honoured_and_the_seed_fixes_the_decisions() {
    let up = upstream().await;
    let errors = json!({"http_error": {"status": 503, "probability": "30%"}});
    let mut runs = Vec::new();
    for _ in 0..2 {
        // Same name and seed, a different port each time.
        let proxy = start("seeded", &spec(up.addr), 42).await.unwrap();
        proxy.faults().inject("errors", fault(errors.clone()));
        runs.push(statuses(proxy.addr(), 400).await);
        proxy.stop().await;
    }
    let hits = runs[0].iter().filter(|s| **s == 503).count();
    // 400 draws at 30%: mean 120, sd 9.2; the tolerance is over 4 sd either way.
    assert!((80..=160).contains(&hits), "{hits} of 400");
    assert!(runs[0].iter().all(|s| *s == 503 || *s == 200));
    assert_eq!(runs[0], runs[1], "same seed, same decisions");

    let other = start("seeded", &spec(up.addr), 43).await.unwrap();
    other.faults().inject("errors", fault(errors));
    assert_ne!(
        runs[0],
        statuses(other.addr(), 400).await,
        "another seed decides otherwise"
    );
    other.stop().await;
}

#[tokio::test]
async fn bursts_switch_the_fault_on_and_off() {
    let up = upstream().await;
    let proxy = proxy_to(&up, 1).await;
    let burst = json!({"http_error": {"status": 429, "burst": {"on": "300ms", "off": "300ms"}}});
    proxy.faults().inject("burst", fault(burst));
    let t0 = Instant::now();
    let mut seen = Vec::new();
    // Requests at 100ms (on), 450ms (off), 750ms (on again), 1050ms (off).
    for at in [100u64, 450, 750, 1050] {
        tokio::time::sleep_until(t0 + Duration::from_millis(at)).await;
        let response = get(proxy.addr(), "/json").await.unwrap();
        seen.push(response.status().as_u16());
    }
    assert_eq!(seen, [429, 200, 429, 200]);
    proxy.stop().await;
}
