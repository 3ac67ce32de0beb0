use std::time::{Duration, Instant};

use super::*;
use crate::experiment::schema::{Exhaustion, LoadStreamSpec, MemorySpec, Overflow, SimulateSpec};
use crate::experiment::{LoadStream, Target};
use crate::load::client::{execute, http_client, StreamPlan};
use crate::units::Dur;

fn stream(addr: std::net::SocketAddr, request: &str) -> LoadStream {
    let yaml =
        format!("{{ url: \"http://{addr}/v1/chat/completions\", rate: 1/s, request: {request} }}");
    let spec: LoadStreamSpec = serde_saphyr::from_str(&yaml).unwrap();
    LoadStream {
        name: "chat".into(),
        target: Target {
            scheme: crate::net::Scheme::Http,
            addr: crate::net::HostPort::new("127.0.0.1", addr.port()),
            authority: addr.to_string(),
            path_and_query: "/v1/chat/completions".into(),
        },
        spec,
        headers: Vec::new(),
        prompts: None,
        rate_changes: Vec::new(),
        tls: crate::net::Tls::system().unwrap(),
    }
}

fn body_of(plan: &StreamPlan, seq: u64) -> Value {
    serde_json::from_slice(&plan.body(seq).0).unwrap()
}

fn words(body: &Value) -> usize {
    body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .count()
}

fn lengths(seed: u64, request: &str, n: u64) -> Vec<(usize, u64)> {
    let plan = StreamPlan::new(&stream(([127, 0, 0, 1], 9).into(), request), seed).unwrap();
    (0..n)
        .map(|k| {
            let b = body_of(&plan, k);
            (words(&b), b["max_tokens"].as_u64().unwrap())
        })
        .collect()
}

const DRAWN: &str = "{ api: openai-chat, stream: false, prompt_tokens: { min: 5, max: 60 }, max_tokens: { mean: 100, stddev: 30 } }";

#[test]
fn the_same_seed_draws_the_same_lengths() {
    let a = lengths(7, DRAWN, 200);
    assert_eq!(a, lengths(7, DRAWN, 200));
    assert_ne!(a, lengths(8, DRAWN, 200));
    assert!(a.iter().all(|(p, _)| (5..=60).contains(p)), "{a:?}");
    let distinct: std::collections::BTreeSet<usize> = a.iter().map(|l| l.0).collect();
    assert!(distinct.len() > 30, "{distinct:?}");
    let mean = a.iter().map(|l| l.1 as f64).sum::<f64>() / a.len() as f64;
    assert!((mean - 100.0).abs() < 8.0, "mean {mean}");
}

#[test]
fn draws_do_not_depend_on_the_order_of_requests() {
    let plan = StreamPlan::new(&stream(([127, 0, 0, 1], 9).into(), DRAWN), 3).unwrap();
    let forward: Vec<Value> = (0..50).map(|k| body_of(&plan, k)).collect();
    let backward: Vec<Value> = (0..50).rev().map(|k| body_of(&plan, k)).collect();
    assert_eq!(forward, backward.into_iter().rev().collect::<Vec<_>>());
}

#[test]
fn the_template_keeps_every_other_field() {
    let request = "{ api: openai-chat, stream: true, model: m1, prompt_tokens: 3, max_tokens: { min: 9, max: 9 }, extra_body: { ignore_eos: true, top_p: 0.5 } }";
    let plan = StreamPlan::new(&stream(([127, 0, 0, 1], 9).into(), request), 0).unwrap();
    let (_, expect) = plan.body(0);
    let body = body_of(&plan, 0);
    assert_eq!(
        body,
        serde_json::json!({
            "model": "m1",
            "messages": [{ "role": "user", "content": "alpha bravo charlie" }],
            "stream": true,
            "max_tokens": 9,
            "stream_options": { "include_usage": true },
            "ignore_eos": true,
            "top_p": 0.5,
        })
    );
    // `ignore_eos` pins the drawn length: fewer tokens than it is a cut.
    assert_eq!(expect.pinned, Some(9));
}

