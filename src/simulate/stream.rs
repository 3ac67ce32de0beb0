//! Paced server-sent events: the time model of a simulated host (time to first token, then a
//! steady token rate) and the stream that plays an API's event script on that clock.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::Instant;

use crate::experiment::schema::SimulateSpec;

/// Longest single wait the pacing will schedule; absurd configurations are clamped here
/// rather than overflowing an `Instant`.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

/// When each token of a completion is due.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    ttft: Duration,
    per_token: Duration,
}

impl Pace {
    pub(crate) fn new(spec: &SimulateSpec) -> Self {
        let tps = spec.tokens_per_second;
        // Validation rejects a rate at or below zero; should one slip through (a hand-built
        // spec), tokens come as fast as possible instead of panicking in `Duration`.
        let per_token = if tps.is_finite() && tps > 0.0 {
            Duration::try_from_secs_f64(1.0 / tps).unwrap_or(Duration::ZERO)
        } else {
            Duration::ZERO
        };
        Pace {
            ttft: spec.ttft.0,
            per_token,
        }
    }

    /// Offset from the start at which token `index` (0-based) is emitted.
    pub(crate) fn token_offset(&self, index: u32) -> Duration {
        self.ttft
            .saturating_add(self.per_token.saturating_mul(index))
            .min(LONGEST_WAIT)
    }

    /// How long a non-streaming answer of `total` tokens takes.
    pub(crate) fn whole(&self, total: u32) -> Duration {
        self.token_offset(total)
    }
}

/// One API's event script for a streamed completion, each step written with
/// [`crate::protocol::sse`].
pub(crate) trait Script: Send + 'static {
    /// Events that open the stream (role chunk, `message_start`...).
    fn opening(&mut self) -> String;
    /// The event carrying token `index`.
    fn token(&mut self, index: u32) -> String;
    /// Events after the last token, up to and including the terminator.
    fn closing(&mut self) -> String;
}

enum Step {
    Opening,
    Token(u32),
    Closing,
    Done,
}

struct Player<S, H> {
    script: S,
    pace: Pace,
    start: Instant,
    total: u32,
    step: Step,
    /// What the request holds (its capacity slot, its KV cache) while the stream plays;
    /// dropping the stream (the client went away) frees it too.
    held: Option<H>,
}

/// Plays `script` for a `total`-token completion: each event is its own frame, sent when due.
///
/// The opening events go out together with the first token, after the time to first token, as
/// vLLM does; so a client's time to first byte measures the simulated prefill. Response
/// headers are not held back.
pub(crate) fn play<S: Script, H: Send + 'static>(
    script: S,
    pace: Pace,
    total: u32,
    held: H,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let player = Player {
        script,
        pace,
        start: Instant::now(),
        total,
        step: Step::Opening,
        held: Some(held),
    };
    let frames = futures_util::stream::unfold(player, |mut p| async move {
        let chunk = match p.step {
            Step::Opening => {
                wait_until(p.due(0)).await;
                p.step = if p.total == 0 {
                    Step::Closing
                } else {
                    Step::Token(0)
                };
                p.script.opening()
            }
            Step::Token(i) => {
                wait_until(p.due(i)).await;
                p.step = if i + 1 >= p.total {
                    Step::Closing
                } else {
                    Step::Token(i + 1)
                };
                p.script.token(i)
            }
            Step::Closing => {
                p.step = Step::Done;
                // The answer is complete: the slot and the cache are free for the next request
                // even if the client is slow to read the last bytes.
                p.held = None;
                p.script.closing()
            }
            Step::Done => return None,
        };
        Some((Bytes::from(chunk), p))
    });
    // A step with nothing to say (a completions stream has no opening) sends no frame: an
    // empty frame would be an empty chunk on the wire at best.
    futures_util::StreamExt::filter(frames, |b| std::future::ready(!b.is_empty()))
}

impl<S, H> Player<S, H> {
    fn due(&self, index: u32) -> Instant {
        let offset = self.pace.token_offset(index);
        self.start.checked_add(offset).unwrap_or(self.start)
    }
}

/// Waits for `deadline` unless it is under half a millisecond away. tokio's timer rounds every
/// wait up to the next millisecond tick, so a host asked for `ttft: 0ms` would otherwise answer
/// a millisecond late; deadlines are absolute, so skipping a short wait never accumulates drift.
pub(crate) async fn wait_until(deadline: tokio::time::Instant) {
    if deadline.saturating_duration_since(tokio::time::Instant::now())
        > std::time::Duration::from_micros(500)
    {
        tokio::time::sleep_until(deadline).await;
    }
}
