//! The open-loop schedule. Request k of a stream is meant to leave when the integral of the
//! stream's rate (its `rate`, then the timeline's steps and ramps) reaches k, `k / rate` at a
//! constant rate, whatever happened to earlier requests, and its latency is measured from that intended
//! time, so a stalled system under test shows up as latency instead of as fewer requests
//! (coordinated omission). Pacing runs on its own OS thread with `nanosleep`, which is precise to
//! tens of microseconds, where tokio's timer wheel rounds to whole milliseconds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::client::{self, HttpClient, StreamPlan};
use super::live::Sink;
use super::record::{Outcome, RequestRecord};
use crate::net::cores::{Cores, PerCore};
use crate::segment::Segment;

/// Longest single sleep, so a stop request is noticed quickly even at very low rates.
const MAX_NAP: Duration = Duration::from_millis(20);

pub struct Pacer {
    pub plan: Arc<StreamPlan>,
    pub clients: PerCore<HttpClient>,
    pub rates: super::rates::RateProfile,
    /// The share of the schedule this process sends.
    pub segment: Segment,
    pub max_in_flight: usize,
    pub origin: Instant,
    /// Intended send times at or after this are not scheduled.
    pub until: Duration,
    pub stop: Arc<AtomicBool>,
    /// Requests sent and not yet recorded.
    pub outstanding: Arc<AtomicUsize>,
    pub(crate) records: Sink,
    /// The load's runtimes; each request runs on the next in turn, with that core's client.
    pub cores: Arc<Cores>,
    /// Where it says what scheduling it got.
    pub(crate) grants: Arc<super::priority::Grants>,
}

impl Pacer {
    /// Runs the schedule to its end (or until `stop`); meant for a dedicated thread.
    pub fn run(self) {
        let mut pacing = super::priority::Pacing::start(&self.grants);
        let in_flight = Arc::new(Semaphore::new(self.max_in_flight));
        for (seq, intended) in share(&self.rates, self.until, self.segment) {
            let Some(late) = self.wait_until(self.origin + intended) else {
                break;
            };
            pacing.behind(late);
            match in_flight.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (core, runtime) = self.cores.pick();
                    let (client, plan, tx, origin) = (
                        self.clients.get(core).clone(),
                        self.plan.clone(),
                        self.records.clone(),
                        self.origin,
                    );
                    let outstanding = self.outstanding.clone();
                    outstanding.fetch_add(1, Ordering::Relaxed);
                    self.records.sent(&self.plan.name);
                    runtime.spawn(async move {
                        let record = client::execute(&client, &plan, origin, seq, intended).await;
                        drop(permit);
                        tx.push(record);
                        outstanding.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(_) => {
                    self.records.push(dropped(&self.plan, seq, intended));
                }
            }
        }
    }

    /// Sleeps until `target` and returns how late it woke; `None` if told to stop first.
    fn wait_until(&self, target: Instant) -> Option<Duration> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            let now = Instant::now();
            if now >= target {
                return Some(now - target);
            }
            std::thread::sleep((target - now).min(MAX_NAP));
        }
    }
}

/// The requests of `segment`'s share of a schedule, in order: each one's position in the
/// whole schedule and its intended time there, before `until`. Each request's time comes from
/// its own position, so a share keeps the whole schedule's times (rate steps and ramps too).
pub(crate) fn share(
    rates: &super::rates::RateProfile,
    until: Duration,
    segment: Segment,
) -> impl Iterator<Item = (u64, Duration)> + '_ {
    let mut cursor = 0;
    (segment.first()..)
        .step_by(segment.count() as usize)
        .map_while(move |seq| {
            let at = rates.intended(seq, &mut cursor);
            // `until` bounds the walk: every rate is positive, so times grow without limit.
            let intended = Duration::try_from_secs_f64(at).ok()?;
            (intended < until).then_some((seq, intended))
        })
}

fn dropped(plan: &StreamPlan, seq: u64, intended: Duration) -> RequestRecord {
    RequestRecord {
        stream: plan.name.clone(),
        seq,
        intended,
        sent: None,
        status: None,
        outcome: Outcome::Dropped,
        ttfb: None,
        latency: Duration::ZERO,
        bytes: 0,
        events: 0,
        served_by: None,
        tokens: Default::default(),
        verified: false,
        faults: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::RateChange;
    use crate::load::rates::RateProfile;
    use crate::units::Rate;

    /// 20/s, a step to 90/s at 2 s, a ramp down to 5/s over 3 s from 4 s, a step to 33/s at
    /// 8 s: every shape of schedule there is.
    fn profile() -> RateProfile {
        let change = |at_ms: u64, to: f64, over_ms: u64| {
            (
                Duration::from_millis(at_ms),
                RateChange {
                    stream: "s".into(),
                    to: Rate::per_second(to).unwrap(),
                    over: Duration::from_millis(over_ms),
                },
            )
        };
        RateProfile::new(
            20.0,
            &[
                change(2_000, 90.0, 0),
                change(4_000, 5.0, 3_000),
                change(8_000, 33.0, 0),
            ],
        )
    }

    #[test]
    fn the_segments_together_send_exactly_the_whole_schedule() {
        let rates = profile();
        let until = Duration::from_secs(10);
        let whole: Vec<(u64, Duration)> = share(&rates, until, Segment::WHOLE).collect();
        assert!(whole.len() > 300, "{} requests", whole.len());
        assert!(whole
            .iter()
            .enumerate()
            .all(|(i, (seq, _))| *seq == i as u64));
        for n in [2u32, 3, 4, 7] {
            let mut union: Vec<(u64, Duration)> = Vec::new();
            for k in 1..=n {
                let segment = Segment::new(k, n).unwrap();
                let part: Vec<(u64, Duration)> = share(&rates, until, segment).collect();
                // Each share is every N-th request, at the whole schedule's very times.
                for (seq, at) in &part {
                    assert!(segment.owns(*seq));
                    assert_eq!(whole[*seq as usize].1, *at, "seq {seq} of {segment}");
                }
                union.extend(part);
            }
            union.sort();
            // Every request in exactly one share: the union is the schedule, no duplicates.
            assert_eq!(union, whole, "{n} segments");
        }
    }

    #[test]
    fn each_share_spans_the_whole_timeline_at_its_fraction_of_the_rate() {
        let rates = profile();
        let until = Duration::from_secs(10);
        let whole = share(&rates, until, Segment::WHOLE).count();
        for k in 1..=4 {
            let part: Vec<(u64, Duration)> =
                share(&rates, until, Segment::new(k, 4).unwrap()).collect();
            assert!(part.len().abs_diff(whole / 4) <= 1, "{k}/4: {}", part.len());
            assert!(part.first().unwrap().1 < Duration::from_millis(200));
            assert!(part.last().unwrap().1 > Duration::from_millis(9_800));
        }
    }
}
