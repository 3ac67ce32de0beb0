//! Free ports for tests, shared by the integration tests (`tests/common`) and the lib's unit
//! tests (`src/services/tests/support.rs`, through `#[path]`), so both pick ports one way.

use std::net::TcpListener;

/// Ports free right now, all distinct, taken from below the kernel's ephemeral range. A port
/// the OS hands out for `:0` is one it may also give the next outgoing connection of any test
/// running beside this one (the load tests open thousands), which then holds it when the drill
/// binds it: that raced. Each call starts at a random point of the range, so tests in other
/// processes (nextest) rarely meet, and every port is checked free by binding it.
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Shipped experiments use ports below 20000 (tests/ports.rs).
    const LOW: u32 = 20_000;
    let high = ephemeral_low().unwrap_or(32_768);
    if high < LOW + 1_000 {
        return os_ports(n);
    }
    let span = high - LOW;
    if NEXT.load(Ordering::Relaxed) == 0 {
        let seed = std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
        let _ = NEXT.compare_exchange(0, seed % span + 1, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut listeners = Vec::with_capacity(n);
    // Bounded: at most the whole range is tried once.
    for _ in 0..span {
        if listeners.len() == n {
            break;
        }
        let port = LOW + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(port).expect("below the ephemeral range");
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(l);
        }
    }
    assert_eq!(
        listeners.len(),
        n,
        "no {n} free ports below the ephemeral range"
    );
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> Option<u32> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// Ports the OS says are free right now (where no range below the ephemeral one is left).
fn os_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}
