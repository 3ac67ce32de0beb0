//! Where a proxy listens and where it forwards, as an experiment file names them: `host:port`
//! (an IP literal or a hostname) or, for an upstream, a URL with a scheme. Read once into typed
//! values; hostnames are resolved by whoever connects, each time it connects, as a real client
//! does, so a backend that moves in DNS is followed.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Serialize};

/// A host (IP literal or name) and a port, as written: `10.0.0.7:7070`, `[::1]:7070`,
/// `agent.faultline.svc.cluster.local:7070`. In a file it is read as a string; the name is
/// resolved by whoever connects, each time it connects.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort {
    /// Without the brackets of an IPv6 literal, as a resolver takes it.
    host: String,
    port: u16,
}

impl HostPort {
    /// Whether a TCP connection to it opens within `limit` (closed at once: the other side sees
    /// a connection without a request). The name is resolved afresh each time, as a client
    /// resolves it at each connection.
    pub async fn accepts(&self, limit: std::time::Duration) -> bool {
        let connect = tokio::net::TcpStream::connect((self.host(), self.port()));
        matches!(tokio::time::timeout(limit, connect).await, Ok(Ok(_)))
    }

    /// `host` without IPv6 brackets.
    pub fn new(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every address the host resolves to now. A name that resolves to nothing is an error
    /// that names it.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve host `{}`: {e}", self.host))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("host `{}` resolves to no address", self.host));
        }
        Ok(addrs)
    }

    /// The form only: a host, a port; nothing is resolved.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "`{text}` is HOST:PORT, without a scheme (`{scheme}://`)"
            ));
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| {
            format!("`{text}` needs a port, like 127.0.0.1:8080 or localhost:8080")
        })?;
        let host = match host.strip_prefix('[') {
            Some(v6) => v6
                .strip_suffix(']')
                .ok_or_else(|| format!("`{text}`: an IPv6 host is written [::1]:PORT"))?,
            // A bare IPv6 literal without brackets would split at its last colon.
            None if host.contains(':') => {
                return Err(format!("`{text}`: an IPv6 host is written [::1]:PORT"))
            }
            None => host,
        };
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        // What a URI authority may hold is what the client and the `Host` header will take.
        if host.contains(['/', '@', '?', '#'])
            || text.parse::<hyper::http::uri::Authority>().is_err()
        {
            return Err(format!("`{text}`: `{host}` is not a host name"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("`{text}`: `{port}` is not a port (0-65535)"))?;
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl From<SocketAddr> for HostPort {
    fn from(addr: SocketAddr) -> HostPort {
        HostPort::new(&addr.ip().to_string(), addr.port())
    }
}

impl std::str::FromStr for HostPort {
    type Err = String;
    fn from_str(text: &str) -> Result<HostPort, String> {
        HostPort::parse(text)
    }
}

impl TryFrom<String> for HostPort {
    type Error = String;
    fn try_from(text: String) -> Result<HostPort, String> {
        HostPort::parse(&text)
    }
}

impl From<HostPort> for String {
    fn from(h: HostPort) -> String {
        h.to_string()
    }
}

impl schemars::JsonSchema for HostPort {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HostPort".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "HOST:PORT: an IP literal (IPv6 in brackets, [::1]:7070) or a host \
                            name (agent.faultline.svc.cluster.local:7070), resolved at each \
                            connection.",
            "type": "string",
            "pattern": "^([^\\s:/@?#\\[\\]]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$",
        })
    }
}

/// How a proxy talks to its upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    /// The proxy originates TLS (SNI, the system's roots or `upstream_tls`).
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A proxy's upstream: `host:port`, `http://host:port` or `https://host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Upstream {
    /// As written, for messages and reports.
    text: String,
    scheme: Scheme,
    addr: HostPort,
    /// Whether the text was a URL (a `mode: tcp` proxy takes only `host:port`).
    url: bool,
}

impl Upstream {
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn addr(&self) -> &HostPort {
        &self.addr
    }

    pub fn is_url(&self) -> bool {
        self.url
    }
}

/// A plain-HTTP upstream at an address (tests, and callers that resolved it already).
impl From<SocketAddr> for Upstream {
    fn from(addr: SocketAddr) -> Upstream {
        Upstream {
            text: addr.to_string(),
            scheme: Scheme::Http,
            addr: HostPort::from(addr),
            url: false,
        }
    }
}

impl std::str::FromStr for Upstream {
    type Err = String;

    fn from_str(text: &str) -> Result<Upstream, String> {
        let (scheme, rest, url) = if let Some(rest) = text.strip_prefix("https://") {
            (Scheme::Https, rest, true)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (Scheme::Http, rest, true)
        } else if let Some((other, _)) = text.split_once("://") {
            return Err(format!(
                "`{text}`: an upstream is host:port, http://host:port or https://host:port, \
                 not {other}://"
            ));
        } else {
            (Scheme::Http, text, false)
        };
        // A proxy forwards each request's own path: a path here would be silently dropped.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(format!(
                "`{text}`: an upstream has no path; requests keep the path they were sent with"
            ));
        }
        let addr = match (HostPort::parse(rest), scheme) {
            (Ok(a), _) => a,
            // A URL may leave the port to its scheme's default.
            (Err(_), Scheme::Https) if url && !rest.is_empty() => {
                HostPort::parse(&format!("{rest}:443"))?
            }
            (Err(_), Scheme::Http) if url && !rest.is_empty() => {
                HostPort::parse(&format!("{rest}:80"))?
            }
            (Err(e), _) => return Err(e),
        };
        if addr.port == 0 {
            return Err(format!("`{text}`: port 0 cannot be connected to"));
        }
        Ok(Upstream {
            text: text.to_string(),
            scheme,
            addr,
            url,
        })
    }
}

