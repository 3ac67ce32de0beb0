//! Verdicts that must FAIL: drills run by the real binary on loopback whose system under test
//! is broken in a way a naive verdict would miss.

mod common;

use common::{free_ports, run_experiment, verdict_row};

/// The system answers every request with an error from the first second, before any fault: a
/// steady state of 0% must not let failover and recovery pass at 0s.
#[test]
fn a_system_down_before_any_fault_fails_its_failover_budget() {
    let dir = tempfile::tempdir().unwrap();
    // `dead` is a port nobody listens on: the proxy refuses connections until the 503 burst.
    let [proxy, dead] = free_ports(2)[..] else {
        unreachable!()
    };
    let yaml = format!(
        r#"version: 1
name: down-before-the-fault
seed: 3
proxies:
  p: {{ listen: "127.0.0.1:{proxy}", upstream: "127.0.0.1:{dead}" }}
load:
  s:
    url: http://127.0.0.1:{proxy}/v1/chat/completions
    rate: 30/s
    request: {{ api: openai-chat }}
timeline:
  - {{ at: 2s, inject: {{ id: burst, proxy: p, fault: {{ http_error: {{ status: 503 }} }} }} }}
  - {{ at: 3s, lift: burst }}
  - {{ at: 4s, end: true }}
expect:
  failover_within: 1s
  recover_within: 1s
"#
    );
    let run = run_experiment(dir.path(), "down.yaml", &yaml, &[]);
    let stdout = &run.stdout;
    assert_eq!(run.code, Some(1), "{stdout}");
    assert!(
        stdout.contains("the system was failing before any fault was injected"),
        "{stdout}"
    );
    let report = run.report();
    assert_eq!(
        report["evaluation"]["overall"]["steady_state"]["steady"],
        false
    );
    for budget in ["failover_within", "recover_within"] {
        let row = verdict_row(&report, budget);
        assert_eq!(row["passed"], false, "{row}");
        let detail = row["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("baseline not steady: 0 of "),
            "{budget}: {detail}"
        );
    }
}

/// A fault on a proxy that is not on the path touches nothing: the verdict warns, and with
/// `faults_must_act` the run fails, however healthy the system looked.
#[test]
fn a_fault_that_touched_nothing_fails_faults_must_act() {
    let dir = tempfile::tempdir().unwrap();
    let [host, idle] = free_ports(2)[..] else {
        unreachable!()
    };
    // The load goes straight to the host; proxy `pp` sits beside the path.
    let yaml = format!(
        r#"version: 1
name: proxy-off-the-path
seed: 3
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}", ttft: 5ms, tokens_per_second: 1000, completion_tokens: 4 }} }}
proxies:
  pp: {{ listen: "127.0.0.1:{idle}", upstream: "127.0.0.1:{host}" }}
load:
  s:
    url: http://127.0.0.1:{host}/v1/chat/completions
    rate: 20/s
    request: {{ api: openai-chat, stream: false }}
timeline:
  - {{ at: 1s, inject: {{ id: burst, proxy: pp, fault: {{ http_error: {{ status: 503 }} }} }} }}
  - {{ at: 2s, lift: burst }}
  - {{ at: 3s, end: true }}
expect:
  max_error_rate: 1%
  faults_must_act: true
"#
    );
    let run = run_experiment(dir.path(), "idle.yaml", &yaml, &[]);
    let stdout = &run.stdout;
    assert_eq!(run.code, Some(1), "{stdout}");
    let warning = "fault `burst` on pp touched 0 requests: is the proxy on the path to the \
                   system under test?";
    assert!(stdout.contains(warning), "{stdout}");
    let report = run.report();
    assert_eq!(verdict_row(&report, "max_error_rate")["passed"], true);
    let row = verdict_row(&report, "faults_must_act");
    assert_eq!(row["passed"], false, "{row}");
    assert_eq!(row["measured"], "0 of 1 acted");
    let evidence = &report["fault_windows"][0]["evidence"];
    assert_eq!(evidence["kind"], "requests");
    assert_eq!(evidence["touched"], 0);
    assert_eq!(evidence["seen_by_clients"], 0);
}

/// Plain text from a backend proves nothing by itself: without the usage chunk a whole-looking
/// stream is `ok` but unverified, and `max_unverified` catches it; with the usage chunk (the
/// default) the same stream is verified.
#[test]
fn plain_text_without_usage_is_unverified() {
    let dir = tempfile::tempdir().unwrap();
    let host = free_ports(1)[0];
    let yaml = format!(
        r#"version: 1
name: plain-text
seed: 3
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}", ttft: 5ms, tokens_per_second: 1000, completion_tokens: 4, content: plain }} }}
load:
  bare:
    url: http://127.0.0.1:{host}/v1/chat/completions
    rate: 10/s
    request: {{ api: openai-chat, include_usage: false }}
  counted:
    url: http://127.0.0.1:{host}/v1/chat/completions
    rate: 10/s
    request: {{ api: openai-chat }}
timeline:
  - {{ at: 2s, end: true }}
expect:
  max_error_rate: 0%
  streams:
    bare: {{ max_unverified: 0 }}
    counted: {{ max_unverified: 0 }}
"#
    );
    let run = run_experiment(dir.path(), "plain.yaml", &yaml, &[]);
    let stdout = &run.stdout;
    assert_eq!(run.code, Some(1), "{stdout}");
    assert!(stdout.contains("ok responses unverified"), "{stdout}");
    let report = run.report();
    let rows = report["evaluation"]["verdict"]["rows"].as_array().unwrap();
    let row = |scope: &str| {
        rows.iter()
            .find(|r| r["budget"] == "max_unverified" && r["scope"] == scope)
            .unwrap()
            .clone()
    };
    assert_eq!(row("stream bare")["passed"], false);
    assert_eq!(row("stream counted")["passed"], true);
    let streams = &report["evaluation"]["streams"];
    assert_eq!(
        streams["bare"]["whole_run"]["unverified"],
        streams["bare"]["whole_run"]["ok"]
    );
    assert_eq!(streams["counted"]["whole_run"]["unverified"], 0);
    // Every request was whole as far as the protocol goes.
    assert_eq!(verdict_row(&report, "max_error_rate")["passed"], true);
}
