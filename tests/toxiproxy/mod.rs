//! Helpers for the Toxiproxy compatibility tests: the real `faultline proxy` binary on a port
//! the OS picks, a threaded echo server, and a tiny blocking HTTP/1.1 client for raw API calls.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::common::{start_proxy_server_with, Proc};

/// `faultline proxy` running in the background, under the common deadline; killed on drop.
pub struct Server {
    pub child: Proc,
    pub admin: SocketAddr,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Started with extra flags.
    pub fn start_with(flags: &[&str]) -> Server {
        let (child, admin) = start_proxy_server_with(flags);
        Server { child, admin }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One API call; returns the status and the body parsed as JSON (Null when empty). The
    /// Host header names the address connected to, as every HTTP client sends it.
    pub fn call(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let host = self.admin.to_string();
        self.call_with(method, path, &[("Host", &host)], body)
    }

    /// One API call with exactly these extra headers (no Host unless given).
    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, serde_json::Value) {
        let mut s = TcpStream::connect(self.admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let headers: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status: u16 = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        let json = if body.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(body).unwrap()
        };
        (status, json)
    }

    /// Creates a proxy on a free port in front of `upstream`; returns its real address.
    pub fn create(&self, name: &str, upstream: SocketAddr) -> SocketAddr {
        let (status, body) = self.call(
            "POST",
            "/proxies",
            &format!(r#"{{"name":"{name}","listen":"127.0.0.1:0","upstream":"{upstream}"}}"#),
        );
        assert_eq!(status, 201, "{body}");
        body["listen"].as_str().unwrap().parse().unwrap()
    }
}

/// An echo server on a free port; its threads live as long as the test process.
pub fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends `msg` and reads the same number of bytes back.
pub fn ping(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    Ok(back)
}
pub mod robustness;
