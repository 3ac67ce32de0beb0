//! Incremental reading of a response body as the client sees it: SSE events for streams (read
//! with the shared codec, so the client counts events exactly where the proxy cuts them), one
//! JSON document otherwise, and the verdict on whether the completion arrived whole.

use serde_json::Value;

use crate::experiment::Api;
use crate::load::record::Outcome;
use crate::protocol::sse::{self, Decoder, Event};
use crate::protocol::verify::{self, Checker, Verification};

/// Longest single SSE event kept while waiting for its end.
const MAX_EVENT: usize = sse::DEFAULT_LIMIT;
/// A non-streaming body is parsed whole; anything larger is not a chat completion.
const MAX_DOCUMENT: usize = 8 << 20;

/// Reads a streamed (SSE) body frame by frame.
pub struct StreamReader {
    decoder: Decoder,
    seen: Seen,
}

/// What the events read so far say.
struct Seen {
    api: Api,
    events: u64,
    terminated: bool,
    errored: bool,
    text: Checker,
}

impl StreamReader {
    pub fn new(api: Api) -> Self {
        StreamReader {
            decoder: Decoder::new(MAX_EVENT),
            seen: Seen {
                api,
                events: 0,
                terminated: false,
                errored: false,
                text: Checker::new(),
            },
        }
    }

    /// Feeds one body frame; events may span frames.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut input = chunk;
        while let Some(event) = self.decoder.next(&mut input) {
            self.seen.event(event);
        }
    }

    /// Events dispatched so far (comments and keep-alives are not events).
    pub fn events(&self) -> u64 {
        self.seen.events
    }

    /// The outcome of a body that ended cleanly.
    pub fn finish(self) -> Outcome {
        let seen = self.seen;
        // An event too big to read may have been the terminator or an error: not whole.
        if seen.errored {
            Outcome::StreamError
        } else if !seen.terminated || self.decoder.overflowed() {
            Outcome::Truncated
        } else {
            judge(seen.text.finish())
        }
    }
}

impl Seen {
    fn event(&mut self, event: Event<'_>) {
        self.events += 1;
        if event.name == "error" {
            self.errored = true;
            return;
        }
        if event.data == sse::DONE {
            self.terminated = true;
            return;
        }
        let Ok(json) = serde_json::from_str::<Value>(event.data) else {
            return;
        };
        if json.get("error").is_some() || json.get("type").and_then(Value::as_str) == Some("error")
        {
            self.errored = true;
            return;
        }
        let piece = match self.api {
            Api::OpenaiChat => json
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str),
            Api::AnthropicMessages => {
                if json.get("type").and_then(Value::as_str) == Some("message_stop")
                    || event.name == "message_stop"
                {
                    self.terminated = true;
                }
                json.pointer("/delta/text").and_then(Value::as_str)
            }
        };
        if let Some(piece) = piece {
            self.text.push(piece);
        }
    }
}

/// Text in faultline's token scheme must be whole; text from a real backend cannot be checked.
fn judge(verification: Verification) -> Outcome {
    match verification {
        Verification::Incomplete { .. } => Outcome::Truncated,
        Verification::Complete | Verification::Unverifiable => Outcome::Ok,
    }
}

/// Collects a non-streaming body.
pub struct DocumentReader {
    api: Api,
    body: Vec<u8>,
    overflow: bool,
}

