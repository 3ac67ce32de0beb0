//! `http://` URLs as an experiment file names them (`ready: { http: URL }`): checked once, where
//! they are read, so a bad one is an error at its line and column and nothing parses it again
//! at run time.

use std::fmt;

use hyper::Uri;
use serde::{Deserialize, Serialize};

/// A plain-HTTP URL with a host (and a port, 80 when not written).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpUrl {
    /// As written, for messages and reports.
    text: String,
    uri: Uri,
}

impl HttpUrl {
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The host as a resolver takes it: without the brackets of an IPv6 literal.
    pub fn host(&self) -> &str {
        // An HttpUrl always has an authority with a host: `parse` refuses any other.
        let host = self.uri.authority().map_or("", |a| a.host());
        host.trim_start_matches('[').trim_end_matches(']')
    }

    pub fn port(&self) -> u16 {
        self.uri
            .authority()
            .and_then(|a| a.port_u16())
            .unwrap_or(80)
    }

    /// `host:port` as written, for the Host header.
    pub fn authority(&self) -> &str {
        self.uri.authority().map_or("", |a| a.as_str())
    }

    /// The path and query, `/` when the URL has none.
    pub fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }
}

impl std::str::FromStr for HttpUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<HttpUrl, String> {
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "`{text}`: only http:// is supported, not {other}://"
                ))
            }
            None => {
                return Err(format!(
                    "`{text}` needs a scheme, like http://127.0.0.1:8080/health"
                ))
            }
        }
        match uri.authority() {
            Some(a) if !a.host().is_empty() => {}
            _ => return Err(format!("`{text}` has no host")),
        }
        if uri.authority().is_some_and(|a| a.port_u16() == Some(0)) {
            return Err(format!("`{text}`: port 0 cannot be connected to"));
        }
        Ok(HttpUrl {
            text: text.to_string(),
            uri,
        })
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = String;
    fn try_from(text: String) -> Result<HttpUrl, String> {
        text.parse()
    }
}

impl From<HttpUrl> for String {
    fn from(url: HttpUrl) -> String {
        url.text
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl schemars::JsonSchema for HttpUrl {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HttpUrl".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A plain-HTTP URL with a host: http://HOST[:PORT][/PATH]",
            "type": "string",
            "pattern": "^http://[^/\\s]+(/.*)?$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::HttpUrl;

    #[test]
    fn http_urls_are_read_into_their_parts() {
        let u: HttpUrl = "http://127.0.0.1:8080/health?x=1".parse().unwrap();
        assert_eq!((u.host(), u.port()), ("127.0.0.1", 8080));
        assert_eq!(u.authority(), "127.0.0.1:8080");
        assert_eq!(u.path_and_query(), "/health?x=1");
        assert_eq!(u.to_string(), "http://127.0.0.1:8080/health?x=1");

        let u: HttpUrl = "http://[::1]".parse().unwrap();
        assert_eq!((u.host(), u.port(), u.path_and_query()), ("::1", 80, "/"));
    }

    #[test]
    fn other_urls_are_refused_with_the_reason() {
        for (bad, why) in [
            (
                "https://127.0.0.1/health",
                "only http:// is supported, not https://",
            ),
            ("127.0.0.1:8080", "needs a scheme"),
            ("/health", "needs a scheme"),
            ("not a url", "is not a URL"),
            ("http://127.0.0.1:0/", "port 0"),
        ] {
            let e = bad.parse::<HttpUrl>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn yaml_reads_and_writes_the_url_as_written() {
        let u: HttpUrl = serde_saphyr::from_str("http://localhost:9000/ready").unwrap();
        assert_eq!(u.host(), "localhost");
        assert_eq!(
            serde_saphyr::to_string(&u).unwrap().trim(),
            "http://localhost:9000/ready"
        );
        let e = serde_saphyr::from_str::<HttpUrl>("ftp://localhost/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("only http:// is supported"), "{e}");
    }
}
