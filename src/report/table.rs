//! The terminal report: the verdict first (what a person running a game day wants to know),
//! then why failed budgets failed, then a short per-phase summary.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Color, ContentArrangement, Table};

use crate::measure::{
    percent_text, ClassOrder, Distribution, Evaluation, Metrics, Phase, PhaseMetrics,
};
use crate::units::human_duration;

/// Renders the verdict table, the reasons for failures, the per-phase table and, with several
/// streams, a per-stream table. Colour is applied only when stdout is a terminal.
pub fn render(eval: &Evaluation) -> String {
    let mut out = String::new();
    let verdict = &eval.verdict;
    if verdict.rows.is_empty() {
        out.push_str("No budgets set: nothing to judge.\n");
    } else {
        let mut t = new_table();
        t.set_header(["budget", "scope", "limit", "measured", "result"]);
        for r in &verdict.rows {
            let result = if r.passed {
                Cell::new("PASS").fg(Color::Green)
            } else {
                Cell::new("FAIL").fg(Color::Red)
            };
            t.add_row(vec![
                Cell::new(&r.budget),
                Cell::new(&r.scope),
                Cell::new(&r.limit).set_alignment(CellAlignment::Right),
                Cell::new(&r.measured).set_alignment(CellAlignment::Right),
                result,
            ]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
        for r in verdict.rows.iter().filter(|r| !r.passed) {
            out.push_str(&format!("FAIL {} ({}): {}\n", r.budget, r.scope, r.detail));
        }
        let passed = verdict.rows.iter().filter(|r| r.passed).count();
        out.push_str(&format!(
            "{}: {passed} of {} budgets met{}\n",
            if verdict.passed { "PASS" } else { "FAIL" },
            verdict.rows.len(),
            unverified_note(&eval.overall)
        ));
    }
    for w in &verdict.warnings {
        out.push_str(&format!("WARNING: {w}\n"));
    }
    out.push('\n');
    out.push_str(&phase_table(&eval.overall).to_string());
    out.push('\n');
    if let Some(t) = token_table(&eval.overall) {
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out.push_str(&summary_line(&eval.overall));
    out.push('\n');
    if let Some(scheduling) = &eval.load_scheduling {
        out.push_str(&scheduling.text());
        out.push('\n');
    }
    if eval.streams.len() > 1 {
        out.push('\n');
        out.push_str(&stream_table(eval).to_string());
        out.push('\n');
    }
    out
}

/// "; 12 of 560 ok responses unverified", or nothing when every one was verified. Shared by
/// every format, so each verdict line says it the same way.
pub(super) fn unverified_note(m: &Metrics) -> String {
    let w = &m.whole_run;
    if w.unverified == 0 {
        String::new()
    } else {
        format!(
            "; {} of {} ok responses unverified (nothing showed they were whole)",
            w.unverified, w.ok
        )
    }
}

/// The LLM latency columns of one phase: TTFT p50/p90/p99, ITL p50/p99, TPOT p50/p99 and the
/// unverified count; `None` when the phase had no streamed tokens.
pub(super) const TOKEN_HEADER: [&str; 9] = [
    "phase",
    "ttft p50",
    "ttft p90",
    "ttft p99",
    "itl p50",
    "itl p99",
    "tpot p50",
    "tpot p99",
    "unverified",
];

pub(super) fn token_cells(p: &PhaseMetrics) -> Option<[String; 8]> {
    p.ttft.as_ref()?;
    let q = |d: &Option<Distribution>, f: fn(&Distribution) -> std::time::Duration| {
        d.as_ref().map_or("-".into(), |d| human_duration(f(d)))
    };
    Some([
        q(&p.ttft, |d| d.p50),
        q(&p.ttft, |d| d.p90),
        q(&p.ttft, |d| d.p99),
        q(&p.itl, |d| d.p50),
        q(&p.itl, |d| d.p99),
        q(&p.tpot, |d| d.p50),
        q(&p.tpot, |d| d.p99),
        p.unverified.to_string(),
    ])
}

fn token_table(m: &Metrics) -> Option<Table> {
    let rows: Vec<(&str, [String; 8])> = phase_rows(m)
        .into_iter()
        .filter_map(|(name, p)| token_cells(p).map(|c| (name, c)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let mut t = new_table();
    t.set_header(TOKEN_HEADER);
    for (name, cells) in rows {
        let mut row = vec![Cell::new(name)];
        row.extend(cells.into_iter().map(right));
        t.add_row(row);
    }
    Some(t)
}

fn new_table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t
}

fn phase_table(m: &Metrics) -> Table {
    let mut t = new_table();
    t.set_header([
        "phase", "requests", "ok", "errors", "p50", "p90", "p99", "max", "ttfb p50",
    ]);
    for (name, p) in phase_rows(m) {
        let lat = |f: fn(&Distribution) -> std::time::Duration| {
            p.latency
                .as_ref()
                .map_or("-".into(), |d| human_duration(f(d)))
        };
        let ttfb = p
            .ttfb
            .as_ref()
            .map_or("-".into(), |d| human_duration(d.p50));
        let mut row = vec![
            Cell::new(name),
            right(p.requests.to_string()),
            right(p.ok.to_string()),
            Cell::new(errors_cell(p)),
        ];
        row.extend([
            right(lat(|d| d.p50)),
            right(lat(|d| d.p90)),
            right(lat(|d| d.p99)),
            right(lat(|d| d.max)),
            right(ttfb),
        ]);
        t.add_row(row);
    }
    t
}

/// The phases a report lists, named; shared by every format so they all agree.
pub(super) fn phase_rows(m: &Metrics) -> Vec<(&'static str, &PhaseMetrics)> {
    // The warm-up first, apart: sent, but in no phase and judged by no budget.
    let mut rows: Vec<(&'static str, &PhaseMetrics)> =
        m.warmup.iter().map(|w| ("warm-up", w)).collect();
    if m.fault_injected {
        rows.extend(Phase::ALL.iter().map(|p| (p.as_str(), m.phases.get(*p))));
    } else {
        // Without a fault every request is baseline; one row says so more plainly.
        let name = if m.warmup.is_some() {
            "after warm-up"
        } else {
            "whole run"
        };
        rows.push((name, &m.whole_run));
    }
    rows
}

/// "3 (2 truncated, 1 http_error)", or "0".
pub(super) fn errors_cell(p: &PhaseMetrics) -> String {
    if p.errors == 0 {
        return "0".into();
    }
    format!("{} ({})", p.errors, p.error_classes(ClassOrder::Fixed))
}

/// One line of the numbers the budgets are built on.
pub(super) fn summary_line(m: &Metrics) -> String {
    let s = &m.steady_state;
    let mut parts = vec![format!(
        "steady state {} of {} baseline requests{} (threshold {}, {} windows)",
        percent_text(s.success_rate),
        s.baseline_requests,
        if s.steady { "" } else { ", NOT STEADY" },
        percent_text(s.threshold),
        human_duration(s.window)
    )];
    if let Some(f) = m.failover {
        parts.push(format!("failover {}", f.text()));
    }
    if let Some(r) = m.recovery {
        parts.push(format!("recovery {}", r.text()));
    }
    if let Some(w) = &m.warmup {
        parts.push(format!(
            "warm-up {} requests, {} ok, judged by no budget",
            w.requests, w.ok
        ));
    }
    parts.push(format!("truncated {}", m.truncated));
    parts.push(format!("dropped {}", m.dropped));
    parts.push(format!("late {}", m.late));
    if let Some(lag) = &m.send_lag {
        parts.push(format!("send lag p99 {}", human_duration(lag.p99)));
    }
    parts.join(" · ")
}

fn stream_table(eval: &Evaluation) -> Table {
    let mut t = new_table();
    t.set_header([
        "stream",
        "requests",
        "fault errors",
        "failover",
        "recovery",
        "fault p99",
    ]);
    for (name, m) in &eval.streams {
        let (judged, _) = m.judged();
        t.add_row(vec![
            Cell::new(name),
            right(m.whole_run.requests.to_string()),
            right(format!(
                "{} ({})",
                m.phases.fault.errors,
                percent_text(m.phases.fault.error_rate)
            )),
            right(m.failover.map_or("-".into(), |s| s.text())),
            right(m.recovery.map_or("-".into(), |s| s.text())),
            right(
                judged
                    .latency
                    .as_ref()
                    .map_or("-".into(), |d| human_duration(d.p99)),
            ),
        ]);
    }
    t
}

fn right(text: String) -> Cell {
    Cell::new(text).set_alignment(CellAlignment::Right)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::experiment::{Budgets, MeasureSpec};
    use crate::measure::testutil::{rec, records_at, RecordExt};
    use crate::measure::{evaluate, FaultWindow, RunFacts};
    use crate::units::Dur;

    fn eval() -> Evaluation {
        let mut records = records_at(0..100, |i| {
            let r = rec("a", i * 100);
            match i {
                40..45 => r.truncated(),
                45..50 => r.http_error(503),
                _ => r,
            }
        });
        records.extend(records_at(0..100, |i| rec("b", i * 100).latency_ms(250)));
        let facts = RunFacts {
            rate_changes: Vec::new(),
            duration: Duration::from_secs(10),
            windows: vec![FaultWindow {
                id: "p/http_error".into(),
                target: "p".into(),
                kind: "http_error".into(),
                start: Duration::from_secs(4),
                end: Duration::from_secs(7),
                lift_error: None,
                evidence: None,
            }],
            streams: vec!["a".into(), "b".into()],
            cpu_saturated: None,
            load_scheduling: None,
            service_exits: Vec::new(),
        };
        let budgets = Budgets {
            failover_within: Some(Dur::from_secs(2)),
            max_truncated: Some(0),
            max_p99_latency: Some(Dur::from_secs(1)),
            ..Budgets::default()
        };
        evaluate(&records, &facts, &budgets, &MeasureSpec::default())
    }

    #[test]
    fn shows_the_verdict_and_the_phases() {
        let text = render(&eval());
        for expected in [
            "budget",
            "failover_within",
            "max_truncated",
            "max_p99_latency",
            "PASS",
            "FAIL",
            // measured values
            "1s",
            "250ms",
            // why the truncated budget failed
            "FAIL max_truncated (all): 5 truncated responses",
            "FAIL: 2 of 3 budgets met",
            "baseline",
            "fault",
            "recovery",
            "10 (5 http_error: 5 × 503; 5 truncated)",
            "failover 1s",
            "stream",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        // Not a terminal in tests: no colour codes.
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(
            !text.contains("load scheduling"),
            "not known, not said: {text}"
        );
    }

    #[test]
    fn the_load_scheduling_is_said_under_the_numbers() {
        let mut e = eval();
        e.load_scheduling = Some(crate::load::Scheduling {
            pacer: crate::load::Granted::ShortSlice,
            pacer_gave_up_realtime: false,
            workers: crate::load::Granted::Normal,
        });
        let text = render(&e);
        let summary = text.find("steady state").expect("the summary line");
        let line = "load scheduling: pacer a 0.1 ms slice, load threads normal scheduling\n";
        let at = text
            .find(line)
            .unwrap_or_else(|| panic!("missing in\n{text}"));
        assert!(at > summary, "under the summary line:\n{text}");
    }

    #[test]
    fn the_warmup_is_a_row_of_its_own() {
        let records = records_at(0..100, |i| {
            let r = rec("a", i * 100);
            if i < 10 {
                r.http_error(503)
            } else {
                r
            }
        });
        let spec = MeasureSpec {
            warmup: Some(Dur::from_secs(1)),
            ..MeasureSpec::default()
        };
        let e = evaluate(&records, &RunFacts::default(), &Budgets::default(), &spec);
        let text = render(&e);
        assert!(text.contains("warm-up"), "{text}");
        assert!(text.contains("after warm-up"), "{text}");
        assert!(
            text.contains("warm-up 10 requests, 0 ok, judged by no budget"),
            "{text}"
        );
        // The failures of the first second are the warm-up's, not the run's.
        assert_eq!(e.overall.whole_run.errors, 0);
        assert!(e.overall.steady_state.steady);
    }

    #[test]
    fn no_budgets_says_so() {
        let e = evaluate(
            &[],
            &RunFacts::default(),
            &Budgets::default(),
            &MeasureSpec::default(),
        );
        let text = render(&e);
        assert!(text.contains("No budgets set"), "{text}");
        assert!(text.contains("whole run"), "{text}");
    }
}
