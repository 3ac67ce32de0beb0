//! The OpenAI (legacy) completions dialect of the simulated host, as vLLM serves it on
//! `/v1/completions`: a `prompt` instead of messages, `text_completion` objects with
//! `choices[0].text`, and the same length and usage options as chat.

use serde::Deserialize;
use serde_json::{json, Value};

use super::completion::Length;
use super::host::{prompt_words, Ask, Reply};
use super::openai::{usage, StreamOptions};
use super::stream::Script;
use super::template::Cached;
use crate::protocol::sse;

#[derive(Deserialize)]
struct CompletionRequest {
    /// A string or a list of them; a list of token ids counts as one token (the simulator
    /// reads words, not ids).
    prompt: Value,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    ignore_eos: bool,
    #[serde(default)]
    min_tokens: Option<u32>,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Ask, String> {
    let req: CompletionRequest =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid request body: {e}"))?;
    Ok(Ask {
        stream: req.stream.unwrap_or(false),
        length: Length::new(req.max_tokens, req.min_tokens, req.ignore_eos)?,
        prompt_tokens: prompt_words(std::iter::once(&req.prompt)),
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

pub(crate) fn whole(reply: &Reply) -> Value {
    json!({
        "id": reply.id,
        "object": "text_completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{
            "index": 0,
            "text": reply.text(),
            "logprobs": null,
            "finish_reason": reply.finish.openai(),
        }],
        "usage": usage(reply),
    })
}

/// The streamed answer: one `text_completion` chunk per token, the finish reason in a last
/// chunk with empty text, the usage chunk when asked for, `[DONE]`.
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

fn chunk(reply: &Reply, text: &str, finish: Option<&str>) -> String {
    let mut chunk = json!({
        "id": reply.id,
        "object": "text_completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{ "index": 0, "text": text, "logprobs": null, "finish_reason": finish }],
    });
    if reply.include_usage {
        chunk["usage"] = Value::Null;
    }
    sse::json_event(None, &chunk)
}

impl Script for Chunks {
    /// A completions stream has no role chunk: it opens with its first token.
    fn opening(&mut self) -> String {
        String::new()
    }

    fn token(&mut self, index: u32) -> String {
        let text = self.reply.token(index);
        let reply = &self.reply;
        self.token
            .event(&text, 0, |text, _| chunk(reply, text, None))
    }

    fn closing(&mut self) -> String {
        let mut out = chunk(&self.reply, "", Some(self.reply.finish.openai()));
        if self.reply.include_usage {
            let last = json!({
                "id": self.reply.id,
                "object": "text_completion",
                "created": self.reply.created,
                "model": self.reply.model,
                "choices": [],
                "usage": usage(&self.reply),
            });
            out.push_str(&sse::json_event(None, &last));
        }
        out.push_str(&sse::done_event());
        out
    }
}
