//! Incremental reading of a response body as the client sees it: SSE events for streams (read
//! with the shared codec, so the client counts events exactly where the proxy cuts them), one
//! JSON document otherwise, and the verdict on whether the completion arrived whole, judged by
//! every signal the body carries: the terminator, the finish reason, the backend's usage count,
//! a pinned length and, for the simulator's text, the text itself.

use std::time::Duration;

use serde_json::Value;

use super::event::{self, EventJson};
use crate::experiment::Api;
use crate::load::record::{Outcome, TokenTiming};
use crate::protocol::sse::{self, Decoder, Event};
use crate::protocol::verify::{self, Checker, Verification};

/// Longest single SSE event kept while waiting for its end.
const MAX_EVENT: usize = sse::DEFAULT_LIMIT;
/// A non-streaming body is parsed whole; anything larger is not a chat completion.
const MAX_DOCUMENT: usize = 8 << 20;

/// What the request asked for that a whole answer must show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// The backend's token count (`usage`) must come with the stream: OpenAI-style streams
    /// that sent `stream_options: {include_usage: true}`, and Anthropic streams always. A cut
    /// stream that something re-terminated lacks it.
    pub usage: bool,
    /// The request pinned the completion's length (`ignore_eos` with `max_tokens`, or
    /// `min_tokens` equal to `max_tokens`): fewer tokens than this is a cut.
    pub pinned: Option<u64>,
}

/// The judgement of one 2xx body.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub outcome: Outcome,
    /// For `ok`: whether a signal established the completion is whole.
    pub verified: bool,
    pub tokens: TokenTiming,
}

/// The finish reasons a whole completion ends with; anything else (vLLM's `abort`, an empty
/// string) is not one. OpenAI's `finish_reason`, then Anthropic's `stop_reason`, then what a
/// Responses answer says (see [`responses_finish`]).
const FINISH_REASONS: [&str; 13] = [
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "function_call",
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "completed",
    "max_output_tokens",
];

/// The signals a body carried, streamed or not, and the judgement they add up to.
#[derive(Default)]
struct Signals {
    terminated: bool,
    errored: bool,
    finish_reason: Option<String>,
    /// The backend's count of completion tokens.
    usage_tokens: Option<u64>,
    /// Events that carried content.
    content_events: u64,
}

impl Signals {
    /// The outcome, and whether it is verified. `text` is the verifiable-scheme verdict.
    fn judge(&self, text: Verification, expect: Expect, streamed: bool) -> (Outcome, bool) {
        if self.errored {
            return (Outcome::StreamError, false);
        }
        if streamed && !self.terminated {
            return (Outcome::Truncated, false);
        }
        if matches!(text, Verification::Incomplete { .. }) {
            return (Outcome::Truncated, false);
        }
        match self.finish_reason.as_deref() {
            Some(reason) if FINISH_REASONS.contains(&reason) => {}
            // A whole completion always says why it ended.
            _ => return (Outcome::Truncated, false),
        }
        if streamed && expect.usage && self.usage_tokens.is_none() {
            return (Outcome::Truncated, false);
        }
        let tokens = self.usage_tokens.unwrap_or(self.content_events);
        if expect.pinned.is_some_and(|pinned| tokens < pinned) {
            return (Outcome::Truncated, false);
        }
        // The usage count proves the stream only if it covers what arrived; more content
        // events than counted tokens means it belongs to something else.
        let usage_holds = self
            .usage_tokens
            .is_some_and(|n| self.content_events <= n && (streamed || n > 0));
        let verified = text == Verification::Complete || usage_holds || expect.pinned.is_some();
        (Outcome::Ok, verified)
    }
}

/// An error where the answer belongs: an `error` object (not `null`, which vLLM-style chunks
/// may carry) or a `type: error` event.
fn is_error(json: &Value) -> bool {
    json.get("error").is_some_and(|e| !e.is_null())
        || json.get("type").and_then(Value::as_str) == Some("error")
}

fn plausible(reason: &Value) -> Option<String> {
    reason.as_str().map(str::to_string)
}

/// The finish reason of a Responses API response object: `completed` when its status says
/// so; for an `incomplete` one, why (`max_output_tokens` is the Responses API's `length`,
/// `content_filter` its chat namesake). Any other status (`failed`, `cancelled`,
/// `in_progress`) or an incomplete one without a reason is no finish.
fn responses_finish(response: &Value) -> Option<String> {
    match response.get("status").and_then(Value::as_str)? {
        "completed" => Some("completed".into()),
        "incomplete" => response
            .pointer("/incomplete_details/reason")
            .and_then(plausible),
        _ => None,
    }
}

