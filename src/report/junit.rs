//! The JUnit XML report, for CI systems that read test results: one test suite named after the
//! experiment, one test case per budget (a verdict row), so a missed budget shows up in CI as a
//! failed test with the measured value and the reason.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::measure::{Evaluation, VerdictRow};

/// The test case that stands for an aborted run.
pub const ABORTED_CASE: &str = "run (aborted)";

/// The report as XML. `aborted` is the reason the run stopped early (exit code 3), if it did.
pub fn render(
    experiment_name: &str,
    started_at: SystemTime,
    duration: Duration,
    eval: &Evaluation,
    aborted: Option<&str>,
) -> anyhow::Result<String> {
    let classname = format!("faultline.{experiment_name}");
    let mut suite = TestSuite::new(experiment_name);
    suite.set_time(duration);
    // quick-junit takes a chrono time; chrono is not a dependency of ours, so the time goes in
    // through its RFC 3339 text, which chrono's `FromStr` reads. A time that cannot be written
    // (before 1970) leaves the attribute out rather than failing the report.
    if let Some(text) = super::rfc3339_millis(started_at) {
        suite.timestamp = Some(
            text.parse()
                .with_context(|| format!("cannot read back the start time {text}"))?,
        );
    }
    suite.add_property(("faultline.version", env!("CARGO_PKG_VERSION")));
    for row in &eval.verdict.rows {
        let mut case = TestCase::new(format!("{} ({})", row.budget, row.scope), status(row));
        case.set_classname(classname.as_str());
        suite.add_test_case(case);
    }
    if let Some(reason) = aborted {
        // An error, not a failure: no budget was missed, the run itself did not finish, and CI
        // must not read the partial verdict as a pass.
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status
            .set_type("aborted")
            .set_message(format!("aborted: {reason}"))
            .set_description(
                "the run was stopped early and rolled back; the verdict covers only the part \
                 of the run before the interruption",
            );
        let mut case = TestCase::new(ABORTED_CASE, status);
        case.set_classname(classname.as_str());
        suite.add_test_case(case);
    }

    let mut report = Report::new("faultline");
    report.set_time(duration);
    report.add_test_suite(suite);
    report
        .to_string()
        .context("cannot serialize the JUnit report")
}

fn status(row: &VerdictRow) -> TestCaseStatus {
    if row.passed {
        return TestCaseStatus::success();
    }
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
    status
        .set_type(row.budget.as_str())
        .set_message(format!("measured {}, budget {}", row.measured, row.limit))
        .set_description(row.detail.as_str());
    status
}

pub fn write(
    path: &Path,
    experiment_name: &str,
    started_at: SystemTime,
    duration: Duration,
    eval: &Evaluation,
    aborted: Option<&str>,
) -> anyhow::Result<()> {
    // Render first, so a failure cannot leave half a file behind.
    let text = render(experiment_name, started_at, duration, eval, aborted)?;
    std::fs::write(path, text)
        .with_context(|| format!("cannot write the JUnit report {}", path.display()))
}

#[cfg(test)]
mod tests {
    use quick_junit::XmlString;

    use super::*;
    use crate::report::testdata::{sample, NASTY_NAME, NASTY_STREAM};

    fn parse(xml: &str) -> TestSuite {
        let mut report = Report::deserialize_from_str(xml)
            .unwrap_or_else(|e| panic!("not well-formed JUnit: {e}\n{xml}"));
        assert_eq!(report.test_suites.len(), 1);
        report.test_suites.remove(0)
    }

    fn render_sample(aborted: Option<&str>) -> (Evaluation, String) {
        let s = sample();
        let xml = render(
            NASTY_NAME,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            s.facts.duration,
            &s.eval,
            aborted,
        )
        .unwrap();
        (s.eval, xml)
    }

    fn non_success(case: &TestCase) -> (NonSuccessKind, String, String) {
        match &case.status {
            TestCaseStatus::NonSuccess {
                kind,
                message,
                description,
                ..
            } => (
                *kind,
                message.as_deref().unwrap_or_default().to_string(),
                description.as_deref().unwrap_or_default().to_string(),
            ),
            other => panic!("{} passed: {other:?}", case.name.as_str()),
        }
    }

