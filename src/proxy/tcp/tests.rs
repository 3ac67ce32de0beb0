//! The engine from Rust: attribute parsing and merging, toxicity per connection, live changes.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

#[test]
fn attributes_parse_merge_and_refuse() {
    let m = |v: serde_json::Value| v.as_object().cloned().unwrap();
    let k = ToxicKind::from_attributes("latency", &m(json!({"latency": 5, "x": 1})), None);
    assert_eq!(
        k,
        Ok(ToxicKind::Latency {
            latency: 5,
            jitter: 0
        })
    );
    let base = k.unwrap();
    let k = ToxicKind::from_attributes("latency", &m(json!({"jitter": 2})), Some(&base));
    assert_eq!(
        k,
        Ok(ToxicKind::Latency {
            latency: 5,
            jitter: 2
        })
    );
    assert!(ToxicKind::from_attributes("latency", &m(json!({"latency": -1})), None).is_err());
    assert!(ToxicKind::from_attributes("nope", &m(json!({})), None).is_err());
    let slicer = ToxicKind::Slicer {
        average_size: 1,
        size_variation: 2,
        delay: 3,
    };
    let back = ToxicKind::from_attributes("slicer", &slicer.attributes(), None);
    assert_eq!(back, Ok(slicer));
}

pub(crate) async fn echo() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = c.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn round_trip(c: &mut TcpStream) -> Duration {
    let t = Instant::now();
    c.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).await.unwrap();
    t.elapsed()
}

#[tokio::test]
async fn toxicity_zero_never_acts_and_changes_reach_open_connections() {
    let p = TcpProxy::new("t", "127.0.0.1:0", &echo().await.to_string());
    let addr = p.start().await.unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut c).await;
    let lat = |toxicity| {
        Toxic::new(
            "lat".into(),
            ToxicKind::Latency {
                latency: 60,
                jitter: 0,
            },
            Stream::Upstream,
            toxicity,
        )
    };
    p.add_toxic(lat(0.0)).unwrap();
    assert!(round_trip(&mut c).await < Duration::from_millis(50));
    assert_eq!(p.add_toxic(lat(1.0)), Err(TcpError::ToxicExists));
    p.update_toxic("lat", None, Some(1.0)).unwrap();
    assert!(round_trip(&mut c).await >= Duration::from_millis(60));
    p.remove_toxic("lat").unwrap();
    assert!(round_trip(&mut c).await < Duration::from_millis(50));
    assert_eq!(p.remove_toxic("lat"), Err(TcpError::ToxicNotFound));
    assert!(p.add_toxic(lat(1.5)).is_err());
    p.stop().await;
    let mut b = [0u8; 1];
    assert!(matches!(c.read(&mut b).await, Ok(0) | Err(_)));
}

/// Toxicity picks of `n` connections made one after another through a fresh proxy `p`: true
/// where a downstream `limit_data` of 1 byte acted (toxicity 0.5).
async fn picks(seed: u64, n: usize) -> Vec<bool> {
    let p = TcpProxy::new("p", "127.0.0.1:0", &echo().await.to_string()).with_seed(seed);
    let addr = p.start().await.unwrap();
    p.add_toxic(Toxic::new(
        "coin".into(),
        ToxicKind::LimitData { bytes: 1 },
        Stream::Downstream,
        0.5,
    ))
    .unwrap();
    let out = limit_picks(addr, n).await;
    p.stop().await;
    out
}

/// For `n` connections made one after another to `addr`, a proxy of an echo server: true where
/// a downstream `limit_data` of 1 byte acted (one byte came back, not five).
pub(crate) async fn limit_picks(addr: std::net::SocketAddr, n: usize) -> Vec<bool> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut got = Vec::new();
        let read = async {
            let mut b = [0u8; 8];
            while got.len() < 5 {
                match c.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => got.extend_from_slice(&b[..k]),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .unwrap();
        assert!(got.len() == 1 || got.len() == 5, "{got:?}");
        out.push(got.len() == 1);
    }
    out
}

#[tokio::test]
async fn proxies_with_one_seed_pick_the_same_connections() {
    let a = picks(11, 16).await;
    assert!(a.contains(&true) && a.contains(&false), "{a:?}");
    assert_eq!(a, picks(11, 16).await);
    assert_ne!(a, picks(12, 16).await);
}
