//! Loopback benchmarks for the HTTP fault proxy and the load generator, each measured against a
//! direct connection in the same run. Prints a table; asserts nothing (targets are judged by a
//! person reading the table, never by a timed test).
//!
//!     cargo bench --bench proxy            # full run, about two minutes
//!     FAULTLINE_BENCH_QUICK=1 cargo bench --bench proxy   # shorter, noisier
//!
//! Everything listens on and sends to 127.0.0.1 only.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use comfy_table::{presets::UTF8_FULL, Table};
use faultline::experiment::{self, Experiment};
use faultline::load::{Outcome, RequestRecord};
use faultline::run::{self, RunOptions};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;

fn quick() -> bool {
    std::env::var_os("FAULTLINE_BENCH_QUICK").is_some()
}

/// `FAULTLINE_BENCH_ONLY=latency,rate,body,lag` runs some sections only.
fn wanted(section: &str) -> bool {
    std::env::var("FAULTLINE_BENCH_ONLY")
        .map_or(true, |only| only.split(',').any(|s| s.trim() == section))
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One host, one proxy in front of it, one load stream aimed either at the proxy or the host.
fn experiment(rate: u32, secs: u32, streaming: bool, tokens: u32, via_proxy: bool) -> Experiment {
    let (host, proxy) = (free_port(), free_port());
    let target = if via_proxy { proxy } else { host };
    let yaml = format!(
        r#"version: 1
name: bench
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{host}", ttft: 0ms, tokens_per_second: 1000000, completion_tokens: {tokens} }} }}
proxies:
  p: {{ listen: "127.0.0.1:{proxy}", upstream: "127.0.0.1:{host}" }}
load:
  s:
    url: http://127.0.0.1:{target}/v1/chat/completions
    rate: {rate}/s
    request: {{ api: openai-chat, stream: {streaming} }}
    timeout: 5s
    max_in_flight: 2048
timeline:
  - {{ at: {secs}s, end: true }}
"#
    );
    experiment::parse(Path::new("bench.yaml"), yaml).expect("the bench experiment is valid")
}

fn drive(rt: &tokio::runtime::Runtime, exp: &Experiment) -> Vec<RequestRecord> {
    let opts = RunOptions {
        seed: 1,
        quiet: true,
        log_dir: std::env::temp_dir(),
        share: Default::default(),
        live: None,
    };
    let run = rt.block_on(run::execute(exp, &opts));
    if let Some(failure) = run.failure {
        panic!("the bench run did not complete: {failure}");
    }
    run.records
}

struct Summary {
    sent: usize,
    ok: usize,
    dropped: usize,
    latency: Histogram<u64>,
    lag: Histogram<u64>,
}

fn summarize(records: &[RequestRecord], skip: Duration) -> Summary {
    let mut latency = histogram();
    let mut lag = histogram();
    let (mut sent, mut ok, mut dropped) = (0, 0, 0);
    for r in records.iter().filter(|r| r.intended >= skip) {
        if r.outcome == Outcome::Dropped {
            dropped += 1;
            continue;
        }
        sent += 1;
        if let Some(l) = r.send_lag() {
            lag.saturating_record(l.as_nanos().max(1) as u64);
        }
        if r.outcome == Outcome::Ok {
            ok += 1;
            latency.saturating_record(r.latency.as_nanos().max(1) as u64);
        }
    }
    Summary {
        sent,
        ok,
        dropped,
        latency,
        lag,
    }
}

/// Nanoseconds from 1 ns to an hour, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

fn us(nanos: u64) -> String {
    format!("{:.0} µs", nanos as f64 / 1e3)
}

fn signed_us(nanos: i128) -> String {
    format!("{:+.0} µs", nanos as f64 / 1e3)
}

/// Frame size of the large streamed body.
const BULK_FRAME: usize = 64 * 1024;

/// A server that streams `total` bytes in `BULK_FRAME` frames, for the large-body test.
async fn bulk_server(total: u64) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind bulk server");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'x'; BULK_FRAME]);
        while let Ok((stream, _)) = listener.accept().await {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let chunk = chunk.clone();
                    let frames = (total / chunk.len() as u64) as usize;
                    let body =
                        StreamBody::new(futures_util::stream::iter((0..frames).map(move |_| {
                            Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))
                        })));
                    async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A bare TCP forwarder (tokio's copy loop, 256 KiB buffers): the ceiling for any proxy that
/// copies bytes through user space, shown beside the HTTP proxy for scale.
async fn copy_loop_forwarder(origin: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind forwarder");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(origin).await {
                    let _ = tokio::io::copy_bidirectional_with_sizes(
                        &mut client,
                        &mut upstream,
                        256 << 10,
                        256 << 10,
                    )
                    .await;
                }
            });
        }
    });
    addr
}