    #[test]
    fn one_case_per_verdict_row_and_failures_say_why() {
        let (eval, xml) = render_sample(None);
        let suite = parse(&xml);
        let rows = &eval.verdict.rows;
        let failed = rows.iter().filter(|r| !r.passed).count();
        // The sample must exercise both outcomes to prove anything.
        assert!(failed > 0 && failed < rows.len(), "{rows:#?}");

        assert_eq!(suite.name.as_str(), NASTY_NAME);
        assert_eq!(suite.tests, rows.len());
        assert_eq!(suite.failures, failed);
        assert_eq!(suite.errors, 0);
        assert_eq!(suite.time, Some(Duration::from_secs(30)));
        assert_eq!(
            suite.timestamp.map(|t| t.to_rfc3339()).as_deref(),
            Some("2023-11-14T22:13:20.123+00:00")
        );
        for (row, case) in rows.iter().zip(&suite.test_cases) {
            assert_eq!(
                case.name.as_str(),
                format!("{} ({})", row.budget, row.scope)
            );
            assert_eq!(
                case.classname.as_ref().map(XmlString::as_str),
                Some(format!("faultline.{NASTY_NAME}").as_str())
            );
            if row.passed {
                assert!(matches!(case.status, TestCaseStatus::Success { .. }));
            } else {
                let (kind, message, text) = non_success(case);
                assert_eq!(kind, NonSuccessKind::Failure);
                assert_eq!(
                    message,
                    format!("measured {}, budget {}", row.measured, row.limit)
                );
                assert_eq!(text, row.detail);
            }
        }
        let truncated = suite
            .test_cases
            .iter()
            .find(|c| c.name.as_str() == "max_truncated (all)")
            .unwrap();
        assert_eq!(non_success(truncated).1, "measured 3, budget 0");
    }

    #[test]
    fn special_characters_are_escaped() {
        let (_, xml) = render_sample(None);
        // Parsing back (above) proves well-formedness; these prove the raw text was escaped
        // rather than dropped.
        assert!(!xml.contains(NASTY_NAME), "{xml}");
        assert!(!xml.contains(NASTY_STREAM), "{xml}");
        assert!(xml.contains("drill &lt;&quot;a&amp;b&quot;&gt;"), "{xml}");
        let suite = parse(&xml);
        let scope = format!("max_error_rate (stream {NASTY_STREAM})");
        assert!(
            suite.test_cases.iter().any(|c| c.name.as_str() == scope),
            "{xml}"
        );
        // Every case element is closed, either by `/>` or by `</testcase>`.
        let opened = xml.matches("<testcase ").count();
        let closed = xml.matches("</testcase>").count();
        let self_closed = xml
            .split("<testcase ")
            .skip(1)
            .filter(|rest| rest.split('>').next().is_some_and(|tag| tag.ends_with('/')))
            .count();
        assert_eq!(opened, suite.tests);
        assert_eq!(opened, closed + self_closed, "{xml}");
    }

    #[test]
    fn an_aborted_run_adds_an_error_case() {
        let (eval, xml) = render_sample(Some("SIGTERM <received>"));
        let suite = parse(&xml);
        assert_eq!(suite.tests, eval.verdict.rows.len() + 1);
        assert_eq!(suite.errors, 1);
        let case = suite.test_cases.last().unwrap();
        assert_eq!(case.name.as_str(), ABORTED_CASE);
        let (kind, message, _) = non_success(case);
        assert_eq!(kind, NonSuccessKind::Error);
        assert_eq!(message, "aborted: SIGTERM <received>");
    }

    #[test]
    fn a_time_before_1970_is_left_out_not_a_panic() {
        let s = sample();
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        let xml = render("x", before, Duration::ZERO, &s.eval, None).unwrap();
        assert!(parse(&xml).timestamp.is_none());
    }

    #[test]
    fn write_puts_the_file_on_disk() {
        let s = sample();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        write(&path, "x", SystemTime::now(), Duration::ZERO, &s.eval, None).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(parse(&text).tests, s.eval.verdict.rows.len());
    }
}
