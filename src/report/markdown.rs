//! The Markdown summary, written for `$GITHUB_STEP_SUMMARY`: the verdict at a glance on the
//! workflow run's page, without opening an artifact.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::table::phase_rows;
use crate::measure::{ClassOrder, Evaluation};
use crate::units::human_duration;

/// The variable GitHub Actions sets to the file a step may append its summary to.
pub const STEP_SUMMARY_VAR: &str = "GITHUB_STEP_SUMMARY";

/// The summary as GitHub-flavoured Markdown. `aborted` is the reason the run stopped early.
pub fn render(experiment_name: &str, eval: &Evaluation, aborted: Option<&str>) -> String {
    let verdict = &eval.verdict;
    let word = match aborted {
        Some(_) => "ABORTED",
        None if verdict.passed => "PASS",
        None => "FAIL",
    };
    let mut out = format!("## faultline: {} — {word}\n\n", text(experiment_name));
    if let Some(reason) = aborted {
        out.push_str(&format!(
            "> **Aborted:** {}. Every fault was lifted; the verdict covers only the part of \
             the run before the interruption.\n\n",
            text(reason)
        ));
    }

    if verdict.rows.is_empty() {
        out.push_str("No budgets set: nothing to judge.\n\n");
    } else {
        out.push_str("| budget | scope | limit | measured | result |\n");
        out.push_str("|---|---|--:|--:|:-:|\n");
        for r in &verdict.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                text(&r.budget),
                text(&r.scope),
                text(&r.limit),
                text(&r.measured),
                if r.passed { "✅" } else { "❌" }
            ));
        }
        let passed = verdict.rows.iter().filter(|r| r.passed).count();
        out.push_str(&format!(
            "\n{passed} of {} budgets met.\n\n",
            verdict.rows.len()
        ));
        let failed: Vec<_> = verdict.rows.iter().filter(|r| !r.passed).collect();
        if !failed.is_empty() {
            out.push_str("**Why budgets failed**\n\n");
            for r in failed {
                out.push_str(&format!(
                    "- {} ({}): {}\n",
                    text(&r.budget),
                    text(&r.scope),
                    text(&r.detail)
                ));
            }
            out.push('\n');
        }
    }

    for (name, p) in phase_rows(&eval.overall) {
        let p99 = p
            .latency
            .as_ref()
            .map_or("-".into(), |d| human_duration(d.p99));
        let classes = p.error_classes(ClassOrder::Fixed);
        let classes = if classes.is_empty() {
            String::new()
        } else {
            format!(" ({classes})")
        };
        out.push_str(&format!(
            "- **{name}**: {} requests, {} errors{}, p99 {p99}\n",
            p.requests,
            p.errors,
            text(&classes)
        ));
    }
    if let Some(scheduling) = &eval.load_scheduling {
        out.push_str(&format!("\n{}\n", text(&scheduling.text())));
    }
    out
}

/// Appends the summary to the file named by `$GITHUB_STEP_SUMMARY`. `Ok(false)` when the
/// variable is unset or empty (not running under GitHub Actions).
pub fn append_to_step_summary(
    experiment_name: &str,
    eval: &Evaluation,
    aborted: Option<&str>,
) -> anyhow::Result<bool> {
    match step_summary_path(std::env::var_os(STEP_SUMMARY_VAR)) {
        Some(path) => append_to(&path, experiment_name, eval, aborted).map(|()| true),
        None => Ok(false),
    }
}

