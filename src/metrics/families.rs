//! The series the exporter serves: their names, help, labels and buckets, registered once.
//! Every label value is a name from the experiment file (a stream, a fault id, a target), a
//! fixed word (outcome, phase, fault kind) or the seed: never a header value or other secret.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::experiment::Experiment;
use crate::load::Outcome;

/// The `phase` label's values: the reports' three phases, then the warm-up (`measure.warmup`),
/// which belongs to none of them.
pub const PHASE_LABELS: [&str; 4] = ["baseline", "fault", "recovery", "warmup"];
/// Index of `warmup` in [`PHASE_LABELS`].
pub const WARMUP: usize = 3;

/// Latency and TTFT, in seconds: a fast host's few milliseconds to a stalled stream's tens of
/// seconds (a load stream's `timeout` is 30 s by default).
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];
/// Inter-token gaps, in seconds: tenths of a millisecond (a fast host) to seconds (a stall).
const ITL_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Send lag, in seconds. 0.01 is a bucket edge because it is the `late` threshold
/// ([`super::LATE_AFTER`]), so `le="0.01"` splits on time from late.
const SEND_LAG_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub stream: String,
    pub outcome: &'static str,
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    pub id: String,
    pub kind: String,
    pub target: String,
}

impl FaultLabels {
    pub fn new(id: &str, kind: &str, target: &str) -> FaultLabels {
        FaultLabels {
            id: id.to_string(),
            kind: kind.to_string(),
            target: target.to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    experiment: String,
    seed: String,
}

type Histograms = Family<StreamLabels, Histogram, fn() -> Histogram>;

/// The registered families; the handles of each stream's series are taken from them once.
pub struct Families {
    requests: Family<RequestLabels, Counter>,
    latency: Histograms,
    ttft: Histograms,
    itl: Histograms,
    send_lag: Histograms,
    in_flight: Family<StreamLabels, Gauge>,
    late: Family<StreamLabels, Counter>,
    dropped: Family<StreamLabels, Counter>,
    pub faults: Family<FaultLabels, Gauge>,
    pub elapsed: Gauge<f64, AtomicU64>,
    pub finished: Gauge,
}

/// One stream's series, held directly so that counting a request allocates nothing and takes
/// no family lock.
pub struct StreamMetrics {
    /// By outcome (in `Outcome::ALL` order), then by phase (in [`PHASE_LABELS`] order).
    pub requests: Vec<[Counter; 4]>,
    pub latency: Histogram,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub send_lag: Histogram,
    pub in_flight: Gauge,
    pub late: Counter,
    pub dropped: Counter,
}

// A family's constructor is a plain `fn`: one per bucket set.
fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn itl_histogram() -> Histogram {
    Histogram::new(ITL_BUCKETS)
}

fn send_lag_histogram() -> Histogram {
    Histogram::new(SEND_LAG_BUCKETS)
}

impl Families {
    pub fn register(registry: &mut Registry, exp: &Experiment, seed: u64) -> Families {
        let f = Families {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            ttft: Family::new_with_constructor(latency_histogram),
            itl: Family::new_with_constructor(itl_histogram),
            send_lag: Family::new_with_constructor(send_lag_histogram),
            in_flight: Family::default(),
            late: Family::default(),
            dropped: Family::default(),
            faults: Family::default(),
            elapsed: Gauge::default(),
            finished: Gauge::default(),
        };
        let secs = Unit::Seconds;
        let r = registry;
        r.register(
            "requests",
            "Requests finished, by stream, outcome and the phase of their intended send time",
            f.requests.clone(),
        );
        r.register_with_unit(
            "request_latency",
            "From the intended send time to the end of the response or the failure, every sent request",
            secs.clone(),
            f.latency.clone(),
        );
        r.register_with_unit(
            "ttft",
            "Time to first token (first content event) from the intended send time, whole answers",
            secs.clone(),
            f.ttft.clone(),
        );
        r.register_with_unit(
            "itl",
            "Gaps between consecutive content events (inter-token latency), whole answers",
            secs.clone(),
            f.itl.clone(),
        );
        r.register_with_unit(
            "send_lag",
            "How late requests left against the open-loop schedule (sent minus intended)",
            secs.clone(),
            f.send_lag.clone(),
        );
        r.register(
            "in_flight_requests",
            "Requests sent and not yet finished",
            f.in_flight.clone(),
        );
        r.register(
            "late_requests",
            format!(
                "Requests sent more than {}ms after their intended time",
                super::LATE_AFTER.as_millis()
            ),
            f.late.clone(),
        );
        r.register(
            "dropped_requests",
            "Requests never sent because max_in_flight was full at their intended time",
            f.dropped.clone(),
        );
        r.register(
            "fault_active",
            "1 while the fault's window is open (injected and not yet lifted), else 0",
            f.faults.clone(),
        );
        r.register(
            "run",
            "The experiment being run and its seed",
            Info::new(RunLabels {
                experiment: exp.name.clone(),
                seed: seed.to_string(),
            }),
        );
        r.register_with_unit(
            "run_elapsed",
            "Time since the load started; stops when the run is over",
            secs.clone(),
            f.elapsed.clone(),
        );
        let planned: Gauge<f64, AtomicU64> = Gauge::default();
        planned.set(exp.end.as_secs_f64());
        r.register_with_unit(
            "run_duration",
            "How long the run is planned to last (its `end`)",
            secs,
            planned,
        );
        r.register(
            "run_finished",
            "1 once the run is over and every record is counted, else 0",
            f.finished.clone(),
        );
        f
    }

    /// `stream`'s series, every outcome-phase pair created at zero.
    pub fn stream(&self, stream: &str) -> StreamMetrics {
        let by_stream = StreamLabels {
            stream: stream.to_string(),
        };
        let requests = Outcome::ALL
            .iter()
            .map(|o| {
                PHASE_LABELS.map(|phase| {
                    self.requests.get_or_create_owned(&RequestLabels {
                        stream: stream.to_string(),
                        outcome: o.as_str(),
                        phase,
                    })
                })
            })
            .collect();
        StreamMetrics {
            requests,
            latency: self.latency.get_or_create_owned(&by_stream),
            ttft: self.ttft.get_or_create_owned(&by_stream),
            itl: self.itl.get_or_create_owned(&by_stream),
            send_lag: self.send_lag.get_or_create_owned(&by_stream),
            in_flight: self.in_flight.get_or_create_owned(&by_stream),
            late: self.late.get_or_create_owned(&by_stream),
            dropped: self.dropped.get_or_create_owned(&by_stream),
        }
    }
}
