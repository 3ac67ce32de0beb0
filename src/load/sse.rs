//! Incremental reading of a response body as the client sees it: SSE events for streams, one
//! JSON document otherwise, and the verdict on whether the completion arrived whole.

use serde_json::Value;

use crate::experiment::Api;
use crate::load::record::Outcome;
use crate::protocol::verify::{self as content, Verification};

/// Text kept for verification is capped so a runaway body cannot eat memory.
const MAX_TEXT: usize = 1 << 20;
/// Longest single SSE event kept while waiting for its end.
const MAX_EVENT: usize = 1 << 20;
/// A non-streaming body is parsed whole; anything larger is not a chat completion.
const MAX_DOCUMENT: usize = 8 << 20;

/// Reads a streamed (SSE) body frame by frame.
pub struct StreamReader {
    api: Api,
    pending: Vec<u8>,
    pub events: u64,
    terminated: bool,
    errored: bool,
    /// Bytes were dropped because an "event" outgrew `MAX_EVENT`.
    garbled: bool,
    text: String,
}

impl StreamReader {
    pub fn new(api: Api) -> Self {
        StreamReader {
            api,
            pending: Vec::new(),
            events: 0,
            terminated: false,
            errored: false,
            garbled: false,
            text: String::new(),
        }
    }

    /// Feeds one body frame; events may span frames.
    pub fn feed(&mut self, chunk: &[u8]) {
        // Only the new bytes (and the three before them, for a separator split across frames)
        // can hold the end of the pending event: no rescanning what was already searched.
        let mut from = self.pending.len().saturating_sub(3);
        self.pending.extend_from_slice(chunk);
        while let Some((end, sep)) = find_event_end(&self.pending[from..]) {
            let end = from + end;
            let event: Vec<u8> = self.pending.drain(..end + sep).collect();
            self.on_event(&event[..end]);
            from = 0;
        }
        if self.pending.len() > MAX_EVENT {
            // No event is this long: a body without event boundaries is not a stream we can
            // read, and it must not eat memory.
            self.pending.clear();
            self.garbled = true;
        }
    }

    fn on_event(&mut self, raw: &[u8]) {
        let Ok(raw) = std::str::from_utf8(raw) else {
            return;
        };
        let mut name = None;
        let mut data = String::new();
        for line in raw.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if name.is_none() && data.is_empty() {
            return; // a comment or keep-alive
        }
        self.events += 1;
        if name.as_deref() == Some("error") {
            self.errored = true;
            return;
        }
        if data == "[DONE]" {
            self.terminated = true;
            return;
        }
        let Ok(json) = serde_json::from_str::<Value>(&data) else {
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
                    || name.as_deref() == Some("message_stop")
                {
                    self.terminated = true;
                }
                json.pointer("/delta/text").and_then(Value::as_str)
            }
        };
        if let Some(piece) = piece {
            if self.text.len() + piece.len() <= MAX_TEXT {
                self.text.push_str(piece);
            }
        }
    }

    /// The outcome of a body that ended cleanly.
    pub fn finish(self) -> Outcome {
        if self.errored {
            Outcome::StreamError
        } else if !self.terminated || self.garbled {
            Outcome::Truncated
        } else {
            judge_text(&self.text)
        }
    }
}

/// Position of the first event's end and the separator's length.
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Text in faultline's token scheme must be whole; text from a real backend cannot be checked.
fn judge_text(text: &str) -> Outcome {
    match content::verify(text) {
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
        judge_text(text.unwrap_or_default())
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
                content::token(i, tokens)
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
        let events = r.events;
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
            content::token(0, 1)
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
            content::completion(4)
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
        assert!(r.pending.len() <= MAX_EVENT);
        assert_eq!(r.finish(), Outcome::Truncated);
    }

    #[test]
    fn a_separator_split_across_frames_is_found() {
        let mut r = StreamReader::new(Api::OpenaiChat);
        r.feed(b"data: [DONE]\r\n");
        r.feed(b"\r\n");
        assert_eq!(r.events, 1);
    }
}
