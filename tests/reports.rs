//! The CI-gate outputs of a real run, read back the way CI reads them: JUnit XML parsed, the
//! Markdown summary appended to $GITHUB_STEP_SUMMARY, the HTML page with its chart and shaded
//! fault windows, and no terminal control codes when stdout is not a terminal.

mod common;

use common::{faultline, free_ports, write};

/// A short drill with one passing and one failing budget and two fault windows.
fn drill(dir: &std::path::Path) -> std::path::PathBuf {
    let ports = free_ports(2);
    let yaml = format!(
        r#"version: 1
name: gate <check>
services:
  host: {{ simulate: {{ listen: "127.0.0.1:{h}", served_by: host }} }}
proxies:
  p: {{ listen: "127.0.0.1:{p}", upstream: "127.0.0.1:{h}" }}
load:
  s: {{ url: "http://127.0.0.1:{p}/v1/chat/completions", rate: 20/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 1s, inject: {{ id: errors, proxy: p, duration: 1s, fault: {{ http_error: {{ status: 503, probability: 50% }} }} }} }}
  - {{ at: 2500ms, inject: {{ id: slow, proxy: p, duration: 1s, fault: {{ latency: {{ delay: 50ms }} }} }} }}
  - {{ at: 4s, end: true }}
expect:
  max_truncated: 0
  max_error_rate: 1%
"#,
        h = ports[0],
        p = ports[1]
    );
    write(dir, "gate.yaml", &yaml)
}

#[test]
fn a_run_writes_junit_markdown_and_html_for_ci() {
    let dir = tempfile::tempdir().unwrap();
    let file = drill(dir.path());
    let out = dir.path().join("out");
    let junit = dir.path().join("copy.xml");
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let assert = faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .arg("--junit")
        .arg(&junit)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .assert()
        .code(1);
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        !stdout.contains('\r') && !stderr.contains('\r') && !stderr.contains("\x1b["),
        "terminal codes in non-terminal output"
    );

    // JUnit: one test case per budget, the failure says measured vs budget.
    for path in [out.join("junit.xml"), junit] {
        let xml = std::fs::read_to_string(&path).unwrap();
        let report = quick_junit::Report::deserialize_from_str(&xml).expect("valid JUnit XML");
        let suite = &report.test_suites[0];
        assert_eq!(suite.test_cases.len(), 2);
        assert_eq!((suite.tests, suite.failures), (2, 1));
        let failed = suite
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == "max_error_rate (all)")
            .unwrap();
        match &failed.status {
            quick_junit::TestCaseStatus::NonSuccess { message, .. } => {
                let message = message.as_ref().unwrap().to_string();
                assert!(
                    message.starts_with("measured ") && message.ends_with("budget 1%"),
                    "{message}"
                );
            }
            other => panic!("max_error_rate should fail: {other:?}"),
        }
    }

    // Markdown: appended, never truncating what earlier steps wrote.
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("earlier step\n"), "{md}");
    assert!(
        md.contains("FAIL")
            && md.contains("max\\_error\\_rate")
            && md.contains("❌")
            && md.contains("✅"),
        "{md}"
    );

    // HTML: self-contained page with the timeline chart and one shaded rect per fault window.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg class=\"timeline\""));
    for id in ["errors", "slow"] {
        assert!(
            html.contains(&format!("data-fault-id=\"{id}\"")),
            "no shaded window for {id}"
        );
    }
    assert_eq!(html.matches("class=\"fault-window\"").count(), 2);
    for series in [
        "series success-rate",
        "series p99-latency",
        "series served-by",
    ] {
        assert!(html.contains(series), "no {series}");
    }
    assert!(
        html.contains("gate &lt;check&gt;") && !html.contains("gate <check>"),
        "the name is not escaped"
    );
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
}
