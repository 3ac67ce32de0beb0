//! Per-request bodies: prompt and completion lengths drawn from the run's seed, or prompts from
//! a JSONL file. The body is serialised once per stream with marks where the drawn parts go;
//! each request then only joins the pieces around its own parts, so thousands of requests a
//! second cost no JSON serialisation of the whole template.
//!
//! Draws are keyed (seed, stream, "prompt" | "max_tokens" | "prompts") and taken at the
//! request's sequence number, so the same seed gives the same lengths however the requests
//! interleave or how late they leave.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::sse::Expect;
use crate::experiment::prompts::Prompt;
use crate::experiment::schema::{Api, RequestSpec, Tokens, MAX_PROMPT_TOKENS};
use crate::fault::decide::{Decider, Draw};

/// The completion limit when neither the file nor a distribution says.
pub const DEFAULT_MAX_TOKENS: u32 = 256;

/// The longest completion limit a distribution may draw: a `{ mean, stddev }` has no top.
const MAX_DRAWN_MAX_TOKENS: u32 = 1_000_000;

/// Where the drawn parts go in the serialised template. They are JSON strings no body of ours
/// contains otherwise; should `extra_body` replace a field, its mark is gone and that part is
/// not drawn.
const MESSAGES_MARK: &str = "\u{1}faultline:messages\u{1}";
const MAX_TOKENS_MARK: &str = "\u{1}faultline:max_tokens\u{1}";

/// Words that prompts of N tokens are made of: one word each, so the simulator's estimate of a
/// prompt's tokens (its words) is the count that was drawn.
const VOCABULARY: [&str; 16] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa",
];

/// What varies from one request of a stream to the next.
pub struct Workload {
    /// The API takes its prompt as one string (completions, Responses), not `messages`.
    text: bool,
    /// The serialised body split at its marks: `pieces[i]`, hole i, `pieces[i + 1]`, ...
    pieces: Vec<Bytes>,
    holes: Vec<Hole>,
    prompt: PromptSource,
    max_tokens: Option<(Tokens, Decider)>,
    /// How the completion length pins what a whole answer must show.
    pin: Pin,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Hole {
    Messages,
    MaxTokens,
}

enum PromptSource {
    /// `prompt` as written: no hole.
    Written,
    Words(Tokens, Decider),
    /// Each prompt's `messages` array, serialised once.
    File(Arc<[Bytes]>, Decider),
}

/// `ignore_eos` or `min_tokens` as the body sends them, to pin a drawn `max_tokens`.
#[derive(Clone, Copy, Debug)]
struct Pin {
    ignore_eos: bool,
    min_tokens: Option<u64>,
}

/// One request's varying parts.
#[derive(Clone, Debug, PartialEq)]
pub struct Drawn {
    /// Words in the prompt when they were drawn.
    pub prompt_tokens: Option<u32>,
    /// Index into the prompts file when one was picked.
    pub prompt_index: Option<usize>,
    pub max_tokens: Option<u32>,
}

/// A value of `tokens` for request `seq`, at most `limit`.
pub fn draw_tokens(tokens: &Tokens, decider: &Decider, seq: u64, limit: u32) -> u32 {
    let mut d = decider.draw(seq);
    sample(tokens, &mut d).clamp(1, limit.max(1))
}

fn sample(tokens: &Tokens, d: &mut Draw) -> u32 {
    match *tokens {
        Tokens::Fixed(n) => n,
        Tokens::Uniform { min, max } => {
            u32::try_from(d.uint_in(u64::from(min), u64::from(max))).unwrap_or(max)
        }
        Tokens::Normal { mean, stddev } => {
            // Box-Muller: `1 - unit` is in (0, 1], so the logarithm is finite.
            let (u1, u2) = (1.0 - d.unit(), d.unit());
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let v = (mean + stddev * z).round();
            // `as` saturates: a far tail becomes u32::MAX and the caller's limit, never UB.
            v.max(1.0) as u32
        }
    }
}

/// `n` words of the vocabulary, space-separated, appended to `out` (no JSON escaping needed).
fn push_words(out: &mut Vec<u8>, n: u32) {
    for i in 0..n as usize {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(VOCABULARY[i % VOCABULARY.len()].as_bytes());
    }
}

/// `n` words as one JSON string, for the APIs that take the prompt as text.
pub fn words_text(n: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + n as usize * 8);
    out.push(b'"');
    push_words(&mut out, n);
    out.push(b'"');
    out
}

/// The user message of `n` words, serialised as a `messages` array.
pub fn words_messages(n: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + n as usize * 8);
    out.extend_from_slice(b"[{\"role\":\"user\",\"content\":\"");
    push_words(&mut out, n);
    out.extend_from_slice(b"\"}]");
    out
}

/// The body field an API takes its prompt in.
pub fn prompt_field(api: Api) -> &'static str {
    match api {
        Api::OpenaiChat | Api::AnthropicMessages => "messages",
        Api::OpenaiCompletions => "prompt",
        Api::OpenaiResponses => "input",
    }
}

/// The body field an API takes its completion limit in.
pub fn length_field(api: Api) -> &'static str {
    match api {
        Api::OpenaiResponses => "max_output_tokens",
        Api::OpenaiChat | Api::OpenaiCompletions | Api::AnthropicMessages => "max_tokens",
    }
}

/// Whether the API takes its prompt as one string rather than a `messages` array.
fn text_prompt(api: Api) -> bool {
    matches!(api, Api::OpenaiCompletions | Api::OpenaiResponses)
}

