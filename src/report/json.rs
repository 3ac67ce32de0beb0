//! The JSON report: versioned (`docs/report.schema.json` describes the current version), self-contained
//! (the experiment's text rides along so the drill can be re-run from the report alone). Times
//! are milliseconds as numbers, in fields ending `_ms`.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;
use serde::Serialize;

use crate::experiment::Experiment;
use crate::load::rates::RateMark;
use crate::measure::{Evaluation, FaultWindow, RunFacts};
use crate::ExitCode;

/// Bumped on any change a reader could trip over: a field removed, renamed or retyped. Adding a
/// field is not such a change only where the schema allows extra properties, which it does
/// nowhere, so any change bumps it.
pub const SCHEMA_VERSION: u32 = 4;

#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub schema_version: u32,
    pub faultline_version: &'static str,
    pub experiment: ExperimentInfo<'a>,
    /// RFC 3339, UTC, millisecond precision.
    pub started_at: String,
    pub duration_ms: f64,
    pub fault_windows: &'a [FaultWindow],
    /// The load streams' rate steps and ramps from the timeline; they are load, not faults, so
    /// they open no fault window.
    pub rate_changes: &'a [RateMark],
    pub evaluation: &'a Evaluation,
    pub exit_code: u8,
    /// Why the run ended before its end step (an interruption, `abort_if`, a start-up that
    /// failed, a fault that could not be applied); the report then covers what there was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_early: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExperimentInfo<'a> {
    pub name: &'a str,
    /// The experiment file's path, as given on the command line.
    pub file: String,
    /// The seed actually used (after `--seed`).
    pub seed: u64,
    /// The file's text as written.
    pub source: &'a str,
}

impl<'a> ExperimentInfo<'a> {
    /// Takes the seed from `experiment`; pass a `--seed` override by setting `seed` afterwards.
    pub fn from_experiment(experiment: &'a Experiment) -> Self {
        ExperimentInfo {
            name: &experiment.name,
            file: experiment.path.display().to_string(),
            seed: experiment.seed,
            source: &experiment.source,
        }
    }
}

impl<'a> JsonReport<'a> {
    pub fn new(
        experiment: ExperimentInfo<'a>,
        started_at: SystemTime,
        facts: &'a RunFacts,
        evaluation: &'a Evaluation,
        exit_code: ExitCode,
    ) -> Self {
        JsonReport {
            schema_version: SCHEMA_VERSION,
            faultline_version: env!("CARGO_PKG_VERSION"),
            experiment,
            started_at: humantime::format_rfc3339_millis(started_at).to_string(),
            duration_ms: crate::measure::ms::millis(facts.duration),
            fault_windows: &facts.windows,
            rate_changes: &facts.rate_changes,
            evaluation,
            exit_code: exit_code as u8,
            ended_early: None,
        }
    }
}

/// The report as pretty-printed JSON.
pub fn to_string(report: &JsonReport) -> anyhow::Result<String> {
    serde_json::to_string_pretty(report).context("cannot serialize the JSON report")
}

