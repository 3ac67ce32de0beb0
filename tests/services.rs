//! External services and process faults, with the real binary: a service that dies or never
//! gets ready fails the run with exit 4 and the tail of its log; a paused process is a gray
//! failure that resumes on lift; a restart ends when the service is ready again.

mod common;

use common::{faultline, free_ports, report, write};

fn run(yaml: &str, code: i32) -> (tempfile::TempDir, String, Option<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "drill.yaml", yaml);
    let out = dir.path().join("out");
    let assert = faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(code);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    let report = out.join("report.json").exists().then(|| report(&out));
    (dir, stderr, report)
}

fn with_service(service: &str, port: u16) -> String {
    format!(
        r#"version: 1
name: svc
services:
{service}
load:
  s: {{ url: "http://127.0.0.1:{port}/v1/chat/completions", rate: 5/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 1s, end: true }}
"#
    )
}

#[test]
fn a_service_that_exits_early_fails_the_run_with_its_log() {
    let port = free_ports(1)[0];
    let service = "  broken:\n    command: [sh, -c, \"echo 'listen failed: bad config' >&2; exit 3\"]\n    ready: { tcp: \"127.0.0.1:1\", within: 5s }";
    let (_dir, stderr, report) = run(&with_service(service, port), 4);
    assert!(
        stderr.contains("service `broken`")
            && stderr.contains("status 3")
            && stderr.contains("listen failed: bad config"),
        "{stderr}"
    );
    // Every exit path leaves a report: this one says why the run never started.
    let report = report.expect("a report even when start-up failed");
    assert_eq!(report["exit_code"], 4);
    let why = report["ended_early"].as_str().unwrap_or_default();
    assert!(why.contains("service `broken`"), "{why}");
    assert_eq!(report["fault_windows"].as_array().map(Vec::len), Some(0));
}

#[test]
fn a_service_that_never_gets_ready_fails_the_run() {
    let port = free_ports(1)[0];
    let service = format!("  sleepy:\n    command: [sleep, \"30\"]\n    ready: {{ tcp: \"127.0.0.1:{port}\", within: 700ms }}");
    let started = std::time::Instant::now();
    let (_dir, stderr, _) = run(&with_service(&service, port), 4);
    assert!(stderr.contains("was not ready within 700ms"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn pause_is_a_gray_failure_and_lifting_it_resumes() {
    let [host, proxy] = free_ports(2)[..] else {
        unreachable!()
    };
    let yaml = format!(
        r#"version: 1
name: pause
services:
  host:
    command: [faultline, simulate, --listen, "127.0.0.1:{host}", --ttft, 5ms]
    ready: {{ tcp: "127.0.0.1:{host}", within: 5s }}
proxies:
  p: {{ listen: "127.0.0.1:{proxy}", upstream: "127.0.0.1:{host}" }}
load:
  s: {{ url: "http://127.0.0.1:{proxy}/v1/chat/completions", rate: 10/s, request: {{ api: openai-chat }}, timeout: 600ms }}
timeline:
  - {{ at: 1s, inject: {{ id: frozen, service: host, fault: {{ pause: {{}} }} }} }}
  - {{ at: 2500ms, lift: frozen }}
  - {{ at: 4s, end: true }}
"#
    );
    let (_dir, _stderr, report) = run(&yaml, 0);
    let phases = &report.unwrap()["evaluation"]["overall"]["phases"];
    let fault = &phases["fault"];
    assert!(
        fault["errors_by_class"]["timeout"].as_u64().unwrap() >= 10,
        "paused host should time requests out: {fault}"
    );
    assert_eq!(phases["baseline"]["errors"], 0);
    // After SIGCONT the backlog drains and new requests succeed.
    let recovery = &phases["recovery"];
    assert!(recovery["ok"].as_u64().unwrap() >= 8, "{recovery}");
}

#[test]
fn restart_ends_when_the_service_is_ready_again() {
    let host = free_ports(1)[0];
    let yaml = format!(
        r#"version: 1
name: restart
services:
  host:
    command: [faultline, simulate, --listen, "127.0.0.1:{host}"]
    ready: {{ tcp: "127.0.0.1:{host}", within: 5s }}
load:
  s: {{ url: "http://127.0.0.1:{host}/v1/chat/completions", rate: 10/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 1s, inject: {{ id: bounce, service: host, fault: {{ restart: {{}} }} }} }}
  - {{ at: 3s, end: true }}
"#
    );
    let (_dir, stderr, report) = run(&yaml, 0);
    assert!(
        stderr.contains("host is back after its restart"),
        "{stderr}"
    );
    let window = &report.unwrap()["fault_windows"][0];
    let (start, end) = (
        window["start_ms"].as_f64().unwrap(),
        window["end_ms"].as_f64().unwrap(),
    );
    assert!(
        end > start && end - start < 2000.0,
        "restart window {start}..{end}"
    );
}

#[test]
fn lift_all_starts_a_killed_service_again() {
    let host = free_ports(1)[0];
    let yaml = format!(
        r#"version: 1
name: kill-and-lift-all
services:
  host:
    command: [faultline, simulate, --listen, "127.0.0.1:{host}"]
    ready: {{ tcp: "127.0.0.1:{host}", within: 5s }}
load:
  s: {{ url: "http://127.0.0.1:{host}/v1/chat/completions", rate: 10/s, request: {{ api: openai-chat }}, timeout: 1s }}
timeline:
  - {{ at: 1s, inject: {{ service: host, fault: {{ kill: {{}} }} }} }}
  - {{ at: 2s, lift: all }}
  - {{ at: 4s, end: true }}
"#
    );
    let (_dir, _stderr, report) = run(&yaml, 0);
    let phases = &report.unwrap()["evaluation"]["overall"]["phases"];
    assert!(
        phases["fault"]["errors_by_class"]["connect_error"]
            .as_u64()
            .unwrap()
            >= 5,
        "{}",
        phases["fault"]
    );
    // Started again by `lift: all`: the last second is served.
    let recovery = &phases["recovery"];
    assert!(recovery["ok"].as_u64().unwrap() >= 10, "{recovery}");
}

#[test]
fn simulate_content_plain_serves_ordinary_words_and_honours_max_tokens() {
    use std::io::{Read, Write};
    use std::process::Stdio;

    let port = free_ports(1)[0];
    let mut host = common::spawn(
        common::faultline_std()
            .args(["simulate", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--content", "plain", "--ttft", "1ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let pipe = host.stderr.take().expect("stderr is piped");
    let mut stderr = common::Lines::new(pipe, "faultline simulate's stderr");
    stderr.until("simulated inference host on", common::START_TIMEOUT);

    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the host listens");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("a read timeout");
    let body = r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#;
    write!(
        conn,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("the request is sent");
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .expect("the answer arrives within the read timeout");
    let (_, json) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let v: serde_json::Value = serde_json::from_str(json).expect("a JSON body");
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(text.split_whitespace().count(), 5, "{text:?}");
    assert!(!text.contains('/'), "no verifiable tokens: {text:?}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
}
