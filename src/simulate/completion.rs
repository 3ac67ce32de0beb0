//! What one simulated completion is: how many tokens it has and why it ended, from the
//! request's length options read as vLLM reads them, and the text each token carries.

use std::num::NonZeroU32;

use crate::experiment::schema::Content;
use crate::protocol::verify;

/// The length options of a request, checked once as it is parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Length {
    max_tokens: Option<NonZeroU32>,
    min_tokens: u32,
    ignore_eos: bool,
}

/// Why a completion ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// The model ended it (its end-of-sequence token): OpenAI `stop`, Anthropic `end_turn`.
    Stop,
    /// The length limit ended it: OpenAI `length`, Anthropic `max_tokens`.
    Length,
}

impl Finish {
    pub(crate) fn openai(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }

    pub(crate) fn anthropic(self) -> &'static str {
        match self {
            Finish::Stop => "end_turn",
            Finish::Length => "max_tokens",
        }
    }
}

impl Length {
    /// The options as sent; refused, with vLLM's reasons, when no completion can meet them.
    pub(crate) fn new(
        max_tokens: Option<u32>,
        min_tokens: Option<u32>,
        ignore_eos: bool,
    ) -> Result<Length, String> {
        let max_tokens = match max_tokens {
            None => None,
            Some(n) => Some(
                NonZeroU32::new(n)
                    .ok_or_else(|| "max_tokens must be at least 1, got 0".to_string())?,
            ),
        };
        let min_tokens = min_tokens.unwrap_or(0);
        if let Some(max) = max_tokens {
            if min_tokens > max.get() {
                return Err(format!(
                    "min_tokens must be less than or equal to max_tokens={max}, got {min_tokens}"
                ));
            }
        }
        Ok(Length {
            max_tokens,
            min_tokens,
            ignore_eos,
        })
    }

    /// The tokens generated for a host whose completions end by themselves after `natural`
    /// tokens, and why it ended. `min_tokens` holds the end back; `max_tokens` cuts it short
    /// (`length`). With `ignore_eos` the end is never taken: the completion runs to
    /// `max_tokens`, or, without one, to the host's own length, which stands for the end of
    /// its context window; either way it ends by `length`. Never 0 tokens.
    pub(crate) fn generate(self, natural: u32) -> (u32, Finish) {
        let natural = natural.max(self.min_tokens).max(1);
        match self.max_tokens.map(NonZeroU32::get) {
            Some(max) if self.ignore_eos => (max, Finish::Length),
            None if self.ignore_eos => (natural, Finish::Length),
            Some(max) if max < natural => (max, Finish::Length),
            _ => (natural, Finish::Stop),
        }
    }
}

/// The words of `content: plain`: a fixed, lorem-style vocabulary, so runs repeat exactly.
const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
];

/// The text of token `index` (0-based) of a `total`-token completion: one word and a space.
pub(crate) fn token(content: Content, index: u32, total: u32) -> String {
    match content {
        Content::Verifiable => verify::token(index, total),
        Content::Plain => {
            // Stepping by a number prime to the vocabulary's size reads less like a list.
            // Below the vocabulary's length, so the cast is lossless and the index in bounds.
            let at = (u64::from(index) * 7 % WORDS.len() as u64) as usize;
            format!("{} ", WORDS[at])
        }
    }
}

/// The whole text of a `total`-token completion, for non-streaming answers.
pub(crate) fn text(content: Content, total: u32) -> String {
    (0..total).map(|i| token(content, i, total)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::verify::Verification;

    fn length(max: Option<u32>, min: Option<u32>, ignore_eos: bool) -> Length {
        Length::new(max, min, ignore_eos).unwrap()
    }

    #[test]
    fn max_tokens_cuts_and_says_length() {
        assert_eq!(length(None, None, false).generate(8), (8, Finish::Stop));
        assert_eq!(
            length(Some(3), None, false).generate(8),
            (3, Finish::Length)
        );
        assert_eq!(length(Some(8), None, false).generate(8), (8, Finish::Stop));
        assert_eq!(
            length(Some(100), None, false).generate(8),
            (8, Finish::Stop)
        );
    }

    #[test]
    fn ignore_eos_runs_to_max_tokens_and_min_tokens_holds_the_end_back() {
        assert_eq!(
            length(Some(50), None, true).generate(8),
            (50, Finish::Length)
        );
        assert_eq!(length(Some(5), None, true).generate(8), (5, Finish::Length));
        assert_eq!(length(None, None, true).generate(8), (8, Finish::Length));
        assert_eq!(
            length(None, Some(20), false).generate(8),
            (20, Finish::Stop)
        );
        assert_eq!(
            length(Some(12), Some(12), false).generate(8),
            (12, Finish::Stop)
        );
        assert_eq!(
            length(Some(12), Some(10), false).generate(30),
            (12, Finish::Length)
        );
        assert_eq!(length(None, Some(2), false).generate(8), (8, Finish::Stop));
    }

    #[test]
    fn impossible_lengths_are_refused() {
        assert!(Length::new(Some(0), None, false).is_err());
        let e = Length::new(Some(3), Some(5), false).unwrap_err();
        assert!(e.contains("min_tokens"), "{e}");
    }

    #[test]
    fn plain_text_is_words_the_checker_cannot_verify() {
        let text = text(Content::Plain, 40);
        assert_eq!(text.split_whitespace().count(), 40);
        assert!(!text.contains('/'), "{text}");
        assert_eq!(verify::verify(&text), Verification::Unverifiable);
        assert_eq!(text, super::text(Content::Plain, 40), "deterministic");
        assert_eq!(
            verify::verify(&super::text(Content::Verifiable, 40)),
            Verification::Complete
        );
    }
}
