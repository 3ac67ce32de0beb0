//! The OpenAI Responses API dialect of the simulated host, on `/v1/responses`: an `input`
//! instead of messages, `max_output_tokens`, a `response` object whose `output` holds one
//! assistant message of `output_text`, and the named-event stream from `response.created` to
//! `response.completed` (or `response.incomplete` when `max_output_tokens` ended it), with no
//! `[DONE]`. Every event carries its `sequence_number`, from 0.

use serde::Deserialize;
use serde_json::{json, Value};

use super::completion::{Finish, Length};
use super::host::{prompt_words, Ask, Reply};
use super::stream::Script;
use super::template::{self, Cached};
use crate::protocol::sse;

#[derive(Deserialize)]
struct ResponsesRequest {
    /// A string, or a list of input items (messages whose `content` is a string or a list of
    /// parts with `text`).
    input: Value,
    #[serde(default)]
    instructions: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Ask, String> {
    let req: ResponsesRequest =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid request body: {e}"))?;
    Ok(Ask {
        stream: req.stream.unwrap_or(false),
        // The Responses API has no `min_tokens` or `ignore_eos`.
        length: Length::new(req.max_output_tokens, None, false)?,
        prompt_tokens: prompt_words(std::iter::once(&req.input).chain(req.instructions.as_ref())),
        // A Responses stream always ends with its usage.
        include_usage: false,
    })
}

/// The status a response ends with and, for an incomplete one, why.
fn status(finish: Finish) -> (&'static str, Value) {
    match finish {
        Finish::Stop => ("completed", Value::Null),
        Finish::Length => ("incomplete", json!({ "reason": "max_output_tokens" })),
    }
}

/// The assistant message's id, derived from the response's so both stay unique together.
fn item_id(reply: &Reply) -> String {
    format!("msg_{}", reply.id.trim_start_matches("resp_"))
}

fn text_part(text: String) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [] })
}