impl TryFrom<String> for Upstream {
    type Error = String;
    fn try_from(text: String) -> Result<Upstream, String> {
        text.parse()
    }
}

impl From<Upstream> for String {
    fn from(u: Upstream) -> String {
        u.text
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl schemars::JsonSchema for Upstream {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Upstream".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Where the proxy forwards: HOST:PORT (plain HTTP or bytes), \
                            http://HOST[:PORT] or https://HOST[:PORT] (the proxy originates TLS). \
                            HOST may be a name; it is resolved at each connection.",
            "type": "string",
            "pattern": "^((https?://)?[^/\\s]+:[0-9]+|https?://[^/\\s]+)/?$",
        })
    }
}

/// A listening address: an IP literal or a hostname that resolves to a local address,
/// resolved once when the file is read (a listener binds one address).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Listen {
    text: String,
    addr: SocketAddr,
}

impl Listen {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Listen {
        Listen {
            text: addr.to_string(),
            addr,
        }
    }
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(text: &str) -> Result<Listen, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Listen::from(addr));
        }
        let hp = HostPort::parse(text)?;
        let addrs = hp.resolve().map_err(|e| format!("`{text}`: {e}"))?;
        // The first of the name's addresses this machine has: a listener can bind only those.
        let addr = addrs
            .iter()
            .copied()
            .find(|a| is_local(a.ip()))
            .ok_or_else(|| {
                let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                format!(
                    "`{text}`: `{}` resolves to {}, not an address of this machine",
                    hp.host,
                    list.join(", ")
                )
            })?;
        Ok(Listen {
            text: text.to_string(),
            addr,
        })
    }
}

/// Whether this machine has `ip`: binding a UDP socket to it succeeds exactly then.
fn is_local(ip: IpAddr) -> bool {
    ip.is_unspecified() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

impl TryFrom<String> for Listen {
    type Error = String;
    fn try_from(text: String) -> Result<Listen, String> {
        text.parse()
    }
}

impl From<Listen> for String {
    fn from(l: Listen) -> String {
        l.text
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl schemars::JsonSchema for Listen {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Listen".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Where to listen: IP:PORT, or HOST:PORT with a name that resolves to \
                            an address of this machine (e.g. localhost:8080).",
            "type": "string",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_read_in_each_form() {
        let u: Upstream = "127.0.0.1:9000".parse().unwrap();
        assert_eq!((u.scheme(), u.is_url()), (Scheme::Http, false));
        assert_eq!(u.addr().to_string(), "127.0.0.1:9000");
        let u: Upstream = "https://gateway.staging.example".parse().unwrap();
        assert_eq!(u.scheme(), Scheme::Https);
        assert_eq!(
            (u.addr().host(), u.addr().port()),
            ("gateway.staging.example", 443)
        );
        let u: Upstream = "http://[::1]:8080/".parse().unwrap();
        assert_eq!((u.addr().host(), u.addr().port()), ("::1", 8080));
        assert_eq!(u.addr().to_string(), "[::1]:8080");
        assert_eq!(u.to_string(), "http://[::1]:8080/");
    }

    #[test]
    fn bad_upstreams_say_why() {
        for (bad, why) in [
            ("ftp://h:1", "not ftp://"),
            ("https://h:1/v1", "no path"),
            ("localhost", "needs a port"),
            ("h:99999", "not a port"),
            ("h:0", "port 0"),
            ("::1:80", "IPv6"),
            ("bad host:80", "not a host name"),
            ("user@h:80", "not a host name"),
        ] {
            let e = bad.parse::<Upstream>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn host_ports_take_literals_and_names_and_resolve_nothing() {
        for (text, host, port) in [
            ("10.0.0.7:7070", "10.0.0.7", 7070),
            ("[::1]:7070", "::1", 7070),
            (
                "faultline-agent.chaos.svc.cluster.local:7070",
                "faultline-agent.chaos.svc.cluster.local",
                7070,
            ),
            // Never resolved: a name of another network is read all the same.
            ("no-such-host.invalid:1", "no-such-host.invalid", 1),
        ] {
            let h: HostPort = text.parse().unwrap();
            assert_eq!((h.host(), h.port()), (host, port), "{text}");
            assert_eq!(h.to_string(), text);
        }
        for (bad, why) in [
            ("localhost", "needs a port"),
            (":7070", "has no host"),
            ("agent:", "is not a port"),
            ("agent:70700", "is not a port"),
            ("agent:http", "is not a port"),
            ("::1:7070", "IPv6"),
            ("[::1:7070", "IPv6"),
            ("http://agent:7070", "without a scheme (`http://`)"),
            ("two words:7070", "not a host name"),
        ] {
            let e = bad.parse::<HostPort>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn listen_names_resolve_to_a_local_address() {
        let l: Listen = "localhost:0".parse().unwrap();
        assert!(l.addr().ip().is_loopback(), "{l:?}");
        assert_eq!(l.to_string(), "localhost:0");
        let l: Listen = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(l.addr(), SocketAddr::from(([127, 0, 0, 1], 8080)));
        let e = "no-such-host.invalid:80".parse::<Listen>().unwrap_err();
        assert!(
            e.contains("cannot resolve host `no-such-host.invalid`"),
            "{e}"
        );
        // TEST-NET-1 is never an address of a test machine.
        assert!(!is_local("192.0.2.1".parse().unwrap()));
    }
}
