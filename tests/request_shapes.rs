//! The four request shapes (`openai-chat`, `anthropic-messages`, `openai-completions`,
//! `openai-responses`) run end to end, streamed and not, through the real binary: a simulated
//! host, the fault proxy in front of it, one load stream per shape and mode, each at its own
//! route. Whole answers are `ok` and verified; a re-terminated cut makes every streamed shape
//! `truncated` and an OpenAI-shaped in-stream error makes it `stream_error`.

mod common;

use std::collections::BTreeMap;

use common::{free_ports, run_experiment};

/// Each API at the route its clients send it to.
const SHAPES: [(&str, &str); 4] = [
    ("openai-chat", "/v1/chat/completions"),
    ("anthropic-messages", "/v1/messages"),
    ("openai-completions", "/v1/completions"),
    ("openai-responses", "/v1/responses"),
];

struct Row {
    stream: String,
    intended_ms: f64,
    outcome: String,
    verified: String,
}

fn rows(out: &std::path::Path) -> Vec<Row> {
    common::requests_csv(out)
        .iter()
        .map(|r| Row {
            stream: r.get("stream").to_string(),
            intended_ms: r.num("intended_ms"),
            outcome: r.get("outcome").to_string(),
            verified: r.get("verified").to_string(),
        })
        .collect()
}

/// The outcomes of stream `name` intended in `[from_ms, to_ms)`, counted; never empty.
fn outcomes(rows: &[Row], name: &str, from_ms: f64, to_ms: f64) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.stream == name && r.intended_ms >= from_ms && r.intended_ms < to_ms)
    {
        *counts.entry(r.outcome.clone()).or_insert(0) += 1;
    }
    assert!(
        !counts.is_empty(),
        "{name}: no requests in {from_ms}..{to_ms} ms"
    );
    counts
}

fn only(outcome: &str, counts: &BTreeMap<String, usize>) -> bool {
    counts.keys().all(|k| k == outcome)
}

#[test]
fn every_request_shape_runs_end_to_end_and_its_cuts_and_errors_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let [host, proxy] = free_ports(2)[..] else {
        unreachable!()
    };
    let mut load = String::new();
    for (api, path) in SHAPES {
        for stream in [true, false] {
            let name = format!("{api}-{}", if stream { "streamed" } else { "whole" });
            load += &format!(
                "  {name}:\n    url: http://127.0.0.1:{proxy}{path}\n    rate: 10/s\n    \
                 request: {{ api: {api}, stream: {stream} }}\n"
            );
        }
    }
    // Six events pass every stream's opening and cut it mid-text (8 tokens): chat sends a role
    // chunk first, Anthropic three events, Responses four, completions none.
    let yaml = format!(
        r#"version: 1
name: request-shapes
seed: 3
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}", ttft: 5ms, tokens_per_second: 1000, completion_tokens: 8 }} }}
proxies:
  p: {{ listen: "127.0.0.1:{proxy}", upstream: "127.0.0.1:{host}" }}
load:
{load}timeline:
  - {{ at: 2s, inject: {{ id: cut, proxy: p, fault: {{ truncate_stream: {{ after_events: 6, how: reterminate }} }} }} }}
  - {{ at: 3500ms, lift: cut }}
  - {{ at: 4s, inject: {{ id: err, proxy: p, fault: {{ stream_error: {{ after_events: 6, shape: openai }} }} }} }}
  - {{ at: 5500ms, lift: err }}
  - {{ at: 6s, end: true }}
"#
    );
    let run = run_experiment(dir.path(), "shapes.yaml", &yaml, &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let rows = rows(&run.out);
    for (api, _) in SHAPES {
        let streamed = format!("{api}-streamed");
        let whole = format!("{api}-whole");
        for name in [&streamed, &whole] {
            let before = outcomes(&rows, name, 0.0, 1950.0);
            assert!(only("ok", &before), "{name} before the faults: {before:?}");
            let after = outcomes(&rows, name, 5600.0, 6000.0);
            assert!(only("ok", &after), "{name} after the faults: {after:?}");
        }
        // Every whole answer proved itself whole, by its text and its usage.
        assert!(
            rows.iter()
                .filter(|r| r.stream.starts_with(api) && r.outcome == "ok")
                .all(|r| r.verified == "true"),
            "{api}: an ok answer was unverified"
        );
        let cut = outcomes(&rows, &streamed, 2050.0, 3450.0);
        assert!(only("truncated", &cut), "{streamed} while cut: {cut:?}");
        let errored = outcomes(&rows, &streamed, 4050.0, 5450.0);
        assert!(
            only("stream_error", &errored),
            "{streamed} with an in-stream error: {errored:?}"
        );
        // The stream faults leave answers that are not streams alone.
        let during = outcomes(&rows, &whole, 2050.0, 5450.0);
        assert!(only("ok", &during), "{whole} during the faults: {during:?}");
    }
}