pub fn write(path: &Path, report: &JsonReport) -> anyhow::Result<()> {
    // Serialize first, so a failure cannot leave half a file behind.
    let mut text = to_string(report)?;
    text.push('\n');
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the JSON report {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use indexmap::IndexMap;
    use serde_saphyr::{Location, Spanned};

    use super::*;
    use crate::experiment::{Budgets, MeasureSpec};
    use crate::load::record::Outcome;
    use crate::measure::testutil::{rec, records_at, RecordExt};
    use crate::measure::{evaluate, FaultWindow};
    use crate::units::{Dur, Percent};

    const SCHEMA: &str = include_str!("../../docs/report.schema.json");

    fn validate(value: &serde_json::Value) {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let validator = jsonschema::draft202012::new(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "schema violations:\n{}",
            errors.join("\n")
        );
    }

    /// A run that exercises every shape: two streams, two fault episodes (one lasting to the
    /// end, so without recovery), failures of several classes, a dropped request, every budget.
    fn report_value(exit_code: ExitCode) -> serde_json::Value {
        let mut records = records_at(0..200, |i| {
            let r = rec("model-a", i * 50);
            match i {
                40..50 => r.http_error(529),
                50..52 => r.truncated(),
                52 => r.dropped(),
                53 => r.outcome(Outcome::Timeout).latency_ms(10_000),
                60..78 => r.served(Some("fallback")),
                // Sent in the fault's last 100 ms, answered by the primary after the lift.
                78..80 => r.ttfb_ms(300),
                80 => r.served(None),
                _ => r,
            }
        });
        records.extend(records_at(0..100, |i| rec("model-b", i * 100)));
        let facts = RunFacts {
            rate_changes: vec![crate::load::rates::RateMark {
                stream: "model-a".into(),
                at: Duration::from_secs(5),
                from_per_second: 20.0,
                to_per_second: 40.0,
                over: Duration::from_secs(2),
            }],
            duration: Duration::from_secs(10),
            windows: vec![
                FaultWindow {
                    id: "primary-proxy/http_error".into(),
                    target: "primary-proxy".into(),
                    kind: "http_error".into(),
                    start: Duration::from_secs(2),
                    end: Duration::from_secs(4),
                    lift_error: None,
                    evidence: None,
                },
                FaultWindow {
                    id: "primary-proxy/truncate_stream".into(),
                    target: "primary-proxy".into(),
                    kind: "truncate_stream".into(),
                    start: Duration::from_secs(8),
                    end: Duration::from_secs(10),
                    lift_error: None,
                    evidence: None,
                },
            ],
            streams: vec!["model-a".into(), "model-b".into()],
            cpu_saturated: None,
            load_scheduling: Some(crate::load::Scheduling {
                pacer: crate::load::Granted::Realtime,
                pacer_gave_up_realtime: true,
                workers: crate::load::Granted::ShortSlice,
            }),
            service_exits: Vec::new(),
        };
        let pct = |s: &str| s.parse::<Percent>().unwrap();
        let mut served = IndexMap::new();
        served.insert("fallback".to_string(), pct("50%"));
        let mut streams = IndexMap::new();
        streams.insert(
            "model-b".to_string(),
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
            max_errors: Some(3),
            max_truncated: Some(0),
            max_p50_latency: Some(Dur::from_millis(200)),
            max_p99_latency: Some(Dur::from_secs(2)),
            recover_within: Some(Dur::from_secs(5)),
            min_served_by: Some(served),
            faults_must_act: None,
            streams,
            ..Budgets::default()
        };
        // A warm-up, so the report carries its metrics as well.
        let measure = MeasureSpec {
            warmup: Some(Dur::from_millis(500)),
            ..MeasureSpec::default()
        };
        let eval = evaluate(&records, &facts, &budgets, &measure);
        let info = ExperimentInfo {
            name: "primary-overload-failover",
            file: "drills/failover.yaml".into(),
            seed: 42,
            source: "version: 1\nname: primary-overload-failover\n",
        };
        let report = JsonReport::new(info, SystemTime::UNIX_EPOCH, &facts, &eval, exit_code);
        serde_json::from_str(&to_string(&report).unwrap()).unwrap()
    }

    #[test]
    fn the_report_validates_against_its_schema() {
        let value = report_value(ExitCode::BudgetMissed);
        validate(&value);
        assert_eq!(value["schema_version"], SCHEMA_VERSION);
        assert_eq!(value["started_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(value["duration_ms"], 10_000.0);
        assert_eq!(value["exit_code"], 1);
        assert_eq!(value["fault_windows"][1]["start_ms"], 8_000.0);
        let eval = &value["evaluation"];
        assert_eq!(eval["verdict"]["passed"], false);
        // The last episode lasts to the run's end: no recovery to judge.
        assert!(eval["overall"]["episodes"][1]["recovery"].is_null());
        assert_eq!(eval["overall"]["failover"]["reached"], true);
        assert!(eval["streams"]["model-b"].is_object());
        let served = &eval["overall"]["phases"]["fault"]["served_by"];
        assert_eq!(served["primary"]["answered_after_lift"], 2, "{served}");
        assert!(served["fallback"].get("answered_after_lift").is_none());
        assert_eq!(value["rate_changes"][0]["over_ms"], 2_000.0);
        let scheduling = &eval["load_scheduling"];
        assert_eq!(scheduling["pacer"], "realtime");
        assert_eq!(scheduling["pacer_gave_up_realtime"], true);
        assert_eq!(scheduling["workers"], "short_slice");
        assert_eq!(value["rate_changes"][0]["to_per_second"], 40.0);
        // Intended before 500 ms: 10 of model-a (every 50 ms) and 5 of model-b (every 100 ms).
        assert_eq!(eval["overall"]["warmup"]["requests"], 15);
        assert_eq!(eval["overall"]["whole_run"]["requests"], 300 - 15);
        assert_eq!(eval["streams"]["model-b"]["warmup"]["requests"], 5);
    }

    #[test]
    fn an_empty_run_validates_too() {
        let eval = evaluate(
            &[],
            &RunFacts::default(),
            &Budgets::default(),
            &MeasureSpec::default(),
        );
        let facts = RunFacts::default();
        let info = ExperimentInfo {
            name: "empty",
            file: "e.yaml".into(),
            seed: 0,
            source: "",
        };
        let report = JsonReport::new(info, SystemTime::now(), &facts, &eval, ExitCode::Success);
        let value = serde_json::to_value(&report).unwrap();
        validate(&value);
        assert!(value["evaluation"]["overall"]["send_lag"].is_null());
    }

    #[test]
    fn the_schema_rejects_a_report_that_drifted() {
        let mut value = report_value(ExitCode::Success);
        value["evaluation"]["overall"]["surprise"] = serde_json::json!(1);
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        assert!(!jsonschema::draft202012::is_valid(&schema, &value));
        let mut value = report_value(ExitCode::Success);
        value["evaluation"]["load_scheduling"]["pacer"] = serde_json::json!("real-time");
        assert!(!jsonschema::draft202012::is_valid(&schema, &value));
    }

    #[test]
    fn write_puts_the_file_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        let eval = evaluate(
            &[],
            &RunFacts::default(),
            &Budgets::default(),
            &MeasureSpec::default(),
        );
        let facts = RunFacts::default();
        let info = ExperimentInfo {
            name: "x",
            file: "x.yaml".into(),
            seed: 7,
            source: "name: x\n",
        };
        let report = JsonReport::new(info, SystemTime::now(), &facts, &eval, ExitCode::Success);
        write(&path, &report).unwrap();
        let back: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back["experiment"]["seed"], 7);
        assert_eq!(back["experiment"]["source"], "name: x\n");
    }
}
