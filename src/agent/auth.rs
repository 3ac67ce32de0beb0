//! The agent's bearer token: where it comes from, when it is strong enough, and how a request's
//! `Authorization` header is checked against it.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use hyper::header::HeaderValue;
use subtle::ConstantTimeEq;

/// The environment variable read when neither `--token-env` nor `--token-file` is given.
pub const DEFAULT_TOKEN_ENV: &str = "FAULTLINE_AGENT_TOKEN";

/// A token may be used on a non-loopback address only if it is at least this long: anyone on
/// the network can try tokens, and the agent can stop any process on the host.
pub const MIN_EXPOSED_TOKEN_LEN: usize = 16;

/// The shared secret. Its `Debug` never prints it, so it cannot leak into a log by accident.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<{} characters>)", self.0.len())
    }
}

impl Token {
    /// Trims surrounding whitespace (a token file usually ends with a newline) and refuses what
    /// could not be sent in an HTTP header.
    pub fn new(raw: &str) -> Result<Token, String> {
        let token = raw.trim();
        if token.is_empty() {
            return Err("the token is empty".into());
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be printable ASCII without spaces".into());
        }
        Ok(Token(token.to_string()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant time in the contents, so response timing does not reveal how much of a guess
    /// was right. (Only the length can leak, and the length alone does not help an attacker.)
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented))
    }

    /// Reads the token from the environment variable `var`.
    pub fn from_env(var: &str) -> Result<Token, String> {
        match std::env::var(var) {
            Ok(v) => Token::new(&v).map_err(|why| format!("${var}: {why}")),
            Err(std::env::VarError::NotPresent) => Err(format!(
                "no token: set ${var} (or pass --token-env VAR or --token-file PATH); \
                 the agent never takes a token on the command line, where `ps` would show it"
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!("${var} is not valid UTF-8")),
        }
    }

    /// Reads the token from a file, trimmed.
    pub fn from_file(path: &Path) -> Result<Token, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        Token::new(&text).map_err(|why| format!("token file {}: {why}", path.display()))
    }
}

/// Refuses to expose the agent beyond loopback behind a guessable token.
pub fn check_exposure(listen: SocketAddr, token: &Token) -> Result<(), String> {
    if listen.ip().is_loopback() || token.len() >= MIN_EXPOSED_TOKEN_LEN {
        return Ok(());
    }
    Err(format!(
        "--listen {listen} is reachable from other hosts, so the token must be at least \
         {MIN_EXPOSED_TOKEN_LEN} characters (it has {}); use a longer token or a loopback address",
        token.len()
    ))
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    Missing,
    Malformed,
    Wrong,
}

impl Denied {
    pub fn message(self) -> &'static str {
        match self {
            Denied::Missing => "missing `Authorization: Bearer <token>` header",
            Denied::Malformed => "the Authorization header must be `Bearer <token>`",
            Denied::Wrong => "wrong token",
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is case-insensitive
/// (RFC 9110, section 11.1).
pub fn bearer(header: Option<&HeaderValue>) -> Result<&[u8], Denied> {
    let value = header.ok_or(Denied::Missing)?.as_bytes();
    let space = value
        .iter()
        .position(|&b| b == b' ')
        .ok_or(Denied::Malformed)?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Denied::Malformed);
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Err(Denied::Malformed);
    }
    Ok(token)
}

/// Checks a request's Authorization header against `token`.
pub fn authorize(token: &Token, header: Option<&HeaderValue>) -> Result<(), Denied> {
    let presented = bearer(header)?;
    if token.matches(presented) {
        Ok(())
    } else {
        Err(Denied::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).unwrap()
    }

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer(Some(&header("Bearer abc"))), Ok(&b"abc"[..]));
        assert_eq!(bearer(Some(&header("bearer  abc "))), Ok(&b"abc"[..]));
        assert_eq!(bearer(None), Err(Denied::Missing));
        for bad in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc"] {
            assert_eq!(bearer(Some(&header(bad))), Err(Denied::Malformed), "{bad}");
        }
    }

    #[test]
    fn compares_whole_tokens_only() {
        let token = Token::new("s3cret-token").unwrap();
        assert!(token.matches(b"s3cret-token"));
        for wrong in [&b"s3cret-toke"[..], b"s3cret-tokenX", b"S3cret-token", b""] {
            assert!(!token.matches(wrong));
        }
        let h = header("Bearer s3cret-token");
        assert_eq!(authorize(&token, Some(&h)), Ok(()));
        let h = header("Bearer nope");
        assert_eq!(authorize(&token, Some(&h)), Err(Denied::Wrong));
    }

    #[test]
    fn tokens_are_trimmed_and_never_printed() {
        let token = Token::new("  abc\n").unwrap();
        assert!(token.matches(b"abc"));
        assert!(!format!("{token:?}").contains("abc"));
        assert!(Token::new(" \n").is_err());
        assert!(Token::new("a b").is_err());
    }

    #[test]
    fn short_tokens_stay_on_loopback() {
        let short = Token::new("short").unwrap();
        let long = Token::new(&"x".repeat(MIN_EXPOSED_TOKEN_LEN)).unwrap();
        // Only parsed, never bound: the rule looks at the address, not the port.
        let lo: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let lo6: SocketAddr = "[::1]:9".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9".parse().unwrap();
        assert!(check_exposure(lo, &short).is_ok());
        assert!(check_exposure(lo6, &short).is_ok());
        assert!(check_exposure(any, &short)
            .unwrap_err()
            .contains("at least 16"));
        assert!(check_exposure(any, &long).is_ok());
    }
}