#[test]
fn a_normal_draw_is_clamped_to_one() {
    let d = Decider::new(1, "s", "prompt");
    let t = Tokens::Normal {
        mean: 1.0,
        stddev: 50.0,
    };
    let v: Vec<u32> = (0..500).map(|k| draw_tokens(&t, &d, k, 1000)).collect();
    assert!(v.iter().all(|n| (1..=1000).contains(n)));
    assert!(
        v.iter().filter(|n| **n == 1).count() > 200,
        "about half clamp"
    );
}

#[test]
fn file_prompts_are_picked_by_seed() {
    let mut s = stream(
        ([127, 0, 0, 1], 9).into(),
        "{ api: openai-chat, stream: false, prompts: p.jsonl }",
    );
    s.prompts = Some(
        vec![
            Prompt::Text("one".into()),
            Prompt::Messages(vec![
                serde_json::json!({"role": "system", "content": "two"}),
            ]),
        ]
        .into(),
    );
    let plan = StreamPlan::new(&s, 5).unwrap();
    let picked: Vec<Value> = (0..40)
        .map(|k| body_of(&plan, k)["messages"].clone())
        .collect();
    assert!(picked.contains(&serde_json::json!([{"role": "user", "content": "one"}])));
    assert!(picked.contains(&serde_json::json!([{"role": "system", "content": "two"}])));
    let again = StreamPlan::new(&s, 5).unwrap();
    let repeat: Vec<Value> = (0..40)
        .map(|k| body_of(&again, k)["messages"].clone())
        .collect();
    assert_eq!(picked, repeat);
}

/// The simulator's KV cache is charged the prompt's words plus the completion: with 40 tokens
/// of cache and 8-token completions, a drawn prompt fits exactly when it has at most 32 words.
#[tokio::test]
async fn the_simulated_cache_is_charged_the_drawn_prompt() {
    let spec = SimulateSpec {
        listen: ([127, 0, 0, 1], 0).into(),
        model: "sim-model".into(),
        ttft: Dur::from_millis(1),
        tokens_per_second: 10_000.0,
        completion_tokens: 8,
        capacity: None,
        overflow: Overflow::Queue,
        reject_status: 429.try_into().unwrap(),
        served_by: None,
        memory: Some(MemorySpec {
            kv_tokens: 40,
            leak_per_second: 0,
            leak_after: Dur::from_millis(0),
            on_exhaustion: Exhaustion::Reject,
        }),
        cold_start: None,
        content: Default::default(),
    };
    let host = crate::simulate::start_host("h", &spec).await.unwrap();
    let request =
        "{ api: openai-chat, stream: false, prompt_tokens: { min: 10, max: 60 }, max_tokens: 8 }";
    let stream = stream(host.addr(), request);
    let plan = StreamPlan::new(&stream, 11).unwrap();
    let client = http_client(&stream.target, 1, &stream.tls).unwrap();
    let origin = Instant::now();
    let (mut fits, mut refused) = (0, 0);
    for seq in 0..30 {
        let drawn = plan.workload.as_ref().unwrap().draw(seq);
        let words = drawn.prompt_tokens.unwrap();
        // One at a time, so nothing else holds cache.
        let rec = tokio::time::timeout(
            Duration::from_secs(5),
            execute(&client, &plan, origin, seq, origin.elapsed()),
        )
        .await
        .unwrap();
        let expected = if words + 8 <= 40 { 200 } else { 429 };
        assert_eq!(rec.status, Some(expected), "request {seq}: {words} words");
        if expected == 200 {
            fits += 1;
        } else {
            refused += 1;
        }
    }
    assert!(fits > 0 && refused > 0, "{fits} fit, {refused} refused");
    host.stop().await;
}