/// The text of a whole Responses API response: every `output_text` part of every output item,
/// in order (reasoning items carry none).
fn responses_text(response: &Value) -> String {
    let items = response.get("output").and_then(Value::as_array);
    items
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|part| part.get("type").and_then(Value::as_str) == Some("output_text"))
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect()
}

/// Reads a streamed (SSE) body frame by frame.
pub struct StreamReader {
    decoder: Decoder,
    api: Api,
    expect: Expect,
    events: u64,
    signals: Signals,
    text: Checker,
    tokens: TokenTiming,
    last_content: Option<Duration>,
}

impl StreamReader {
    pub fn new(api: Api, expect: Expect) -> Self {
        StreamReader {
            decoder: Decoder::new(MAX_EVENT),
            api,
            expect,
            events: 0,
            signals: Signals::default(),
            text: Checker::new(),
            tokens: TokenTiming::default(),
            last_content: None,
        }
    }

    /// Feeds one body frame that arrived `at` after the request's intended send time; events
    /// may span frames.
    pub fn feed(&mut self, chunk: &[u8], at: Duration) {
        let mut input = chunk;
        while let Some(event) = self.decoder.next(&mut input) {
            self.events += 1;
            if read_event(self.api, &mut self.signals, &mut self.text, event) {
                self.content_at(at);
            }
        }
    }

    /// Events dispatched so far (comments and keep-alives are not events).
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The judgement of a body that ended cleanly.
    pub fn finish(self) -> Judged {
        let mut tokens = self.tokens;
        tokens.output_tokens = Some(
            self.signals
                .usage_tokens
                .unwrap_or(self.signals.content_events),
        );
        // An event too big to read may have been the terminator or an error: not whole.
        let (outcome, verified) = if self.decoder.overflowed() && !self.signals.errored {
            (Outcome::Truncated, false)
        } else {
            self.signals.judge(self.text.finish(), self.expect, true)
        };
        Judged {
            outcome,
            verified,
            tokens,
        }
    }

    fn content_at(&mut self, at: Duration) {
        self.signals.content_events += 1;
        if self.tokens.ttft.is_none() {
            self.tokens.ttft = Some(at);
        }
        if let Some(last) = self.last_content {
            let gap = at.saturating_sub(last).as_micros();
            self.tokens
                .itl_us
                .push(u32::try_from(gap).unwrap_or(u32::MAX));
        }
        self.last_content = Some(at);
    }
}

/// Reads one event into the signals and the text; true when it carried content.
fn read_event(api: Api, s: &mut Signals, text: &mut Checker, event: Event<'_>) -> bool {
    if event.name == "error" {
        s.errored = true;
        return false;
    }
    if event.data == sse::DONE {
        s.terminated = true;
        return false;
    }
    let Some(json) = EventJson::parse(event.data) else {
        return false;
    };
    if json.is_error() {
        s.errored = true;
        return false;
    }
    let kind = json.kind.as_deref().unwrap_or(event.name);
    let piece = match api {
        Api::OpenaiChat | Api::OpenaiCompletions => {
            let choice = json.first_choice();
            if let Some(reason) = choice.and_then(|c| c.finish_reason.as_deref()) {
                s.finish_reason = Some(reason.to_string());
            }
            // vLLM sends `"usage": null` on every chunk unless continuous stats are on.
            if let Some(n) = json.usage().and_then(|u| u.completion_tokens.0) {
                s.usage_tokens = Some(n);
            }
            if api == Api::OpenaiChat {
                choice.and_then(|c| c.delta_content())
            } else {
                choice.and_then(|c| c.text.as_deref())
            }
        }
        Api::AnthropicMessages => {
            if kind == "message_stop" || event.name == "message_stop" {
                s.terminated = true;
            }
            if kind == "message_delta" {
                if let Some(reason) = json.stop_reason() {
                    s.finish_reason = Some(reason.to_string());
                }
                if let Some(n) = json.usage().and_then(|u| u.output_tokens.0) {
                    s.usage_tokens = Some(n);
                }
            }
            match &json.delta {
                event::Delta::Object(d) => d.text.as_deref(),
                _ => None,
            }
        }
        Api::OpenaiResponses => {
            match kind {
                // A Responses stream has no `[DONE]`: its last event is the final response,
                // whole or incomplete, and that response's status is the finish signal.
                "response.completed" | "response.incomplete" => {
                    s.terminated = true;
                    let response = json.response.as_ref().unwrap_or(&Value::Null);
                    s.finish_reason = responses_finish(response);
                    if let Some(n) = response
                        .pointer("/usage/output_tokens")
                        .and_then(Value::as_u64)
                    {
                        s.usage_tokens = Some(n);
                    }
                    None
                }
                // The response's own `error` is nested, so the generic check above misses it.
                "response.failed" => {
                    s.errored = true;
                    None
                }
                "response.output_text.delta" => match &json.delta {
                    event::Delta::Text(t) => Some(&**t),
                    _ => None,
                },
                _ => None,
            }
        }
    };
    match piece {
        Some(piece) if !piece.is_empty() => {
            text.push(piece);
            true
        }
        _ => false,
    }
}