fn message(reply: &Reply, status: &str, content: Vec<Value>) -> Value {
    json!({
        "id": item_id(reply),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

/// The response object: `in_progress` with no output while streaming starts, or finished
/// with the whole text and the usage.
fn response(reply: &Reply, finished: bool) -> Value {
    let (status, incomplete_details, output, usage) = if finished {
        let (status, details) = status(reply.finish);
        let item = message(reply, status, vec![text_part(reply.text())]);
        let usage = json!({
            "input_tokens": reply.prompt_tokens,
            "output_tokens": reply.total,
            "total_tokens": reply.prompt_tokens.saturating_add(reply.total),
        });
        (status, details, json!([item]), usage)
    } else {
        ("in_progress", Value::Null, json!([]), Value::Null)
    };
    json!({
        "id": reply.id,
        "object": "response",
        "created_at": reply.created,
        "status": status,
        "error": null,
        "incomplete_details": incomplete_details,
        "model": reply.model,
        "output": output,
        "usage": usage,
    })
}

pub(crate) fn whole(reply: &Reply) -> Value {
    response(reply, true)
}

/// The streamed answer.
pub(crate) struct Events {
    reply: Reply,
    /// The next event's `sequence_number`.
    sequence: u64,
    /// The token event, rendered once (`super::template`).
    token: Cached,
}

impl Events {
    pub(crate) fn new(reply: Reply) -> Self {
        Events {
            reply,
            sequence: 0,
            token: Cached::default(),
        }
    }

    /// One named event: its name is also its `type`, and it is numbered in order.
    fn event(&mut self, out: &mut String, name: &str, mut fields: Value) {
        fields["type"] = json!(name);
        fields["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.push_str(&sse::json_event(Some(name), &fields));
    }

    /// Where the text sits: output item 0, content part 0.
    fn at(&self) -> Value {
        at(&self.reply)
    }
}

fn at(reply: &Reply) -> Value {
    json!({ "item_id": item_id(reply), "output_index": 0, "content_index": 0 })
}

/// `fields` with the keys of `more` added.
fn with(mut fields: Value, more: Value) -> Value {
    if let (Some(fields), Value::Object(more)) = (fields.as_object_mut(), more) {
        fields.extend(more);
    }
    fields
}

impl Script for Events {
    fn opening(&mut self) -> String {
        let mut out = String::new();
        let started = response(&self.reply, false);
        self.event(
            &mut out,
            "response.created",
            json!({ "response": started.clone() }),
        );
        self.event(
            &mut out,
            "response.in_progress",
            json!({ "response": started }),
        );
        let item = message(&self.reply, "in_progress", vec![]);
        self.event(
            &mut out,
            "response.output_item.added",
            json!({ "output_index": 0, "item": item }),
        );
        let part = with(self.at(), json!({ "part": text_part(String::new()) }));
        self.event(&mut out, "response.content_part.added", part);
        out
    }

    fn token(&mut self, index: u32) -> String {
        const NAME: &str = "response.output_text.delta";
        let text = self.reply.token(index);
        let number = self.sequence;
        self.sequence += 1;
        let reply = &self.reply;
        self.token.event(&text, number, |text, number| {
            let mut fields = with(at(reply), json!({ "delta": text, "logprobs": [] }));
            fields["type"] = json!(NAME);
            fields["sequence_number"] = number.map_or(json!(template::NUMBER), |n| json!(n));
            sse::json_event(Some(NAME), &fields)
        })
    }

    fn closing(&mut self) -> String {
        let mut out = String::new();
        let text = self.reply.text();
        let done = with(self.at(), json!({ "text": text, "logprobs": [] }));
        self.event(&mut out, "response.output_text.done", done);
        let part = with(self.at(), json!({ "part": text_part(text.clone()) }));
        self.event(&mut out, "response.content_part.done", part);
        let (status, _) = status(self.reply.finish);
        let item = message(&self.reply, status, vec![text_part(text)]);
        self.event(
            &mut out,
            "response.output_item.done",
            json!({ "output_index": 0, "item": item }),
        );
        let last = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let finished = response(&self.reply, true);
        self.event(&mut out, last, json!({ "response": finished }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::schema::Content;
    use crate::protocol::verify::{self, Verification};

    fn reply(total: u32, finish: Finish) -> Reply {
        Reply {
            id: "resp_sim1".into(),
            model: "m".into(),
            created: 0,
            total,
            prompt_tokens: 2,
            include_usage: false,
            finish,
            content: Content::Verifiable,
        }
    }

    /// Every event of a streamed answer: name and data.
    fn played(total: u32, finish: Finish) -> Vec<(String, Value)> {
        let mut events = Events::new(reply(total, finish));
        let mut body = events.opening();
        for i in 0..total {
            body += &events.token(i);
        }
        body += &events.closing();
        sse::decode_all(body.as_bytes())
            .into_iter()
            .map(|(name, data)| (name, serde_json::from_str(&data).unwrap()))
            .collect()
    }

    #[test]
    fn requests_are_read_as_the_responses_api_sends_them() {
        let ask =
            parse(br#"{"model":"m","input":"one two three","max_output_tokens":4,"stream":true}"#)
                .unwrap();
        assert!(ask.stream);
        assert_eq!(ask.prompt_tokens, 3);
        assert_eq!(ask.length.generate(8), (4, Finish::Length));
        let items = br#"{"input":[{"role":"user","content":[{"type":"input_text","text":"a b"}]}],"instructions":"c"}"#;
        let ask = parse(items).unwrap();
        assert!(!ask.stream);
        assert_eq!(ask.prompt_tokens, 3);
        assert!(parse(br#"{"input":"x","max_output_tokens":0}"#).is_err());
        assert!(parse(br#"{"messages":[]}"#).is_err(), "no input");
    }

    #[test]
    fn a_stream_runs_from_created_to_completed_in_sequence() {
        let events = played(3, Finish::Stop);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], i);
        }
        let text: String = events
            .iter()
            .filter_map(|(_, d)| d.get("delta").and_then(Value::as_str))
            .collect();
        assert_eq!(verify::verify(&text), Verification::Complete);
        let last = &events[10].1["response"];
        assert_eq!(last["status"], "completed");
        assert_eq!(last["usage"]["output_tokens"], 3);
        assert_eq!(last["output"][0]["content"][0]["text"], text);
        assert!(events[0].1["response"]["usage"].is_null());
    }

    #[test]
    fn a_length_cut_ends_incomplete_with_its_reason() {
        let events = played(2, Finish::Length);
        let (name, data) = &events[events.len() - 1];
        assert_eq!(name, "response.incomplete");
        assert_eq!(data["response"]["status"], "incomplete");
        assert_eq!(
            data["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(data["response"]["usage"]["output_tokens"], 2);
        let doc = whole(&reply(2, Finish::Length));
        assert_eq!(doc["status"], "incomplete");
        let doc = whole(&reply(2, Finish::Stop));
        assert_eq!(doc["status"], "completed");
        assert!(doc["incomplete_details"].is_null());
        assert_eq!(doc["output"][0]["content"][0]["type"], "output_text");
        assert_eq!(
            verify::verify(doc["output"][0]["content"][0]["text"].as_str().unwrap()),
            Verification::Complete
        );
    }
}
