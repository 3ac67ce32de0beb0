//! A load stream's headers reach the system under test with the environment's values, and
//! those values never reach a report, a log, the dry run or the terminal.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{faultline, free_ports, run_experiment, write};

const SECRET: &str = "sk-live-4f1c9e7d2b8a6035";

/// A gateway stand-in on loopback that keeps every request head it saw and answers each with
/// a whole, non-streamed chat completion. It stops after `deadline`.
fn gateway(listener: TcpListener, deadline: Duration) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            let Ok((conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut head = String::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let mut body = vec![0u8; length];
                    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                        return;
                    }
                    log.lock().unwrap().push(head);
                    let answer = r#"{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"completion_tokens":1}}"#;
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                }
            });
        }
    });
    seen
}

fn experiment(port: u16) -> String {
    format!(
        r#"version: 1
name: secret-headers
load:
  s:
    url: http://127.0.0.1:{port}/v1/chat/completions
    rate: 10/s
    request: {{ api: openai-chat, stream: false }}
    headers:
      authorization: "Bearer ${{FAULTLINE_TEST_GATEWAY_KEY}}"
      x-team: drills
timeline:
  - {{ at: 2s, end: true }}
expect:
  max_error_rate: 0%
"#
    )
}

/// Every file under `dir`, read as text where it is text.
fn every_file(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            every_file(&path, out);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).to_string(),
            ));
        }
    }
}

#[test]
fn a_secret_header_is_sent_and_written_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = gateway(listener, Duration::from_secs(30));
    let run = run_experiment(
        dir.path(),
        "secret.yaml",
        &experiment(port),
        &[("FAULTLINE_TEST_GATEWAY_KEY", SECRET)],
    );
    let (stdout, stderr, out) = (run.stdout.clone(), run.stderr.clone(), run.out.clone());
    let file = dir.path().join("secret.yaml");
    assert_eq!(run.code, Some(0), "{stdout}\n{stderr}");

    // It reached the gateway, with the plain header beside it.
    let heads = seen.lock().unwrap().clone();
    assert!(heads.len() >= 10, "only {} requests arrived", heads.len());
    for head in &heads {
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains(&format!(
                "authorization: bearer {}",
                SECRET.to_ascii_lowercase()
            )),
            "{head}"
        );
        assert!(lower.contains("x-team: drills"), "{head}");
    }

    // And nowhere else: not in the out dir's files, not on either stream.
    let mut files = Vec::new();
    every_file(&out, &mut files);
    assert!(files.iter().any(|(p, _)| p.ends_with("report.json")));
    for (path, text) in files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .chain([("stdout", stdout.as_str()), ("stderr", stderr.as_str())])
    {
        assert!(!text.contains(SECRET), "the secret leaked into {path}");
    }
    // The report keeps the source as written.
    let report = common::report(&out);
    assert!(report["experiment"]["source"]
        .as_str()
        .unwrap()
        .contains("${FAULTLINE_TEST_GATEWAY_KEY}"));

    // Nor in the dry run, which shows the header as written.
    let dry = faultline()
        .args(["run", "--dry-run"])
        .arg(&file)
        .env("FAULTLINE_TEST_GATEWAY_KEY", SECRET)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&dry.stdout).to_string() + &String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success(), "{text}");
    assert!(
        text.contains("header authorization: Bearer ${FAULTLINE_TEST_GATEWAY_KEY}"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "the secret leaked into the dry run");
}

#[test]
fn an_unset_variable_is_an_error_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let file = write(dir.path(), "secret.yaml", &experiment(port));
    let run = faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .env_remove("FAULTLINE_TEST_GATEWAY_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    // file:line:column, the header, and the variable by name.
    assert!(stderr.contains("secret.yaml:9:"), "{stderr}");
    assert!(
        stderr.contains("header `authorization`: the environment variable FAULTLINE_TEST_GATEWAY_KEY is not set"),
        "{stderr}"
    );
    assert!(!dir.path().join("out").join("report.json").exists());
}
