//! Requests as they go on the wire: the load generator and the proxy write theirs this way.

use hyper::header::HeaderMap;

/// The request line and one `name: value` line per header, up to where the length goes.
pub fn head(method: &str, target: &str, headers: &HeaderMap) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    for part in [method, " ", target, " HTTP/1.1\r\n"] {
        head.extend_from_slice(part.as_bytes());
    }
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head
}

/// `head` made whole: the body's `content-length` (when `sized`), the blank line, the body.
pub fn finish(head: &[u8], body: &[u8], sized: bool) -> Vec<u8> {
    let length = if sized {
        format!("content-length: {}\r\n", body.len())
    } else {
        String::new()
    };
    let mut wire = Vec::with_capacity(head.len() + length.len() + 2 + body.len());
    wire.extend_from_slice(head);
    wire.extend_from_slice(length.as_bytes());
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(body);
    wire
}

/// Whether `headers` say `connection: close`: the connection ends with this exchange.
pub fn says_close(headers: &HeaderMap) -> bool {
    super::head::tokens(headers, hyper::header::CONNECTION).any(|t| t.eq_ignore_ascii_case("close"))
}