/// The summary file named by the variable's value, if it names one. Apart from reading the
/// environment so tests need not set process-wide variables while other tests run.
fn step_summary_path(value: Option<std::ffi::OsString>) -> Option<PathBuf> {
    value.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Appends the summary to `path`, creating the file if needed. Appending, never truncating:
/// other steps (and other runs in the same step) write to the same file.
pub fn append_to(
    path: &Path,
    experiment_name: &str,
    eval: &Evaluation,
    aborted: Option<&str>,
) -> anyhow::Result<()> {
    // A blank line first, so the heading starts a new block even after earlier text that
    // did not end its line; extra blank lines cost nothing in Markdown.
    let text = format!("\n\n{}", render(experiment_name, eval, aborted));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open the step summary {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot append to the step summary {}", path.display()))
}

/// Text as Markdown that renders literally: characters Markdown would read as syntax are
/// backslash-escaped, `<>&` become entities (GitHub would take `<b>` for HTML), and line breaks
/// become spaces so a value cannot break out of its table row or list item.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::testdata::{sample, NASTY_NAME};

    #[test]
    fn shows_every_row_and_the_failures() {
        let s = sample();
        let md = render("failover", &s.eval, None);
        assert!(md.starts_with("## faultline: failover — FAIL\n"), "{md}");
        assert!(
            md.contains("| budget | scope | limit | measured | result |"),
            "{md}"
        );
        let table_rows = md.lines().filter(|l| l.starts_with("| ")).count();
        assert_eq!(table_rows, s.eval.verdict.rows.len() + 1, "{md}");
        for expected in [
            "| failover\\_within | all | 2s |",
            "| max\\_truncated | all | 0 | 3 | ❌ |",
            "| max\\_p99\\_latency | all | 5s |",
            "- max\\_truncated (all): 3 truncated responses",
            "- **baseline**: 110 requests, 0 errors, p99 100ms\n",
            "- **fault**: 110 requests, 10 errors (5 http\\_error: 5 × 529; 3 truncated; 1 timeout; 1 dropped), p99 400.13ms\n",
            "- **recovery**: 110 requests, 0 errors, p99 100ms\n",
            "\nload scheduling: pacer real-time priority (SCHED\\_FIFO 1), load threads a 0.1 ms \
             slice\n",
        ] {
            assert!(md.contains(expected), "missing {expected:?} in\n{md}");
        }
        let passes = s.eval.verdict.rows.iter().filter(|r| r.passed).count();
        assert_eq!(md.matches('✅').count(), passes);
        assert_eq!(md.matches('❌').count(), s.eval.verdict.rows.len() - passes);
    }

    #[test]
    fn names_are_escaped() {
        let s = sample();
        let md = render(NASTY_NAME, &s.eval, Some("signal <TERM> | now"));
        assert!(
            md.starts_with("## faultline: drill &lt;\"a&amp;b\"&gt; \\| \\*x\\* — ABORTED\n"),
            "{md}"
        );
        assert!(md.contains("signal &lt;TERM&gt; \\| now"), "{md}");
        // The nasty stream's scope must not add a column to its row.
        for line in md.lines().filter(|l| l.starts_with("| ")) {
            assert_eq!(line.matches(" | ").count(), 4, "{line}");
        }
        assert!(!md.contains('<'), "{md}");
    }

    #[test]
    fn a_run_without_budgets_says_so() {
        let eval = crate::measure::evaluate(
            &[],
            &Default::default(),
            &Default::default(),
            &Default::default(),
        );
        let md = render("x", &eval, None);
        assert!(md.contains("— PASS"), "{md}");
        assert!(md.contains("No budgets set"), "{md}");
        assert!(
            md.contains("- **whole run**: 0 requests, 0 errors, p99 -"),
            "{md}"
        );
    }

    #[test]
    fn appending_keeps_what_was_there() {
        let s = sample();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.md");
        std::fs::write(&path, "# earlier step").unwrap();
        append_to(&path, "first", &s.eval, None).unwrap();
        append_to(&path, "second", &s.eval, None).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# earlier step\n\n## faultline: first"),
            "{text}"
        );
        let first = text.find("## faultline: first").unwrap();
        let second = text.find("## faultline: second").unwrap();
        assert!(first < second, "{text}");
        assert_eq!(text.matches("| budget | scope |").count(), 2);
    }

    #[test]
    fn only_a_non_empty_variable_names_a_file() {
        assert_eq!(step_summary_path(None), None);
        assert_eq!(step_summary_path(Some("".into())), None);
        assert_eq!(
            step_summary_path(Some("/tmp/summary.md".into())),
            Some(PathBuf::from("/tmp/summary.md"))
        );
    }
}
