//! The synthetic ending a "repairing" gateway writes when an upstream stream breaks: a stop
//! reason and the stream's terminator, so the client's stream looks finished. Both the
//! reference gateway (`reterminate_cut_streams`) and the fault proxy (`truncate_stream` with
//! `how: reterminate`) write it from here, so a drill with either sees the same gray failure.
//!
//! The ending is written in the dialect of the stream: OpenAI chat completions (a
//! `chat.completion.chunk` with `finish_reason: "stop"`, then `data: [DONE]`), OpenAI
//! completions (a `text_completion` chunk with `choices[0].text` and `finish_reason: "stop"`,
//! then `data: [DONE]`), Anthropic Messages (`content_block_stop` for a block left open,
//! `message_delta` with `stop_reason: "end_turn"`, `message_stop`) or the OpenAI Responses API
//! (which has no `[DONE]`: a `response.completed` whose response says `status: "completed"`).
//! What the events seen so far say wins over the request path, because gateways serve any API
//! under any path.
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
    OpenAiResponses,
}

impl Dialect {
    /// The dialect a request path names: `.../messages` is Anthropic, `.../chat/completions`
    /// chat, any other `.../completions` the legacy completions API, `.../responses` the
    /// Responses API. `None` for anything else.
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
        } else if path.ends_with("/responses") {
            Some(Dialect::OpenAiResponses)
        } else {
            None
        }
    }

    /// The dialect one event shows: an Anthropic or Responses event name or `type`, or an
    /// OpenAI `object`.
    fn from_event(event: &Event<'_>, json: Option<&Value>) -> Option<Dialect> {
        if let Some(dialect) = Dialect::from_name(event.name) {
            return Some(dialect);
        }
        let json = json?;
        match json.get("object").and_then(Value::as_str) {
            Some("text_completion") => return Some(Dialect::OpenAiCompletions),
            Some("chat.completion.chunk") => return Some(Dialect::OpenAiChat),
            _ => {}
        }
        Dialect::from_name(json.get("type").and_then(Value::as_str)?)
    }

    /// The dialect an event name (or `type`) belongs to: Anthropic's names, or the Responses
    /// API's `response.*`.
    fn from_name(name: &str) -> Option<Dialect> {
        if is_anthropic_name(name) {
            Some(Dialect::Anthropic)
        } else if name.starts_with("response.") {
            Some(Dialect::OpenAiResponses)
        } else {
            None
        }
    }
}

/// The events that end a Responses stream: the final response, whatever its status.
fn is_responses_terminal(name: &str) -> bool {
    matches!(
        name,
        "response.completed" | "response.incomplete" | "response.failed"
    )
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
    /// The terminator (`[DONE]`, `message_stop` or a final Responses event) has passed.
    finished: bool,
    /// Events passed: the next Responses event's `sequence_number`, since the Responses API
    /// numbers its events from 0 (counted, as parsing every event to read it would cost more).
    events: u64,
    /// The index of an Anthropic content block started and not stopped.
    open_block: Option<u64>,
    /// The `id` and `model` of the first OpenAI chunk (of the response in `response.created`),
    /// repeated in the synthetic one as a gateway that repairs streams does.
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
            events: 0,
            open_block: None,
            id: None,
            model: None,
        }
    }

    /// Takes the next bytes passed to the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut input = bytes;
        while let Some(event) = self.decoder.next(&mut input) {
            self.events += 1;
            if event.data == sse::DONE
                || event.name == "message_stop"
                || is_responses_terminal(event.name)
            {
                self.finished = true;
                continue;
            }
            // Events are parsed only while there is something left to learn from them: the
            // dialect and ids early on, the content blocks of an Anthropic stream, and the
            // unnamed events of a Responses stream (its terminator is told by `type` then).
            let wants_json = self.seen.is_none()
                || matches!(event.name, "content_block_start" | "content_block_stop")
                || (self.seen == Some(Dialect::OpenAiResponses) && event.name.is_empty());
            let json = if wants_json {
                serde_json::from_str::<Value>(event.data).ok()
            } else {
                None
            };
            if self.seen.is_none() {
                self.seen = Dialect::from_event(&event, json.as_ref());
                if let Some(json) = &json {
                    // A Responses stream names its response inside `response`.
                    let named = json.get("response").unwrap_or(json);
                    let text = |k: &str| named.get(k).and_then(Value::as_str).map(str::to_string);
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
            let kind = json.as_ref().and_then(|j| j.get("type")?.as_str());
            if kind.is_some_and(|k| k == "message_stop" || is_responses_terminal(k)) {
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
            Dialect::OpenAiResponses => {
                // The final response as a repairing gateway can write it: completed, with no
                // output it did not see and no usage.
                let mut response = json!({
                    "object": "response",
                    "status": "completed",
                    "error": null,
                    "incomplete_details": null,
                    "output": [],
                });
                self.name_chunk(&mut response);
                out.push_str(&sse::json_event(
                    Some("response.completed"),
                    &json!({
                        "type": "response.completed",
                        "sequence_number": self.events,
                        "response": response,
                    }),
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
        assert_eq!(
            Dialect::from_path("/v1/responses"),
            Some(Dialect::OpenAiResponses)
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

    #[test]
    fn a_responses_stream_gets_a_completed_response_without_usage() {
        let passed = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"model\":\"m\",\"status\":\"in_progress\",\"error\":null}}\n\n\
                      event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"a \"}\n\n";
        // The events decide, whatever the path said.
        let end = ending_of(Some(Dialect::OpenAiChat), passed);
        assert_eq!(end.len(), 1, "no [DONE] in a Responses stream: {end:?}");
        assert_eq!(end[0].0, "response.completed");
        assert_eq!(end[0].1["type"], "response.completed");
        assert_eq!(end[0].1["sequence_number"], 2);
        assert_eq!(end[0].1["response"]["status"], "completed");
        assert_eq!(end[0].1["response"]["id"], "resp_1");
        assert_eq!(end[0].1["response"]["model"], "m");
        assert!(end[0].1["response"].get("usage").is_none());
        // With nothing seen, the path decides.
        let end = ending_of(Some(Dialect::OpenAiResponses), "");
        assert_eq!(end[0].0, "response.completed");
    }

    #[test]
    fn a_finished_responses_stream_gets_nothing_named_or_not() {
        for last in [
            "event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n",
            "event: response.incomplete\ndata: {\"type\":\"response.incomplete\"}\n\n",
            // Unnamed events, told apart by their `type`.
            "data: {\"type\":\"response.completed\"}\n\n",
        ] {
            let mut e = Ending::new(None);
            e.feed(b"data: {\"type\":\"response.created\",\"response\":{}}\n\n");
            assert!(!e.finished());
            e.feed(last.as_bytes());
            assert!(e.finished(), "{last}");
            assert_eq!(e.ending(), "");
        }
    }
}
