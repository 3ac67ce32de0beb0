//! `evaluate` end to end on hand-made runs.

use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::testutil::{rec, records_at, RecordExt};
use super::*;
use crate::load::record::Outcome;
use crate::units::{human_duration, Dur, Percent};

fn window(start_ms: u64, end_ms: u64) -> FaultWindow {
    FaultWindow {
        id: "primary-proxy/http_error".into(),
        target: "primary-proxy".into(),
        kind: "http_error".into(),
        start: Duration::from_millis(start_ms),
        end: Duration::from_millis(end_ms),
        lift_error: None,
        evidence: None,
    }
}

/// A 30 s run with one fault from 10 s to 20 s.
fn facts() -> RunFacts {
    RunFacts {
        rate_changes: Vec::new(),
        duration: Duration::from_secs(30),
        windows: vec![window(10_000, 20_000)],
        streams: vec!["a".into(), "b".into()],
        cpu_saturated: None,
        load_scheduling: None,
        service_exits: Vec::new(),
    }
}

/// Stream `stream` at 10 requests a second over 30 s; `make` shapes each by intended time.
fn stream(stream: &str, make: impl Fn(RequestRecord, u64) -> RequestRecord) -> Vec<RequestRecord> {
    records_at(0..300, |i| make(rec(stream, i * 100), i * 100))
}

fn dur(s: &str) -> Option<Dur> {
    Some(s.parse().unwrap())
}
fn pct(s: &str) -> Option<Percent> {
    Some(s.parse().unwrap())
}
fn spanned(b: Budgets) -> Spanned<Budgets> {
    Spanned::new(b, Location::UNKNOWN, Location::UNKNOWN)
}

fn row<'a>(e: &'a Evaluation, scope: &str, budget: &str) -> &'a VerdictRow {
    e.verdict
        .rows
        .iter()
        .find(|r| r.scope == scope && r.budget == budget)
        .unwrap_or_else(|| panic!("no row {budget} for {scope}: {:#?}", e.verdict.rows))
}

#[test]
fn records_fall_into_phases_by_intended_time() {
    // Sent late (a stalled client), but intended during the fault: still a fault request.
    let records = vec![
        rec("a", 9_900),
        rec("a", 10_000).lag_ms(5_000),
        rec("a", 19_999),
        rec("a", 20_000),
    ];
    let e = evaluate(
        &records,
        &facts(),
        &Budgets::default(),
        &MeasureSpec::default(),
    );
    let p = &e.overall.phases;
    assert_eq!(
        (p.baseline.requests, p.fault.requests, p.recovery.requests),
        (1, 2, 1)
    );
    assert_eq!(e.overall.whole_run.requests, 4);
    assert_eq!(e.overall.send_lag.unwrap().max, Duration::from_secs(5));
}

