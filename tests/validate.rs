//! Bad input never panics: every kind of mistake gets a message with file:line:column and
//! exit code 2, and `validate` runs nothing.

mod common;

use common::faultline;
use predicates::prelude::*;

/// (fixture, position, words the message must contain)
const CASES: &[(&str, &str, &str)] = &[
    ("unknown-key.yaml", ":8:74:", "unknown field `rte`"),
    (
        "bad-duration.yaml",
        ":11:11:",
        "expected a duration with a unit",
    ),
    ("bad-rate.yaml", ":8:68:", "expected a rate like 50/s"),
    ("bad-percentage.yaml", ":14:19:", "between 0% and 100%"),
    (
        "unknown-proxy.yaml",
        ":10:32:",
        "unknown proxy `primary`; declared proxies: p",
    ),
    (
        "step-past-end.yaml",
        ":11:11:",
        "past the end of the run at 3s",
    ),
    (
        "port-clash.yaml",
        ":6:6:",
        "which service `host` already listens on",
    ),
    ("no-fault.yaml", ":13:3:", "`failover_within` needs a fault"),
    (
        "unknown-stream.yaml",
        ":15:12:",
        "budgets for unknown load stream `other`",
    ),
    (
        "unknown-lift.yaml",
        ":11:21:",
        "`lift: nothing-here` names no injected fault",
    ),
    ("unknown-fault.yaml", ":10:44:", "unknown variant `rest`"),
    (
        "yaml-syntax.yaml",
        ":7:1:",
        "did not find expected ',' or '}'",
    ),
    (
        "bad-url.yaml",
        ":8:16:",
        "only http:// and https:// are supported, not ftp://",
    ),
    (
        "unresolvable-load-host.yaml",
        ":8:16:",
        "load stream `chat`: `https://no-such-host.invalid/v1/chat/completions`: cannot resolve host `no-such-host.invalid`",
    ),
    (
        "missing-ca-file.yaml",
        ":8:111:",
        "load stream `chat`, tls: ca_file `no-such-ca.pem`",
    ),
    (
        "tls-on-http.yaml",
        ":8:110:",
        "load stream `chat`: `tls` applies to an https:// url",
    ),
    (
        "unresolvable-upstream.yaml",
        ":6:6:",
        "proxy `p`: upstream `no-such-host.invalid:80`: cannot resolve host `no-such-host.invalid`",
    ),
    (
        "unresolvable-listen.yaml",
        ":6:16:",
        "`no-such-host.invalid:19211`: cannot resolve host `no-such-host.invalid`",
    ),
    (
        "url-upstream-tcp.yaml",
        ":6:6:",
        "proxy `p` carries bytes (mode: tcp or driver: toxiproxy): its upstream is host:port, not a URL (`https://127.0.0.1:19201`)",
    ),
    (
        "bad-ready-url.yaml",
        ":6:20:",
        "`https://127.0.0.1:19231/health`: only http:// is supported, not https://",
    ),
    ("no-end.yaml", ":10:5:", "needs a final step"),
    (
        "fault-too-long.yaml",
        ":12:23:",
        "would stay injected for 19m58s, longer than the default `max_fault_duration` of 10m",
    ),
    (
        "process-fault-on-proxy.yaml",
        ":10:42:",
        "`kill` does not act on traffic: inject it with `service:` or `host:`",
    ),
    (
        "kill-in-process-service.yaml",
        ":10:34:",
        "process faults act on `command:` services",
    ),
    (
        "two-service-kinds.yaml",
        ":4:9:",
        "needs exactly one of `simulate`, `gateway` or `command`",
    ),
];

#[test]
fn each_kind_of_bad_input_is_reported_with_its_position() {
    for (file, position, words) in CASES {
        let path = format!("fixtures/invalid/{file}");
        let out = faultline().args(["validate", &path]).assert().code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(
            stderr.contains(&format!("{path}{position}")),
            "{file}: no `{path}{position}` in:\n{stderr}"
        );
        assert!(stderr.contains(words), "{file}: no `{words}` in:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{file} panicked:\n{stderr}");
    }
}

#[test]
fn run_rejects_bad_input_before_starting_anything() {
    faultline()
        .args([
            "run",
            "fixtures/invalid/port-clash.yaml",
            "--out",
            "target/never-written",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already listens on"));
    assert!(!common::repo_root().join("target/never-written").exists());
}

#[test]
fn valid_files_pass_and_every_shipped_experiment_validates() {
    faultline()
        .args([
            "validate",
            "fixtures/invalid/valid.yaml",
            "experiments/quickstart.yaml",
            "experiments/drills/gray-failure.yaml",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("quickstart.yaml: ok"));
}

#[test]
fn a_missing_file_is_bad_input() {
    faultline()
        .args(["validate", "fixtures/invalid/does-not-exist.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "does-not-exist.yaml: cannot read the experiment file",
        ));
}

#[test]
fn several_problems_are_reported_in_one_go() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "version: 2\nname: x\nload: {}\ntimeline:\n  - { at: 5s, inject: { proxy: nope, fault: { reset: {} } } }\n  - { at: 3s, end: true }\n";
    let path = common::write(dir.path(), "many.yaml", yaml);
    let out = faultline().arg("validate").arg(&path).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    for words in [
        "unsupported version 2",
        "needs at least one stream",
        "past the end",
        "unknown proxy `nope`",
    ] {
        assert!(stderr.contains(words), "no `{words}` in:\n{stderr}");
    }
}

#[test]
fn usage_errors_exit_2() {
    faultline().args(["run"]).assert().code(2);
    faultline().args(["frobnicate"]).assert().code(2);
    faultline()
        .args(["simulate", "--ttft", "fast"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("expected a duration"));
}
