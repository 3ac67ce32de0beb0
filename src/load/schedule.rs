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

/// Longest single sleep, so a stop request is noticed quickly even at very low rates.
const MAX_NAP: Duration = Duration::from_millis(20);

pub struct Pacer {
    pub plan: Arc<StreamPlan>,
    pub client: HttpClient,
    pub rates: super::rates::RateProfile,
    pub max_in_flight: usize,
    pub origin: Instant,
    /// Intended send times at or after this are not scheduled.
    pub until: Duration,
    pub stop: Arc<AtomicBool>,
    /// Requests sent and not yet recorded.
    pub outstanding: Arc<AtomicUsize>,
    pub(crate) records: Sink,
    pub runtime: tokio::runtime::Handle,
}

impl Pacer {
    /// Runs the schedule to its end (or until `stop`); meant for a dedicated thread.
    pub fn run(self) {
        let in_flight = Arc::new(Semaphore::new(self.max_in_flight));
        let mut cursor = 0;
        for seq in 0u64.. {
            let at = self.rates.intended(seq, &mut cursor);
            // `until` bounds the loop: every rate is positive, so times grow without limit.
            let Ok(intended) = Duration::try_from_secs_f64(at) else {
                break;
            };
            if intended >= self.until || !self.wait_until(self.origin + intended) {
                break;
            }
            match in_flight.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (client, plan, tx, origin) = (
                        self.client.clone(),
                        self.plan.clone(),
                        self.records.clone(),
                        self.origin,
                    );
                    let outstanding = self.outstanding.clone();
                    outstanding.fetch_add(1, Ordering::Relaxed);
                    self.records.sent(&self.plan.name);
                    self.runtime.spawn(async move {
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

    /// Sleeps until `target`; false if told to stop first.
    fn wait_until(&self, target: Instant) -> bool {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            let now = Instant::now();
            if now >= target {
                return true;
            }
            std::thread::sleep((target - now).min(MAX_NAP));
        }
    }
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