#[test]
fn failover_and_recovery_times() {
    // Errors for the first 1.5 s of the fault, and for 2.5 s after the lift (a flapping
    // gateway): failover 2 s, recovery 3 s.
    let records = stream("a", |r, t| match t {
        10_000..11_500 | 20_000..22_500 => r.http_error(503),
        _ => r,
    });
    let budgets = Budgets {
        failover_within: dur("2s"),
        recover_within: dur("2s"),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    assert_eq!(
        e.overall.failover,
        Some(Settling::After(Duration::from_secs(2)))
    );
    assert_eq!(
        e.overall.recovery,
        Some(Settling::After(Duration::from_secs(3)))
    );
    let f = row(&e, "all", "failover_within");
    // Equal to the limit passes.
    assert!(f.passed, "{f:?}");
    assert_eq!(f.measured, "2s");
    assert!(f.detail.contains("from 2s after injection"), "{}", f.detail);
    let r = row(&e, "all", "recover_within");
    assert!(!r.passed);
    assert_eq!(r.measured, "3s");
    assert!(!e.verdict.passed);
}

#[test]
fn failover_that_never_happens_fails() {
    let records = stream("a", |r, t| {
        if (10_000..20_000).contains(&t) {
            r.http_error(529)
        } else {
            r
        }
    });
    let budgets = Budgets {
        failover_within: dur("5s"),
        recover_within: dur("1s"),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    let f = row(&e, "all", "failover_within");
    assert_eq!(f.measured, "never");
    assert!(!f.passed);
    assert!(f.detail.contains("did not stay"), "{}", f.detail);
    // Back to normal at once after the lift.
    assert_eq!(e.overall.recovery, Some(Settling::After(Duration::ZERO)));
    assert!(row(&e, "all", "recover_within").passed);
}

#[test]
fn error_rate_and_counts_by_class() {
    let records = stream("a", |r, t| match t {
        10_000 | 10_100 => r.truncated(),
        10_200 => r.http_error(500),
        10_300 => r.dropped(),
        _ => r,
    });
    let budgets = Budgets {
        max_error_rate: pct("1%"),
        max_errors: Some(4),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    let fault = &e.overall.phases.fault;
    assert_eq!((fault.requests, fault.errors), (100, 4));
    assert_eq!(fault.errors_by_class["truncated"], 2);
    assert_eq!(fault.errors_by_class["http_error"], 1);
    assert_eq!(fault.errors_by_class["dropped"], 1);
    assert_eq!(e.overall.dropped, 1);
    let rate = row(&e, "all", "max_error_rate");
    assert_eq!(rate.measured, "4%");
    assert!(!rate.passed);
    assert_eq!(
        rate.detail,
        "4 of 100 requests failed while a fault was active \
         (2 truncated; 1 http_error: 1 × 500; 1 dropped)"
    );
    // 4 errors against a limit of 4: equal passes.
    assert!(row(&e, "all", "max_errors").passed);
}

#[test]
fn no_fault_requests_is_zero_percent() {
    let records = vec![rec("a", 1_000), rec("a", 25_000)];
    let budgets = Budgets {
        max_error_rate: pct("0%"),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    let r = row(&e, "all", "max_error_rate");
    assert_eq!(r.measured, "0%");
    assert!(r.passed);
    assert!(r.detail.contains("no requests"), "{}", r.detail);
}

#[test]
fn truncated_counts_in_every_phase() {
    let records = stream("a", |r, t| match t {
        1_000 | 15_000 | 25_000 | 25_100 => r.truncated(),
        _ => r,
    });
    let budgets = Budgets {
        max_truncated: Some(0),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    assert_eq!(e.overall.truncated, 4);
    let r = row(&e, "all", "max_truncated");
    assert_eq!(r.measured, "4");
    assert!(!r.passed);
    assert!(
        r.detail.contains("(baseline 1, fault 1, recovery 2)"),
        "{}",
        r.detail
    );
}

#[test]
fn latency_percentiles_judge_the_fault_phase_and_include_failures() {
    // In the fault: latencies 1..=100 ms, one of them a timeout at 100 ms; dropped ones have
    // no latency and stay out.
    let records = stream("a", |r, t| {
        if (10_000..20_000).contains(&t) {
            let i = (t - 10_000) / 100 + 1;
            let r = r.latency_ms(i);
            if i == 100 {
                r.outcome(Outcome::Timeout)
            } else {
                r
            }
        } else {
            r.latency_ms(5_000)
        }
    });
    let mut with_drop = records.clone();
    with_drop.push(rec("a", 10_050).dropped());
    let budgets = Budgets {
        max_p50_latency: dur("51ms"),
        max_p99_latency: dur("98ms"),
        ..Budgets::default()
    };
    let e = evaluate(&with_drop, &facts(), &budgets, &MeasureSpec::default());
    let lat = e.overall.phases.fault.latency.unwrap();
    assert_eq!(lat.count, 100);
    // Within the histogram's 0.1%, never below the true sample.
    let near = |d: Duration, ms: u64| {
        let want = Duration::from_millis(ms);
        d >= want && d - want <= want / 1000
    };
    assert!(near(lat.p50, 50), "{:?}", lat.p50);
    assert!(near(lat.p90, 90), "{:?}", lat.p90);
    assert!(near(lat.p99, 99), "{:?}", lat.p99);
    assert_eq!(lat.max, Duration::from_millis(100));
    let p50 = row(&e, "all", "max_p50_latency");
    assert!(p50.passed, "{p50:?}");
    assert_eq!(p50.measured, human_duration(lat.p50));
    let p99 = row(&e, "all", "max_p99_latency");
    assert!(!p99.passed);
    assert_eq!(p99.measured, human_duration(lat.p99));
    assert!(p99.detail.contains("1 dropped"), "{}", p99.detail);
    // Baseline latencies are 5 s each and do not touch the fault-phase budgets.
    assert_eq!(
        e.overall.phases.baseline.latency.unwrap().p99,
        Duration::from_secs(5)
    );
}

#[test]
fn without_faults_latency_budgets_judge_the_whole_run() {
    let records = records_at(0..10, |i| rec("a", i * 100).latency_ms(200));
    let facts = RunFacts {
        rate_changes: Vec::new(),
        duration: Duration::from_secs(1),
        windows: vec![],
        streams: vec!["a".into()],
        cpu_saturated: None,
        load_scheduling: None,
        service_exits: Vec::new(),
    };
    let budgets = Budgets {
        max_p99_latency: dur("100ms"),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts, &budgets, &MeasureSpec::default());
    assert_eq!(e.overall.phases.baseline.requests, 10);
    let r = row(&e, "all", "max_p99_latency");
    assert_eq!(r.measured, "200ms");
    assert!(!r.passed);
    assert!(r.detail.contains("whole run"), "{}", r.detail);
}

#[test]
fn served_by_shares_in_the_fault_phase() {
    // During the fault: 3 of every 4 successes from the fallback, 1 unnamed; one error.
    let records = stream("a", |r, t| {
        if !(10_000..20_000).contains(&t) {
            return r;
        }
        match (t / 100) % 4 {
            0 => r.served(None),
            _ if t == 10_100 => r.http_error(503),
            _ => r.served(Some("fallback")),
        }
    });
    let mut mins = indexmap::IndexMap::new();
    mins.insert("fallback".to_string(), "75%".parse().unwrap());
    mins.insert("primary".to_string(), "1%".parse().unwrap());
    let budgets = Budgets {
        min_served_by: Some(mins),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    let served = &e.overall.phases.fault.served_by;
    assert_eq!(served["fallback"].ok, 74);
    assert_eq!(served["unknown"].ok, 25);
    assert!(!served.contains_key("primary"));
    assert_eq!(e.overall.phases.baseline.served_by["primary"].share, 1.0);
    let fb = row(&e, "all", "min_served_by.fallback");
    assert_eq!(fb.measured, "74.75%");
    assert!(!fb.passed);
    assert!(
        fb.detail
            .contains("fallback served 74 of 99 successful requests while a fault was active"),
        "{}",
        fb.detail
    );
    let pr = row(&e, "all", "min_served_by.primary");
    assert_eq!(pr.measured, "0%");
    assert!(!pr.passed);
}

#[test]
fn served_by_says_which_successes_began_only_after_the_lift() {
    // A gateway that queues for a second: what it sent in the fault's last second reached the
    // primary after the fault ended (first byte at or past 20 s); one primary answer at 15 s
    // began inside the fault, as did every fallback answer.
    let records = stream("a", |r, t| match t {
        19_000..=19_900 => r.served(Some("primary")).ttfb_ms(20_000 - t + 50),
        18_900 => r.served(Some("primary")).ttfb_ms(20_000 - t - 1),
        15_000 => r,
        10_000..=19_999 => r.served(Some("fallback")),
        _ => r,
    });
    let mut mins = indexmap::IndexMap::new();
    mins.insert("fallback".to_string(), "90%".parse().unwrap());
    let budgets = Budgets {
        min_served_by: Some(mins),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    let served = &e.overall.phases.fault.served_by;
    assert_eq!(served["primary"].ok, 12);
    assert_eq!(served["primary"].answered_after_lift, 10);
    assert_eq!(served["fallback"].answered_after_lift, 0);
    assert_eq!(
        e.overall.phases.recovery.served_by["primary"].answered_after_lift,
        0
    );
    assert_eq!(
        e.overall.whole_run.served_by["primary"].answered_after_lift,
        0
    );
    let fb = row(&e, "all", "min_served_by.fallback");
    assert!(
        !fb.passed,
        "the verdict is by send time, as for every budget"
    );
    assert!(
        fb.detail.contains(
            "(fallback 88, primary 12); first byte only after their fault was lifted: primary 10 of 12"
        ),
        "{}",
        fb.detail
    );

    // A fault whose lift failed stayed in force to the run's end: nothing came after a lift.
    let mut unlifted = facts();
    unlifted.windows[0].lift_error = Some("the proxy did not answer".into());
    let e = evaluate(&records, &unlifted, &budgets, &MeasureSpec::default());
    assert_eq!(
        e.overall.phases.fault.served_by["primary"].answered_after_lift,
        0
    );
    assert!(!row(&e, "all", "min_served_by.fallback")
        .detail
        .contains("lifted"));

    // Without the queue the note is absent.
    let on_time = stream("a", |r, t| match t {
        10_000..=19_999 => r.served(Some("fallback")),
        _ => r,
    });
    let e = evaluate(&on_time, &facts(), &budgets, &MeasureSpec::default());
    let fb = row(&e, "all", "min_served_by.fallback");
    assert!(fb.passed);
    assert!(!fb.detail.contains("lifted"), "{}", fb.detail);
}

#[test]
fn stream_budgets_judge_only_their_stream() {
    // Stream a fails throughout the fault; stream b, on another model, is untouched.
    let mut records = stream("a", |r, t| {
        if (10_000..20_000).contains(&t) {
            r.http_error(529)
        } else {
            r
        }
    });
    records.extend(stream("b", |r, _| r));
    let mut budgets = Budgets {
        max_error_rate: pct("1%"),
        ..Budgets::default()
    };
    for (name, limit) in [("a", "1%"), ("b", "0.1%")] {
        let b = Budgets {
            max_error_rate: pct(limit),
            ..Budgets::default()
        };
        budgets.streams.insert(name.into(), spanned(b));
    }
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    assert_eq!(e.streams.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(row(&e, "all", "max_error_rate").measured, "50%");
    assert!(!row(&e, "stream a", "max_error_rate").passed);
    let b = row(&e, "stream b", "max_error_rate");
    assert!(b.passed, "{b:?}");
    assert_eq!(b.measured, "0%");
    assert!(!e.verdict.passed);
}

#[test]
fn a_stream_named_only_by_a_budget_is_still_measured() {
    let mut budgets = Budgets::default();
    let b = Budgets {
        max_errors: Some(0),
        ..Budgets::default()
    };
    budgets.streams.insert("ghost".into(), spanned(b));
    let e = evaluate(&[], &facts(), &budgets, &MeasureSpec::default());
    assert!(e.streams.contains_key("ghost"));
    // A stream without traffic has no baseline, so its isolation budget proves nothing.
    let r = row(&e, "stream ghost", "max_errors");
    assert!(!r.passed);
    assert!(r.detail.starts_with("baseline too short"), "{}", r.detail);
}

#[test]
fn an_error_rate_equal_to_the_limit_passes() {
    // 1 error in 1000 fault requests = 0.1%, written as a decimal percentage.
    let records = records_at(0..1000, |i| {
        let r = rec("a", 10_000 + i * 10);
        if i == 500 {
            r.http_error(500)
        } else {
            r
        }
    });
    let budgets = Budgets {
        max_error_rate: pct("0.1%"),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    let r = row(&e, "all", "max_error_rate");
    assert_eq!(r.measured, "0.1%");
    assert!(r.passed, "{r:?}");
}

#[test]
fn verdict_rows_come_in_a_fixed_order() {
    let records = stream("a", |r, _| r);
    let mut mins = indexmap::IndexMap::new();
    mins.insert("primary".to_string(), "50%".parse().unwrap());
    mins.insert("fallback".to_string(), "0%".parse().unwrap());
    // Set in an order different from the verdict's.
    let all = Budgets {
        min_served_by: Some(mins),
        recover_within: dur("5s"),
        max_p99_latency: dur("1s"),
        max_p50_latency: dur("1s"),
        max_truncated: Some(0),
        max_errors: Some(0),
        max_error_rate: pct("1%"),
        failover_within: dur("1s"),
        faults_must_act: None,
        streams: Default::default(),
        ..Budgets::default()
    };
    let mut budgets = all.clone();
    budgets.streams.insert(
        "b".into(),
        spanned(Budgets {
            max_truncated: Some(0),
            failover_within: dur("1s"),
            ..Budgets::default()
        }),
    );
    let mut records = records;
    records.extend(stream("b", |r, _| r));
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    let order: Vec<(&str, &str)> = e
        .verdict
        .rows
        .iter()
        .map(|r| (r.scope.as_str(), r.budget.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("all", "failover_within"),
            ("all", "max_error_rate"),
            ("all", "max_errors"),
            ("all", "max_truncated"),
            ("all", "max_p50_latency"),
            ("all", "max_p99_latency"),
            ("all", "recover_within"),
            ("all", "min_served_by.primary"),
            ("all", "min_served_by.fallback"),
            ("stream b", "failover_within"),
            ("stream b", "max_truncated"),
        ]
    );
    assert!(e.verdict.passed, "{:#?}", e.verdict.rows);
}

#[test]
fn no_budgets_pass_with_no_rows() {
    let e = evaluate(
        &[],
        &RunFacts::default(),
        &Budgets::default(),
        &MeasureSpec::default(),
    );
    assert!(e.verdict.passed);
    assert!(e.verdict.rows.is_empty());
    assert_eq!(e.overall.failover, None);
    assert_eq!(e.overall.phases.fault.latency, None);
}

#[test]
fn a_latency_equal_to_the_limit_passes() {
    let records = stream("a", |r, _| r.latency_ms(2_000));
    let budgets = Budgets {
        max_p50_latency: dur("2s"),
        max_p99_latency: dur("2s"),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    for budget in ["max_p50_latency", "max_p99_latency"] {
        let r = row(&e, "all", budget);
        assert_eq!(r.measured, "2s");
        assert!(r.passed, "{r:?}");
    }
}

#[test]
fn without_faults_error_budgets_judge_the_whole_run() {
    let records = records_at(0..20, |i| {
        let r = rec("a", i * 100);
        if i % 2 == 0 {
            r.http_error(503)
        } else {
            r
        }
    });
    let facts = RunFacts {
        rate_changes: Vec::new(),
        duration: Duration::from_secs(2),
        windows: vec![],
        streams: vec!["a".into()],
        cpu_saturated: None,
        load_scheduling: None,
        service_exits: Vec::new(),
    };
    let budgets = Budgets {
        max_error_rate: Some(Percent::from_fraction(0.01).unwrap()),
        max_errors: Some(0),
        ..Budgets::default()
    };
    let eval = evaluate(&records, &facts, &budgets, &MeasureSpec::default());
    assert!(
        !eval.verdict.passed,
        "a run with 50% errors passed because nothing was injected"
    );
    let row = &eval.verdict.rows[0];
    assert_eq!(row.measured, "50%");
    assert!(
        row.detail
            .contains("10 of 20 requests failed over the whole run"),
        "{}",
        row.detail
    );
}

#[test]
fn a_system_failing_before_any_fault_fails_failover_and_recovery() {
    // Every request fails, before, during and after the fault: with a steady state of 0% every
    // window would "qualify" and both budgets would pass at 0s.
    let records = stream("a", |r, _| r.http_error(500));
    let budgets = Budgets {
        failover_within: dur("1s"),
        recover_within: dur("1s"),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    assert!(!e.overall.steady_state.steady);
    for budget in ["failover_within", "recover_within"] {
        let r = row(&e, "all", budget);
        assert!(!r.passed, "{r:?}");
        assert_eq!(
            r.detail,
            "baseline not steady: 0 of 100 requests ok before the first fault (0%, below \
             measure.min_steady_state 95%); the system was failing before any fault was injected"
        );
    }
    assert!(!e.verdict.passed);
}

#[test]
fn a_baseline_just_below_the_minimum_share_is_not_steady() {
    // 94 of 100 baseline requests ok against the default 95%; faults then fail over at once.
    let records = stream("a", |r, t| if t < 600 { r.http_error(503) } else { r });
    let budgets = Budgets {
        failover_within: dur("1s"),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    assert_eq!(e.overall.steady_state.baseline_ok, 94);
    let r = row(&e, "all", "failover_within");
    assert!(!r.passed);
    assert!(r.detail.contains("94 of 100 requests ok"), "{}", r.detail);

    // The same run judged with a lower minimum passes: the guard is what failed it.
    let lenient = MeasureSpec {
        min_steady_state: Percent::from_fraction(0.9).unwrap(),
        ..MeasureSpec::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &lenient);
    assert!(row(&e, "all", "failover_within").passed);
}

#[test]
fn a_baseline_with_too_few_requests_is_not_steady() {
    // 1 request before the fault: 100% of one request says nothing about the steady state.
    let records: Vec<RequestRecord> = stream("a", |r, _| r)
        .into_iter()
        .filter(|r| r.intended >= Duration::from_millis(9_900))
        .collect();
    let budgets = Budgets {
        failover_within: dur("1s"),
        recover_within: dur("1s"),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    let r = row(&e, "all", "failover_within");
    assert!(!r.passed);
    assert!(
        r.detail
            .starts_with("baseline too short: 1 request before the first fault, at least 20"),
        "{}",
        r.detail
    );
    let spec = MeasureSpec {
        min_baseline_requests: 1,
        ..MeasureSpec::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &spec);
    assert!(row(&e, "all", "failover_within").passed);
    assert!(row(&e, "all", "recover_within").passed);
}

#[test]
fn the_guard_applies_to_each_stream_on_its_own_baseline() {
    // Stream a is healthy; stream b was failing before the fault (a broken route), so neither
    // its failover budget nor its isolation budget may pass, though the whole run's do.
    let mut records = stream("a", |r, _| r);
    records.extend(stream(
        "b",
        |r, t| if t < 10_000 { r.http_error(401) } else { r },
    ));
    let mut budgets = Budgets {
        failover_within: dur("1s"),
        ..Budgets::default()
    };
    for name in ["a", "b"] {
        let b = Budgets {
            failover_within: dur("1s"),
            max_error_rate: pct("1%"),
            ..Budgets::default()
        };
        budgets.streams.insert(name.into(), spanned(b));
    }
    let spec = MeasureSpec {
        min_steady_state: Percent::from_fraction(0.5).unwrap(),
        ..MeasureSpec::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &spec);
    // Overall baseline: 100 of 200 ok = 50%, at the minimum.
    assert!(row(&e, "all", "failover_within").passed);
    assert!(row(&e, "stream a", "failover_within").passed);
    assert!(row(&e, "stream a", "max_error_rate").passed);
    for budget in ["failover_within", "max_error_rate"] {
        let r = row(&e, "stream b", budget);
        assert!(!r.passed, "{r:?}");
        assert!(
            r.detail.starts_with("baseline not steady: 0 of 100"),
            "{}",
            r.detail
        );
    }
    assert!(!e.verdict.passed);
}

#[test]
fn http_errors_are_broken_down_by_status() {
    // 40 http_errors in the fault: 38 answered 500 and 2 answered 503; and 2 truncated.
    let records = stream("a", |r, t| match t {
        10_000..13_800 => r.http_error(500),
        13_800..14_000 => r.http_error(503),
        14_000..14_200 => r.truncated(),
        _ => r,
    });
    let budgets = Budgets {
        max_errors: Some(0),
        ..Budgets::default()
    };
    let e = evaluate(&records, &facts(), &budgets, &MeasureSpec::default());
    let fault = &e.overall.phases.fault;
    assert_eq!(
        fault.http_error_statuses.iter().collect::<Vec<_>>(),
        [(&500, &38), (&503, &2)]
    );
    assert_eq!(
        fault.error_classes(ClassOrder::MostFirst),
        "40 http_error: 38 × 500, 2 × 503; 2 truncated"
    );
    assert!(
        row(&e, "all", "max_errors")
            .detail
            .ends_with("(40 http_error: 38 × 500, 2 × 503; 2 truncated)"),
        "{}",
        row(&e, "all", "max_errors").detail
    );
    // Without http_errors the list keeps its commas.
    assert_eq!(
        e.overall.phases.baseline.error_classes(ClassOrder::Fixed),
        ""
    );
    let json = serde_json::to_value(fault).unwrap();
    assert_eq!(json["http_error_statuses"]["500"], 38);
}

#[test]
fn a_saturated_machine_is_said_in_the_verdict() {
    let records = stream("a", |r, _| r);
    let mut facts = facts();
    facts.cpu_saturated = Some((Duration::from_secs(3), Duration::from_secs(30)));
    let e = evaluate(
        &records,
        &facts,
        &Budgets::default(),
        &MeasureSpec::default(),
    );
    assert!(
        e.verdict.warnings.iter().any(|w| w
            .starts_with("the machine was the limit: its CPUs were saturated")
            && w.contains("for 3s of the 30s watched")),
        "{:?}",
        e.verdict.warnings
    );
    // Under a tenth of the run: no warning.
    facts.cpu_saturated = Some((Duration::from_secs(2), Duration::from_secs(30)));
    let e = evaluate(
        &records,
        &facts,
        &Budgets::default(),
        &MeasureSpec::default(),
    );
    assert!(e.verdict.warnings.is_empty(), "{:?}", e.verdict.warnings);
}

#[test]
fn a_service_that_died_on_its_own_is_said_in_the_verdict() {
    let records = stream("a", |r, _| r);
    let mut facts = facts();
    facts.service_exits = vec![crate::measure::ServiceExit {
        service: "gateway".into(),
        at: Duration::from_millis(12_500),
        how: "was killed by signal 9 (SIGKILL)".into(),
    }];
    let e = evaluate(
        &records,
        &facts,
        &Budgets::default(),
        &MeasureSpec::default(),
    );
    assert_eq!(
        e.verdict.warnings,
        vec![
            "service `gateway` exited on its own at 12.5s (it was killed by signal 9 (SIGKILL)): \
             what was measured after that includes a dead service, whatever the budgets say"
                .to_string()
        ]
    );
}
