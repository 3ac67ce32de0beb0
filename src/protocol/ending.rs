//! The synthetic ending a "repairing" gateway writes when an upstream stream breaks: a stop
//! reason and the stream's terminator, so the client's stream looks finished. Both the
//! reference gateway (`reterminate_cut_streams`) and the fault proxy (`truncate_stream` with
//! `how: reterminate`) write it from here, so a drill with either sees the same gray failure.
//!
//! The ending is written in the dialect of the stream: OpenAI chat completions (a
//! `chat.completion.chunk` with `finish_reason: "stop"`, then `data: [DONE]`), OpenAI
//! completions (a `text_completion` chunk with `choices[0].text` and `finish_reason: "stop"`,
//! then `data: [DONE]`) or Anthropic Messages (`content_block_stop` for a block left open,
//! `message_delta` with `stop_reason: "end_turn"`, `message_stop`). What the events seen so far
//! say wins over the request path, because gateways serve any API under any path.
//!
//! The ending claims nothing about tokens: it carries no `usage`, as a gateway that repairs a
//! stream cannot know it. That absence is a signal a client can check.

use serde_json::{json, Value};

use super::sse::{self, Decoder, Event};

/// The API a stream speaks, as far as its ending goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    OpenAiChat,
    OpenAiCompletions,
    Anthropic,
}

impl Dialect {
    /// The dialect a request path names: `.../messages` is Anthropic, `.../chat/completions`
    /// chat, any other `.../completions` the legacy completions API. `None` for anything else.
    pub fn from_path(path: &str) -> Option<Dialect> {
        let path = path
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        if path.ends_with("/messages") {
            Some(Dialect::Anthropic)
        } else if path.ends_with("/chat/completions") {
            Some(Dialect::OpenAiChat)
        } else if path.ends_with("/completions") {
            Some(Dialect::OpenAiCompletions)
        } else {
            None
        }
    }

    /// The dialect one event shows: an Anthropic event name or `type`, or an OpenAI `object`.
    fn from_event(event: &Event<'_>, json: Option<&Value>) -> Option<Dialect> {
        if is_anthropic_name(event.name) {
            return Some(Dialect::Anthropic);
        }
        let json = json?;
        match json.get("object").and_then(Value::as_str) {
            Some("text_completion") => return Some(Dialect::OpenAiCompletions),
            Some("chat.completion.chunk") => return Some(Dialect::OpenAiChat),
            _ => {}
        }
        let kind = json.get("type").and_then(Value::as_str)?;
        is_anthropic_name(kind).then_some(Dialect::Anthropic)
    }
}

fn is_anthropic_name(name: &str) -> bool {
    matches!(
        name,
        "message_start"
            | "content_block_start"
            | "content_block_delta"
            | "content_block_stop"
            | "message_delta"
            | "message_stop"
    )
}

/// Follows a stream as it passes, to tell whether it already ended with its terminator and, if
/// not, what synthetic ending to append. Keeps the decoder's state and a few fields, never the
/// stream.
#[derive(Clone, Debug)]
pub struct Ending {
    decoder: Decoder,
    /// From the request path; what the events show wins.
    hint: Option<Dialect>,
    seen: Option<Dialect>,
    /// The terminator (`[DONE]` or `message_stop`) has passed.
    finished: bool,
    /// The index of an Anthropic content block started and not stopped.
    open_block: Option<u64>,
    /// The `id` and `model` of the first OpenAI chunk, repeated in the synthetic one as a
    /// gateway that repairs streams does.
    id: Option<String>,
    model: Option<String>,
}

impl Ending {
    pub fn new(hint: Option<Dialect>) -> Self {
        Ending {
            decoder: Decoder::default(),
            hint,
            seen: None,
            finished: false,
            open_block: None,
            id: None,
            model: None,
        }
    }

