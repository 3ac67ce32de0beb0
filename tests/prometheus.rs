//! `faultline run --metrics` scraped by a real Prometheus server: what its HTTP API answers to
//! PromQL after a short drill must be what the drill's report says.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{faultline_std, free_ports, on_path, report, require_tool, spawn_within, Lines, Proc};

/// Every wait on Prometheus or the drill ends within this.
const DEADLINE: Duration = Duration::from_secs(30);

/// A GET over HTTP/1.0 (so the answer is neither chunked nor kept alive): status and body.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The instant vector `promql` evaluates to now: each sample's labels and value.
fn query(prom: SocketAddr, promql: &str) -> Vec<(serde_json::Value, f64)> {
    let (status, body) = get(prom, &format!("/api/v1/query?query={}", url_encode(promql)))
        .unwrap_or_else(|| panic!("no answer from Prometheus to {promql}"));
    assert_eq!(status, 200, "{promql}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{promql}: {body}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let value = r["value"][1].as_str().unwrap().parse().unwrap();
            (r["metric"].clone(), value)
        })
        .collect()
}

/// The one value of a query that must give exactly one sample.
fn scalar(prom: SocketAddr, promql: &str) -> f64 {
    let result = query(prom, promql);
    assert_eq!(result.len(), 1, "{promql} gave {result:?}");
    result[0].1
}

