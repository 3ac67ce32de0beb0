//! The shipped Grafana dashboard, read as JSON, for the tests that check its queries.

use super::repo_root;

/// The dashboard JSON.
pub fn dashboard() -> serde_json::Value {
    let path = repo_root().join("docs/grafana/faultline-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard exists");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every PromQL expression in the dashboard: panel targets and annotations.
pub fn promql(d: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("each panel has targets") {
            out.push(
                t["expr"]
                    .as_str()
                    .expect("a target has an expr")
                    .to_string(),
            );
        }
    }
    for a in d["annotations"]["list"].as_array().expect("annotations") {
        if let Some(e) = a["expr"].as_str() {
            out.push(e.to_string());
        }
    }
    out
}

/// The template variables' queries (Grafana's `label_values(...)`, not PromQL).
pub fn template_queries(d: &serde_json::Value) -> Vec<String> {
    d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["query"]["query"].as_str().map(str::to_string))
        .collect()
}
