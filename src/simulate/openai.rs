//! The OpenAI chat completions dialect of the simulated host: request parsing, the whole
//! `chat.completion` answer, and the `chat.completion.chunk` stream ending in `[DONE]`.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
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

/// The `usage` block of every OpenAI-style answer (keys sorted, as a JSON tree prints them).
#[derive(Serialize)]
pub(crate) struct Usage {
    completion_tokens: u32,
    prompt_tokens: u32,
    total_tokens: u32,
}

pub(crate) fn usage(reply: &Reply) -> Usage {
    Usage {
        completion_tokens: reply.total,
        prompt_tokens: reply.prompt_tokens,
        total_tokens: reply.prompt_tokens.saturating_add(reply.total),
    }
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

/// A `chat.completion.chunk`, typed so that each event is rendered without building a JSON
/// tree (that was most of a request's cost in the simulator, `docs/benchmarks.md`). The fields
/// are in the order a `serde_json::Value` prints its keys (sorted), so the bytes are the ones
/// the tree gave.
#[derive(Serialize)]
struct Chunk<'a> {
    choices: &'a [StreamChoice<'a>],
    created: u64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
    /// As OpenAI and vLLM do: asked for usage, every chunk has the field, null until the last
    /// one; not asked, no chunk has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct StreamChoice<'a> {
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
    index: u32,
    /// Always null.
    logprobs: (),
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
}

/// The chunk event with `choices`; its `usage` is `last_usage` when given, else null when the
/// client asked for usage.
fn chunk_event(reply: &Reply, choices: &[StreamChoice<'_>], last_usage: Option<Usage>) -> String {
    sse::json_event(
        None,
        &Chunk {
            choices,
            created: reply.created,
            id: &reply.id,
            model: &reply.model,
            object: "chat.completion.chunk",
            usage: reply.include_usage.then_some(last_usage),
        },
    )
}

fn choice<'a>(delta: Delta<'a>, finish_reason: Option<&'static str>) -> StreamChoice<'a> {
    StreamChoice {
        delta,
        finish_reason,
        index: 0,
        logprobs: (),
    }
}

impl Script for Chunks {
    fn opening(&mut self) -> String {
        let delta = Delta {
            content: Some(""),
            role: Some("assistant"),
        };
        chunk_event(&self.reply, &[choice(delta, None)], None)
    }

    fn token(&mut self, index: u32) -> String {
        let text = self.reply.token(index);
        let reply = &self.reply;
        self.token.event(&text, 0, |text, _| {
            let delta = Delta {
                content: Some(text),
                role: None,
            };
            chunk_event(reply, &[choice(delta, None)], None)
        })
    }

    fn closing(&mut self) -> String {
        let reply = &self.reply;
        let delta = Delta {
            content: None,
            role: None,
        };
        let finish = [choice(delta, Some(reply.finish.openai()))];
        let mut out = chunk_event(reply, &finish, None);
        // The usage chunk, last before [DONE], has no choices (vLLM and OpenAI alike).
        if reply.include_usage {
            out.push_str(&chunk_event(reply, &[], Some(usage(reply))));
        }
        out.push_str(&sse::done_event());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::schema::Content;
    use crate::simulate::completion::Finish;

    /// The chunk as a JSON tree, as the stream rendered it before its events were typed.
    fn tree(reply: &Reply, choices: Value, usage: Option<Value>) -> String {
        let mut chunk = json!({
            "id": reply.id,
            "object": "chat.completion.chunk",
            "created": reply.created,
            "model": reply.model,
            "choices": choices,
        });
        if reply.include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        sse::json_event(None, &chunk)
    }

    #[test]
    fn typed_chunks_are_the_bytes_of_the_json_tree() {
        for (include_usage, finish) in [(false, Finish::Stop), (true, Finish::Length)] {
            let make = || Reply {
                id: "chatcmpl-\"sim\"\n1".into(),
                model: "m/ünï".into(),
                created: 1_764_000_000,
                total: 3,
                prompt_tokens: 7,
                include_usage,
                finish,
                content: Content::Verifiable,
            };
            let reply = make();
            let mut chunks = Chunks::new(make());
            let opening = tree(
                &reply,
                json!([{ "index": 0, "delta": { "role": "assistant", "content": "" },
                         "logprobs": null, "finish_reason": null }]),
                None,
            );
            assert_eq!(chunks.opening(), opening);
            for i in 0..reply.total {
                let token = tree(
                    &reply,
                    json!([{ "index": 0, "delta": { "content": reply.token(i) },
                             "logprobs": null, "finish_reason": null }]),
                    None,
                );
                assert_eq!(chunks.token(i), token, "token {i}");
            }
            let mut closing = tree(
                &reply,
                json!([{ "index": 0, "delta": {}, "logprobs": null,
                         "finish_reason": finish.openai() }]),
                None,
            );
            if include_usage {
                closing.push_str(&tree(
                    &reply,
                    json!([]),
                    Some(json!({ "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10 })),
                ));
            }
            closing.push_str(&sse::done_event());
            assert_eq!(chunks.closing(), closing);
        }
    }
}
