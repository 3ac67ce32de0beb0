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
    };
    rt.block_on(run::execute(exp, &opts))
        .map(|r| r.records)
        .expect("the bench run completes")
}

struct Summary {
    sent: usize,
    ok: usize,
    dropped: usize,
    latency: Histogram<u64>,
    lag: Histogram<u64>,
}

fn summarize(records: &[RequestRecord], skip: Duration) -> Summary {
    // The first second warms connection pools; it is not what a steady proxy costs.
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    let mut lag = Histogram::<u64>::new(3).expect("histogram");
    let (mut sent, mut ok, mut dropped) = (0, 0, 0);
    for r in records.iter().filter(|r| r.intended >= skip) {
        if r.outcome == Outcome::Dropped {
            dropped += 1;
            continue;
        }
        sent += 1;
        if let Some(l) = r.send_lag() {
            lag.saturating_record(l.as_nanos() as u64);
        }
        if r.outcome == Outcome::Ok {
            ok += 1;
            latency.saturating_record(r.latency.as_nanos() as u64);
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

fn us(nanos: u64) -> String {
    format!("{:.0} µs", nanos as f64 / 1e3)
}

fn signed_us(nanos: i128) -> String {
    format!("{:+.0} µs", nanos as f64 / 1e3)
}

/// A server that streams `total` bytes in 64 KiB frames, for the large-body test.
async fn bulk_server(total: u64) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind bulk server");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
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

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let secs = if quick() { 3 } else { 6 };
    let skip = Duration::from_secs(1);
    let mut table = Table::new();
    table.load_preset(UTF8_FULL).set_header(vec![
        "measurement",
        "direct",
        "through proxy",
        "result",
        "target",
    ]);

    // 1. Added latency at 1,000 req/s, small non-streaming completions.
    let direct = summarize(&drive(&rt, &experiment(1000, secs, false, 1, false)), skip);
    let proxied = summarize(&drive(&rt, &experiment(1000, secs, false, 1, true)), skip);
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

    // 2. Highest rate of small streamed completions the proxy sustains.
    let mut best = 0;
    let rates: &[u32] = if quick() {
        &[1000, 2000, 4000]
    } else {
        &[1000, 2000, 3000, 4000, 6000, 8000]
    };
    let mut steps = Vec::new();
    for &rate in rates {
        let s = summarize(
            &drive(&rt, &experiment(rate, secs.min(4), true, 4, true)),
            skip,
        );
        let ok_share = s.ok as f64 / (s.sent + s.dropped).max(1) as f64;
        let p99 = s.latency.value_at_quantile(0.99);
        let sustained = ok_share >= 0.999 && s.dropped == 0 && p99 < 50_000_000;
        steps.push(format!(
            "{rate}/s: {:.2}% ok, p99 {}{}",
            ok_share * 100.0,
            us(p99),
            if sustained { "" } else { " (not sustained)" }
        ));
        if sustained {
            best = rate;
        } else {
            break;
        }
    }
    table.add_row(vec![
        "highest sustained rate, streamed 4-token completions".to_string(),
        "-".into(),
        format!("{best}/s"),
        steps.join("; "),
        "(reported)".into(),
    ]);

    // 3. Throughput on a large streamed body.
    let total: u64 = if quick() { 256 << 20 } else { 1 << 30 };
    let (direct_rate, proxy_rate) = rt.block_on(async {
        let origin = bulk_server(total).await;
        let proxy_spec = faultline::experiment::ProxySpec {
            listen: format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
            upstream: origin,
            mode: Default::default(),
        };
        let proxy = faultline::proxy::start("bench", &proxy_spec, 1)
            .await
            .expect("proxy starts");
        let mut d = Vec::new();
        let mut p = Vec::new();
        for _ in 0..3 {
            d.push(fetch_rate(origin).await);
            p.push(fetch_rate(proxy.addr()).await);
        }
        proxy.stop().await;
        d.sort_by(f64::total_cmp);
        p.sort_by(f64::total_cmp);
        (d[1], p[1])
    });
    table.add_row(vec![
        format!("large streamed body ({} MiB), median of 3", total >> 20),
        format!("{:.0} MiB/s", direct_rate / 1048576.0),
        format!("{:.0} MiB/s", proxy_rate / 1048576.0),
        format!("{:.0}% of direct", proxy_rate / direct_rate * 100.0),
        ">= 80%".into(),
    ]);

    // 4. Load generator send lag (actual minus intended send time).
    for rate in [1000u32, 10_000] {
        let s = if rate == 1000 {
            direct.lag.clone()
        } else {
            summarize(
                &drive(&rt, &experiment(rate, secs.min(4), false, 1, false)),
                skip,
            )
            .lag
        };
        table.add_row(vec![
            format!("send lag at {rate} req/s, p50 / p99"),
            format!(
                "{} / {}",
                us(s.value_at_quantile(0.5)),
                us(s.value_at_quantile(0.99))
            ),
            "-".into(),
            format!("max {}", us(s.max())),
            if rate == 1000 {
                "p99 < 1 ms".into()
            } else {
                "(reported)".into()
            },
        ]);
    }
    let _ = (direct.sent, direct.ok, proxied.dropped);
    println!("{table}");
}
