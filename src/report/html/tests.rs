//! The page as a whole: sections, chart hooks, escaping, self-containment.

use std::time::{Duration, SystemTime};

use super::*;
use crate::measure::evaluate;
use crate::report::testdata::{sample, Sample, NASTY_NAME, NASTY_STREAM};

fn page_of(s: &Sample, exit_code: u8) -> String {
    render(&HtmlInput {
        experiment_name: NASTY_NAME,
        description: Some("primary <overload> & failover"),
        seed: 42,
        started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        facts: &s.facts,
        records: &s.records,
        eval: &s.eval,
        exit_code,
    })
}

/// Every non-void element is closed, in order. Since all data is escaped, a `<` can only open
/// a tag, so this also catches a name that slipped through unescaped.
fn assert_balanced(page: &str) {
    const VOID: [&str; 2] = ["meta", "!DOCTYPE"];
    let mut open: Vec<&str> = Vec::new();
    let mut rest = page;
    while let Some(at) = rest.find('<') {
        let end = rest[at..].find('>').expect("unclosed tag") + at;
        let tag = &rest[at + 1..end];
        rest = &rest[end + 1..];
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap();
        if VOID.contains(&name) || tag.ends_with('/') {
            continue;
        }
        if tag.starts_with('/') {
            assert_eq!(open.pop(), Some(name), "stray </{name}>");
        } else {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "never closed: {open:?}");
}

#[test]
fn the_page_has_every_section_and_is_well_formed() {
    let s = sample();
    let page = page_of(&s, 1);
    assert_balanced(&page);
    for expected in [
        "<!DOCTYPE html>",
        "<span class=\"badge fail\">FAIL</span>",
        "seed <strong>42</strong>",
        "started <strong>2023-11-14T22:13:20.000Z</strong>",
        concat!("faultline <strong>", env!("CARGO_PKG_VERSION"), "</strong>"),
        "primary &lt;overload&gt; &amp; failover",
        "<section id=\"verdict\">",
        "<section id=\"timeline\">",
        "<section id=\"phases\">",
        "<section id=\"faults\">",
        // The phase table and the failure detail.
        "<td>fault</td><td class=\"num\">110</td>",
        "3 truncated responses reached clients",
        "<p class=\"note\">load scheduling: pacer real-time priority (SCHED_FIFO 1), load \
         threads a 0.1 ms slice</p>\n</section>",
    ] {
        assert!(page.contains(expected), "missing {expected:?}");
    }
    let rows = &s.eval.verdict.rows;
    let failed = rows.iter().filter(|r| !r.passed).count();
    assert_eq!(page.matches("<tr class=\"failed\">").count(), failed);
    assert_eq!(
        page.matches("<tr class=\"passed\">").count(),
        rows.len() - failed
    );
}

#[test]
fn the_chart_has_its_series_and_fault_windows() {
    let s = sample();
    let page = page_of(&s, 1);
    assert_eq!(page.matches("<svg class=\"timeline\"").count(), 1);
    assert_eq!(
        page.matches("class=\"fault-window\"").count(),
        s.facts.windows.len()
    );
    for id in [
        "proxy&lt;1&gt;/http_error&amp;&quot;x&quot;",
        "primary-proxy/latency",
    ] {
        assert!(
            page.contains(&format!("class=\"fault-window\" data-fault-id=\"{id}\"")),
            "no window {id}"
        );
    }
    assert!(page.contains(">primary-proxy/latency (latency)</text>"));
    // The rate change: its line, its ramp and its label, apart from the fault windows.
    assert_eq!(
        page.matches("class=\"rate-change\"").count(),
        s.facts.rate_changes.len()
    );
    assert_eq!(page.matches("class=\"rate-ramp\"").count(), 1);
    assert!(page.contains(": 10/s → 25/s</text>"), "no rate label");
    assert_eq!(page.matches("class=\"series success-rate\"").count(), 1);
    assert_eq!(page.matches("class=\"series p99-latency\"").count(), 1);
    for backend in ["primary", "fallback", "&lt;b&gt;evil&lt;/b&gt;", "unknown"] {
        assert!(
            page.contains(&format!(
                "class=\"series served-by\" data-backend=\"{backend}\""
            )),
            "no served-by series for {backend}"
        );
    }
    // 30 s run: 1 s buckets, ticks every 5 s up to 30 s, p99 axis in ms.
    assert!(page.contains(">30s</text>"));
    assert!(page.contains(" ms</text>"));
    // Every series has data, so none is marked empty.
    assert!(!page.contains("no data"));
}

#[test]
fn the_page_is_self_contained_and_escaped() {
    let s = sample();
    let page = page_of(&s, 1);
    for banned in [
        "<script", "http://", "https://", "src=", "href=", "url(", "@import",
    ] {
        assert!(!page.contains(banned), "found {banned:?}");
    }
    assert!(!page.contains(NASTY_NAME));
    assert!(!page.contains(NASTY_STREAM));
    assert!(page.contains("drill &lt;&quot;a&amp;b&quot;&gt; | *x*"));
    assert!(page.contains("stream model-b&lt;&amp;&gt;"));
}

#[test]
fn the_badge_follows_the_exit_code() {
    let s = sample();
    assert!(page_of(&s, 0).contains("<span class=\"badge pass\">PASS</span>"));
    let aborted = page_of(&s, 3);
    assert!(aborted.contains("<span class=\"badge aborted\">ABORTED</span>"));
    assert!(aborted.contains("The run was aborted"));
    assert!(page_of(&s, 4).contains(">EXIT 4</span>"));
}

#[test]
fn an_empty_run_still_renders() {
    let facts = RunFacts::default();
    let eval = evaluate(&[], &facts, &Default::default(), &Default::default());
    let page = render(&HtmlInput {
        experiment_name: "empty",
        description: None,
        seed: 0,
        // Before 1970: shown as unknown rather than a panic in the time formatter.
        started_at: SystemTime::UNIX_EPOCH - Duration::from_secs(1),
        facts: &facts,
        records: &[],
        eval: &eval,
        exit_code: 0,
    });
    assert_balanced(&page);
    assert!(page.contains("<svg class=\"timeline\""));
    assert!(page.contains("no data"));
    assert!(page.contains("No budgets set"));
    assert!(page.contains("No fault was injected"));
    assert!(page.contains("started <strong>unknown</strong>"));
    assert!(!page.contains("class=\"fault-window\""));
    assert!(!page.contains("NaN") && !page.contains("inf"));
}

#[test]
fn write_puts_the_page_on_disk() {
    let s = sample();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.html");
    let input = HtmlInput {
        experiment_name: "x",
        description: None,
        seed: 1,
        started_at: SystemTime::now(),
        facts: &s.facts,
        records: &s.records,
        eval: &s.eval,
        exit_code: 1,
    };
    write(&path, &input).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), render(&input));
}
