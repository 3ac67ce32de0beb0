//! Readiness probes: a TCP connect, or an HTTP GET answering 2xx, retried until `within` while
//! watching the process, so a service that dies during start-up fails at once instead of after
//! the whole probe budget.

use std::fmt;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{HeaderValue, ACCEPT, CONNECTION, USER_AGENT};
use hyper::Request;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use super::process::{describe_status, Leader};
use crate::experiment::ReadySpec;
use crate::net::{ClientConfig, HttpClient, HttpUrl};

/// Pause between two failed attempts.
const RETRY_EVERY: Duration = Duration::from_millis(50);
/// The longest one attempt may take: a half-started server that accepts and never answers
/// must not eat the whole budget in one try.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(2);
/// With no probe, how long the process must stay up to count as started.
pub(super) const SETTLE: Duration = Duration::from_millis(200);

/// One check that the service is ready.
#[derive(Clone, Debug)]
pub(super) enum Probe {
    Tcp(SocketAddr),
    /// Boxed: a client is large, and probes are few.
    Http(Box<HttpProbe>),
}

#[derive(Clone, Debug)]
pub(super) struct HttpProbe {
    url: HttpUrl,
    /// Where the URL's host resolved when the probe was made: checked for a squatter before
    /// the service starts.
    addr: SocketAddr,
    client: HttpClient<Empty<Bytes>>,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp(addr) => write!(f, "tcp {addr}"),
            Probe::Http(h) => write!(f, "http GET {}", h.url),
        }
    }
}

impl Probe {
    /// The probes a `ready:` block asks for: each one set must pass (the checker allows one).
    /// `Err` only when the URL's host no longer resolves.
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

    async fn http(url: &HttpUrl) -> Result<Probe, String> {
        let host = url.host();
        let addr = tokio::net::lookup_host((host, url.port()))
            .await
            .ok()
            .and_then(|mut found| found.next())
            .ok_or_else(|| format!("ready.http `{url}`: cannot resolve host `{host}`"))?;
        // No idle connections: every attempt connects afresh, so a pass always comes from
        // whoever listens now, not from a connection kept from an earlier attempt.
        let client =
            crate::net::http_client(ClientConfig::new(ATTEMPT_LIMIT).pool_max_idle_per_host(0));
        Ok(Probe::Http(Box::new(HttpProbe {
            url: url.clone(),
            addr,
            client,
        })))
    }

    pub(super) fn addr(&self) -> SocketAddr {
        match self {
            Probe::Tcp(addr) => *addr,
            Probe::Http(h) => h.addr,
        }
    }

    /// One attempt; `Err` says why it is not ready yet ("connection refused", "answered 503").
    async fn attempt(&self) -> Result<(), String> {
        let (url, client) = match self {
            Probe::Tcp(addr) => {
                return TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Probe::Http(h) => (&h.url, &h.client),
        };
        let request = Request::get(url.uri().clone())
            .header(USER_AGENT, HeaderValue::from_static("faultline-ready"))
            .header(ACCEPT, HeaderValue::from_static("*/*"))
            .header(CONNECTION, HeaderValue::from_static("close"))
            .body(Empty::new())
            .map_err(|e| format!("cannot make the request: {e}"))?;
        // Bounded in time by the caller's attempt timeout; the body is never read, only the
        // status matters.
        let status = client
            .request(request)
            .await
            .map_err(|e| no_answer(&e))?
            .status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", status.as_u16()))
        }
    }
}

/// Why an attempt got no answer, in the words of the innermost cause ("Connection refused"):
/// the client's own ("client error (Connect)") do not say what happened.
fn no_answer(e: &hyper_util::client::legacy::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    // Bounded: error chains are short, but a cyclic one must not loop for ever.
    for _ in 0..8 {
        match cause.source() {
            Some(inner) => cause = inner,
            None => break,
        }
    }
    if e.is_connect() {
        cause.to_string()
    } else {
        format!("no HTTP answer: {cause}")
    }
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
    let mut have_reason = false;
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
                Ok(Err(why)) => {
                    last = why;
                    have_reason = true;
                }
                // An attempt the deadline cut short says less than the whole one before it
                // ("answered 503"), which is kept; on a busy machine the last attempt may have
                // had only a few milliseconds.
                Err(_) if have_reason && limit < ATTEMPT_LIMIT => {}
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

    #[tokio::test]
    async fn http_probes_take_a_checked_url() {
        let url: HttpUrl = "http://127.0.0.1:8080/health?x=1".parse().unwrap();
        let p = Probe::http(&url).await.unwrap();
        assert_eq!(p.addr(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(p.to_string(), "http GET http://127.0.0.1:8080/health?x=1");
    }

    #[tokio::test]
    async fn a_refused_attempt_says_so() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let url: HttpUrl = format!("http://{addr}/").parse().unwrap();
        let p = Probe::http(&url).await.unwrap();
        let why = timeout(Duration::from_secs(5), p.attempt())
            .await
            .expect("the attempt did not end in time")
            .unwrap_err();
        assert!(why.to_lowercase().contains("refused"), "{why}");
    }
}
