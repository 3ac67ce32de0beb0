//! Real gateways under faultline: for HAProxy and nginx, a configuration that fails over meets
//! its budgets (exit 0) and a common misconfiguration misses them (exit 1, failing budget named),
//! under the same error burst and host kill. Skipped, loudly, when the gateway binary is missing
//! (and failed under CI=true, which installs both: see .ci/run).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{faultline, faultline_std, free_ports, on_path, report, require_tool, spawn};

fn drill(file: &str, expected_exit: i32) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let assert = faultline()
        .args(["run", file, "--quiet", "--out"])
        .arg(&out)
        .assert();
    let output = assert.get_output();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(expected_exit),
        "{file}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    report(&out)
}

fn failed_budgets(report: &serde_json::Value) -> Vec<String> {
    report["evaluation"]["verdict"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["passed"] == false)
        .map(|r| r["budget"].as_str().unwrap().to_string())
        .collect()
}

fn pair(program: &str, good: &str, bad: &str) {
    if !require_tool(
        &format!("{program} (apt-get install {program})"),
        on_path(program),
    ) {
        return;
    }
    let report = drill(good, 0);
    assert!(failed_budgets(&report).is_empty());
    let report = drill(bad, 1);
    let failed = failed_budgets(&report);
    assert!(
        failed.contains(&"max_error_rate".to_string()),
        "{bad}: failed budgets {failed:?}"
    );
}

#[test]
fn haproxy_with_retries_passes_and_without_fails() {
    pair(
        "haproxy",
        "experiments/gateways/haproxy-good.yaml",
        "experiments/gateways/haproxy-bad.yaml",
    );
}

#[test]
fn nginx_retrying_posts_passes_and_without_fails() {
    pair(
        "nginx",
        "experiments/gateways/nginx-good.yaml",
        "experiments/gateways/nginx-bad.yaml",
    );
}

/// Polls until `addr` accepts a connection; fails the test after `within`.
fn wait_listening(addr: SocketAddr, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One non-streamed chat completion POSTed to `gateway`: the status and the `x-served-by` of
/// the answer ("-" when none), as the client sees them.
fn post(gateway: SocketAddr) -> (u16, String) {
    let body =
        r#"{"model":"llama-sim","stream":false,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut stream = TcpStream::connect_timeout(&gateway, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    // Bounded by the read timeout; nginx closes after the answer (Connection: close).
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let served_by = answer
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-served-by")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| "-".to_string());
    (status, served_by)
}

/// The transparency test of docs/transparency.md: nginx in front of a dead primary (a port
/// nobody listens on) and a live backup decides the same for a POST whether the primary's
/// address is the dead port itself or faultline's HTTP fault proxy (no fault in force) in front
/// of it. nginx retries connection errors (`error`, POST included), not 502s: a proxy that
/// answered the dead primary with its own 502 would be passed through to the client.
#[test]
fn nginx_decides_the_same_for_a_post_to_a_dead_primary_with_and_without_the_proxy() {
    if !require_tool("nginx (apt-get install nginx)", on_path("nginx")) {
        return;
    }
    let [direct, proxied, dead, backup, proxy] = free_ports(5)[..] else {
        unreachable!()
    };
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));

    let _backup = spawn(
        faultline_std()
            .args(["simulate", "--listen", &local(backup).to_string()])
            .args(["--served-by", "backup"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_listening(local(backup), "the backup", common::START_TIMEOUT);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let spec = faultline::experiment::schema::ProxySpec {
        listen: local(proxy).into(),
        upstream: local(dead).into(),
        upstream_tls: None,
        preserve_host: false,
        mode: Default::default(),
        driver: Default::default(),
    };
    let running = runtime
        .block_on(faultline::proxy::start("primary-proxy", &spec, 1))
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    let upstream = |name: &str, primary: u16| {
        format!(
            "upstream {name} {{ server 127.0.0.1:{primary}; server 127.0.0.1:{backup} backup; }}\n"
        )
    };
    let server = |port: u16, name: &str| {
        format!(
            "server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://{name}; \
             proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_connect_timeout 500ms; \
             proxy_read_timeout 5s; proxy_next_upstream error timeout non_idempotent; }} }}\n"
        )
    };
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid nginx.pid;\nerror_log stderr warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\naccess_log off;\nclient_body_temp_path tmp/body;\nproxy_temp_path tmp/proxy;\n\
         fastcgi_temp_path tmp/fastcgi;\nuwsgi_temp_path tmp/uwsgi;\nscgi_temp_path tmp/scgi;\n\
         {}{}{}{}}}\n",
        upstream("direct", dead),
        upstream("proxied", proxy),
        server(direct, "direct"),
        server(proxied, "proxied"),
    );
    let conf_path = common::write(dir.path(), "nginx.conf", &conf);
    let _nginx = spawn(
        std::process::Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .args(["-e", "stderr", "-c"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_listening(local(direct), "nginx", common::START_TIMEOUT);
    wait_listening(local(proxied), "nginx", common::START_TIMEOUT);

    // The first POST meets the dead primary on both sides; nginx then holds it failed for its
    // fail_timeout, so the later ones show that decision carrying on the same way.
    let without: Vec<_> = (0..3).map(|_| post(local(direct))).collect();
    let with: Vec<_> = (0..3).map(|_| post(local(proxied))).collect();
    assert_eq!(
        with, without,
        "through the proxy (left) nginx decided otherwise than with the dead primary itself"
    );
    assert_eq!(
        without[0],
        (200, "backup".to_string()),
        "the drill's premise"
    );
    runtime.block_on(running.stop());
}
