//! One hand-made run shared by the tests of the CI-gate formats: two streams, two fault windows,
//! budgets that pass and fail, and names full of characters that XML, HTML and Markdown treat
//! specially, so every format's escaping is exercised on the same data.

use std::time::Duration;

use indexmap::IndexMap;
use serde_saphyr::{Location, Spanned};

use crate::experiment::{Budgets, MeasureSpec};
use crate::load::record::{Outcome, RequestRecord};
use crate::measure::testutil::{rec, records_at, RecordExt};
use crate::measure::{evaluate, Evaluation, FaultWindow, RunFacts};
use crate::units::{Dur, Percent};

/// A name that breaks any format that forgets to escape.
pub const NASTY_NAME: &str = r#"drill <"a&b"> | *x*"#;
/// The second stream's name; its budget row's scope carries it.
pub const NASTY_STREAM: &str = "model-b<&>";

pub struct Sample {
    pub records: Vec<RequestRecord>,
    pub facts: RunFacts,
    pub eval: Evaluation,
}

/// 30 s at 10 requests a second on `model-a`: errors and truncations early in the first fault,
/// traffic moving to `fallback` (and to a backend with a nasty name) while it lasts, the last
/// few sent in it answered by `primary` only after the lift.
pub fn sample() -> Sample {
    let mut records = records_at(0..300, |i| {
        let r = rec("model-a", i * 100);
        match i {
            100..105 => r.http_error(529).latency_ms(5),
            105..108 => r.truncated(),
            108 => r.dropped(),
            109 => r.outcome(Outcome::Timeout).latency_ms(3_000),
            110..150 => r.served(Some("fallback")).latency_ms(400),
            150..160 => r.served(Some("<b>evil</b>")),
            160..197 => r.served(None),
            // Held past the lift by a queue: `answered_after_lift` in the JSON.
            197..200 => r.ttfb_ms(400),
            _ => r,
        }
    });
    records.extend(records_at(0..30, |i| rec(NASTY_STREAM, i * 1_000)));
    let facts = RunFacts {
        rate_changes: vec![crate::load::rates::RateMark {
            stream: NASTY_STREAM.into(),
            at: Duration::from_secs(12),
            from_per_second: 10.0,
            to_per_second: 25.0,
            over: Duration::from_secs(3),
        }],
        duration: Duration::from_secs(30),
        windows: vec![
            FaultWindow {
                id: r#"proxy<1>/http_error&"x""#.into(),
                target: "proxy<1>".into(),
                kind: "http_error".into(),
                start: Duration::from_secs(10),
                end: Duration::from_secs(20),
                lift_error: None,
                evidence: None,
            },
            FaultWindow {
                id: "primary-proxy/latency".into(),
                target: "primary-proxy".into(),
                kind: "latency".into(),
                start: Duration::from_secs(12),
                end: Duration::from_secs(15),
                lift_error: None,
                evidence: None,
            },
        ],
        streams: vec!["model-a".into(), NASTY_STREAM.into()],
        cpu_saturated: None,
        load_scheduling: Some(crate::load::Scheduling {
            pacer: crate::load::Granted::Realtime,
            pacer_gave_up_realtime: false,
            workers: crate::load::Granted::ShortSlice,
        }),
        service_exits: Vec::new(),
    };
    let pct = |s: &str| s.parse::<Percent>().unwrap();
    let mut served = IndexMap::new();
    served.insert("fallback".to_string(), pct("40%"));
    let mut streams = IndexMap::new();
    streams.insert(
        NASTY_STREAM.to_string(),
        Spanned::new(
            Budgets {
                max_error_rate: Some(pct("0.1%")),
                ..Budgets::default()
            },
            Location::UNKNOWN,
            Location::UNKNOWN,
        ),
    );
    let budgets = Budgets {
        failover_within: Some(Dur::from_secs(2)),
        max_error_rate: Some(pct("1%")),
        max_truncated: Some(0),
        max_p99_latency: Some(Dur::from_secs(5)),
        min_served_by: Some(served),
        streams,
        ..Budgets::default()
    };
    let eval = evaluate(&records, &facts, &budgets, &MeasureSpec::default());
    Sample {
        records,
        facts,
        eval,
    }
}
