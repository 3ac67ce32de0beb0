//! Loopback benchmarks for the TCP fault proxy, each against a direct connection in the same
//! run: bulk throughput with no toxics, the round-trip time a proxy adds with no toxics, and
//! how closely a 10 ms latency toxic keeps to 10 ms. Prints a table; asserts nothing.
//!
//!     cargo bench --bench tcp                          # about half a minute
//!     FAULTLINE_BENCH_QUICK=1 cargo bench --bench tcp  # shorter, noisier
//!
//! The client and the servers are plain threads; the proxy runs on a tokio runtime in this
//! process. Everything listens on and sends to 127.0.0.1 only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use comfy_table::{presets::UTF8_FULL, Table};
use faultline::proxy::tcp::{Stream, TcpProxy, Toxic, ToxicKind};
use hdrhistogram::Histogram;

fn quick() -> bool {
    std::env::var_os("FAULTLINE_BENCH_QUICK").is_some()
}

/// Accepts forever; each connection is served by `serve` on its own thread.
fn server(serve: fn(TcpStream)) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || serve(c));
        }
    });
    addr
}

/// Reads everything, then answers one byte so the client knows all arrived.
fn sink(mut c: TcpStream) {
    let mut buf = vec![0u8; 256 * 1024];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    let _ = c.write_all(b"k");
}

fn echo(mut c: TcpStream) {
    let _ = c.set_nodelay(true);
    let mut buf = [0u8; 4096];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 || c.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// MB/s for sending `total` bytes and getting the end acknowledged.
fn throughput(addr: SocketAddr, total: usize) -> f64 {
    let mut c = TcpStream::connect(addr).expect("connect");
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut sent = 0;
    while sent < total {
        c.write_all(&chunk).expect("write");
        sent += chunk.len();
    }
    c.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut ack = [0u8; 1];
    c.read_exact(&mut ack).expect("ack");
    sent as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Round-trip times (µs) of `n` one-byte ping-pongs on one connection.
fn round_trips(addr: SocketAddr, n: usize) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let mut b = [0u8; 1];
    for _ in 0..n {
        let t = Instant::now();
        c.write_all(b"p").expect("write");
        c.read_exact(&mut b).expect("read");
        let _ = h.record(t.elapsed().as_micros() as u64);
    }
    h
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (bytes, pings, toxic_pings) = if quick() {
        (256 << 20, 2_000, 100)
    } else {
        (2 << 30, 20_000, 500)
    };
    let sink_addr = server(sink);
    let echo_addr = server(echo);
    let start_proxy = |upstream: SocketAddr| {
        let p = Arc::new(TcpProxy::new("bench", "127.0.0.1:0", &upstream.to_string()));
        let addr = rt.block_on(p.start()).expect("proxy starts");
        (p, addr)
    };
    let (_sink_proxy, sink_via) = start_proxy(sink_addr);
    let (echo_proxy, echo_via) = start_proxy(echo_addr);

    let mut table = Table::new();
    table.load_preset(UTF8_FULL);
    table.set_header(vec!["measure", "direct", "via proxy", "result", "target"]);

    let _ = throughput(sink_addr, 64 << 20); // warm-up
    let _ = throughput(sink_via, 64 << 20);
    let direct = throughput(sink_addr, bytes);
    let via = throughput(sink_via, bytes);
    table.add_row(vec![
        format!("throughput, {} MiB, no toxics", bytes >> 20),
        format!("{direct:.0} MB/s"),
        format!("{via:.0} MB/s"),
        format!("{:.0}% of direct", via / direct * 100.0),
        "≥ 85%".into(),
    ]);

    let _ = round_trips(echo_addr, 200);
    let _ = round_trips(echo_via, 200);
    let d = round_trips(echo_addr, pings);
    let v = round_trips(echo_via, pings);
    for q in [0.5, 0.99] {
        let (a, b) = (d.value_at_quantile(q), v.value_at_quantile(q));
        table.add_row(vec![
            format!("round trip p{:.0}, no toxics", q * 100.0),
            format!("{a} µs"),
            format!("{b} µs"),
            format!("+{} µs", b.saturating_sub(a)),
            if q == 0.5 { "< 50 µs added" } else { "" }.into(),
        ]);
    }

    let toxic = Toxic::new(
        "latency_downstream".into(),
        ToxicKind::Latency {
            latency: 10,
            jitter: 0,
        },
        Stream::Downstream,
        1.0,
    );
    echo_proxy.add_toxic(toxic).expect("toxic added");
    let asked = 10_000u64;
    let t = round_trips(echo_via, toxic_pings);
    for q in [0.5, 0.99] {
        let m = t.value_at_quantile(q);
        table.add_row(vec![
            format!("latency toxic 10 ms, p{:.0}", q * 100.0),
            String::new(),
            format!("{:.2} ms", m as f64 / 1000.0),
            format!(
                "+{:.3} ms over asked",
                m.saturating_sub(asked) as f64 / 1000.0
            ),
            if q == 0.99 { "within 1 ms" } else { "" }.into(),
        ]);
    }
    println!("{table}");
}
