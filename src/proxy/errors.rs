//! Error answers and in-stream error events in the shapes real providers use, so a gateway that
//! parses errors (to pick a retry, or to read `retry-after`) meets the real thing.

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::body::{full, ProxyBody, PROXY_HEADER};
use crate::fault::{ErrorShape, HttpErrorFault};
use crate::protocol::ending::Dialect;
use crate::protocol::sse;

/// The answer to a request an `http_error` fault selected; the upstream never sees it.
pub(crate) fn http_error(proxy: &str, fault: &HttpErrorFault) -> Response<ProxyBody> {
    let status = fault.status.status();
    let body = error_json(fault.body, status, proxy);
    let mut response = json_response(status, body.as_ref(), proxy);
    for (name, value) in &fault.headers {
        // Validation checks names and values; one that is still invalid is skipped, not fatal.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The answer when the upstream cannot be reached or fails mid-exchange before its headers.
pub(crate) fn bad_gateway(proxy: &str, upstream: &str, why: &str) -> Response<ProxyBody> {
    let body = json!({
        "error": {
            "message": format!("faultline proxy `{proxy}`: upstream {upstream} failed: {why}"),
            "type": "upstream_error",
            "param": null,
            "code": null,
        }
    });
    json_response(StatusCode::BAD_GATEWAY, Some(&body), proxy)
}

/// The answer to a request the proxy cannot forward at all (a URI it cannot rebuild, a body
/// it could not read).
pub(crate) fn bad_request(proxy: &str, why: &str) -> Response<ProxyBody> {
    refused(StatusCode::BAD_REQUEST, proxy, why)
}

/// The answer to a request whose body is larger than the proxy reads before forwarding.
pub(crate) fn too_large(proxy: &str, why: &str) -> Response<ProxyBody> {
    refused(StatusCode::PAYLOAD_TOO_LARGE, proxy, why)
}

fn refused(status: StatusCode, proxy: &str, why: &str) -> Response<ProxyBody> {
    let body = json!({
        "error": {
            "message": format!("faultline proxy `{proxy}`: {why}"),
            "type": "invalid_request_error",
            "param": null,
            "code": null,
        }
    });
    json_response(status, Some(&body), proxy)
}

fn json_response(status: StatusCode, body: Option<&Value>, proxy: &str) -> Response<ProxyBody> {
    let mut response = Response::new(match body {
        Some(v) => full(Bytes::from(v.to_string())),
        None => full(Bytes::new()),
    });
    *response.status_mut() = status;
    if body.is_some() {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Ok(value) = HeaderValue::from_str(proxy) {
        response.headers_mut().insert(PROXY_HEADER, value);
    }
    response
}

/// The body of an injected error; `None` for the `empty` shape.
pub(crate) fn error_json(shape: ErrorShape, status: StatusCode, proxy: &str) -> Option<Value> {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("Error");
    let message = format!("{reason} (injected by faultline proxy `{proxy}`)");
    match shape {
        ErrorShape::Empty => None,
        ErrorShape::Openai => {
            let (kind, code) = match code {
                429 => ("requests", json!("rate_limit_exceeded")),
                401 => ("invalid_request_error", json!("invalid_api_key")),
                400..=499 => ("invalid_request_error", Value::Null),
                _ => ("server_error", Value::Null),
            };
            Some(json!({
                "error": { "message": message, "type": kind, "param": null, "code": code }
            }))
        }
        ErrorShape::Anthropic => Some(json!({
            "type": "error",
            "error": { "type": anthropic_type(code), "message": message }
        })),
        ErrorShape::Vllm => Some(json!({
            "object": "error",
            "message": message,
            "type": vllm_type(code),
            "param": null,
            "code": code,
        })),
    }
}

/// Anthropic's documented error types; the specific 4xx ones are what its API really sends.
fn anthropic_type(status: u16) -> &'static str {
    match status {
        529 => "overloaded_error",
        429 => "rate_limit_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// vLLM's OpenAI-compatible server names the error after its HTTP class.
fn vllm_type(status: u16) -> &'static str {
    match status {
        404 => "NotFoundError",
        429 => "TooManyRequestsError",
        503 => "ServiceUnavailableError",
        400..=499 => "BadRequestError",
        _ => "InternalServerError",
    }
}

/// The SSE event a `stream_error` fault sends in place of the rest of the stream, after
/// `after_events` events. The `empty` shape sends nothing: the stream just ends cleanly, early.
/// `openai` on a Responses stream (by its path) is the Responses API's own `error` event, which
/// carries the next `sequence_number` (the API numbers its events from 0); elsewhere it is the
/// chat API's unnamed `{"error": ...}` chunk.
pub(crate) fn stream_error_event(
    shape: ErrorShape,
    dialect: Option<Dialect>,
    after_events: u64,
) -> Bytes {
    match shape {
        ErrorShape::Anthropic => Bytes::from_static(
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        ),
        ErrorShape::Openai if dialect == Some(Dialect::OpenAiResponses) => {
            Bytes::from(sse::json_event(
                Some("error"),
                &json!({
                    "type": "error",
                    "code": "server_error",
                    "message": "The server had an error while processing your request.",
                    "param": null,
                    "sequence_number": after_events,
                }),
            ))
        }
        ErrorShape::Openai => Bytes::from_static(
            b"data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\"}}\n\n",
        ),
        ErrorShape::Vllm => Bytes::from_static(
            b"data: {\"object\":\"error\",\"message\":\"The server had an error while processing your request.\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}\n\n",
        ),
        ErrorShape::Empty => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_providers() {
        let s = |c| StatusCode::from_u16(c).unwrap();
        let a = error_json(ErrorShape::Anthropic, s(529), "p").unwrap();
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "overloaded_error");
        let a = error_json(ErrorShape::Anthropic, s(503), "p").unwrap();
        assert_eq!(a["error"]["type"], "api_error");
        let a = error_json(ErrorShape::Anthropic, s(400), "p").unwrap();
        assert_eq!(a["error"]["type"], "invalid_request_error");
        let o = error_json(ErrorShape::Openai, s(429), "p").unwrap();
        assert_eq!(o["error"]["code"], "rate_limit_exceeded");
        assert!(o["error"]["param"].is_null());
        let v = error_json(ErrorShape::Vllm, s(500), "p").unwrap();
        assert_eq!(v["object"], "error");
        assert_eq!(v["code"], 500);
        assert!(error_json(ErrorShape::Empty, s(500), "p").is_none());
    }

    #[test]
    fn stream_error_events_are_complete_sse_events() {
        for (shape, dialect) in [
            (ErrorShape::Anthropic, None),
            (ErrorShape::Openai, None),
            (ErrorShape::Openai, Some(Dialect::OpenAiChat)),
            (ErrorShape::Openai, Some(Dialect::OpenAiResponses)),
            (ErrorShape::Vllm, None),
        ] {
            let event = stream_error_event(shape, dialect, 3);
            // One whole event as the client decodes it, ending with the last byte.
            let mut scanner = crate::protocol::sse::EventScanner::default();
            assert_eq!(scanner.next_end(&event), Some(event.len()));
            let events = crate::protocol::sse::decode_all(&event);
            assert_eq!(events.len(), 1);
            let _: Value = serde_json::from_str(&events[0].1).unwrap();
        }
    }

    #[test]
    fn an_openai_error_on_a_responses_stream_is_its_error_event() {
        let event = stream_error_event(ErrorShape::Openai, Some(Dialect::OpenAiResponses), 3);
        let events = crate::protocol::sse::decode_all(&event);
        assert_eq!(events[0].0, "error");
        let data: Value = serde_json::from_str(&events[0].1).unwrap();
        assert_eq!(data["type"], "error");
        assert_eq!(data["sequence_number"], 3);
        assert!(data["message"].is_string());
        // The chat stream keeps the chat shape.
        let chat = stream_error_event(ErrorShape::Openai, Some(Dialect::OpenAiChat), 3);
        let events = crate::protocol::sse::decode_all(&chat);
        assert_eq!(events[0].0, "");
        let data: Value = serde_json::from_str(&events[0].1).unwrap();
        assert_eq!(data["error"]["type"], "server_error");
    }
}