fn start_prometheus(
    dir: &Path,
    listen: SocketAddr,
    target: SocketAddr,
) -> (Proc, std::path::PathBuf) {
    // As often as Prometheus allows scrapes to be planned, so the test waits little.
    let config = format!(
        "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\nscrape_configs:\n  - job_name: faultline\n    static_configs:\n      - targets: [\"{target}\"]\n"
    );
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let log = dir.join("prometheus.log");
    let mut prometheus = spawn_within(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
        Duration::from_secs(90),
    );
    let deadline = Instant::now() + DEADLINE;
    while get(listen, "/-/ready").map(|(s, _)| s) != Some(200) {
        if let Some(status) = prometheus.try_wait().unwrap() {
            panic!(
                "prometheus exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "prometheus not ready within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Ready is not yet scraping: Prometheus starts its scrape loops a few seconds later (it
    // applies discovered targets every 5 s). The first scrape, of a target not up yet, writes
    // `up`; from then on a short fault window cannot fall before the first scrape.
    while query(listen, "up{job=\"faultline\"}").is_empty() {
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape within {DEADLINE:?}:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (prometheus, log)
}

#[test]
fn prometheus_scrapes_a_drill_and_promql_agrees_with_its_report() {
    if !require_tool(
        "prometheus (Debian package `prometheus`; .ci/run installs it)",
        on_path("prometheus"),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [host, proxy, metrics, prom] = free_ports(4)[..] else {
        unreachable!()
    };
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], metrics));
    let prom_addr = SocketAddr::from(([127, 0, 0, 1], prom));
    let (_prometheus, prom_log) = start_prometheus(dir.path(), prom_addr, metrics_addr);

    // The steps fall between two intended sends (every 50 ms), so no request is intended at
    // the very instant a window opens or closes.
    let yaml = format!(
        r#"version: 1
name: scraped
seed: 11
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}", ttft: 5ms, tokens_per_second: 1000, completion_tokens: 8 }} }}
proxies:
  p: {{ listen: "127.0.0.1:{proxy}", upstream: "127.0.0.1:{host}" }}
load:
  chat: {{ url: "http://127.0.0.1:{proxy}/v1/chat/completions", rate: 20/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 1025ms, inject: {{ id: burst, proxy: p, fault: {{ http_error: {{ status: 503 }} }} }} }}
  - {{ at: 2025ms, lift: burst }}
  - {{ at: 3s, end: true }}
expect:
  max_truncated: 0
"#
    );
    let file = common::write(dir.path(), "scraped.yaml", &yaml);
    let out = dir.path().join("out");
    let mut drill = spawn_within(
        faultline_std()
            .arg("run")
            .arg(&file)
            .arg("--out")
            .arg(&out)
            .args([
                "--metrics",
                &metrics_addr.to_string(),
                "--metrics-linger",
                "60s",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
        Duration::from_secs(90),
    );
    let mut stderr = Lines::new(drill.stderr.take().unwrap(), "the drill's stderr");
    stderr.until("serving the final values", DEADLINE);

    // The end is seen once a scrape after it says so.
    let deadline = Instant::now() + DEADLINE;
    while query(prom_addr, "faultline_run_finished == 1").is_empty() {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the end within {DEADLINE:?}:\n{}",
            std::fs::read_to_string(&prom_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let report = report(&out);
    let overall = &report["evaluation"]["overall"];
    let requests = overall["whole_run"]["requests"].as_f64().unwrap();
    assert!(requests >= 50.0, "the drill sent {requests} requests");
    assert_eq!(scalar(prom_addr, "sum(faultline_requests_total)"), requests);
    let phase = |p: &str| overall["phases"][p]["requests"].as_f64().unwrap();
    for p in ["baseline", "fault", "recovery"] {
        assert_eq!(
            scalar(
                prom_addr,
                &format!("sum(faultline_requests_total{{phase=\"{p}\"}})")
            ),
            phase(p),
            "phase {p}"
        );
    }
    // Every request in the fault window met the 503.
    assert_eq!(
        scalar(
            prom_addr,
            "sum(faultline_requests_total{outcome=\"http_error\",phase=\"fault\"})"
        ),
        phase("fault")
    );
    // The fault window, as a dashboard's annotation sees it: 1 while open, 0 after the lift.
    let active = "faultline_fault_active{id=\"burst\",kind=\"http_error\",target=\"p\"}";
    assert_eq!(
        scalar(prom_addr, &format!("max_over_time({active}[5m])")),
        1.0
    );
    assert_eq!(scalar(prom_addr, active), 0.0);
    assert_eq!(
        scalar(
            prom_addr,
            "faultline_run_info{experiment=\"scraped\",seed=\"11\"}"
        ),
        1.0
    );
    // Whole answers have token timing; each was counted once in the latency histogram.
    assert!(scalar(prom_addr, "sum(faultline_ttft_seconds_count)") > 0.0);
    assert_eq!(
        scalar(prom_addr, "sum(faultline_request_latency_seconds_count)"),
        requests - overall["dropped"].as_f64().unwrap()
    );
    assert_eq!(scalar(prom_addr, "sum(faultline_in_flight_requests)"), 0.0);
    // Every query of the shipped dashboard is PromQL this Prometheus runs, and has data.
    let dashboard = common::dashboard::dashboard();
    for expr in common::dashboard::promql(&dashboard) {
        let expr = expr
            .replace("$stream", ".*")
            .replace("$__rate_interval", "5s");
        // At some moment of the run, not now: a fault window, a rate, are over by now.
        let promql = format!("max_over_time(({expr})[1m:250ms])");
        assert!(
            !query(prom_addr, &promql).is_empty(),
            "no data for {promql}"
        );
    }

    // A SIGINT ends the 60 s linger at once, and the run's exit code stands.
    let asked = Instant::now();
    // SAFETY: kill(2) takes integers only; the pid is our child, not yet reaped.
    unsafe { libc::kill(drill.id() as i32, libc::SIGINT) };
    let status = drill
        .wait_within(Duration::from_secs(10))
        .expect("the linger ended by SIGINT");
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", stderr.read_to_end(DEADLINE));
}

#[test]
fn a_taken_metrics_address_exits_4_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap();
    let [host] = free_ports(1)[..] else {
        unreachable!()
    };
    let yaml = format!(
        r#"version: 1
name: no-drill
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}" }} }}
load:
  chat: {{ url: "http://127.0.0.1:{host}/v1/chat/completions", rate: 5/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 1s, end: true }}
"#
    );
    let file = common::write(dir.path(), "no-drill.yaml", &yaml);
    let run = common::output(
        faultline_std()
            .arg("run")
            .arg(&file)
            .arg("--out")
            .arg(dir.path().join("out"))
            .args(["--metrics", &taken.to_string()]),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot listen on {taken} for the metrics endpoint (--metrics)"
        )) && stderr.contains("already in use"),
        "{stderr}"
    );
    // Nothing of the drill ran: no service started, no report written.
    assert!(!stderr.contains("listening on"), "{stderr}");
    assert!(!dir.path().join("out/report.json").exists());
}