/// Reads the whole body from `addr`; returns bytes per second.
async fn fetch_rate(addr: SocketAddr) -> f64 {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/bulk")
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let start = Instant::now();
    let mut body = sender
        .send_request(req)
        .await
        .expect("response")
        .into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            n += data.len() as u64;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn secs() -> u32 {
    if quick() {
        3
    } else {
        6
    }
}

/// The first second warms connection pools; it is not what a steady proxy costs.
const WARMUP: Duration = Duration::from_secs(1);

/// Added latency at 1,000 req/s, small non-streaming completions; also yields the send lag.
fn added_latency(rt: &tokio::runtime::Runtime, table: &mut Table) -> Histogram<u64> {
    let direct = summarize(
        &drive(rt, &experiment(1000, secs(), false, 1, false)),
        WARMUP,
    );
    let proxied = summarize(
        &drive(rt, &experiment(1000, secs(), false, 1, true)),
        WARMUP,
    );
    for (label, q, target) in [("p50", 0.5, "< 100 µs"), ("p99", 0.99, "< 1 ms")] {
        let (d, p) = (
            direct.latency.value_at_quantile(q),
            proxied.latency.value_at_quantile(q),
        );
        table.add_row(vec![
            format!("latency at 1,000 req/s, {label}"),
            us(d),
            us(p),
            format!("added {}", signed_us(i128::from(p) - i128::from(d))),
            target.to_string(),
        ]);
    }
    direct.lag
}

/// Highest rate of small streamed completions the proxy sustains: every request ok, none
/// dropped, p99 under 50 ms.
fn sustained_rate(rt: &tokio::runtime::Runtime, table: &mut Table) {
    let mut best = 0;
    let rates: &[u32] = if quick() {
        &[1000, 2000, 4000]
    } else {
        &[1000, 2000, 4000, 6000, 8000, 10_000, 12_000, 16_000]
    };
    let mut steps = Vec::new();
    for &rate in rates {
        let s = summarize(
            &drive(rt, &experiment(rate, secs().min(4), true, 4, true)),
            WARMUP,
        );
        let ok_share = s.ok as f64 / (s.sent + s.dropped).max(1) as f64;
        let p99 = s.latency.value_at_quantile(0.99);
        let sustained = ok_share >= 0.999 && s.dropped == 0 && p99 < 50_000_000;
        steps.push(format!(
            "{rate}/s: {:.2}% ok, p99 {}",
            ok_share * 100.0,
            us(p99)
        ));
        if !sustained {
            break;
        }
        best = rate;
    }
    table.add_row(vec![
        "highest sustained rate, streamed 4-token completions".to_string(),
        "-".into(),
        format!(
            "{best}/s{}",
            if best == *rates.last().unwrap_or(&0) {
                " (highest tried)"
            } else {
                ""
            }
        ),
        steps.join("\n"),
        "(reported)".into(),
    ]);
}

/// Throughput on a large streamed body, median of three transfers each way.
fn large_body(rt: &tokio::runtime::Runtime, table: &mut Table) {
    let total: u64 = if quick() { 256 << 20 } else { 1 << 30 };
    let (direct_rate, proxy_rate, copy_rate) = rt.block_on(async {
        let origin = bulk_server(total).await;
        let proxy_spec = faultline::experiment::ProxySpec {
            listen: format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
            upstream: origin.into(),
            upstream_tls: None,
            preserve_host: false,
            mode: Default::default(),
            driver: Default::default(),
        };
        let proxy = faultline::proxy::start("bench", &proxy_spec, 1)
            .await
            .expect("proxy starts");
        let copy_loop = copy_loop_forwarder(origin).await;
        let (mut d, mut p, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            d.push(fetch_rate(origin).await);
            p.push(fetch_rate(proxy.addr()).await);
            c.push(fetch_rate(copy_loop).await);
        }
        proxy.stop().await;
        for v in [&mut d, &mut p, &mut c] {
            v.sort_by(f64::total_cmp);
        }
        (d[1], p[1], c[1])
    });
    table.add_row(vec![
        format!(
            "large streamed body ({} MiB in {} KiB frames), median of 3",
            total >> 20,
            BULK_FRAME >> 10
        ),
        format!("{:.0} MiB/s", direct_rate / 1048576.0),
        format!("{:.0} MiB/s", proxy_rate / 1048576.0),
        format!("{:.0}% of direct", proxy_rate / direct_rate * 100.0),
        ">= 80%".into(),
    ]);
    table.add_row(vec![
        "  for scale: a bare TCP copy loop, same body".to_string(),
        format!("{:.0} MiB/s", direct_rate / 1048576.0),
        format!("{:.0} MiB/s", copy_rate / 1048576.0),
        format!("{:.0}% of direct", copy_rate / direct_rate * 100.0),
        "(reference)".into(),
    ]);
}

/// The load generator's send lag: actual minus intended send time.
fn send_lag(rt: &tokio::runtime::Runtime, table: &mut Table, at_1000: Option<Histogram<u64>>) {
    for rate in [1000u32, 10_000] {
        let lag = match (&at_1000, rate) {
            (Some(h), 1000) => h.clone(),
            _ => {
                summarize(
                    &drive(rt, &experiment(rate, secs().min(4), false, 1, false)),
                    WARMUP,
                )
                .lag
            }
        };
        table.add_row(vec![
            format!("send lag at {rate} req/s, p50 / p99"),
            format!(
                "{} / {}",
                us(lag.value_at_quantile(0.5)),
                us(lag.value_at_quantile(0.99))
            ),
            "-".into(),
            format!("max {}", us(lag.max())),
            if rate == 1000 {
                "p99 < 1 ms".into()
            } else {
                "(reported)".into()
            },
        ]);
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut table = Table::new();
    table.load_preset(UTF8_FULL).set_header(vec![
        "measurement",
        "direct",
        "through proxy",
        "result",
        "target",
    ]);
    let lag_at_1000 = wanted("latency").then(|| added_latency(&rt, &mut table));
    if wanted("rate") {
        sustained_rate(&rt, &mut table);
    }
    if wanted("body") {
        large_body(&rt, &mut table);
    }
    if wanted("lag") {
        send_lag(&rt, &mut table, lag_at_1000);
    }
    println!("{table}");
}
