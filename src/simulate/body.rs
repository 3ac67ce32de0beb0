//! Response bodies shared by the host and the gateway: small whole bodies for JSON answers and
//! streamed bodies that hand each frame to the server as soon as it exists.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// Errors a body may end with; an error mid-stream makes the server cut the client's connection,
/// which is exactly how a broken upstream looks from the outside.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type every response of this module uses. Unsync because streamed bodies hold
/// timers and permits, and the servers only need `Send`.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body sent in one piece.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body whose frames are the stream's items, each written as it arrives.
pub(crate) fn streamed<S>(chunks: S) -> Body
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    StreamBody::new(chunks.map(|b| Ok::<_, BoxError>(Frame::data(b)))).boxed_unsync()
}

/// A JSON answer with the given status.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// An error in the OpenAI shape, which most gateways and clients understand.
pub(crate) fn openai_error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({
            "error": { "message": message, "type": kind, "param": null, "code": null }
        }),
    )
}
