//! Verifiable completions. A simulated host writes token `i` of `n` as `t<i>/<n> `, so whoever
//! reads the text can tell a whole completion from a cut one, even when something in between
//! re-terminates the stream with a synthetic `finish_reason: "stop"` and `[DONE]`.

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

/// Checks the concatenated completion text.
pub fn verify(text: &str) -> Verification {
    let mut expected_total = None;
    let mut received = 0u32;
    for word in text.split_ascii_whitespace() {
        let Some((index, total)) = parse_token(word) else {
            return if received == 0 {
                Verification::Unverifiable
            } else {
                Verification::Incomplete {
                    received,
                    expected: expected_total.unwrap_or(0),
                }
            };
        };
        if *expected_total.get_or_insert(total) != total || index != received {
            return Verification::Incomplete {
                received,
                expected: expected_total.unwrap_or(total),
            };
        }
        received += 1;
    }
    match expected_total {
        None => Verification::Unverifiable,
        Some(total) if received == total => Verification::Complete,
        Some(total) => Verification::Incomplete {
            received,
            expected: total,
        },
    }
}

fn parse_token(word: &str) -> Option<(u32, u32)> {
    let (i, n) = word.strip_prefix('t')?.split_once('/')?;
    Some((i.parse().ok()?, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn foreign_text_is_unverifiable() {
        assert_eq!(verify("Hello! How can I help?"), Verification::Unverifiable);
        assert_eq!(verify(""), Verification::Unverifiable);
    }
}