impl Workload {
    /// Puts marks in `body` (built from `request`, before `extra_body`) where this stream draws
    /// its parts; false when nothing is drawn and the body stays fixed.
    pub fn mark(body: &mut Value, request: &RequestSpec, has_prompts: bool) -> bool {
        let mut marked = false;
        if request.prompt_tokens.is_some() || has_prompts {
            body[prompt_field(request.api)] = Value::from(MESSAGES_MARK);
            marked = true;
        }
        if matches!(
            request.max_tokens,
            Some(Tokens::Uniform { .. } | Tokens::Normal { .. })
        ) {
            body[length_field(request.api)] = Value::from(MAX_TOKENS_MARK);
            marked = true;
        }
        marked
    }

    /// The workload of a marked body (after `extra_body`), serialised as `bytes`.
    pub fn new(
        stream: &str,
        seed: u64,
        request: &RequestSpec,
        prompts: Option<&[Prompt]>,
        body: &Value,
        bytes: &[u8],
    ) -> anyhow::Result<Self> {
        let marks = [
            (Hole::Messages, serde_json::to_vec(MESSAGES_MARK)?),
            (Hole::MaxTokens, serde_json::to_vec(MAX_TOKENS_MARK)?),
        ];
        let mut found: Vec<(usize, usize, Hole)> = Vec::new();
        for (hole, mark) in &marks {
            if let Some(at) = find(bytes, mark) {
                found.push((at, mark.len(), *hole));
            }
        }
        found.sort_by_key(|f| f.0);
        let mut pieces = Vec::new();
        let mut holes = Vec::new();
        let mut from = 0;
        for (at, len, hole) in found {
            pieces.push(Bytes::copy_from_slice(&bytes[from..at]));
            holes.push(hole);
            from = at + len;
        }
        pieces.push(Bytes::copy_from_slice(&bytes[from..]));

        let prompt = match (prompts, &request.prompt_tokens) {
            (Some(p), _) => {
                let serialised: anyhow::Result<Vec<Bytes>> = p
                    .iter()
                    .map(|p| {
                        let prompt = match (p, text_prompt(request.api)) {
                            (Prompt::Text(text), false) => {
                                serde_json::json!([{ "role": "user", "content": text }])
                            }
                            (Prompt::Messages(m), false) => Value::Array(m.clone()),
                            (Prompt::Text(text), true) => Value::from(text.as_str()),
                            // A prompt-string API gets the messages' texts, one per line.
                            (Prompt::Messages(m), true) => Value::from(
                                m.iter()
                                    .filter_map(|msg| msg.get("content").and_then(Value::as_str))
                                    .collect::<Vec<_>>()
                                    .join("\n"),
                            ),
                        };
                        Ok(Bytes::from(serde_json::to_vec(&prompt)?))
                    })
                    .collect();
                PromptSource::File(serialised?.into(), Decider::new(seed, stream, "prompts"))
            }
            (None, Some(t)) => PromptSource::Words(*t, Decider::new(seed, stream, "prompt")),
            (None, None) => PromptSource::Written,
        };
        let max_tokens = request
            .max_tokens
            .map(|t| (t, Decider::new(seed, stream, "max_tokens")));
        Ok(Workload {
            text: text_prompt(request.api),
            pieces,
            holes,
            prompt,
            max_tokens,
            pin: Pin {
                ignore_eos: body.get("ignore_eos").and_then(Value::as_bool) == Some(true),
                min_tokens: body.get("min_tokens").and_then(Value::as_u64),
            },
        })
    }

    /// What request `seq` draws.
    pub fn draw(&self, seq: u64) -> Drawn {
        let mut drawn = Drawn {
            prompt_tokens: None,
            prompt_index: None,
            max_tokens: None,
        };
        for hole in &self.holes {
            match hole {
                Hole::Messages => match &self.prompt {
                    PromptSource::Words(t, d) => {
                        drawn.prompt_tokens = Some(draw_tokens(t, d, seq, MAX_PROMPT_TOKENS));
                    }
                    PromptSource::File(p, d) => {
                        let last = p.len().saturating_sub(1) as u64;
                        let i = d.draw(seq).uint_in(0, last);
                        drawn.prompt_index = usize::try_from(i).ok();
                    }
                    PromptSource::Written => {}
                },
                Hole::MaxTokens => {
                    if let Some((t, d)) = &self.max_tokens {
                        drawn.max_tokens = Some(draw_tokens(t, d, seq, MAX_DRAWN_MAX_TOKENS));
                    }
                }
            }
        }
        drawn
    }

    /// Request `seq`'s body, and what its whole answer must show given `base`.
    pub fn body(&self, seq: u64, base: Expect) -> (Bytes, Expect) {
        let drawn = self.draw(seq);
        let mut out = Vec::with_capacity(self.pieces.iter().map(Bytes::len).sum::<usize>() + 64);
        let mut expect = base;
        for (i, piece) in self.pieces.iter().enumerate() {
            out.extend_from_slice(piece);
            match self.holes.get(i) {
                Some(Hole::Messages) => match (&self.prompt, drawn.prompt_index) {
                    (PromptSource::File(p, _), Some(i)) => {
                        out.extend_from_slice(p.get(i).map_or(&b"[]"[..], |b| &b[..]));
                    }
                    _ if self.text => {
                        out.extend_from_slice(&words_text(drawn.prompt_tokens.unwrap_or(1)));
                    }
                    _ => out.extend_from_slice(&words_messages(drawn.prompt_tokens.unwrap_or(1))),
                },
                Some(Hole::MaxTokens) => {
                    let max = drawn.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
                    out.extend_from_slice(max.to_string().as_bytes());
                    let max = u64::from(max);
                    expect.pinned =
                        (self.pin.ignore_eos || self.pin.min_tokens == Some(max)).then_some(max);
                }
                None => {}
            }
        }
        (Bytes::from(out), expect)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
