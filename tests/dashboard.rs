//! The shipped Grafana dashboard (docs/grafana/faultline-dashboard.json) asks only for series
//! the exporter serves, and draws the fault windows: a renamed metric cannot leave it showing
//! nothing, silently.

mod common;

use std::collections::BTreeSet;

use common::dashboard::{dashboard, promql, template_queries};
use common::repo_root;

/// The `faultline_*` names an expression mentions.
fn names(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in expr.match_indices("faultline_") {
        let name: String = expr[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        found.insert(name);
    }
    found
}

/// The series names the exporter serves for the quickstart (which has a fault on its
/// timeline), read from its own exposition.
fn served() -> BTreeSet<String> {
    let exp = faultline::experiment::load(&repo_root().join("experiments/quickstart.yaml"))
        .expect("the quickstart loads");
    let live = faultline::metrics::Live::new(&exp, 1);
    live.encode(false)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            l.split(['{', ' '])
                .next()
                .expect("a sample line has a name")
                .to_string()
        })
        .collect()
}

#[test]
fn every_series_the_dashboard_asks_for_is_one_the_exporter_serves() {
    let d = dashboard();
    let served = served();
    let mut used = BTreeSet::new();
    for e in promql(&d).into_iter().chain(template_queries(&d)) {
        used.extend(names(&e));
    }
    let stale: Vec<&String> = used.difference(&served).collect();
    assert!(
        stale.is_empty(),
        "the dashboard asks for series the exporter does not serve: {stale:?}\nserved: {served:?}"
    );
    // It shows what the docs say it shows.
    for name in [
        "faultline_requests_total",
        "faultline_request_latency_seconds_bucket",
        "faultline_ttft_seconds_bucket",
        "faultline_itl_seconds_bucket",
        "faultline_in_flight_requests",
        "faultline_send_lag_seconds_bucket",
        "faultline_late_requests_total",
        "faultline_dropped_requests_total",
        "faultline_fault_active",
    ] {
        assert!(used.contains(name), "the dashboard does not use {name}");
    }
}

#[test]
fn the_dashboard_draws_fault_windows_named_by_id_kind_and_target() {
    let d = dashboard();
    let annotations = d["annotations"]["list"].as_array().unwrap();
    let faults = annotations
        .iter()
        .find(|a| {
            a["expr"]
                .as_str()
                .is_some_and(|e| e.contains("faultline_fault_active"))
        })
        .expect("an annotation query on faultline_fault_active");
    assert_eq!(faults["enable"], true);
    let text = format!("{} {}", faults["titleFormat"], faults["textFormat"]);
    for label in ["{{id}}", "{{kind}}", "{{target}}"] {
        assert!(
            text.contains(label),
            "the annotation text lacks {label}: {text}"
        );
    }
    // Importable anywhere: every query goes through the dashboard's datasource variable.
    for p in d["panels"].as_array().unwrap() {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
    }
}
