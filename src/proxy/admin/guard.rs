//! Who may call the admin API. It has no authentication (Toxiproxy's has none, and its clients
//! send none), so a web page the operator happens to open must not be able to drive it: a
//! page can make the browser send requests to 127.0.0.1, and with DNS rebinding it can even
//! read the answers. Browsers are recognised three ways, each of which a page cannot remove:
//!
//! - a `User-Agent` starting with `Mozilla/`, refused as Toxiproxy refuses it;
//! - an `Origin` header, or `Sec-Fetch-Site: cross-site`/`same-site`, which browsers add to
//!   requests a page makes;
//! - a `Host` header that is not an address the API is reached at (DNS rebinding: the page's
//!   own name, re-pointed at 127.0.0.1, arrives as the Host).
//!
//! Toxiproxy's clients send none of these, and name the address they connect to as the Host.

use std::net::{IpAddr, SocketAddr};

use hyper::header::{HeaderMap, HOST, ORIGIN, USER_AGENT};
use hyper::StatusCode;

use super::model::ApiError;

/// What a request must match, for one connection.
#[derive(Clone, Debug)]
pub struct Guard {
    /// The address the client reached: the listen address, or with a wildcard listen
    /// (0.0.0.0, [::]) the interface's own.
    pub local: SocketAddr,
    /// Extra names the operator allows in the Host header (`--allow-host`), lower case.
    pub allowed_hosts: Vec<String>,
}

impl Guard {
    /// The 403 to answer instead of serving the request, if it must be refused.
    pub fn refusal(&self, headers: &HeaderMap) -> Option<ApiError> {
        let forbidden = |m: String| Some(ApiError::new(StatusCode::FORBIDDEN, m));
        if let Some(ua) = headers.get(USER_AGENT) {
            if ua.as_bytes().starts_with(b"Mozilla/") {
                // Toxiproxy's own words first, so anything matching on them still does.
                return forbidden(
                    "User agent not allowed: the admin API refuses browsers \
                     (a User-Agent starting with Mozilla/)"
                        .into(),
                );
            }
        }
        if headers.contains_key(ORIGIN) {
            return forbidden(
                "cross-site request refused: the admin API takes no requests with an Origin \
                 header (a browser adds one to requests a web page makes)"
                    .into(),
            );
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = site.as_bytes();
            if site.eq_ignore_ascii_case(b"cross-site") || site.eq_ignore_ascii_case(b"same-site") {
                return forbidden(format!(
                    "cross-site request refused: Sec-Fetch-Site is {}",
                    String::from_utf8_lossy(site)
                ));
            }
        }
        // No Host at all is an HTTP/1.0 tool, never a browser (browsers always send one).
        if let Some(host) = headers.get(HOST) {
            let text = host.to_str().unwrap_or("");
            if !self.host_allowed(text) {
                return forbidden(format!(
                    "Host {:?} refused: the admin API answers only to the address it listens \
                     on ({}) or localhost, 127.0.0.1 or [::1] with port {} (this protects \
                     against DNS rebinding; `faultline proxy --allow-host NAME` allows a name)",
                    text.chars().take(100).collect::<String>(),
                    self.local,
                    self.local.port()
                ));
            }
        }
        None
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        if port != self.local.port() {
            return false;
        }
        let name = name.to_ascii_lowercase();
        if name == "localhost" || self.allowed_hosts.contains(&name) {
            return true;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => {
                let ip = ip.to_canonical();
                ip == self.local.ip().to_canonical()
                    || ip == IpAddr::from([127, 0, 0, 1])
                    || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            }
            Err(_) => false,
        }
    }
}

/// `name:port`, `[v6]:port`, or either without a port (HTTP's default, 80). The name comes
/// back without brackets.
fn split_host(host: &str) -> Option<(&str, u16)> {
    if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        return match after {
            "" => Some((ip, 80)),
            _ => Some((ip, after.strip_prefix(':')?.parse().ok()?)),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) => Some((name, port.parse().ok()?)),
        None if !host.is_empty() => Some((host, 80)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn guard() -> Guard {
        Guard {
            local: "127.0.0.1:8474".parse().unwrap(),
            allowed_hosts: vec!["toxiproxy".into()],
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn refused(pairs: &[(&'static str, &'static str)]) -> Option<String> {
        guard().refusal(&headers(pairs)).map(|e| {
            assert_eq!(e.status, StatusCode::FORBIDDEN);
            e.message
        })
    }

    #[test]
    fn clients_that_are_not_browsers_pass() {
        for host in [
            "127.0.0.1:8474",
            "localhost:8474",
            "LocalHost:8474",
            "[::1]:8474",
            "toxiproxy:8474",
        ] {
            let h = [("host", host), ("user-agent", "toxiproxy-cli")];
            assert_eq!(refused(&h), None, "{host}");
        }
        assert_eq!(refused(&[("sec-fetch-site", "same-origin")]), None);
        assert_eq!(refused(&[]), None, "HTTP/1.0 without a Host");
    }

    #[test]
    fn browsers_and_foreign_hosts_are_refused() {
        let msg = refused(&[("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")]).unwrap();
        assert!(msg.starts_with("User agent not allowed"), "{msg}");
        let msg = refused(&[("origin", "https://evil.example")]).unwrap();
        assert!(msg.contains("Origin"), "{msg}");
        assert!(refused(&[("origin", "null")]).is_some());
        for site in ["cross-site", "same-site", "Cross-Site"] {
            let h = [("sec-fetch-site", site)];
            assert!(refused(&h).unwrap().contains("Sec-Fetch-Site"), "{site}");
        }
        for host in [
            "evil.example:8474",
            "127.0.0.1:8475",
            "127.0.0.1",
            "localhost",
            "10.0.0.1:8474",
            "[::1]",
            "[::1:8474",
            ":8474",
            "",
        ] {
            let h = [("host", host)];
            let msg = refused(&h).unwrap_or_else(|| panic!("{host:?} passed"));
            assert!(msg.contains("DNS rebinding"), "{msg}");
        }
    }

    #[test]
    fn a_wildcard_listen_accepts_the_address_the_client_reached() {
        let g = Guard {
            local: "[::ffff:10.1.2.3]:8474".parse().unwrap(),
            allowed_hosts: Vec::new(),
        };
        assert!(g.host_allowed("10.1.2.3:8474"));
        assert!(!g.host_allowed("10.1.2.4:8474"));
        let g = Guard {
            local: "127.0.0.1:80".parse().unwrap(),
            allowed_hosts: Vec::new(),
        };
        assert!(g.host_allowed("localhost"), "port 80 may be left out");
    }

    #[test]
    fn hosts_split_into_name_and_port() {
        assert_eq!(split_host("a:1"), Some(("a", 1)));
        assert_eq!(split_host("[::1]:2"), Some(("::1", 2)));
        assert_eq!(split_host("[::1]"), Some(("::1", 80)));
        assert_eq!(split_host("a"), Some(("a", 80)));
        assert_eq!(split_host("a:x"), None);
        assert_eq!(split_host("[::1]x"), None);
        assert_eq!(split_host(""), None);
    }
}
