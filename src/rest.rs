//! What faultline's small REST clients (the agent's controller side, the Toxiproxy driver)
//! share: a pooled JSON client, one bounded and timed exchange, and error text that says what
//! really happened.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode};

use crate::net::{ClientConfig, HttpClient};

pub type JsonClient = HttpClient<Full<Bytes>>;

/// A keep-alive client with hyper's pool defaults and a bound on each connect attempt.
pub fn json_client(connect_timeout: Duration) -> JsonClient {
    crate::net::http_client(ClientConfig::new(connect_timeout))
}

/// Why an exchange got no complete answer.
#[derive(Debug)]
pub enum CallError {
    /// No answer: the connection failed or broke before the status.
    Transport(String),
    /// The answer's body could not be read (or was larger than allowed).
    Body(String),
    /// Nothing complete within the call's time limit.
    Timeout,
}

/// Sends `req` and reads at most `max_answer` bytes of the answer, all within `timeout`.
pub async fn call(
    client: &JsonClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
    max_answer: usize,
) -> Result<(StatusCode, Bytes), CallError> {
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| CallError::Transport(error_chain(&e)))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), max_answer)
            .collect()
            .await
            .map_err(|e| CallError::Body(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| CallError::Timeout)?
}

/// An error with its causes on one line: a client's top-level message alone ("client error
/// (Connect)") does not say that the connection was refused.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    // Bounded: error chains are short, but a cyclic one must not loop forever.
    for _ in 0..8 {
        let Some(s) = source else { break };
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The `error` text of a JSON error body (`{"error": "..."}`), the shape both the agent and
/// Toxiproxy answer with.
pub fn json_error(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("error")?
        .as_str()
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_name_every_cause() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = std::io::Error::other(ChainErr(inner));
        assert!(
            error_chain(&outer).ends_with("connect: connection refused"),
            "{}",
            error_chain(&outer)
        );
    }

    #[derive(Debug)]
    struct ChainErr(std::io::Error);
    impl std::fmt::Display for ChainErr {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connect")
        }
    }
    impl std::error::Error for ChainErr {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn json_errors_are_read_and_others_are_not() {
        assert_eq!(
            json_error(br#"{"error":"proxy not found","status":404}"#).as_deref(),
            Some("proxy not found")
        );
        assert_eq!(json_error(b"plain text"), None);
    }
}
