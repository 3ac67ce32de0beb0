//! This process's share of a drill split over segments (docs/segments.md): its time zero, and
//! for every segment but the leader the wait for the leader's targets and the clock it
//! follows in place of the timeline.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use super::timeline::Ending;
use crate::experiment::{Action, Experiment, LiftTarget, LoadStream};
use crate::metrics::Live;
use crate::net::HostPort;
use crate::segment::{Segment, StartAt};
use crate::units::human_duration;

/// Which share of the drill this process runs, and when its time zero is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Share {
    pub segment: Segment,
    /// `None`: time zero is when the load starts, as in a run of one process.
    pub start_at: Option<StartAt>,
}

/// Time zero on both clocks: the wall clock the segments agree on, the monotonic one this
/// process measures with.
#[derive(Clone, Copy, Debug)]
pub struct TimeZero {
    pub wall: SystemTime,
    pub origin: Instant,
}

impl TimeZero {
    pub fn now() -> TimeZero {
        TimeZero {
            wall: SystemTime::now(),
            origin: Instant::now(),
        }
    }

    /// `at` mapped onto the monotonic clock; `Err` with how late this process is when it has
    /// passed.
    pub fn at(at: StartAt) -> Result<TimeZero, Duration> {
        let (wall, mono) = (SystemTime::now(), Instant::now());
        let ahead = at.ahead_of(wall)?;
        Ok(TimeZero {
            wall: at.time(),
            origin: mono + ahead,
        })
    }
}

/// Why a segment that starts after `--start-at` refuses, and what to do.
pub fn too_late(at: StartAt, late: Duration, segment: Segment) -> String {
    format!(
        "--start-at {at} has passed: segment {segment} started {} after it, and joining late \
         would shift its share against the others; start every segment before --start-at (give \
         it more lead time)",
        human_duration(late)
    )
}

