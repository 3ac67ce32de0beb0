//! `faultline proxy` against Toxiproxy's clients and API: the Rust client crate
//! (`toxiproxy_rust`, blocking, so called from the plain test thread), raw API calls for
//! status codes and shapes, and the Python client when an interpreter that has it is given.

mod common;
mod toxiproxy;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use toxiproxy::{connect, echo_server, ping, Server};
use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::ProxyPack;

#[test]
fn rust_client_drives_the_proxy() {
    let server = Server::start();
    let echo = echo_server();
    let client = Client::new(server.admin);
    assert!(client.is_running());
    let proxies = client
        .populate(vec![ProxyPack::new(
            "echo".into(),
            "127.0.0.1:0".into(),
            echo.to_string(),
        )])
        .unwrap();
    assert_eq!(proxies.len(), 1);
    let listen: std::net::SocketAddr = proxies[0].proxy_pack.listen.parse().unwrap();
    assert_ne!(listen.port(), 0, "the real port is reported");
    assert!(client.all().unwrap().contains_key("echo"));
    let proxy = client.find_proxy("echo").unwrap();

    let mut s = connect(listen);
    assert_eq!(ping(&mut s, b"hello").unwrap(), b"hello");

    // Latency acts on the already open connection too.
    proxy.with_latency("downstream".into(), 100, 0, 1.0);
    assert_eq!(proxy.toxics().unwrap().len(), 1);
    assert_eq!(proxy.toxics().unwrap()[0].name, "latency_downstream");
    let t = Instant::now();
    ping(&mut s, b"again").unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    proxy.delete_all_toxics().unwrap();
    let t = Instant::now();
    ping(&mut s, b"fast").unwrap();
    assert!(t.elapsed() < Duration::from_millis(90), "{:?}", t.elapsed());

    // limit_data: exactly N bytes come back, then the connection closes.
    proxy.with_limit_data("downstream".into(), 10, 1.0);
    let mut s = connect(listen);
    s.write_all(&[7u8; 64]).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert_eq!(got.len(), 10);
    proxy.delete_all_toxics().unwrap();

    // reset_peer has no helper in the crate: add it through the API.
    let (status, body) = server.call(
        "POST",
        "/proxies/echo/toxics",
        r#"{"type":"reset_peer","attributes":{"timeout":0}}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "reset_peer_downstream");
    let mut s = connect(listen);
    s.write_all(b"x").unwrap();
    let mut buf = [0u8; 16];
    let err = s.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);

    proxy.delete_all_toxics().unwrap();
    assert!(proxy.toxics().unwrap().is_empty());
    let mut s = connect(listen);
    assert_eq!(ping(&mut s, b"ok").unwrap(), b"ok");

    proxy.with_latency("upstream".into(), 50, 0, 1.0);
    client.reset().unwrap();
    assert!(client
        .find_proxy("echo")
        .unwrap()
        .toxics()
        .unwrap()
        .is_empty());
    proxy.delete().unwrap();
    assert!(client.all().unwrap().is_empty());
    assert!(client.version().unwrap().contains("version"));
}

