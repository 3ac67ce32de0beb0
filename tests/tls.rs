//! https targets and https upstreams against a real TLS terminator: nginx with a certificate
//! from a CA this test makes (openssl), demanding a bearer token, in front of a simulated host.
//! Skipped, loudly, without nginx or openssl (and failed under CI=true, which installs both).

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{faultline, free_ports, on_path, require_tool, spawn, write, Proc};

const TOKEN: &str = "tls-test-token-93be1f0c7a";
const VAR: &str = "FAULTLINE_TEST_TLS_TOKEN";

fn tools_present() -> bool {
    require_tool("nginx (apt-get install nginx)", on_path("nginx"))
        && require_tool("openssl (apt-get install openssl)", on_path("openssl"))
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = common::output(Command::new("openssl").current_dir(dir).args(args));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate it signed for localhost and 127.0.0.1 (`server.pem`).
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=faultline test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn wait_listening(port: u16, what: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + common::START_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nginx terminating TLS on `tls_port` and forwarding requests that carry the token to the
/// simulated host on `host_port`; the others get a 401.
struct Stack {
    dir: tempfile::TempDir,
    tls_port: u16,
    host_port: u16,
    _nginx: Proc,
}

impl Stack {
    fn start() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        make_certificates(dir.path());
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        let [tls_port, host_port] = free_ports(2)[..] else {
            unreachable!()
        };
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid nginx.pid;\nerror_log stderr warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\naccess_log off;\nclient_body_temp_path tmp/body;\nproxy_temp_path tmp/proxy;\n\
             fastcgi_temp_path tmp/fastcgi;\nuwsgi_temp_path tmp/uwsgi;\nscgi_temp_path tmp/scgi;\n\
             server {{\n listen 127.0.0.1:{tls_port} ssl;\n server_name localhost;\n\
             ssl_certificate server.pem;\n ssl_certificate_key server.key;\n\
             location / {{\n  if ($http_authorization != \"Bearer {TOKEN}\") {{ return 401; }}\n\
             proxy_pass http://127.0.0.1:{host_port};\n proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\";\n proxy_buffering off;\n }}\n}}\n}}\n"
        );
        let conf_path = write(dir.path(), "nginx.conf", &conf);
        let nginx = spawn(
            Command::new("nginx")
                .arg("-p")
                .arg(dir.path())
                .args(["-e", "stderr", "-c"])
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_listening(tls_port, "nginx");
        Stack {
            dir,
            tls_port,
            host_port,
            _nginx: nginx,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Runs `yaml` with the token variable set to `token` (unset for `None`).
    fn run(&self, yaml: &str, token: Option<&str>) -> (Output, String, String) {
        let file = write(self.dir.path(), "drill.yaml", yaml);
        let mut cmd = faultline();
        cmd.arg("run").arg(&file).arg("--out").arg(self.out());
        match token {
            Some(t) => cmd.env(VAR, t),
            None => cmd.env_remove(VAR),
        };
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out, stdout, stderr)
    }

    /// A drill sending to `url` (with `tls` added to the stream), the token in a header.
    fn drill(&self, url: &str, tls: &str, proxies: &str, faults: &str) -> String {
        format!(
            r#"version: 1
name: tls
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}", ttft: 5ms, tokens_per_second: 2000, completion_tokens: 6 }} }}
{proxies}
load:
  chat:
    url: {url}
    rate: 20/s
    request: {{ api: openai-chat, stream: true }}
    headers:
      authorization: "Bearer ${{{VAR}}}"
{tls}
timeline:
{faults}  - {{ at: 3s, end: true }}
expect:
  max_error_rate: 0%
"#,
            host = self.host_port
        )
    }

    /// (status, outcome, faults) of every row of requests.csv.
    fn rows(&self) -> Vec<(String, String, String)> {
        let mut csv = csv::Reader::from_path(self.out().join("requests.csv")).unwrap();
        let header = csv.headers().unwrap().clone();
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let (status, outcome, faults) = (col("status"), col("outcome"), col("faults"));
        csv.records()
            .map(|r| {
                let r = r.unwrap();
                (
                    r[status].to_string(),
                    r[outcome].to_string(),
                    r[faults].to_string(),
                )
            })
            .collect()
    }
}

/// Every file under `dir`, as text.
fn every_file(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            every_file(&path, out);
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_string();
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn an_https_drill_with_a_bearer_token_passes_and_writes_the_token_nowhere() {
    if !tools_present() {
        return;
    }
    let stack = Stack::start();
    let url = format!("https://localhost:{}/v1/chat/completions", stack.tls_port);
    let tls = format!("    tls: {{ ca_file: \"{}\" }}", stack.ca().display());
    let (out, stdout, stderr) = stack.run(&stack.drill(&url, &tls, "", ""), Some(TOKEN));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let rows = stack.rows();
    assert!(rows.len() >= 40, "only {} requests", rows.len());
    assert!(
        rows.iter().all(|(s, o, _)| s == "200" && o == "ok"),
        "{rows:?}"
    );

    let mut files = Vec::new();
    every_file(&stack.out(), &mut files);
    assert!(files.iter().any(|(p, _)| p.ends_with("requests.csv")));
    for (path, text) in files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .chain([("stdout", stdout.as_str()), ("stderr", stderr.as_str())])
    {
        assert!(!text.contains(TOKEN), "the token leaked into {path}");
    }
}

#[test]
fn a_wrong_token_is_a_401_for_every_request_and_the_verdict_says_so() {
    if !tools_present() {
        return;
    }
    let stack = Stack::start();
    let url = format!("https://localhost:{}/v1/chat/completions", stack.tls_port);
    let tls = format!("    tls: {{ ca_file: \"{}\" }}", stack.ca().display());
    let (out, stdout, stderr) = stack.run(&stack.drill(&url, &tls, "", ""), Some("wrong"));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let rows = stack.rows();
    assert!(rows.len() >= 40, "only {} requests", rows.len());
    assert!(
        rows.iter().all(|(s, o, _)| s == "401" && o == "http_error"),
        "{rows:?}"
    );
    let report = common::report(&stack.out());
    let verdict = report["evaluation"]["verdict"].to_string();
    assert!(verdict.contains("× 401"), "{verdict}");
    assert!(stdout.contains("× 401"), "{stdout}");
}

#[test]
fn an_unset_token_variable_exits_2_naming_it() {
    if !tools_present() {
        return;
    }
    let stack = Stack::start();
    let url = format!("https://localhost:{}/v1/chat/completions", stack.tls_port);
    let tls = format!("    tls: {{ ca_file: \"{}\" }}", stack.ca().display());
    let (out, _, stderr) = stack.run(&stack.drill(&url, &tls, "", ""), None);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("the environment variable {VAR} is not set")),
        "{stderr}"
    );
    assert!(!stack.out().join("report.json").exists());
}

#[test]
fn without_the_ca_every_request_is_a_connect_error_that_names_the_certificate_problem() {
    if !tools_present() {
        return;
    }
    let stack = Stack::start();
    let url = format!("https://localhost:{}/v1/chat/completions", stack.tls_port);
    let (out, stdout, stderr) = stack.run(&stack.drill(&url, "", "", ""), Some(TOKEN));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let rows = stack.rows();
    assert!(rows.len() >= 40, "only {} requests", rows.len());
    assert!(
        rows.iter()
            .all(|(s, o, _)| s.is_empty() && o == "connect_error"),
        "{rows:?}"
    );
    // Which host, which name, why: said once for the stream.
    let said = format!(
        "load stream `chat`: connect_error: TLS handshake with localhost:{} (server name \
         `localhost`) failed: its certificate is not signed by a CA this client trusts",
        stack.tls_port
    );
    assert_eq!(stderr.matches(&said).count(), 1, "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
}

#[test]
fn a_proxy_in_front_of_the_https_backend_forwards_and_injects_faults() {
    if !tools_present() {
        return;
    }
    let stack = Stack::start();
    let proxy_port = free_ports(1)[0];
    let proxies = format!(
        "proxies:\n  edge: {{ listen: \"localhost:{proxy_port}\", upstream: \"https://localhost:{}\", \
         upstream_tls: {{ ca_file: \"{}\" }} }}",
        stack.tls_port,
        stack.ca().display()
    );
    let faults = "  - { at: 1s, inject: { id: burst, proxy: edge, fault: { http_error: { status: 503 } } } }\n  \
                  - { at: 2s, lift: burst }\n";
    let url = format!("http://127.0.0.1:{proxy_port}/v1/chat/completions");
    let (out, stdout, stderr) = stack.run(&stack.drill(&url, "", &proxies, faults), Some(TOKEN));
    // The burst breaks the 0% budget: that is the fault acting, not the forward failing.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let rows = stack.rows();
    let ok = rows
        .iter()
        .filter(|(s, o, _)| s == "200" && o == "ok")
        .count();
    let faulted = rows
        .iter()
        .filter(|(s, o, f)| s == "503" && o == "http_error" && f.contains("burst"))
        .count();
    assert!(ok >= 30, "{ok} forwarded through TLS: {rows:?}\n{stderr}");
    assert!(faulted >= 10, "{faulted} faulted: {rows:?}");
    assert_eq!(ok + faulted, rows.len(), "{rows:?}");
}

#[test]
fn a_name_the_certificate_lacks_is_named_and_insecure_skip_verify_connects_without_the_ca() {
    if !tools_present() {
        return;
    }
    let stack = Stack::start();
    // By IP, with a server name the certificate is not issued for.
    let url = format!("https://127.0.0.1:{}/v1/chat/completions", stack.tls_port);
    let tls = format!(
        "    tls: {{ ca_file: \"{}\", server_name: wrong.example }}",
        stack.ca().display()
    );
    let (out, stdout, stderr) = stack.run(&stack.drill(&url, &tls, "", ""), Some(TOKEN));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let rows = stack.rows();
    assert!(rows.len() >= 40, "only {} requests", rows.len());
    assert!(
        rows.iter().all(|(_, o, _)| o == "connect_error"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "TLS handshake with 127.0.0.1:{} (server name `wrong.example`) failed: its \
             certificate is not valid for the name `wrong.example`",
            stack.tls_port
        )),
        "{stderr}"
    );

    let tls = "    tls: { insecure_skip_verify: true }";
    let (out, stdout, stderr) = stack.run(&stack.drill(&url, tls, "", ""), Some(TOKEN));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let rows = stack.rows();
    assert!(rows.len() >= 40, "only {} requests", rows.len());
    assert!(rows.iter().all(|(_, o, _)| o == "ok"), "{rows:?}");
}
