//! The load generator: named open-loop streams, each with its own target, rate and request,
//! recording every request it means to send.

pub mod client;
mod event;
pub mod live;
mod priority;
pub use priority::{Granted, Scheduling};
pub mod rates;
pub mod record;
mod schedule;
mod sse;
pub mod workload;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::experiment::LoadStream;
use crate::net::cores::{Cores, PerCore};
pub use record::{Outcome, RequestRecord};

/// Load running in the background.
pub struct LoadRun {
    /// The load generator's own runtimes, one per CPU: its requests and their timing never
    /// queue behind the in-process services (simulated hosts, proxies, gateway) they measure,
    /// and a request lives on one thread from send to record (no wake-up of another worker
    /// per event, as on a work-stealing runtime). Dropped with the last pacer's handle, they
    /// stop without waiting.
    _cores: Arc<Cores>,
    pacers: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    outstanding: Arc<AtomicUsize>,
    records: mpsc::UnboundedReceiver<RequestRecord>,
    tally: Arc<live::Tally>,
    grants: Arc<priority::Grants>,
}

/// What a finished load delivered.
#[derive(Debug)]
pub struct Finished {
    /// Every record, sorted by intended time.
    pub records: Vec<RequestRecord>,
    /// Requests still in flight after the grace, left out of `records`.
    pub unfinished: usize,
    /// What the kernel granted the load's threads; `None` where no pacer ran.
    pub scheduling: Option<Scheduling>,
}

/// Starts `segment`'s share of every stream's schedule at `origin` (which may be ahead); sends
/// stop at `until` (offset from `origin`). `seed` keys the draws of prompt and completion
/// lengths, taken at each request's position in the whole schedule, so a share draws what the
/// whole run would for the same requests.
/// `observer`, if any, sees every request leave and end.
pub fn start(
    streams: &[LoadStream],
    seed: u64,
    segment: crate::segment::Segment,
    origin: Instant,
    until: Duration,
    observer: Option<Arc<dyn live::Observer>>,
) -> anyhow::Result<LoadRun> {
    let grants = Arc::new(priority::Grants::default());
    let cores = Arc::new(Cores::start_with("faultline-load", Cores::per_cpu(), {
        let grants = Arc::clone(&grants);
        Arc::new(move || grants.worker())
    })?);
    let stop = Arc::new(AtomicBool::new(false));
    let outstanding = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let tally = Arc::new(live::Tally::default());
    let sink = live::Sink {
        tx,
        tally: tally.clone(),
        observer,
    };
    let mut pacers = Vec::new();
    for stream in streams {
        let max_in_flight = stream.spec.max_in_flight as usize;
        let pacer = schedule::Pacer {
            plan: Arc::new(client::StreamPlan::new(stream, seed)?),
            // One pool per core: a kept-alive socket is registered with the core that opened it.
            // Each pool keeps at most its share of the stream's connections idle.
            clients: PerCore::new(cores.len(), |_| {
                let pool_size = max_in_flight.div_ceil(cores.len().get());
                client::http_client(&stream.target, pool_size, &stream.tls)
            })?,
            rates: rates::RateProfile::new(stream.spec.rate.as_per_second(), &stream.rate_changes),
            segment,
            max_in_flight,
            origin,
            until,
            stop: stop.clone(),
            outstanding: outstanding.clone(),
            records: sink.clone(),
            cores: Arc::clone(&cores),
            grants: Arc::clone(&grants),
        };
        let handle = std::thread::Builder::new()
            .name(format!("pacer-{}", stream.name))
            .spawn(move || pacer.run())?;
        pacers.push(handle);
    }
    Ok(LoadRun {
        _cores: cores,
        pacers,
        stop,
        outstanding,
        records: rx,
        tally,
        grants,
    })
}

impl Drop for LoadRun {
    /// A load dropped before `finish` (an early return, an unwind) sends nothing more: the
    /// pacers see `stop` within a nap and end, and with the last of them the cores stop.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl LoadRun {
    /// Live counts of finished requests.
    pub fn tally(&self) -> Arc<live::Tally> {
        self.tally.clone()
    }

    /// No new sends from now on (an abort); requests in flight still finish.
    pub fn stop_sending(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the schedules to end and for requests in flight, at most `grace` after the
    /// schedules end, and returns every record sorted by intended time. Requests still in flight
    /// after `grace` are left out and counted.
    pub async fn finish(mut self, grace: Duration) -> Finished {
        let pacers = std::mem::take(&mut self.pacers);
        let _ =
            tokio::task::spawn_blocking(move || pacers.into_iter().for_each(|p| drop(p.join())))
                .await;
        let mut records = Vec::new();
        let deadline = tokio::time::Instant::now() + grace;
        while let Ok(Some(r)) = tokio::time::timeout_at(deadline, self.records.recv()).await {
            records.push(r);
        }
        while let Ok(r) = self.records.try_recv() {
            records.push(r);
        }
        let unfinished = self.outstanding.load(Ordering::Relaxed);
        records.sort_by(|a, b| {
            a.intended
                .cmp(&b.intended)
                .then_with(|| a.stream.cmp(&b.stream))
        });
        Finished {
            records,
            unfinished,
            // After the pacers are joined, so a pacer that gave real time up at the end is in.
            scheduling: self.grants.scheduling(),
        }
    }
}
