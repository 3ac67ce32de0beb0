//! Reading and checking experiment files: typed values, defaults, positions of errors.

use super::*;
use crate::fault::{FaultSpec, LatencyPoint};

const FILE: &str = r#"
version: 1
name: t
services:
  host: { simulate: { listen: "127.0.0.1:9001" } }
proxies:
  p: { listen: "127.0.0.1:9011", upstream: "127.0.0.1:9001" }
load:
  a: { url: "http://localhost:9011/v1/chat/completions", rate: 120/m, request: { api: openai-chat } }
  b: { url: "http://127.0.0.1:9011/v1/messages", rate: 5/s, request: { api: anthropic-messages, stream: false } }
timeline:
  - { at: 9s, end: true }
  - { at: 2s, inject: { proxy: p, duration: 3s, fault: { latency: { delay: 200ms, where: per_chunk } } } }
  - { at: 1s, inject: { id: errs, proxy: p, fault: { http_error: { status: 529, probability: 25% } } } }
  - { at: 6s, lift: errs }
expect:
  max_error_rate: 0.5%
  streams:
    b: { max_errors: 0 }
"#;

fn parsed() -> Experiment {
    parse(Path::new("t.yaml"), FILE.to_string()).unwrap()
}

#[test]
fn the_timeline_is_sorted_with_auto_lifts_in_place() {
    let exp = parsed();
    let at: Vec<u64> = exp.timeline.iter().map(|s| s.at.as_secs()).collect();
    assert_eq!(at, vec![1, 2, 5, 6, 9]);
    assert_eq!(exp.end, Duration::from_secs(9));
    assert_eq!(
        exp.timeline[2].action,
        Action::Lift(LiftTarget::Fault("p/latency".into()))
    );
    assert_eq!(exp.timeline[4].action, Action::End);
}

