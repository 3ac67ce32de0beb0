//! Toxiproxy's toxics in experiments, end to end with the real binary: on a built-in TCP proxy
//! (`mode: tcp`), and on a Toxiproxy server's proxy (`driver: toxiproxy`), here `faultline
//! proxy` standing in for a Toxiproxy server. The toxic must act, be lifted, and everything the
//! run created on the server must be gone afterwards.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{faultline, free_ports, write};

fn rows(out: &Path) -> Vec<(f64, String, f64)> {
    common::requests_csv(out)
        .iter()
        .map(|r| {
            (
                r.num("intended_ms"),
                r.get("outcome").to_string(),
                r.num("latency_ms"),
            )
        })
        .collect()
}

fn median_latency(rows: &[(f64, String, f64)], from: f64, to: f64) -> f64 {
    let mut v: Vec<f64> = rows
        .iter()
        .filter(|r| r.0 >= from && r.0 < to && r.1 == "ok")
        .map(|r| r.2)
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn drill(proxy: &str, toxiproxy: &str) -> (String, u16) {
    let [host, port] = free_ports(2)[..] else {
        unreachable!()
    };
    let yaml = format!(
        r#"version: 1
name: toxics
{toxiproxy}services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}", ttft: 5ms }} }}
proxies:
  p: {{ listen: "127.0.0.1:{port}", upstream: "127.0.0.1:{host}", {proxy} }}
load:
  s: {{ url: "http://127.0.0.1:{port}/v1/chat/completions", rate: 10/s, request: {{ api: openai-chat, stream: false }} }}
timeline:
  - {{ at: 2s, inject: {{ id: slow, proxy: p, fault: {{ toxic: {{ type: latency, stream: downstream, attributes: {{ latency: 150 }} }} }} }} }}
  - {{ at: 4s, lift: slow }}
  - {{ at: 5s, end: true }}
"#
    );
    (yaml, port)
}

fn assert_toxic_acted(out: &Path) {
    let rows = rows(out);
    let before = median_latency(&rows, 300.0, 1900.0);
    let during = median_latency(&rows, 2200.0, 3900.0);
    let after = median_latency(&rows, 4200.0, 5000.0);
    assert!(
        during - before >= 140.0,
        "latency toxic added only {:.1} ms",
        during - before
    );
    assert!(
        after - before < 50.0,
        "the toxic was not lifted: {before:.1} -> {after:.1} ms"
    );
}

#[test]
fn a_latency_toxic_on_a_builtin_tcp_proxy_acts_and_lifts() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, _) = drill("mode: tcp", "");
    let file = write(dir.path(), "tcp.yaml", &yaml);
    let out = dir.path().join("out");
    faultline()
        .arg("run")
        .arg(&file)
        .arg("--quiet")
        .arg("--out")
        .arg(&out)
        .assert()
        .code(0);
    assert_toxic_acted(&out);
    // The window says how many connections the toxic acted on.
    let report = common::report(&out);
    let evidence = &report["fault_windows"][0]["evidence"];
    assert_eq!(evidence["kind"], "connections", "{evidence}");
    assert!(evidence["touched"].as_u64().unwrap_or(0) > 0, "{evidence}");
}

/// `faultline proxy` on a port the OS picks, under the common deadline; killed when dropped.
struct AdminServer {
    _child: common::Proc,
    addr: SocketAddr,
}

impl AdminServer {
    fn start() -> AdminServer {
        let (child, addr) = common::start_proxy_server();
        AdminServer {
            _child: child,
            addr,
        }
    }

    /// GET /proxies, as raw JSON.
    fn proxies(&self) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            s,
            "GET /proxies HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"))
    }
}

#[test]
fn a_toxiproxy_driven_proxy_is_created_faulted_and_deleted() {
    let server = AdminServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (yaml, _) = drill(
        "driver: toxiproxy, mode: tcp",
        &format!("toxiproxy: {{ server: \"{}\" }}\n", server.addr),
    );
    let file = write(dir.path(), "toxiproxy.yaml", &yaml);
    let out = dir.path().join("out");
    let assert = faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(0);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("proxy p deleted from the Toxiproxy server"),
        "{stderr}"
    );
    assert_toxic_acted(&out);
    assert_eq!(
        server.proxies(),
        serde_json::json!({}),
        "the run left proxies on the server"
    );
}

#[test]
fn an_unreachable_toxiproxy_server_fails_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let closed = free_ports(1)[0];
    let (yaml, _) = drill(
        "driver: toxiproxy",
        &format!("toxiproxy: {{ server: \"127.0.0.1:{closed}\" }}\n"),
    );
    let file = write(dir.path(), "down.yaml", &yaml);
    let assert = faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .assert()
        .code(4);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("the Toxiproxy server does not answer"),
        "{stderr}"
    );
}