/// Collects a non-streaming body.
pub struct DocumentReader {
    api: Api,
    expect: Expect,
    body: Vec<u8>,
    overflow: bool,
}

impl DocumentReader {
    pub fn new(api: Api, expect: Expect) -> Self {
        DocumentReader {
            api,
            expect,
            body: Vec::new(),
            overflow: false,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.body.len() + chunk.len() > MAX_DOCUMENT {
            self.overflow = true;
        } else {
            self.body.extend_from_slice(chunk);
        }
    }

    pub fn finish(self) -> Judged {
        let judged = |outcome, verified, output_tokens| Judged {
            outcome,
            verified,
            tokens: TokenTiming {
                output_tokens,
                ..TokenTiming::default()
            },
        };
        if self.overflow {
            // Too big to judge: it arrived, but nothing says it is whole.
            return judged(Outcome::Ok, false, None);
        }
        let Ok(json) = serde_json::from_slice::<Value>(&self.body) else {
            return judged(Outcome::Truncated, false, None);
        };
        if is_error(&json) {
            return judged(Outcome::StreamError, false, None);
        }
        let (text, finish_reason, usage) = match self.api {
            Api::OpenaiChat | Api::OpenaiCompletions => {
                let text = if self.api == Api::OpenaiChat {
                    "/choices/0/message/content"
                } else {
                    "/choices/0/text"
                };
                (
                    json.pointer(text)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    json.pointer("/choices/0/finish_reason").and_then(plausible),
                    json.pointer("/usage/completion_tokens"),
                )
            }
            Api::AnthropicMessages => (
                json.pointer("/content/0/text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                json.pointer("/stop_reason").and_then(plausible),
                json.pointer("/usage/output_tokens"),
            ),
            Api::OpenaiResponses => (
                responses_text(&json),
                responses_finish(&json),
                json.pointer("/usage/output_tokens"),
            ),
        };
        let signals = Signals {
            terminated: true,
            errored: false,
            finish_reason,
            usage_tokens: usage.and_then(Value::as_u64),
            content_events: 0,
        };
        let (outcome, verified) = signals.judge(verify::verify(&text), self.expect, false);
        judged(outcome, verified, signals.usage_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PLAIN: Expect = Expect {
        usage: false,
        pinned: None,
    };
    const USAGE: Expect = Expect {
        usage: true,
        pinned: None,
    };

    /// An OpenAI stream of `sent` of `tokens` tokens; `done` adds the finish chunk and
    /// `[DONE]`, `usage` the usage chunk before it.
    fn openai_stream(tokens: u32, sent: u32, done: bool, usage: bool) -> String {
        openai_text(sent, done, usage.then_some(sent), |i| {
            verify::token(i, tokens)
        })
    }

    fn openai_text(
        sent: u32,
        done: bool,
        usage: Option<u32>,
        word: impl Fn(u32) -> String,
    ) -> String {
        let mut s = String::from("data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n");
        for i in 0..sent {
            s += &format!(
                "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}],\"usage\":null}}\n\n",
                word(i)
            );
        }
        if done {
            s += "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
            if let Some(n) = usage {
                s += &format!(
                    "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\n",
                    n + 3
                );
            }
            s += "data: [DONE]\n\n";
        }
        s
    }

    fn read_with(api: Api, expect: Expect, body: &str, frame: usize) -> (Judged, u64) {
        let mut r = StreamReader::new(api, expect);
        for (i, chunk) in body.as_bytes().chunks(frame).enumerate() {
            r.feed(chunk, Duration::from_millis(10 * i as u64));
        }
        let events = r.events();
        (r.finish(), events)
    }

    fn read(api: Api, body: &str, frame: usize) -> (Outcome, u64) {
        let (j, events) = read_with(api, PLAIN, body, frame);
        (j.outcome, events)
    }

    #[test]
    fn a_whole_openai_stream_is_ok_whatever_the_framing() {
        for frame in [1, 7, 1000] {
            assert_eq!(
                read(Api::OpenaiChat, &openai_stream(5, 5, true, false), frame),
                (Outcome::Ok, 8)
            );
        }
    }

    #[test]
    fn a_stream_without_terminator_is_truncated() {
        assert_eq!(
            read(Api::OpenaiChat, &openai_stream(5, 3, false, false), 9).0,
            Outcome::Truncated
        );
    }

    #[test]
    fn a_re_terminated_cut_stream_is_still_truncated() {
        // A gateway that answers a cut upstream with its own finish_reason and [DONE].
        assert_eq!(
            read(Api::OpenaiChat, &openai_stream(5, 3, true, false), 64).0,
            Outcome::Truncated
        );
    }

    #[test]
    fn foreign_text_with_only_the_protocol_is_ok_but_unverified() {
        let body = openai_text(3, true, None, |_| "Hello ".into());
        let (j, _) = read_with(Api::OpenaiChat, PLAIN, &body, 5);
        assert_eq!((j.outcome, j.verified), (Outcome::Ok, false));
    }

    #[test]
    fn foreign_text_is_verified_by_the_usage_chunk_and_cut_without_it() {
        let whole = openai_text(4, true, Some(4), |_| "word ".into());
        let (j, _) = read_with(Api::OpenaiChat, USAGE, &whole, 11);
        assert_eq!((j.outcome, j.verified), (Outcome::Ok, true));
        assert_eq!(j.tokens.output_tokens, Some(4));
        // Cut after two tokens, then re-terminated by a "repairing" gateway: no usage chunk.
        let repaired = openai_text(2, true, None, |_| "word ".into());
        let (j, _) = read_with(Api::OpenaiChat, USAGE, &repaired, 11);
        assert_eq!(j.outcome, Outcome::Truncated);
        // A usage count below what arrived belongs to something else: not proof.
        let odd = openai_text(4, true, Some(2), |_| "word ".into());
        let (j, _) = read_with(Api::OpenaiChat, USAGE, &odd, 11);
        assert_eq!((j.outcome, j.verified), (Outcome::Ok, false));
    }

    #[test]
    fn a_missing_or_implausible_finish_reason_is_a_cut() {
        let no_reason =
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(read(Api::OpenaiChat, no_reason, 5).0, Outcome::Truncated);
        let aborted = openai_text(2, true, None, |_| "x ".into()).replace("\"stop\"", "\"abort\"");
        assert_eq!(read(Api::OpenaiChat, &aborted, 5).0, Outcome::Truncated);
        let length = openai_text(2, true, None, |_| "x ".into()).replace("\"stop\"", "\"length\"");
        assert_eq!(read(Api::OpenaiChat, &length, 5).0, Outcome::Ok);
    }

    #[test]
    fn a_pinned_length_catches_a_short_completion() {
        let pinned = Expect {
            usage: false,
            pinned: Some(4),
        };
        let short = openai_text(3, true, None, |_| "w ".into());
        assert_eq!(
            read_with(Api::OpenaiChat, pinned, &short, 9).0.outcome,
            Outcome::Truncated
        );
        let whole = openai_text(4, true, None, |_| "w ".into());
        let (j, _) = read_with(Api::OpenaiChat, pinned, &whole, 9);
        assert_eq!((j.outcome, j.verified), (Outcome::Ok, true));
    }

    #[test]
    fn token_timing_counts_content_events_only() {
        // One event per frame, frames 10 ms apart: role chunk at 0, tokens at 10..40 ms.
        let body = openai_text(4, true, Some(4), |_| "w ".into());
        let mut r = StreamReader::new(Api::OpenaiChat, USAGE);
        let mut input = body.as_str();
        let mut i = 0u64;
        while let Some(end) = input.find("\n\n") {
            r.feed(&input.as_bytes()[..end + 2], Duration::from_millis(10 * i));
            input = &input[end + 2..];
            i += 1;
        }
        let j = r.finish();
        assert_eq!(j.tokens.ttft, Some(Duration::from_millis(10)));
        assert_eq!(j.tokens.itl_us, vec![10_000, 10_000, 10_000]);
        assert_eq!(
            j.tokens.tpot(Duration::from_millis(70)),
            Some(Duration::from_millis(20))
        );
    }

    #[test]
    fn anthropic_needs_message_stop_and_its_usage_and_sees_error_events() {
        let ok = format!(
            "event: message_start\ndata: {{\"type\":\"message_start\"}}\n\nevent: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"delta\":{{\"type\":\"text_delta\",\"text\":\"{}\"}}}}\n\nevent: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"output_tokens\":1}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
            verify::token(0, 1)
        );
        let (j, _) = read_with(Api::AnthropicMessages, USAGE, &ok, 3);
        assert_eq!((j.outcome, j.verified), (Outcome::Ok, true));
        let cut = ok.replace(
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            "",
        );
        assert_eq!(read(Api::AnthropicMessages, &cut, 3).0, Outcome::Truncated);
        let no_usage = ok.replace(",\"usage\":{\"output_tokens\":1}", "");
        let (j, _) = read_with(Api::AnthropicMessages, USAGE, &no_usage, 3);
        assert_eq!(j.outcome, Outcome::Truncated);
        let err = "event: message_start\ndata: {}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n";
        assert_eq!(read(Api::AnthropicMessages, err, 3).0, Outcome::StreamError);
    }

    /// A completions stream of `sent` of `tokens` verifiable tokens; `done` adds the finish
    /// chunk and `[DONE]`, `usage` the usage chunk before it.
    fn completions_stream(tokens: u32, sent: u32, done: bool, usage: bool) -> String {
        let mut s = String::new();
        for i in 0..sent {
            s += &format!(
                "data: {{\"object\":\"text_completion\",\"choices\":[{{\"text\":\"{}\",\"finish_reason\":null}}]}}\n\n",
                verify::token(i, tokens)
            );
        }
        if done {
            s += "data: {\"object\":\"text_completion\",\"choices\":[{\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n";
            if usage {
                s += &format!(
                    "data: {{\"choices\":[],\"usage\":{{\"completion_tokens\":{sent}}}}}\n\n"
                );
            }
            s += "data: [DONE]\n\n";
        }
        s
    }

    #[test]
    fn completions_streams_are_judged_like_chat_by_their_text_chunks() {
        let (j, events) = read_with(
            Api::OpenaiCompletions,
            USAGE,
            &completions_stream(4, 4, true, true),
            7,
        );
        assert_eq!((j.outcome, j.verified, events), (Outcome::Ok, true, 7));
        assert_eq!(j.tokens.output_tokens, Some(4));
        // Cut: no terminator.
        let cut = completions_stream(4, 2, false, false);
        assert_eq!(read(Api::OpenaiCompletions, &cut, 7).0, Outcome::Truncated);
        // Re-terminated: the text is short, and the usage chunk is missing.
        let repaired = completions_stream(4, 2, true, false);
        assert_eq!(
            read(Api::OpenaiCompletions, &repaired, 7).0,
            Outcome::Truncated
        );
        let whole_without_usage = completions_stream(4, 4, true, false);
        assert_eq!(
            read_with(Api::OpenaiCompletions, USAGE, &whole_without_usage, 7)
                .0
                .outcome,
            Outcome::Truncated,
            "usage asked for and missing"
        );
        let mut r = DocumentReader::new(Api::OpenaiCompletions, PLAIN);
        r.feed(
            format!(
                "{{\"object\":\"text_completion\",\"choices\":[{{\"text\":\"{}\",\"finish_reason\":\"stop\"}}],\"usage\":{{\"completion_tokens\":3}}}}",
                verify::completion(3)
            )
            .as_bytes(),
        );
        let j = r.finish();
        assert_eq!(
            (j.outcome, j.verified, j.tokens.output_tokens),
            (Outcome::Ok, true, Some(3))
        );
    }

    /// A Responses stream of `sent` of `tokens` verifiable tokens, ended (when `last` is
    /// given) by that event, whose response has `status` and, with `usage`, its usage.
    fn responses_stream(tokens: u32, sent: u32, last: Option<(&str, &str)>, usage: bool) -> String {
        let mut s = String::from(
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"status\":\"in_progress\",\"error\":null,\"usage\":null}}\n\n",
        );
        for i in 0..sent {
            s += &format!(
                "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"{}\"}}\n\n",
                verify::token(i, tokens)
            );
        }
        if let Some((name, status)) = last {
            let mut response = json!({ "status": status, "error": null });
            if status == "incomplete" {
                response["incomplete_details"] = json!({ "reason": "max_output_tokens" });
            }
            if usage {
                response["usage"] = json!({ "input_tokens": 1, "output_tokens": sent });
            }
            s += &sse::json_event(Some(name), &json!({ "type": name, "response": response }));
        }
        s
    }

    #[test]
    fn responses_streams_end_with_their_final_response_and_its_usage() {
        let whole = responses_stream(4, 4, Some(("response.completed", "completed")), true);
        let (j, events) = read_with(Api::OpenaiResponses, USAGE, &whole, 9);
        assert_eq!((j.outcome, j.verified, events), (Outcome::Ok, true, 6));
        assert_eq!(j.tokens.output_tokens, Some(4));
        // Cut: no final response.
        let cut = responses_stream(4, 2, None, false);
        assert_eq!(read(Api::OpenaiResponses, &cut, 9).0, Outcome::Truncated);
        // Re-terminated with a synthetic `response.completed`: short text, no usage.
        let repaired = responses_stream(4, 2, Some(("response.completed", "completed")), false);
        assert_eq!(
            read(Api::OpenaiResponses, &repaired, 9).0,
            Outcome::Truncated
        );
        // Usage missing from a final response whose text is whole: still not proven whole.
        let no_usage = responses_stream(4, 4, Some(("response.completed", "completed")), false);
        assert_eq!(
            read_with(Api::OpenaiResponses, USAGE, &no_usage, 9)
                .0
                .outcome,
            Outcome::Truncated
        );
        // Incomplete by `max_output_tokens` is a finish, like `length`.
        let length = responses_stream(4, 4, Some(("response.incomplete", "incomplete")), true);
        let (j, _) = read_with(Api::OpenaiResponses, USAGE, &length, 9);
        assert_eq!((j.outcome, j.verified), (Outcome::Ok, true));
        // Incomplete for no stated reason, or a status that is no finish, is a cut.
        let unexplained = length.replace(
            ",\"incomplete_details\":{\"reason\":\"max_output_tokens\"}",
            "",
        );
        assert_ne!(unexplained, length);
        assert_eq!(
            read_with(Api::OpenaiResponses, USAGE, &unexplained, 9)
                .0
                .outcome,
            Outcome::Truncated
        );
        let odd = responses_stream(4, 4, Some(("response.completed", "in_progress")), true);
        assert_eq!(
            read_with(Api::OpenaiResponses, USAGE, &odd, 9).0.outcome,
            Outcome::Truncated
        );
    }

    #[test]
    fn responses_errors_and_failures_are_stream_errors() {
        let mut failed = responses_stream(4, 2, None, false);
        failed += "event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"x\"}}}\n\n";
        assert_eq!(
            read(Api::OpenaiResponses, &failed, 9).0,
            Outcome::StreamError
        );
        // The `error` event, named or told by its `type` alone.
        for error in [
            "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"x\",\"param\":null,\"sequence_number\":3}\n\n",
            "data: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"x\"}\n\n",
        ] {
            let body = responses_stream(4, 2, None, false) + error;
            assert_eq!(read(Api::OpenaiResponses, &body, 9).0, Outcome::StreamError);
        }
    }

    #[test]
    fn responses_documents_are_judged_by_status_text_and_usage() {
        let doc = |status: &str, details: Value, text: String, usage: Option<u32>| {
            let mut v = json!({
                "object": "response",
                "status": status,
                "error": null,
                "incomplete_details": details,
                "output": [
                    { "type": "reasoning", "summary": [] },
                    { "type": "message", "content": [{ "type": "output_text", "text": text }] },
                ],
            });
            if let Some(n) = usage {
                v["usage"] = json!({ "output_tokens": n });
            }
            let mut r = DocumentReader::new(Api::OpenaiResponses, PLAIN);
            r.feed(v.to_string().as_bytes());
            let j = r.finish();
            (j.outcome, j.verified)
        };
        let whole = verify::completion(4);
        let cut: String = (0..2).map(|i| verify::token(i, 4)).collect();
        assert_eq!(
            doc("completed", Value::Null, whole.clone(), Some(4)),
            (Outcome::Ok, true)
        );
        assert_eq!(
            doc("completed", Value::Null, cut, Some(2)),
            (Outcome::Truncated, false)
        );
        let length = json!({ "reason": "max_output_tokens" });
        assert_eq!(
            doc("incomplete", length, whole.clone(), None),
            (Outcome::Ok, true)
        );
        assert_eq!(
            doc("incomplete", Value::Null, whole.clone(), Some(4)),
            (Outcome::Truncated, false)
        );
        // Foreign text: usage verifies it, and without usage it is unverified.
        let foreign = "Hello there".to_string();
        assert_eq!(
            doc("completed", Value::Null, foreign.clone(), Some(2)),
            (Outcome::Ok, true)
        );
        assert_eq!(
            doc("completed", Value::Null, foreign, None),
            (Outcome::Ok, false)
        );
    }

    #[test]
    fn crlf_separated_events_are_read() {
        let body = openai_stream(2, 2, true, false).replace("\n\n", "\r\n\r\n");
        assert_eq!(read(Api::OpenaiChat, &body, 4), (Outcome::Ok, 5));
    }

    #[test]
    fn documents_are_verified() {
        let whole = format!(
            "{{\"choices\":[{{\"message\":{{\"content\":\"{}\"}},\"finish_reason\":\"stop\"}}]}}",
            verify::completion(4)
        );
        let mut r = DocumentReader::new(Api::OpenaiChat, PLAIN);
        r.feed(whole.as_bytes());
        let j = r.finish();
        assert_eq!((j.outcome, j.verified), (Outcome::Ok, true));
        let mut cut = DocumentReader::new(Api::OpenaiChat, PLAIN);
        cut.feed(&whole.as_bytes()[..whole.len() / 2]);
        assert_eq!(cut.finish().outcome, Outcome::Truncated);
        // Foreign text: verified by usage, unverified without it.
        let foreign = "{\"choices\":[{\"message\":{\"content\":\"Hi there\"},\"finish_reason\":\"stop\"}],\"usage\":{\"completion_tokens\":2}}";
        let mut r = DocumentReader::new(Api::OpenaiChat, PLAIN);
        r.feed(foreign.as_bytes());
        let j = r.finish();
        assert_eq!(
            (j.outcome, j.verified, j.tokens.output_tokens),
            (Outcome::Ok, true, Some(2))
        );
        let bare = foreign.replace(",\"usage\":{\"completion_tokens\":2}", "");
        let mut r = DocumentReader::new(Api::OpenaiChat, PLAIN);
        r.feed(bare.as_bytes());
        assert!(!r.finish().verified);
    }
}

#[cfg(test)]
mod bounds {
    use super::*;

    const PLAIN: Expect = Expect {
        usage: false,
        pinned: None,
    };

    fn finished(body: &str) -> &'static str {
        let _ = body;
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    }

    #[test]
    fn a_stream_without_event_boundaries_is_bounded_and_not_ok() {
        let mut r = StreamReader::new(Api::OpenaiChat, PLAIN);
        let junk = vec![b'x'; 64 * 1024];
        for _ in 0..40 {
            r.feed(&junk, Duration::ZERO);
        }
        r.feed(b"\n\ndata: [DONE]\n\n", Duration::ZERO);
        assert!(r.decoder.held() <= MAX_EVENT);
        assert_eq!(r.finish().outcome, Outcome::Truncated);
    }

    #[test]
    fn a_separator_split_across_frames_is_found() {
        let mut r = StreamReader::new(Api::OpenaiChat, PLAIN);
        r.feed(b"data: [DONE]\r\n", Duration::ZERO);
        r.feed(b"\r\n", Duration::ZERO);
        assert_eq!(r.events(), 1);
    }

    #[test]
    fn every_line_ending_is_read_and_comments_are_not_events() {
        // `\n\r\n` ends an event too: the old reader missed it, the proxy's cut counted it.
        for done in [
            "data: [DONE]\n\r\n",
            "data: [DONE]\r\r",
            ": ping\n\ndata: [DONE]\r\n\n",
        ] {
            let body = format!("{}{done}", finished(done));
            let mut r = StreamReader::new(Api::OpenaiChat, PLAIN);
            for b in body.as_bytes().chunks(1) {
                r.feed(b, Duration::ZERO);
            }
            assert_eq!(r.events(), 2, "{body:?}");
            assert_eq!(r.finish().outcome, Outcome::Ok, "{body:?}");
        }
    }
}