#[test]
fn values_arrive_typed() {
    let exp = parsed();
    assert_eq!(exp.streams[0].spec.rate.as_per_second(), 2.0);
    assert_eq!(exp.streams[0].target.addr.port(), 9011);
    assert_eq!(exp.streams[0].target.addr.host(), "localhost");
    assert_eq!(exp.streams[0].target.authority, "localhost:9011");
    assert_eq!(exp.streams[1].target.path_and_query, "/v1/messages");
    assert!(!exp.streams[1].spec.request.stream);
    assert_eq!(exp.budgets.max_error_rate.unwrap().fraction(), 0.005);
    assert_eq!(exp.budgets.streams["b"].value.max_errors, Some(0));
    let Action::Inject(inj) = &exp.timeline[1].action else {
        panic!("not an injection")
    };
    match &inj.fault {
        FaultSpec::Latency(l) => {
            assert_eq!(l.delay.0, Duration::from_millis(200));
            assert_eq!(l.point, LatencyPoint::PerChunk);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(exp.seed, 0);
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let exp = parsed();
    let s = &exp.streams[0].spec;
    assert_eq!(s.timeout.0, Duration::from_secs(10));
    assert_eq!(s.served_by.header, "x-served-by");
    assert_eq!(exp.measure.window.0, Duration::from_secs(1));
    let ServiceSpec::Simulate(sim) = &exp.services[0].spec else {
        panic!("not a host")
    };
    assert_eq!((sim.completion_tokens, sim.overflow), (16, Overflow::Queue));
}

#[test]
fn errors_carry_file_line_and_column() {
    let bad = FILE.replace("rate: 5/s", "rate: fast");
    let err = parse(Path::new("dir/t.yaml"), bad).unwrap_err();
    let p = &err.problems[0];
    assert_eq!((p.line, p.column), (10, 56));
    assert!(
        err.to_string()
            .starts_with("dir/t.yaml:10:56: expected a rate"),
        "{err}"
    );
    assert!(p
        .excerpt
        .as_deref()
        .unwrap_or_default()
        .contains("dir/t.yaml:10:56"));
}

#[test]
fn both_cut_points_at_once_are_refused() {
    let bad = FILE.replace(
        "{ latency: { delay: 200ms, where: per_chunk } }",
        "{ truncate_stream: { after_bytes: 10, after_events: 2 } }",
    );
    let err = parse(Path::new("t.yaml"), bad).unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
}

fn with_step(step: &str) -> String {
    FILE.replace(
        "  - { at: 6s, lift: errs }\n",
        &format!("  - {{ at: 6s, lift: errs }}\n  - {step}\n"),
    )
}

#[test]
fn rate_steps_are_typed_and_given_to_their_stream() {
    let text = with_step("{ at: 3s, rate: { stream: a, to: 10/s, over: 2s } }").replace(
        "  - { at: 6s, lift: errs }\n",
        "  - { at: 6s, lift: errs }\n  - { at: 7s, rate: { stream: a, to: 1/s } }\n",
    );
    let exp = parse(Path::new("t.yaml"), text).unwrap();
    let rates: Vec<(u64, &RateChange)> = exp
        .timeline
        .iter()
        .filter_map(|s| match &s.action {
            Action::Rate(r) => Some((s.at.as_secs(), r)),
            _ => None,
        })
        .collect();
    assert_eq!(rates.len(), 2);
    assert_eq!(rates[0].0, 3);
    assert_eq!(rates[0].1.over, Duration::from_secs(2));
    assert_eq!(rates[1].1.over, Duration::ZERO);
    let a = &exp.streams[0];
    assert_eq!(a.rate_changes.len(), 2);
    assert_eq!(a.rate_changes[1].1.to.as_per_second(), 1.0);
    assert!(exp.streams[1].rate_changes.is_empty());
}

#[test]
fn rate_steps_that_cannot_happen_are_refused() {
    for (step, says) in [
        (
            "{ at: 3s, rate: { stream: nope, to: 10/s } }",
            "t.yaml:16:31: `rate` names no load stream `nope`; streams: a, b",
        ),
        (
            "{ at: 8s, rate: { stream: a, to: 10/s, over: 2s } }",
            "this ramp would end at 10s, after the end of the run at 9s",
        ),
        (
            "{ at: 10s, rate: { stream: a, to: 10/s } }",
            "past the end of the run",
        ),
        (
            "{ at: 3s, rate: { stream: a, to: 0/s } }",
            "a rate must be between one a day and 1000000/s",
        ),
        (
            "{ at: 3s, lift: all, rate: { stream: a, to: 5/s } }",
            "exactly one of `inject`, `lift`, `rate` or `end`",
        ),
    ] {
        let err = parse(Path::new("t.yaml"), with_step(step)).unwrap_err();
        assert!(err.to_string().contains(says), "{step}: {err}");
    }
}

#[test]
fn a_warmup_that_reaches_the_first_fault_is_refused() {
    let ok = format!("{FILE}measure: {{ warmup: 900ms }}\n");
    let exp = parse(Path::new("t.yaml"), ok).unwrap();
    assert_eq!(
        exp.measure.warmup,
        Some(crate::units::Dur::from_millis(900))
    );
    let bad = format!("{FILE}measure: {{ warmup: 1s }}\n");
    let err = parse(Path::new("t.yaml"), bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("`measure.warmup` of 1s reaches the first fault at 1s"),
        "{err}"
    );
}

#[test]
fn prompts_files_are_read_relative_to_the_experiment_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("faultline-prompts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("good.jsonl"), "{\"prompt\": \"a b\"}\n").unwrap();
    std::fs::write(
        dir.join("bad.jsonl"),
        "{\"prompt\": \"a\"}\n{\"text\": 1}\n",
    )
    .unwrap();
    let experiment = dir.join("t.yaml");
    let with = |extra: &str| {
        FILE.replace(
            "request: { api: openai-chat }",
            &format!("request: {{ api: openai-chat, {extra} }}"),
        )
    };
    let exp = parse(&experiment, with("prompts: good.jsonl")).unwrap();
    assert_eq!(
        exp.streams[0].prompts.as_deref(),
        Some(&[prompts::Prompt::Text("a b".into())][..])
    );
    let err = parse(&experiment, with("prompts: bad.jsonl")).unwrap_err();
    let bad = dir.join("bad.jsonl");
    assert!(
        err.to_string().contains(&format!(
            "{}:2:1: prompts of load stream `a`",
            bad.display()
        )),
        "{err}"
    );
    let err = parse(&experiment, with("prompts: missing.jsonl")).unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
    let err = parse(
        &experiment,
        with("prompts: good.jsonl, prompt_tokens: { min: 1, max: 9 }"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("keep one"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn with_host(agent: &str) -> String {
    FILE.replace(
        "proxies:\n",
        &format!("hosts:\n  gpu-1: {{ agent: \"{agent}\" }}\nproxies:\n"),
    )
}

#[test]
fn host_agents_are_named_by_host_and_port_and_not_resolved() {
    let exp = parse(
        Path::new("t.yaml"),
        with_host("faultline-agent.chaos.svc.cluster.local:7070"),
    )
    .unwrap();
    let agent = &exp.hosts[0].1.agent;
    assert_eq!(
        (agent.host(), agent.port()),
        ("faultline-agent.chaos.svc.cluster.local", 7070)
    );
    let exp = parse(Path::new("t.yaml"), with_host("10.1.2.3:7070")).unwrap();
    assert_eq!(exp.hosts[0].1.agent.to_string(), "10.1.2.3:7070");
    for (agent, says) in [
        ("gpu-node", "t.yaml:7:19: `gpu-node` needs a port"),
        ("gpu-node:", "t.yaml:7:19: `gpu-node:`: `` is not a port"),
        (":7070", "t.yaml:7:19: `:7070` has no host"),
        (
            "gpu-node:0",
            "t.yaml:7:10: host `gpu-1`: agent `gpu-node:0`: port 0",
        ),
    ] {
        let err = parse(Path::new("t.yaml"), with_host(agent)).unwrap_err();
        assert!(err.to_string().starts_with(says), "{agent}: {err}");
    }
}

#[test]
fn duplicate_fault_ids_are_refused() {
    let bad = FILE
        .replace("id: errs,", "id: p/latency,")
        .replace("lift: errs", "lift: all");
    let err = parse(Path::new("t.yaml"), bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("fault id `p/latency` is already used"),
        "{err}"
    );
}

/// A file written for a cluster: its names resolve only there and its variables are set only
/// there. Checked for running here it is refused; checked to run elsewhere it passes, and its
/// form is still checked.
#[test]
fn a_file_for_elsewhere_is_checked_without_lookups() {
    let cluster = FILE
        .replace(
            "upstream: \"127.0.0.1:9001\"",
            "upstream: \"vllm-0.llm.svc.cluster.local.invalid:8000\"",
        )
        .replace(
            "url: \"http://localhost:9011/v1/chat/completions\", rate: 120/m,",
            "url: \"http://gateway.llm.svc.cluster.local.invalid:8000/v1/chat/completions\", \
             rate: 120/m, headers: { authorization: \"Bearer ${FAULTLINE_TEST_UNSET_KEY}\" },",
        );
    let here = parse(Path::new("t.yaml"), cluster.clone()).unwrap_err();
    let text = here.to_string();
    assert!(text.contains("cannot resolve host `vllm-0.llm"), "{text}");
    assert!(text.contains("cannot resolve host `gateway.llm"), "{text}");
    assert!(text.contains("FAULTLINE_TEST_UNSET_KEY"), "{text}");

    let exp = parse_with(Path::new("t.yaml"), cluster.clone(), Lookups::Elsewhere).unwrap();
    assert_eq!(
        exp.streams[0].target.addr.host(),
        "gateway.llm.svc.cluster.local.invalid"
    );
    let bad = cluster.replace("${FAULTLINE_TEST_UNSET_KEY}", "${OOPS");
    let err = parse_with(Path::new("t.yaml"), bad, Lookups::Elsewhere).unwrap_err();
    assert!(err.to_string().contains("t.yaml:9:"), "{err}");
}

#[test]
fn a_url_with_a_query_and_no_path_is_sent_to_the_root() {
    let file = FILE.replace("127.0.0.1:9011/v1/messages", "127.0.0.1:9011?x=1");
    let exp = parse(Path::new("t.yaml"), file).unwrap();
    assert_eq!(exp.streams[1].target.path_and_query, "/?x=1");
}