impl DocumentReader {
    pub fn new(api: Api) -> Self {
        DocumentReader {
            api,
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

    pub fn finish(self) -> Outcome {
        if self.overflow {
            return Outcome::Ok;
        }
        let Ok(json) = serde_json::from_slice::<Value>(&self.body) else {
            return Outcome::Truncated;
        };
        if json.get("error").is_some() || json.get("type").and_then(Value::as_str) == Some("error")
        {
            return Outcome::StreamError;
        }
        let text = match self.api {
            Api::OpenaiChat => json
                .pointer("/choices/0/message/content")
                .and_then(Value::as_str),
            Api::AnthropicMessages => json.pointer("/content/0/text").and_then(Value::as_str),
        };
        judge(verify::verify(text.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai_stream(tokens: u32, sent: u32, done: bool) -> String {
        let mut s = String::from("data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n");
        for i in 0..sent {
            s += &format!(
                "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n",
                verify::token(i, tokens)
            );
        }
        if done {
            s += "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        }
        s
    }

    fn read(api: Api, body: &str, frame: usize) -> (Outcome, u64) {
        let mut r = StreamReader::new(api);
        for chunk in body.as_bytes().chunks(frame) {
            r.feed(chunk);
        }
        let events = r.events();
        (r.finish(), events)
    }

    #[test]
    fn a_whole_openai_stream_is_ok_whatever_the_framing() {
        for frame in [1, 7, 1000] {
            assert_eq!(
                read(Api::OpenaiChat, &openai_stream(5, 5, true), frame),
                (Outcome::Ok, 8)
            );
        }
    }

    #[test]
    fn a_stream_without_terminator_is_truncated() {
        assert_eq!(
            read(Api::OpenaiChat, &openai_stream(5, 3, false), 9).0,
            Outcome::Truncated
        );
    }

    #[test]
    fn a_re_terminated_cut_stream_is_still_truncated() {
        // A gateway that answers a cut upstream with its own finish_reason and [DONE].
        assert_eq!(
            read(Api::OpenaiChat, &openai_stream(5, 3, true), 64).0,
            Outcome::Truncated
        );
    }

    #[test]
    fn foreign_text_passes_on_protocol_alone() {
        let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(read(Api::OpenaiChat, body, 5).0, Outcome::Ok);
    }

    #[test]
    fn anthropic_needs_message_stop_and_sees_error_events() {
        let ok = format!(
            "event: message_start\ndata: {{\"type\":\"message_start\"}}\n\nevent: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"delta\":{{\"type\":\"text_delta\",\"text\":\"{}\"}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n",
            verify::token(0, 1)
        );
        assert_eq!(read(Api::AnthropicMessages, &ok, 3).0, Outcome::Ok);
        let cut = ok.replace(
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            "",
        );
        assert_eq!(read(Api::AnthropicMessages, &cut, 3).0, Outcome::Truncated);
        let err = "event: message_start\ndata: {}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n";
        assert_eq!(read(Api::AnthropicMessages, err, 3).0, Outcome::StreamError);
    }

    #[test]
    fn crlf_separated_events_are_read() {
        let body = openai_stream(2, 2, true).replace("\n\n", "\r\n\r\n");
        assert_eq!(read(Api::OpenaiChat, &body, 4), (Outcome::Ok, 5));
    }

    #[test]
    fn documents_are_verified() {
        let whole = format!(
            "{{\"choices\":[{{\"message\":{{\"content\":\"{}\"}}}}]}}",
            verify::completion(4)
        );
        let mut r = DocumentReader::new(Api::OpenaiChat);
        r.feed(whole.as_bytes());
        assert_eq!(r.finish(), Outcome::Ok);
        let mut cut = DocumentReader::new(Api::OpenaiChat);
        cut.feed(&whole.as_bytes()[..whole.len() / 2]);
        assert_eq!(cut.finish(), Outcome::Truncated);
    }
}

#[cfg(test)]
mod bounds {
    use super::*;

    #[test]
    fn a_stream_without_event_boundaries_is_bounded_and_not_ok() {
        let mut r = StreamReader::new(Api::OpenaiChat);
        let junk = vec![b'x'; 64 * 1024];
        for _ in 0..40 {
            r.feed(&junk);
        }
        r.feed(b"\n\ndata: [DONE]\n\n");
        assert!(r.decoder.held() <= MAX_EVENT);
        assert_eq!(r.finish(), Outcome::Truncated);
    }

    #[test]
    fn a_separator_split_across_frames_is_found() {
        let mut r = StreamReader::new(Api::OpenaiChat);
        r.feed(b"data: [DONE]\r\n");
        r.feed(b"\r\n");
        assert_eq!(r.events(), 1);
    }

    #[test]
    fn every_line_ending_is_read_and_comments_are_not_events() {
        // `\n\r\n` ends an event too: the old reader missed it, the proxy's cut counted it.
        for body in [
            "data: [DONE]\n\r\n",
            "data: [DONE]\r\r",
            ": ping\n\ndata: [DONE]\r\n\n",
        ] {
            let mut r = StreamReader::new(Api::OpenaiChat);
            for b in body.as_bytes().chunks(1) {
                r.feed(b);
            }
            assert_eq!(r.events(), 1, "{body:?}");
            assert_eq!(r.finish(), Outcome::Ok, "{body:?}");
        }
    }
}
