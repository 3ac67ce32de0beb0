//! Verifiable completions, both sides of the scheme. A simulated host writes token `i` of `n` as
//! `t<i>/<n> ` ([`token`], [`completion`]); whoever reads the text ([`Checker`], [`verify`]) can
//! tell a whole completion from a cut one, even when something in between re-terminates the
//! stream with a synthetic `finish_reason: "stop"` and `[DONE]`.

/// The text of token `index` (0-based) of a `total`-token completion.
pub fn token(index: u32, total: u32) -> String {
    format!("t{index}/{total} ")
}

/// The whole completion text, for non-streaming answers.
pub fn completion(total: u32) -> String {
    (0..total).map(|i| token(i, total)).collect()
}

/// What the text of a completion says about its completeness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Every token from 0 to n-1 arrived, in order.
    Complete,
    /// Tokens are missing: `received` of `expected` arrived in order.
    Incomplete { received: u32, expected: u32 },
    /// The text is not in faultline's scheme (a real backend): only the protocol can be checked.
    Unverifiable,
}

/// The longest word that can be a token: `t4294967295/4294967295`.
const MAX_TOKEN: usize = 22;

/// Checks completion text as it arrives, in pieces of any size (a token may be split between
/// pieces); it keeps a few counters and one word, never the text.
#[derive(Clone, Debug, Default)]
pub struct Checker {
    total: Option<u32>,
    received: u32,
    /// Settled before the end: the text left the scheme or skipped a token.
    verdict: Option<Verification>,
    word: [u8; MAX_TOKEN],
    word_len: usize,
    /// The word in progress is longer than any token.
    word_too_long: bool,
}

impl Checker {
    pub fn new() -> Self {
        Checker::default()
    }

    /// Takes the next piece of the text.
    pub fn push(&mut self, text: &str) {
        for &b in text.as_bytes() {
            if self.verdict.is_some() {
                return;
            }
            // The scheme's separator; `str::split_ascii_whitespace` splits the same way.
            if b.is_ascii_whitespace() {
                self.end_word();
            } else if self.word_len < MAX_TOKEN {
                self.word[self.word_len] = b;
                self.word_len += 1;
            } else {
                self.word_too_long = true;
            }
        }
    }

    /// The verdict on the text pushed so far, taken as the whole text.
    pub fn finish(mut self) -> Verification {
        self.end_word();
        if let Some(v) = self.verdict {
            return v;
        }
        match self.total {
            None => Verification::Unverifiable,
            Some(total) if self.received == total => Verification::Complete,
            Some(total) => Verification::Incomplete {
                received: self.received,
                expected: total,
            },
        }
    }

    fn end_word(&mut self) {
        if self.word_len == 0 && !self.word_too_long {
            return;
        }
        let word = &self.word[..self.word_len];
        let parsed = if self.word_too_long {
            None
        } else {
            parse_token(word)
        };
        self.word_len = 0;
        self.word_too_long = false;
        let Some((index, total)) = parsed else {
            // Text that never was in the scheme is foreign; text that leaves it was cut or
            // spliced.
            self.verdict = Some(if self.received == 0 {
                Verification::Unverifiable
            } else {
                Verification::Incomplete {
                    received: self.received,
                    expected: self.total.unwrap_or(0),
                }
            });
            return;
        };
        let expected = *self.total.get_or_insert(total);
        if expected != total || index != self.received {
            self.verdict = Some(Verification::Incomplete {
                received: self.received,
                expected,
            });
            return;
        }
        self.received += 1;
    }
}

/// Checks the whole concatenated completion text.
pub fn verify(text: &str) -> Verification {
    let mut c = Checker::new();
    c.push(text);
    c.finish()
}

fn parse_token(word: &[u8]) -> Option<(u32, u32)> {
    let word = std::str::from_utf8(word).ok()?;
    let (i, n) = word.strip_prefix('t')?.split_once('/')?;
    Some((i.parse().ok()?, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sse;

    #[test]
    fn a_whole_completion_verifies() {
        assert_eq!(verify(&completion(16)), Verification::Complete);
        assert_eq!(verify(&completion(1)), Verification::Complete);
    }

    #[test]
    fn a_cut_completion_is_caught() {
        let text: String = (0..10).map(|i| token(i, 16)).collect();
        assert_eq!(
            verify(&text),
            Verification::Incomplete {
                received: 10,
                expected: 16
            }
        );
        // Cut inside a token: `t9/1` reads as a token of another completion.
        let whole = completion(16);
        let mid = whole.find("t9/16").unwrap_or(0) + 4;
        assert!(matches!(
            verify(&whole[..mid]),
            Verification::Incomplete { received: 9, .. }
        ));
    }

    #[test]
    fn a_gap_is_caught() {
        let text = format!("{}{}", token(0, 3), token(2, 3));
        assert_eq!(
            verify(&text),
            Verification::Incomplete {
                received: 1,
                expected: 3
            }
        );
    }

    #[test]
    fn foreign_text_is_unverifiable_not_verified() {
        assert_eq!(verify("Hello! How can I help?"), Verification::Unverifiable);
        assert_eq!(verify(""), Verification::Unverifiable);
        assert_ne!(verify("Hello"), verify(&completion(2)));
        // Scheme text that turns foreign was cut or spliced, not foreign.
        let spliced = format!("{}Hello", token(0, 2));
        assert!(matches!(
            verify(&spliced),
            Verification::Incomplete { received: 1, .. }
        ));
        let long_word = "t0/1".to_string() + &"0".repeat(40);
        assert_eq!(verify(&long_word), Verification::Unverifiable);
    }

    #[test]
    fn pieces_of_any_size_give_the_verdict_of_the_whole() {
        let whole = completion(12);
        let cut: String = (0..7).map(|i| token(i, 12)).collect();
        for text in [whole.as_str(), cut.as_str(), "plain words here"] {
            for size in 1..=text.len().max(1) {
                let mut c = Checker::new();
                // Byte chunks of ASCII text are valid `str`s.
                for piece in text.as_bytes().chunks(size) {
                    c.push(std::str::from_utf8(piece).unwrap_or_default());
                }
                assert_eq!(c.finish(), verify(text), "pieces of {size}");
            }
        }
    }

    #[test]
    fn a_re_terminated_cut_stream_fails() {
        // What a re-terminating gateway sends for an upstream cut after 3 of 5 tokens: the
        // protocol says finished, the text says cut.
        let mut body = String::new();
        for i in 0..3 {
            let chunk = serde_json::json!({"choices": [{"delta": {"content": token(i, 5)}}]});
            body += &sse::json_event(None, &chunk);
        }
        body += &sse::json_event(
            None,
            &serde_json::json!({"choices": [{"delta": {}, "finish_reason": "stop"}]}),
        );
        body += &sse::done_event();
        let mut c = Checker::new();
        let mut done = false;
        for (_, data) in sse::decode_all(body.as_bytes()) {
            done |= data == sse::DONE;
            let json: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
            if let Some(t) = json
                .pointer("/choices/0/delta/content")
                .and_then(|v| v.as_str())
            {
                c.push(t);
            }
        }
        assert!(done);
        assert_eq!(
            c.finish(),
            Verification::Incomplete {
                received: 3,
                expected: 5
            }
        );
    }
}