    /// Takes the next bytes passed to the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut input = bytes;
        while let Some(event) = self.decoder.next(&mut input) {
            if event.data == sse::DONE || event.name == "message_stop" {
                self.finished = true;
                continue;
            }
            // Events are parsed only while there is something left to learn from them: the
            // dialect and ids early on, and the content blocks of an Anthropic stream.
            let wants_json = self.seen.is_none()
                || matches!(event.name, "content_block_start" | "content_block_stop");
            let json = if wants_json {
                serde_json::from_str::<Value>(event.data).ok()
            } else {
                None
            };
            if self.seen.is_none() {
                self.seen = Dialect::from_event(&event, json.as_ref());
                if let Some(json) = &json {
                    let text = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_string);
                    self.id = self.id.take().or_else(|| text("id"));
                    self.model = self.model.take().or_else(|| text("model"));
                }
            }
            match event.name {
                "content_block_start" => {
                    self.open_block = json.as_ref().and_then(|j| j.get("index")?.as_u64());
                }
                "content_block_stop" => self.open_block = None,
                _ => {}
            }
            if json.as_ref().and_then(|j| j.get("type")?.as_str()) == Some("message_stop") {
                self.finished = true;
            }
        }
    }

    /// The stream's terminator has passed: nothing needs appending.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The dialect of the stream: what its events showed, else what the path said, else
    /// OpenAI chat (the API most gateways speak).
    pub fn dialect(&self) -> Dialect {
        self.seen.or(self.hint).unwrap_or(Dialect::OpenAiChat)
    }

    /// What to append to the bytes fed so far so that the stream ends as a finished one:
    /// nothing if it finished; else whatever closes an event cut in the middle (or the
    /// synthetic events would run into its bytes and the client would read neither), then the
    /// synthetic stop and terminator.
    pub fn ending(&self) -> String {
        if self.finished {
            return String::new();
        }
        let mut out = self.decoder.closing().to_string();
        match self.dialect() {
            Dialect::OpenAiChat => {
                let mut chunk = json!({
                    "object": "chat.completion.chunk",
                    "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }],
                });
                self.name_chunk(&mut chunk);
                out.push_str(&sse::json_event(None, &chunk));
                out.push_str(&sse::done_event());
            }
            Dialect::OpenAiCompletions => {
                let mut chunk = json!({
                    "object": "text_completion",
                    "choices": [{ "index": 0, "text": "", "logprobs": null, "finish_reason": "stop" }],
                });
                self.name_chunk(&mut chunk);
                out.push_str(&sse::json_event(None, &chunk));
                out.push_str(&sse::done_event());
            }
            Dialect::Anthropic => {
                if let Some(index) = self.open_block {
                    out.push_str(&sse::json_event(
                        Some("content_block_stop"),
                        &json!({ "type": "content_block_stop", "index": index }),
                    ));
                }
                out.push_str(&sse::json_event(
                    Some("message_delta"),
                    &json!({
                        "type": "message_delta",
                        "delta": { "stop_reason": "end_turn", "stop_sequence": null },
                    }),
                ));
                out.push_str(&sse::json_event(
                    Some("message_stop"),
                    &json!({ "type": "message_stop" }),
                ));
            }
        }
        out
    }

    fn name_chunk(&self, chunk: &mut Value) {
        if let Some(id) = &self.id {
            chunk["id"] = json!(id);
        }
        if let Some(model) = &self.model {
            chunk["model"] = json!(model);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending_of(hint: Option<Dialect>, passed: &str) -> Vec<(String, Value)> {
        let mut e = Ending::new(hint);
        e.feed(passed.as_bytes());
        let whole = format!("{passed}{}", e.ending());
        sse::decode_all(whole.as_bytes())
            .into_iter()
            .skip(sse::decode_all(passed.as_bytes()).len())
            .map(|(name, data)| {
                let json = serde_json::from_str(&data).unwrap_or(Value::String(data));
                (name, json)
            })
            .collect()
    }

    #[test]
    fn paths_name_dialects() {
        assert_eq!(
            Dialect::from_path("/v1/chat/completions"),
            Some(Dialect::OpenAiChat)
        );
        assert_eq!(
            Dialect::from_path("/v1/completions?x=1"),
            Some(Dialect::OpenAiCompletions)
        );
        assert_eq!(
            Dialect::from_path("/v1/messages/"),
            Some(Dialect::Anthropic)
        );
        assert_eq!(Dialect::from_path("/generate"), None);
    }

    #[test]
    fn a_chat_stream_gets_a_stop_chunk_with_its_id_and_done() {
        let passed = "data: {\"id\":\"c1\",\"model\":\"m\",\"object\":\"chat.completion.chunk\",\"choices\":[]}\n\n";
        let end = ending_of(None, passed);
        assert_eq!(end.len(), 2, "{end:?}");
        assert_eq!(end[0].1["choices"][0]["finish_reason"], "stop");
        assert_eq!(end[0].1["id"], "c1");
        assert_eq!(end[0].1["model"], "m");
        assert!(end[0].1.get("usage").is_none());
        assert_eq!(end[1].1, Value::String(sse::DONE.into()));
    }

    #[test]
    fn a_completions_stream_gets_a_text_completion_chunk() {
        let passed = "data: {\"object\":\"text_completion\",\"choices\":[{\"text\":\"a\"}]}\n\n";
        let end = ending_of(Some(Dialect::OpenAiChat), passed);
        assert_eq!(end[0].1["object"], "text_completion");
        assert_eq!(end[0].1["choices"][0]["text"], "");
        assert_eq!(end[0].1["choices"][0]["finish_reason"], "stop");
        assert_eq!(end[1].1, Value::String(sse::DONE.into()));
        // With nothing seen, the path decides.
        let end = ending_of(Some(Dialect::OpenAiCompletions), "");
        assert_eq!(end[0].1["object"], "text_completion");
    }

    #[test]
    fn an_anthropic_stream_is_told_by_its_events_and_its_open_block_is_closed() {
        let passed = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n\
                      event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0}\n\n";
        let end = ending_of(Some(Dialect::OpenAiChat), passed);
        let names: Vec<&str> = end.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["content_block_stop", "message_delta", "message_stop"]
        );
        assert_eq!(end[1].1["delta"]["stop_reason"], "end_turn");
        assert!(end[1].1.get("usage").is_none());
        let end = ending_of(Some(Dialect::Anthropic), "");
        assert_eq!(end.len(), 2, "no block was open: {end:?}");
    }

    #[test]
    fn a_finished_stream_gets_nothing_and_a_cut_event_is_closed_first() {
        let mut e = Ending::new(None);
        e.feed(b"data: {}\n\ndata: [DONE]\n\n");
        assert!(e.finished());
        assert_eq!(e.ending(), "");
        let mut e = Ending::new(None);
        e.feed(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        assert_eq!(e.ending(), "");

        let passed = "data: {\"choices\": []}\r\rdata: {\"cho";
        let end = ending_of(None, passed);
        assert_eq!(end.len(), 3, "the cut event, the stop, [DONE]: {end:?}");
        assert_eq!(end[0].1, Value::String("{\"cho".into()));
        assert_eq!(end[1].1["choices"][0]["finish_reason"], "stop");
    }
}
