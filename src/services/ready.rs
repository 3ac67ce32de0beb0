//! Readiness probes: a TCP connect, or an HTTP GET answering 2xx, retried until `within` while
//! watching the process, so a service that dies during start-up fails at once instead of after
//! the whole probe budget.

use std::fmt;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use super::process::{describe_status, Leader};
use crate::experiment::ReadySpec;

/// Pause between two failed attempts.
const RETRY_EVERY: Duration = Duration::from_millis(50);
/// The longest one attempt may take: a half-started server that accepts and never answers
/// must not eat the whole budget in one try.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(2);
/// With no probe, how long the process must stay up to count as started.
pub(super) const SETTLE: Duration = Duration::from_millis(200);
/// How much of a response the HTTP probe reads looking for its status line.
const STATUS_LINE_LIMIT: usize = 1024;

/// One check that the service is ready.
#[derive(Clone, Debug)]
pub(super) enum Probe {
    Tcp(SocketAddr),
    Http {
        url: String,
        addr: SocketAddr,
        authority: String,
        path: String,
    },
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp(addr) => write!(f, "tcp {addr}"),
            Probe::Http { url, .. } => write!(f, "http GET {url}"),
        }
    }
}

impl Probe {
    /// The probes a `ready:` block asks for: each one set must pass (the checker allows one).
    pub(super) async fn from_spec(ready: &ReadySpec) -> Result<Vec<Probe>, String> {
        let mut probes = Vec::new();
        if let Some(addr) = ready.tcp {
            probes.push(Probe::Tcp(addr));
        }
        if let Some(url) = &ready.http {
            probes.push(Probe::http(url).await?);
        }
        Ok(probes)
    }

    async fn http(url: &str) -> Result<Probe, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("ready.http `{url}` is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "ready.http `{url}`: only http:// URLs can be probed"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("ready.http `{url}` has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut found| found.next())
            .ok_or_else(|| format!("ready.http `{url}`: cannot resolve host `{host}`"))?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        Ok(Probe::Http {
            url: url.to_string(),
            addr,
            authority: authority.as_str().to_string(),
            path,
        })
    }

    pub(super) fn addr(&self) -> SocketAddr {
        match self {
            Probe::Tcp(addr) | Probe::Http { addr, .. } => *addr,
        }
    }

    /// One attempt; `Err` says why it is not ready yet ("connection refused", "answered 503").
    async fn attempt(&self) -> Result<(), String> {
        let mut stream = TcpStream::connect(self.addr())
            .await
            .map_err(|e| e.to_string())?;
        let Probe::Http {
            authority, path, ..
        } = self
        else {
            return Ok(());
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: faultline-ready\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending the request failed: {e}"))?;
        let mut head = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        // Bounded by STATUS_LINE_LIMIT bytes and, in time, by the caller's attempt timeout.
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < STATUS_LINE_LIMIT {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading the response failed: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        match status_code(&head) {
            Some(code) if (200..300).contains(&code) => Ok(()),
            Some(code) => Err(format!("answered {code}")),
            None if head.is_empty() => Err("closed the connection without answering".into()),
            None => Err("answered something that is not HTTP/1".into()),
        }
    }
}

/// The status code of an HTTP/1 status line (`HTTP/1.1 200 OK`).
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Connects once, briefly, to each probe's address: a listener already there before the
/// service starts (an earlier run still holding the port) would make the probe pass for the
/// wrong process. Returns the address found taken.
pub(super) async fn already_listening(probes: &[Probe]) -> Option<SocketAddr> {
    for probe in probes {
        let addr = probe.addr();
        if let Ok(Ok(_)) = timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            return Some(addr);
        }
    }
    None
}

/// How a start-up wait ended.
pub(super) enum Readiness {
    Ready,
    /// The process ended first: "exited with status 1"; `success` when with status 0.
    Exited {
        how: String,
        success: bool,
    },
    /// `within` passed; why the last attempt failed.
    TimedOut {
        last: String,
    },
}

/// Retries `probes` every 50 ms until they all pass or `within` runs out, and stops at once if
/// the leader exits. With no probes, waits `SETTLE` and checks the leader is still up.
pub(super) async fn wait_ready(
    leader: &mut Leader,
    probes: &[Probe],
    within: Duration,
) -> Readiness {
    if probes.is_empty() {
        return tokio::select! {
            status = leader.wait() => exited(status),
            _ = tokio::time::sleep(SETTLE) => still_up(leader),
        };
    }
    let deadline = Instant::now() + within;
    let mut last = "no attempt finished in time".to_string();
    // Every round takes at least RETRY_EVERY, so this count is never what ends the loop; it
    // only makes the bound explicit.
    let max_rounds = within.as_millis() / RETRY_EVERY.as_millis() + 2;
    for _ in 0..max_rounds {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let limit = (deadline - now).min(ATTEMPT_LIMIT);
        let round = async {
            for probe in probes {
                probe.attempt().await?;
            }
            Ok::<(), String>(())
        };
        tokio::select! {
            status = leader.wait() => return exited(status),
            result = timeout(limit, round) => match result {
                Ok(Ok(())) => return still_up(leader),
                Ok(Err(why)) => last = why,
                Err(_) => last = format!("no answer within {}", crate::units::human_duration(limit)),
            },
        }
        let next = (Instant::now() + RETRY_EVERY).min(deadline);
        tokio::select! {
            status = leader.wait() => return exited(status),
            _ = tokio::time::sleep_until(next) => {}
        }
    }
    Readiness::TimedOut { last }
}

/// A probe that passes while the process has just died (someone else answered on its port,
/// or it crashed right after binding) is not a start.
fn still_up(leader: &mut Leader) -> Readiness {
    match leader.try_wait() {
        Ok(Some(status)) => ended(status),
        Ok(None) => Readiness::Ready,
        Err(e) => watch_failed(e),
    }
}

fn exited(status: std::io::Result<ExitStatus>) -> Readiness {
    match status {
        Ok(status) => ended(status),
        Err(e) => watch_failed(e),
    }
}

fn ended(status: ExitStatus) -> Readiness {
    Readiness::Exited {
        how: describe_status(status),
        success: status.success(),
    }
}

fn watch_failed(e: std::io::Error) -> Readiness {
    Readiness::Exited {
        how: format!("could not be watched ({e})"),
        success: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    #[tokio::test]
    async fn http_probes_need_http_urls() {
        assert!(Probe::http("https://127.0.0.1/health").await.is_err());
        assert!(Probe::http("not a url").await.is_err());
        let p = Probe::http("http://127.0.0.1:8080/health?x=1")
            .await
            .unwrap();
        assert_eq!(p.addr(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(p.to_string(), "http GET http://127.0.0.1:8080/health?x=1");
        match p {
            Probe::Http {
                path, authority, ..
            } => {
                assert_eq!(path, "/health?x=1");
                assert_eq!(authority, "127.0.0.1:8080");
            }
            Probe::Tcp(_) => panic!("expected an http probe"),
        }
    }
}
