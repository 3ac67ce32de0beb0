//! Token events rendered once per reply. Every token event of a stream differs from the others
//! only in its text (and, for the Responses API, its sequence number), so the event is rendered
//! through `serde_json` once, with markers where those go, and each token is then the template's
//! pieces around its JSON-escaped text: the same bytes as rendering it whole, without building
//! and dropping a JSON tree per token (that was most of the simulator's user-space time).

use std::fmt::Write;

/// Stands for the token text in the rendered event. Control characters are escaped by any
/// JSON writer (`\u0001`), so the marker cannot be confused with a model name or an id.
pub(crate) const TEXT: &str = "\u{1}faultline-token-text\u{1}";
/// Stands for the event's number (a Responses `sequence_number`), rendered as a string.
pub(crate) const NUMBER: &str = "\u{1}faultline-token-number\u{1}";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hole {
    Text,
    Number,
}

/// An event with holes for the token text and number.
#[derive(Clone, Debug)]
pub(crate) struct EventTemplate {
    /// Literal pieces; a hole follows each piece but the last.
    pieces: Vec<String>,
    holes: Vec<Hole>,
}

impl EventTemplate {
    /// Splits `rendered` (an event rendered with [`TEXT`] as its text and, if it has one,
    /// [`NUMBER`] as its number) at the markers. `None` unless the text marker is there exactly
    /// once and the number marker at most once: then the caller renders every token whole.
    pub(crate) fn new(rendered: &str) -> Option<Self> {
        let text = serde_json::to_string(TEXT).ok()?;
        let number = serde_json::to_string(NUMBER).ok()?;
        let mut pieces = Vec::new();
        let mut holes = Vec::new();
        let mut rest = rendered;
        loop {
            let next_text = rest.find(&text).map(|i| (i, Hole::Text, text.len()));
            let next_number = rest.find(&number).map(|i| (i, Hole::Number, number.len()));
            let next = match (next_text, next_number) {
                (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
                (a, b) => a.or(b),
            };
            let Some((at, hole, len)) = next else {
                pieces.push(rest.to_string());
                break;
            };
            pieces.push(rest[..at].to_string());
            holes.push(hole);
            rest = &rest[at + len..];
        }
        let count = |h| holes.iter().filter(|&&x| x == h).count();
        (count(Hole::Text) == 1 && count(Hole::Number) <= 1)
            .then_some(EventTemplate { pieces, holes })
    }

    /// The event for one token: `text` as a JSON string, `number` as a JSON number.
    pub(crate) fn fill(&self, text: &str, number: u64) -> String {
        let fixed: usize = self.pieces.iter().map(String::len).sum();
        let mut out = String::with_capacity(fixed + text.len() + 24);
        for (i, piece) in self.pieces.iter().enumerate() {
            out.push_str(piece);
            match self.holes.get(i) {
                Some(Hole::Text) => push_json_string(&mut out, text),
                // Writing to a String cannot fail.
                Some(Hole::Number) => {
                    let _ = write!(out, "{number}");
                }
                None => {}
            }
        }
        out
    }
}

/// Appends `s` as a JSON string literal, escaped exactly as `serde_json` escapes it.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The cached template of a script's token event, rendered on first use by `render` (called
/// with the text and number markers); `None` once it was found not to fit.
#[derive(Debug, Default)]
pub(crate) struct Cached(Option<Option<EventTemplate>>);

impl Cached {
    /// The token event for `text` and `number`: from the template, or rendered whole by
    /// `render` where no template fits.
    pub(crate) fn event(
        &mut self,
        text: &str,
        number: u64,
        render: impl Fn(&str, Option<u64>) -> String,
    ) -> String {
        let template = self
            .0
            .get_or_insert_with(|| EventTemplate::new(&render(TEXT, None)));
        match template {
            Some(t) => t.fill(text, number),
            None => render(text, Some(number)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(text: &str, number: Option<u64>) -> String {
        let number = number.map_or(json!(NUMBER), |n| json!(n));
        crate::protocol::sse::json_event(
            Some("delta"),
            &json!({ "delta": { "text": text }, "sequence_number": number, "model": "m\"x" }),
        )
    }

    #[test]
    fn filled_templates_are_the_bytes_of_rendering_whole() {
        let mut cached = Cached::default();
        let texts = [
            "t0/3 ",
            "plain words ",
            "quote \" and backslash \\ ",
            "line\nbreak\r\ttab",
            "\u{0}\u{1}\u{1f}\u{7f} control",
            "ünïcödé ✓ 🚀",
            "",
        ];
        for (n, text) in texts.iter().enumerate() {
            let n = n as u64 * 1000;
            assert_eq!(
                cached.event(text, n, render),
                render(text, Some(n)),
                "{text:?}"
            );
        }
        assert!(matches!(cached.0, Some(Some(_))), "the template was used");
    }

    #[test]
    fn a_rendering_without_exactly_one_text_marker_is_no_template() {
        assert!(EventTemplate::new("data: {}\n\n").is_none());
        let twice = format!(
            "{}{}",
            serde_json::to_string(TEXT).unwrap(),
            serde_json::to_string(TEXT).unwrap()
        );
        assert!(EventTemplate::new(&twice).is_none());
        // Where no template fits, every token is rendered whole, and still right.
        let mut cached = Cached::default();
        let whole = |text: &str, _: Option<u64>| format!("{text}{text}");
        assert_eq!(cached.event("ab", 0, whole), "abab");
        assert!(matches!(cached.0, Some(None)));
    }
}