#[test]
fn api_status_codes_shapes_and_defaults() {
    let server = Server::start();
    let echo = echo_server();
    let listen = server.create("p", echo);
    let body = format!(r#"{{"name":"p","listen":"127.0.0.1:0","upstream":"{echo}"}}"#);
    let (status, err) = server.call("POST", "/proxies", &body);
    assert_eq!(
        (status, &err["error"]),
        (409, &"proxy already exists".into())
    );
    assert_eq!(err["status"], 409);
    let (status, err) = server.call("POST", "/proxies", r#"{"name":"q"}"#);
    assert_eq!(status, 400);
    assert_eq!(err["error"], "missing required field: upstream");
    let (status, _) = server.call("POST", "/proxies", "{not json");
    assert_eq!(status, 400);
    let (status, err) = server.call("GET", "/proxies/nope", "");
    assert_eq!((status, &err["error"]), (404, &"proxy not found".into()));

    let (status, t) = server.call("POST", "/proxies/p/toxics", r#"{"type":"latency"}"#);
    assert_eq!(status, 200);
    assert_eq!(t["name"], "latency_downstream");
    assert_eq!(t["stream"], "downstream");
    assert_eq!(t["toxicity"], 1.0);
    assert_eq!(t["attributes"]["latency"], 0);
    assert_eq!(t["attributes"]["jitter"], 0);
    let (status, _) = server.call("POST", "/proxies/p/toxics", r#"{"type":"latency"}"#);
    assert_eq!(status, 409);
    for bad in [
        r#"{"type":"nope"}"#,
        r#"{"type":"latency","name":"x","stream":"sideways"}"#,
        r#"{"type":"latency","name":"x","toxicity":2}"#,
        r#"{"type":"latency","name":"x","attributes":{"latency":-1}}"#,
        r#"{"type":"latency","name":"x","attributes":{"latency":"1"}}"#,
    ] {
        let (status, err) = server.call("POST", "/proxies/p/toxics", bad);
        assert_eq!(status, 400, "{bad}: {err}");
        assert!(err["error"].is_string());
    }
    let (_, list) = server.call("GET", "/proxies/p/toxics", "");
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "a rejected toxic changes nothing"
    );

    // Update with PATCH and with POST; unspecified attributes keep their values.
    let (status, t) = server.call(
        "PATCH",
        "/proxies/p/toxics/latency_downstream",
        r#"{"attributes":{"latency":5}}"#,
    );
    assert_eq!((status, &t["attributes"]["latency"]), (200, &5.into()));
    let (_, t) = server.call(
        "POST",
        "/proxies/p/toxics/latency_downstream",
        r#"{"attributes":{"jitter":1},"toxicity":0.5}"#,
    );
    assert_eq!(t["attributes"]["latency"], 5);
    assert_eq!(t["attributes"]["jitter"], 1);
    assert_eq!(t["toxicity"], 0.5);
    let (status, _) = server.call("DELETE", "/proxies/p/toxics/latency_downstream", "");
    assert_eq!(status, 204);
    let (status, _) = server.call("DELETE", "/proxies/p/toxics/latency_downstream", "");
    assert_eq!(status, 404);

    // Disable closes open connections and stops listening; enable listens on the same port.
    let mut s = connect(listen);
    assert_eq!(ping(&mut s, b"a").unwrap(), b"a");
    let (status, p) = server.call("PATCH", "/proxies/p", r#"{"enabled":false}"#);
    assert_eq!((status, &p["enabled"]), (200, &false.into()));
    let mut buf = [0u8; 4];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    assert!(std::net::TcpStream::connect(listen).is_err());
    let (status, p) = server.call("POST", "/proxies/p", r#"{"enabled":true}"#);
    assert_eq!((status, &p["listen"]), (200, &listen.to_string().into()));
    let mut s = connect(listen);
    assert_eq!(ping(&mut s, b"b").unwrap(), b"b");

    let (status, _) = server.call("POST", "/proxies/p", r#"{"enabled":"yes"}"#);
    assert_eq!(status, 400);
    let (_, all) = server.call("GET", "/proxies", "");
    assert_eq!(all["p"]["toxics"], serde_json::json!([]));
    let (status, _) = server.call("POST", "/reset", "");
    assert_eq!(status, 204);
    let (status, _) = server.call("DELETE", "/proxies/p", "");
    assert_eq!(status, 204);
    let (status, _) = server.call("DELETE", "/proxies/p", "");
    assert_eq!(status, 404);
}

#[test]
fn timeout_slow_close_slicer_and_bandwidth_act() {
    let server = Server::start();
    let echo = echo_server();
    let listen = server.create("t", echo);
    let add = |body: &str| {
        let (status, t) = server.call("POST", "/proxies/t/toxics", body);
        assert_eq!(status, 200, "{t}");
    };
    let clear = || {
        let (_, list) = server.call("GET", "/proxies/t/toxics", "");
        for t in list.as_array().unwrap() {
            let path = format!("/proxies/t/toxics/{}", t["name"].as_str().unwrap());
            assert_eq!(server.call("DELETE", &path, "").0, 204);
        }
    };

    add(r#"{"type":"timeout","attributes":{"timeout":200}}"#);
    let mut s = connect(listen);
    let t = Instant::now();
    s.write_all(b"lost").unwrap();
    let mut buf = [0u8; 8];
    assert!(
        matches!(s.read(&mut buf), Ok(0) | Err(_)),
        "closed, nothing passed"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t.elapsed()
    );
    clear();

    // 100 KB/s: 50 KB takes about half a second.
    add(r#"{"type":"bandwidth","attributes":{"rate":100}}"#);
    let mut s = connect(listen);
    let t = Instant::now();
    ping(&mut s, &[1u8; 50_000]).unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    clear();

    add(r#"{"type":"slicer","attributes":{"average_size":10,"size_variation":2,"delay":1000}}"#);
    let mut s = connect(listen);
    assert_eq!(ping(&mut s, &[3u8; 200]).unwrap(), vec![3u8; 200]);
    clear();

    add(r#"{"type":"slow_close","stream":"upstream","attributes":{"delay":200}}"#);
    let mut s = connect(listen);
    let t = Instant::now();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t.elapsed()
    );
}

/// The Python client (`toxiproxy-python`), when `FAULTLINE_TOXIPROXY_PYTHON` names an
/// interpreter that can `import toxiproxy`; CI sets it up in a venv (and fails this test
/// without it).
#[test]
fn python_client_drives_the_proxy() {
    let python = std::env::var_os("FAULTLINE_TOXIPROXY_PYTHON");
    if !common::require_tool(
        "the Python Toxiproxy client (FAULTLINE_TOXIPROXY_PYTHON naming a python with \
         `pip install toxiproxy-python==0.1.1`)",
        python.is_some(),
    ) {
        return;
    }
    let python = python.expect("checked just above");
    let server = Server::start();
    let echo = echo_server();
    let script = r#"
import socket, sys, time
from toxiproxy import Toxiproxy
host, port, upstream = sys.argv[1], sys.argv[2], sys.argv[3]
tp = Toxiproxy()
tp.update_api_consumer(host, int(port))
assert tp.running()
p = tp.create(upstream=upstream, name="py", listen="127.0.0.1:0")
assert "py" in tp.proxies()
listen = tp.get_proxy("py").listen
h, pt = listen.rsplit(":", 1)
assert int(pt) != 0, listen
p.add_toxic(type="latency", attributes={"latency": 100})
assert "latency_downstream" in p.toxics()
s = socket.create_connection((h, int(pt)), timeout=10)
t = time.time()
s.sendall(b"hi")
assert s.recv(2) == b"hi"
took = time.time() - t
assert took >= 0.1, took
p.destroy_toxic("latency_downstream")
assert p.toxics() == {}
t = time.time()
s.sendall(b"yo")
assert s.recv(2) == b"yo"
assert time.time() - t < 0.09
s.close()
p.disable()
assert tp.get_proxy("py").enabled is False
p.enable()
assert tp.reset()
p.destroy()
assert "py" not in tp.proxies()
print("python ok")
"#;
    let out = common::output(std::process::Command::new(python).args([
        "-c",
        script,
        &server.admin.ip().to_string(),
        &server.admin.port().to_string(),
        &echo.to_string(),
    ]));
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tiny HTTP/1.1 upstream: every request gets `200 ok`, one request per connection.
fn http_upstream() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            });
        }
    });
    addr
}

/// One GET through an http proxy; returns the status.
fn http_get(addr: std::net::SocketAddr) -> u16 {
    let mut s = connect(addr);
    write!(
        s,
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out[9..12].parse().unwrap()
}

#[test]
fn http_mode_proxies_take_http_faults_as_toxics() {
    let server = Server::start();
    let upstream = http_upstream();
    let (status, p) = server.call(
        "POST",
        "/proxies",
        &format!(
            r#"{{"name":"llm","listen":"127.0.0.1:0","upstream":"{upstream}","mode":"http"}}"#
        ),
    );
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["mode"], "http");
    let listen: std::net::SocketAddr = p["listen"].as_str().unwrap().parse().unwrap();
    assert_ne!(listen.port(), 0, "the real port is reported");
    assert_eq!(http_get(listen), 200);

    let (status, t) = server.call(
        "POST",
        "/proxies/llm/toxics",
        r#"{"type":"http_error","attributes":{"status":503,"probability":"100%"}}"#,
    );
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["name"], "http_error_downstream");
    assert_eq!(http_get(listen), 503);
    let (status, list) = server.call("GET", "/proxies/llm/toxics", "");
    assert_eq!(status, 200);
    assert_eq!(list[0]["type"], "http_error");
    assert_eq!(list[0]["attributes"]["status"], 503);
    let (status, _) = server.call(
        "POST",
        "/proxies/llm/toxics",
        r#"{"type":"http_error","attributes":{"status":500}}"#,
    );
    assert_eq!(status, 409, "an existing name");
    let (status, _) = server.call("DELETE", "/proxies/llm/toxics/http_error_downstream", "");
    assert_eq!(status, 204);
    assert_eq!(http_get(listen), 200);

    let (status, t) = server.call(
        "POST",
        "/proxies/llm/toxics",
        r#"{"type":"latency","attributes":{"delay":"200ms"}}"#,
    );
    assert_eq!(status, 200, "{t}");
    let t0 = Instant::now();
    assert_eq!(http_get(listen), 200);
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    let (status, _) = server.call("POST", "/reset", "");
    assert_eq!(status, 204);
    let (_, list) = server.call("GET", "/proxies/llm/toxics", "");
    assert_eq!(list, serde_json::json!([]));
    let t0 = Instant::now();
    assert_eq!(http_get(listen), 200);
    assert!(
        t0.elapsed() < Duration::from_millis(190),
        "{:?}",
        t0.elapsed()
    );

    // Refused whole: a TCP toxic type, an unknown attribute, a toxicity, an upstream stream.
    for body in [
        r#"{"type":"bandwidth","attributes":{"rate":1}}"#,
        r#"{"type":"kill"}"#,
        r#"{"type":"http_error","attributes":{"status":503,"colour":"red"}}"#,
        r#"{"type":"http_error","attributes":{"status":503},"toxicity":0.5}"#,
        r#"{"type":"http_error","attributes":{"status":503},"stream":"upstream"}"#,
    ] {
        let (status, err) = server.call("POST", "/proxies/llm/toxics", body);
        assert_eq!(status, 400, "{body}: {err}");
    }
    let (_, err) = server.call(
        "POST",
        "/proxies/llm/toxics",
        r#"{"type":"bandwidth","attributes":{"rate":1}}"#,
    );
    assert_eq!(err["error"], "invalid toxic type");
    let (_, list) = server.call("GET", "/proxies/llm/toxics", "");
    assert_eq!(list, serde_json::json!([]), "nothing applied");
    assert_eq!(http_get(listen), 200);

    // Update replaces the fault; a disable/enable cycle keeps the port and the toxics.
    server.call(
        "POST",
        "/proxies/llm/toxics",
        r#"{"name":"e","type":"http_error","attributes":{"status":503}}"#,
    );
    let (status, t) = server.call(
        "POST",
        "/proxies/llm/toxics/e",
        r#"{"attributes":{"status":429}}"#,
    );
    assert_eq!(status, 200, "{t}");
    assert_eq!(http_get(listen), 429);
    let (status, p) = server.call("POST", "/proxies/llm", r#"{"enabled":false}"#);
    assert_eq!((status, &p["enabled"]), (200, &false.into()));
    assert!(std::net::TcpStream::connect(listen).is_err());
    let (status, p) = server.call("POST", "/proxies/llm", r#"{"enabled":true}"#);
    assert_eq!((status, &p["listen"]), (200, &listen.to_string().into()));
    assert_eq!(http_get(listen), 429);

    // A TCP proxy still refuses the HTTP faults, and says it is one.
    let echo = echo_server();
    server.create("raw", echo);
    let (_, p) = server.call("GET", "/proxies/raw", "");
    assert_eq!(p["mode"], "tcp");
    let (status, err) = server.call(
        "POST",
        "/proxies/raw/toxics",
        r#"{"type":"http_error","attributes":{"status":503}}"#,
    );
    assert_eq!((status, &err["error"]), (400, &"invalid toxic type".into()));

    let (status, out) = server.call(
        "POST",
        "/populate",
        &format!(
            r#"[{{"name":"llm2","listen":"127.0.0.1:0","upstream":"{upstream}","mode":"http"}}]"#
        ),
    );
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["proxies"][0]["mode"], "http");
    let llm2: std::net::SocketAddr = out["proxies"][0]["listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(http_get(llm2), 200);

    let (status, _) = server.call("DELETE", "/proxies/llm", "");
    assert_eq!(status, 204);
    std::net::TcpListener::bind(listen).expect("the port is free again");
}

/// A web page must not drive the admin API: browsers (by User-Agent), cross-site requests (by
/// Origin or Sec-Fetch-Site) and DNS rebinding (by Host) get a 403 in the API's error shape,
/// and the request does nothing. Toxiproxy's clients, curl and scripts pass.
#[test]
fn browsers_cross_site_requests_and_foreign_hosts_are_refused() {
    let server = Server::start();
    let echo = echo_server();
    let host = server.admin.to_string();
    let localhost = format!("localhost:{}", server.admin.port());
    let create = format!(r#"{{"name":"p","listen":"127.0.0.1:0","upstream":"{echo}"}}"#);
    let refusals: [(&[(&str, &str)], &str); 6] = [
        (
            &[
                ("Host", &host),
                ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"),
            ],
            "User agent not allowed",
        ),
        (
            &[("Host", &host), ("Origin", "https://evil.example")],
            "Origin",
        ),
        (
            &[("Host", &host), ("Sec-Fetch-Site", "cross-site")],
            "cross-site",
        ),
        (
            &[("Host", &host), ("Sec-Fetch-Site", "same-site")],
            "same-site",
        ),
        (
            &[("Host", &format!("evil.example:{}", server.admin.port()))],
            "DNS rebinding",
        ),
        (&[("Host", "127.0.0.1:1")], "DNS rebinding"),
    ];
    for (headers, why) in refusals {
        let (status, err) = server.call_with("POST", "/proxies", headers, &create);
        assert_eq!(status, 403, "{headers:?}: {err}");
        assert_eq!(err["status"], 403, "{err}");
        let message = err["error"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{headers:?}: {message}");
    }
    let (status, all) = server.call("GET", "/proxies", "");
    assert_eq!(
        (status, all),
        (200, serde_json::json!({})),
        "nothing was created"
    );

    // Allowed: the address itself, localhost, a same-origin fetch, and no Host at all.
    let (status, p) = server.call_with(
        "POST",
        "/proxies",
        &[("Host", &localhost), ("User-Agent", "curl/8.5.0")],
        &create,
    );
    assert_eq!(status, 201, "{p}");
    let allowed: [Vec<(&str, &str)>; 3] = [
        vec![("Host", &host), ("Sec-Fetch-Site", "same-origin")],
        vec![("Host", &localhost), ("User-Agent", "toxiproxy-cli")],
        vec![],
    ];
    for headers in allowed {
        let (status, body) = server.call_with("GET", "/proxies/p", &headers, "");
        assert_eq!(status, 200, "{headers:?}: {body}");
    }
}

/// `--allow-host NAME` lets clients name the server as other containers reach it.
#[test]
fn allow_host_accepts_a_name_in_the_host_header() {
    let server = Server::start_with(&["--allow-host", "Toxiproxy"]);
    let named = format!("toxiproxy:{}", server.admin.port());
    let (status, body) = server.call_with("GET", "/version", &[("Host", &named)], "");
    assert_eq!(status, 200, "{body}");
    let other = format!("other:{}", server.admin.port());
    let (status, _) = server.call_with("GET", "/version", &[("Host", &other)], "");
    assert_eq!(status, 403);
}
