//! The Anthropic Messages dialect of the simulated host: request parsing, the whole `message`
//! answer, and the named-event stream from `message_start` to `message_stop`.

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::{self, Body};
use super::completion::Length;
use super::host::{prompt_words, Ask, Reply};
use super::stream::Script;
use super::template::Cached;
use crate::protocol::sse;

#[derive(Deserialize)]
struct MessagesRequest {
    messages: Vec<Value>,
    #[serde(default)]
    system: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    /// Required by the real API; optional here so hand-written requests stay short.
    #[serde(default)]
    max_tokens: Option<u32>,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Ask, String> {
    let req: MessagesRequest =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid request body: {e}"))?;
    Ok(Ask {
        stream: req.stream.unwrap_or(false),
        // The Messages API has no `min_tokens` or `ignore_eos`.
        length: Length::new(req.max_tokens, None, false)?,
        prompt_tokens: prompt_words(req.messages.iter().chain(req.system.as_ref())),
        include_usage: false,
    })
}

pub(crate) fn error(status: StatusCode, message: &str) -> hyper::Response<Body> {
    let kind = match status.as_u16() {
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    body::json(
        status,
        &json!({ "type": "error", "error": { "type": kind, "message": message } }),
    )
}

pub(crate) fn whole(reply: &Reply) -> Value {
    json!({
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [{ "type": "text", "text": reply.text() }],
        "stop_reason": reply.finish.anthropic(),
        "stop_sequence": null,
        "usage": { "input_tokens": reply.prompt_tokens, "output_tokens": reply.total },
    })
}

/// The streamed answer.
pub(crate) struct Events {
    reply: Reply,
    /// The token event, rendered once (`super::template`).
    token: Cached,
}

impl Events {
    pub(crate) fn new(reply: Reply) -> Self {
        Events {
            reply,
            token: Cached::default(),
        }
    }
}

impl Script for Events {
    fn opening(&mut self) -> String {
        let r = &self.reply;
        let mut out = sse::json_event(
            Some("message_start"),
            &json!({
                "type": "message_start",
                "message": {
                    "id": r.id,
                    "type": "message",
                    "role": "assistant",
                    "model": r.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": { "input_tokens": r.prompt_tokens, "output_tokens": 1 },
                },
            }),
        );
        out.push_str(&sse::json_event(
            Some("content_block_start"),
            &json!({
                "type": "content_block_start",
                "index": 0,
                "content_block": { "type": "text", "text": "" },
            }),
        ));
        out.push_str(&sse::json_event(Some("ping"), &json!({ "type": "ping" })));
        out
    }

    fn token(&mut self, index: u32) -> String {
        let text = self.reply.token(index);
        self.token.event(&text, 0, |text, _| {
            sse::json_event(
                Some("content_block_delta"),
                &json!({
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": { "type": "text_delta", "text": text },
                }),
            )
        })
    }

    fn closing(&mut self) -> String {
        let mut out = sse::json_event(
            Some("content_block_stop"),
            &json!({ "type": "content_block_stop", "index": 0 }),
        );
        out.push_str(&sse::json_event(
            Some("message_delta"),
            &json!({
                "type": "message_delta",
                "delta": { "stop_reason": self.reply.finish.anthropic(), "stop_sequence": null },
                "usage": { "output_tokens": self.reply.total },
            }),
        ));
        out.push_str(&sse::json_event(
            Some("message_stop"),
            &json!({ "type": "message_stop" }),
        ));
        out
    }
}
