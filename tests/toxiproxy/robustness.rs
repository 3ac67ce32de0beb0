//! The proxy under churn and abuse: 10,000 connections leave no descriptors or memory behind,
//! and peers that reset mid-transfer never take it down.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::{connect, echo_server, ping, Server};

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Opens `n` connections at once, pings each, closes them all.
fn batch(proxy: SocketAddr, n: usize) {
    let mut conns: Vec<TcpStream> = (0..n).map(|_| connect(proxy)).collect();
    for c in &mut conns {
        assert_eq!(ping(c, b"ping").unwrap(), b"ping");
    }
}

/// Polls until `f` holds or `limit` passes; returns whether it held.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Tolerances: descriptors back to the baseline + 4 (the runtime may hold a few transient
/// ones); RSS within baseline + 16 MiB (the allocator keeps freed pages for reuse).
#[test]
fn ten_thousand_connections_leave_nothing_behind() {
    let server = Server::start();
    let echo = echo_server();
    let proxy = server.create("churn", echo);
    // Warm up so lazily built runtime structures are in the baseline.
    for _ in 0..5 {
        batch(proxy, 100);
    }
    let pid = server.pid();
    assert!(eventually(Duration::from_secs(5), || fd_count(pid) <= 20));
    let fds0 = fd_count(pid);
    let rss0 = rss_kib(pid);
    let start = Instant::now();
    for _ in 0..100 {
        batch(proxy, 100);
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "churn took too long"
        );
    }
    assert!(
        eventually(Duration::from_secs(10), || fd_count(pid) <= fds0 + 4),
        "descriptors: {fds0} before, {} after",
        fd_count(pid)
    );
    let rss1 = rss_kib(pid);
    assert!(
        rss1 <= rss0 + 16 * 1024,
        "RSS grew from {rss0} KiB to {rss1} KiB"
    );
    eprintln!(
        "10,000 connections in {:?}: fds {fds0} -> {}, RSS {rss0} KiB -> {rss1} KiB",
        start.elapsed(),
        fd_count(pid)
    );
}

fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

#[test]
fn peers_resetting_mid_transfer_do_not_take_the_proxy_down() {
    let server = Server::start();
    let echo = echo_server();
    let proxy = server.create("echo", echo);

    // Clients that reset while data flows both ways.
    for _ in 0..50 {
        let mut c = connect(proxy);
        c.write_all(&[9u8; 256 * 1024]).unwrap();
        let mut buf = [0u8; 1024];
        c.read_exact(&mut buf).unwrap();
        reset(c);
    }

    // An upstream that resets every connection after reading a little.
    let rude = TcpListener::bind("127.0.0.1:0").unwrap();
    let rude_addr = rude.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in rude.incoming().take(50) {
            let Ok(mut c) = c else { continue };
            let mut buf = [0u8; 100];
            let _ = c.read(&mut buf);
            reset(c);
        }
    });
    let rude_proxy = server.create("rude", rude_addr);
    for _ in 0..50 {
        let mut c = connect(rude_proxy);
        let _ = c.write_all(&[1u8; 64 * 1024]);
        let mut buf = [0u8; 16];
        // The proxy passes the end on: EOF or a reset, never a hang.
        assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
    }

    let mut server = server;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the proxy is alive"
    );
    let mut c = connect(proxy);
    assert_eq!(ping(&mut c, b"still here").unwrap(), b"still here");
}
