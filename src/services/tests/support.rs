//! Helpers: specs, throwaway ports, tiny python3 listeners, and checks that a pid is gone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::exit::Failure;
use crate::experiment::{CommandSpec, ReadySpec};
use crate::units::Dur;

pub fn spec(argv: &[&str]) -> CommandSpec {
    CommandSpec {
        command: argv.iter().map(|s| s.to_string()).collect(),
        env: IndexMap::new(),
        cwd: None,
        ready: None,
        stop_grace: Dur::from_secs(2),
        listen: None,
        withheld_env: Vec::new(),
    }
}

pub fn sh(script: &str) -> CommandSpec {
    spec(&["sh", "-c", script])
}

pub fn ready_tcp(addr: SocketAddr, within: Duration) -> Option<ReadySpec> {
    Some(ReadySpec {
        tcp: Some(addr),
        http: None,
        within: Dur(within),
    })
}

pub fn ready_http(url: String, within: Duration) -> Option<ReadySpec> {
    Some(ReadySpec {
        tcp: None,
        http: Some(url.parse().expect("a test's ready URL")),
        within: Dur(within),
    })
}

// The integration tests' port picker, compiled in here too, so the rule lives once.
#[path = "../../../tests/common/ports.rs"]
mod ports;

/// A port nothing listens on right now, from below the ephemeral range: a `:0` port is one the
/// kernel may hand the next outgoing connection of a test running beside this one.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ports::free_ports(1)[0]))
}

/// A plain TCP listener that accepts into its backlog and never reads.
pub fn tcp_listener(addr: SocketAddr) -> CommandSpec {
    const SCRIPT: &str = "import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(16)
print('listening', flush=True)
time.sleep(60)";
    spec(&["python3", "-c", SCRIPT, &addr.port().to_string()])
}

/// An HTTP server answering every GET with `status`.
pub fn http_server(addr: SocketAddr, status: u16) -> CommandSpec {
    const SCRIPT: &str = "import http.server,sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(int(sys.argv[2])); self.send_header('content-length', '0'); self.end_headers()
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()";
    spec(&[
        "python3",
        "-c",
        SCRIPT,
        &addr.port().to_string(),
        &status.to_string(),
    ])
}

/// The status of one GET, or None if no status line arrives within `limit`.
pub async fn http_status(addr: SocketAddr, limit: Duration) -> Option<u16> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < 12 {
            let n = s.read(&mut buf[got..]).await.ok()?;
            if n == 0 {
                return None;
            }
            got += n;
        }
        std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(limit, attempt).await.ok().flatten()
}

/// Running in the sense that matters: present and not a zombie (an orphan's zombie may linger
/// until whoever adopted it reaps it; it holds no port and runs no code).
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z') | Some('X') | None)
}

/// Polls (every 20 ms, at most `within`) until `pid` is gone.
pub async fn gone_within(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    !alive(pid)
}

/// Polls (every 20 ms, at most 5 s) until `path` holds a pid.
pub async fn read_pid(path: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no pid in {}", path.display());
}

/// Polls (every 20 ms, at most 5 s) until the file contains every one of `needles`.
pub async fn file_contains(path: &Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(path).unwrap_or_default();
        if needles.iter().all(|n| text.contains(n)) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{} never contained {needles:?}; it holds:\n{text}",
        path.display()
    );
}

pub fn environment_message(result: Result<impl Sized, Failure>) -> String {
    match result {
        Err(Failure::Environment(msg)) => msg,
        Err(other) => panic!("expected an environment failure, got {other:?}"),
        Ok(_) => panic!("expected an environment failure, got success"),
    }
}

pub fn logs() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    (dir, logs)
}
