//! The OpenAI chat completions dialect of the simulated host: request parsing, the whole
//! `chat.completion` answer, and the `chat.completion.chunk` stream ending in `[DONE]`.

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
struct ChatRequest {
    messages: Vec<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u32>,
    /// The newer name of `max_tokens`; clients send one or the other.
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// vLLM's: keep generating past the end-of-sequence token, up to `max_tokens`.
    #[serde(default)]
    ignore_eos: bool,
    /// vLLM's: generate at least this many tokens before an end-of-sequence token counts.
    #[serde(default)]
    min_tokens: Option<u32>,
}

#[derive(Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: bool,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Ask, String> {
    let req: ChatRequest =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid request body: {e}"))?;
    Ok(Ask {
        stream: req.stream.unwrap_or(false),
        length: Length::new(
            req.max_completion_tokens.or(req.max_tokens),
            req.min_tokens,
            req.ignore_eos,
        )?,
        prompt_tokens: prompt_words(req.messages.iter()),
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

pub(crate) fn error(status: StatusCode, message: &str) -> hyper::Response<Body> {
    let kind = match status.as_u16() {
        429 => "rate_limit_exceeded",
        529 => "overloaded_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    };
    body::openai_error(status, kind, message)
}

/// The `usage` block of every OpenAI-style answer.
pub(crate) fn usage(reply: &Reply) -> Value {
    json!({
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.total,
        "total_tokens": reply.prompt_tokens.saturating_add(reply.total),
    })
}

pub(crate) fn whole(reply: &Reply) -> Value {
    json!({
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": reply.text() },
            "logprobs": null,
            "finish_reason": reply.finish.openai(),
        }],
        "usage": usage(reply),
    })
}

/// The streamed answer.
pub(crate) struct Chunks {
    reply: Reply,
    /// The token event, rendered once (`super::template`).
    token: Cached,
}

impl Chunks {
    pub(crate) fn new(reply: Reply) -> Self {
        Chunks {
            reply,
            token: Cached::default(),
        }
    }
}

fn chunk(reply: &Reply, choices: Value) -> Value {
    let mut chunk = json!({
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "choices": choices,
    });
    // As OpenAI and vLLM do: asked for usage, every chunk has the field, null until the last
    // one.
    if reply.include_usage {
        chunk["usage"] = Value::Null;
    }
    chunk
}

impl Script for Chunks {
    fn opening(&mut self) -> String {
        sse::json_event(
            None,
            &chunk(
                &self.reply,
                json!([{
                    "index": 0,
                    "delta": { "role": "assistant", "content": "" },
                    "logprobs": null,
                    "finish_reason": null,
                }]),
            ),
        )
    }

    fn token(&mut self, index: u32) -> String {
        let text = self.reply.token(index);
        let reply = &self.reply;
        self.token.event(&text, 0, |text, _| {
            sse::json_event(
                None,
                &chunk(
                    reply,
                    json!([{
                        "index": 0,
                        "delta": { "content": text },
                        "logprobs": null,
                        "finish_reason": null,
                    }]),
                ),
            )
        })
    }

    fn closing(&mut self) -> String {
        let mut out = sse::json_event(
            None,
            &chunk(
                &self.reply,
                json!([{
                    "index": 0,
                    "delta": {},
                    "logprobs": null,
                    "finish_reason": self.reply.finish.openai(),
                }]),
            ),
        );
        // The usage chunk, last before [DONE], has no choices (vLLM and OpenAI alike).
        if self.reply.include_usage {
            let mut last = chunk(&self.reply, json!([]));
            last["usage"] = usage(&self.reply);
            out.push_str(&sse::json_event(None, &last));
        }
        out.push_str(&sse::done_event());
        out
    }
}