/// Waits until every stream's target accepts a TCP connection, or `deadline`; returns the
/// targets that still did not. A segment other than the leader waits so, before time zero, so
/// that a leader still starting its services shows as a wait here and not as connect errors.
pub async fn wait_for_targets(streams: &[LoadStream], deadline: Instant) -> Vec<String> {
    let mut waiting: Vec<&HostPort> = streams.iter().map(|s| &s.target.addr).collect();
    waiting.sort_by_key(|a| a.to_string());
    waiting.dedup();
    loop {
        let mut still = Vec::new();
        for addr in waiting {
            let left = deadline.saturating_duration_since(Instant::now());
            if !addr.accepts(left.min(Duration::from_millis(500))).await {
                still.push(addr);
            }
        }
        waiting = still;
        if waiting.is_empty() || Instant::now() >= deadline {
            return waiting.iter().map(ToString::to_string).collect();
        }
        // A listener not up yet answers at once with a refusal: poll, not spin.
        let next = (Instant::now() + Duration::from_millis(50)).min(deadline);
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
}

/// What a segment other than the leader does in place of the timeline: wait to the end of the
/// run, or until `stop` (a signal, `abort_if` on its own share).
pub async fn follow_clock(end: Instant, stop: impl Future<Output = String>) -> Ending {
    tokio::select! {
        () = tokio::time::sleep_until(tokio::time::Instant::from_std(end)) => Ending::Completed,
        reason = stop => Ending::Stopped(reason),
    }
}

/// A follower's timeline: nothing is applied (the leader does that), but the live metrics are
/// told of every fault window at its planned time, so each worker labels its requests' phases
/// and shows `faultline_fault_active` as the leader does, and a sum over workers adds up. A
/// restart has no planned end (the leader closes it once the service is ready), so here its
/// window closes as it opens.
pub async fn follow_plan(
    exp: &Experiment,
    origin: Instant,
    live: Option<&Live>,
    stop: impl Future<Output = String>,
) -> Ending {
    tokio::pin!(stop);
    if let Some(live) = live {
        let mut open: Vec<&str> = Vec::new();
        for step in &exp.timeline {
            let due = tokio::time::Instant::from_std(origin + step.at);
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                reason = stop.as_mut() => return Ending::Stopped(reason),
            }
            match &step.action {
                Action::Inject(inj) => {
                    live.fault_opened(&inj.id, inj.fault.kind(), inj.target.name(), step.at);
                    if inj.action.is_momentary() {
                        live.fault_closed(&inj.id, step.at);
                    } else {
                        open.push(&inj.id);
                    }
                }
                Action::Lift(LiftTarget::Fault(id)) => {
                    live.fault_closed(id, step.at);
                    open.retain(|o| o != id);
                }
                Action::Lift(LiftTarget::All) => {
                    for id in open.drain(..) {
                        live.fault_closed(id, step.at);
                    }
                }
                _ => {}
            }
        }
    }
    follow_clock(origin + exp.end, stop).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_follower_tells_the_live_metrics_of_the_planned_fault_windows() {
        use crate::load::live::Observer;
        use crate::measure::testutil::rec;
        let text = r#"
version: 1
name: follower
proxies:
  p: { listen: "127.0.0.1:9011", upstream: "127.0.0.1:9001" }
load:
  chat: { url: "http://127.0.0.1:9011/v1/chat/completions", rate: 10/s, request: { api: openai-chat } }
timeline:
  - { at: 20ms, inject: { id: burst, proxy: p, fault: { http_error: { status: 503 } } } }
  - { at: 60ms, lift: burst }
  - { at: 100ms, end: true }
"#;
        let exp =
            crate::experiment::parse(std::path::Path::new("t.yaml"), text.to_string()).unwrap();
        let live = Live::new(&exp, 1);
        let origin = Instant::now();
        live.started(origin);
        let ending = follow_plan(&exp, origin, Some(&live), std::future::pending()).await;
        assert!(matches!(ending, Ending::Completed));
        for at in [10, 30, 80] {
            live.sent("chat");
            live.finished(&rec("chat", at));
        }
        let metrics = live.encode(false);
        for phase in ["baseline", "fault", "recovery"] {
            let line = format!(
                "faultline_requests_total{{stream=\"chat\",outcome=\"ok\",phase=\"{phase}\"}} 1"
            );
            assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
        }
        assert!(metrics
            .contains("faultline_fault_active{id=\"burst\",kind=\"http_error\",target=\"p\"} 0"));
        assert!(
            origin.elapsed() >= Duration::from_millis(100),
            "follows to the end"
        );
    }

    #[test]
    fn time_zero_is_the_start_at_instant_on_both_clocks() {
        let at = StartAt::new(SystemTime::now() + Duration::from_secs(5));
        let zero = TimeZero::at(at).unwrap();
        assert_eq!(zero.wall, at.time());
        let ahead = zero.origin - Instant::now();
        assert!(
            ahead > Duration::from_millis(4_900) && ahead <= Duration::from_secs(5),
            "{ahead:?}"
        );
    }

    #[test]
    fn a_passed_start_at_says_how_late() {
        let at = StartAt::new(SystemTime::now() - Duration::from_secs(3));
        let late = TimeZero::at(at).unwrap_err();
        assert!(late >= Duration::from_secs(3), "{late:?}");
        let msg = too_late(
            at,
            Duration::from_millis(3_200),
            Segment::new(2, 4).unwrap(),
        );
        assert!(msg.contains("segment 2/4 started 3.2s after it"), "{msg}");
    }

    #[tokio::test]
    async fn targets_that_never_listen_are_returned_at_the_deadline() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let yaml = format!(
            "version: 1\nname: t\nload:\n  a: {{ url: \"http://127.0.0.1:{port}/\", rate: 1/s, request: {{ api: openai-chat }} }}\n  b: {{ url: \"http://{}/\", rate: 1/s, request: {{ api: openai-chat }} }}\ntimeline:\n  - {{ at: 1s, end: true }}\n",
            open.local_addr().unwrap()
        );
        let exp = crate::experiment::parse(std::path::Path::new("t.yaml"), yaml).unwrap();
        let started = Instant::now();
        let missing = wait_for_targets(&exp.streams, started + Duration::from_millis(300)).await;
        assert_eq!(missing, vec![format!("127.0.0.1:{port}")]);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
