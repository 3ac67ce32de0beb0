//! The reports of a run, written alike by `run` and by `merge`: JSON, CSV, JUnit and HTML in the
//! out dir (plus the copies asked for), the Markdown summary under GitHub Actions, and the
//! verdict table on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::exit::ExitCode;
use crate::load::RequestRecord;
use crate::{measure, report};

/// Everything the reports say, however the records came (one process, or merged segments).
pub(crate) struct ReportInput<'a> {
    pub info: report::json::ExperimentInfo<'a>,
    pub description: Option<&'a str>,
    /// Time zero of the run.
    pub started_at: SystemTime,
    pub facts: &'a measure::RunFacts,
    pub records: &'a [RequestRecord],
    pub evaluation: &'a measure::Evaluation,
    pub code: ExitCode,
    /// Why the run ended before its end step (an abort or a failure).
    pub ended_early: Option<String>,
    /// Why it was aborted, for JUnit's error case and the Markdown summary.
    pub aborted: Option<&'a str>,
}

/// Where the reports go besides the out dir.
#[derive(Default)]
pub(crate) struct Copies<'a> {
    pub json: Option<&'a Path>,
    pub junit: Option<&'a Path>,
}

pub(crate) fn write_reports(
    input: &ReportInput,
    out_dir: &Path,
    copies: &Copies,
) -> anyhow::Result<()> {
    let name = input.info.name;
    let mut json = report::json::JsonReport::new(
        input.info.clone(),
        input.started_at,
        input.facts,
        input.evaluation,
        input.code,
    );
    json.ended_early = input.ended_early.clone();
    report::json::write(&out_dir.join("report.json"), &json)?;
    if let Some(path) = copies.json {
        report::json::write(path, &json)?;
    }
    report::csv::write(&out_dir.join("requests.csv"), input.records)?;
    let duration = input.facts.duration;
    for path in std::iter::once(out_dir.join("junit.xml")).chain(copies.junit.map(PathBuf::from)) {
        report::junit::write(
            &path,
            name,
            input.started_at,
            duration,
            input.evaluation,
            input.aborted,
        )?;
    }
    let html = report::html::HtmlInput {
        experiment_name: name,
        description: input.description,
        seed: input.info.seed,
        started_at: input.started_at,
        facts: input.facts,
        records: input.records,
        eval: input.evaluation,
        exit_code: input.code as u8,
    };
    report::html::write(&out_dir.join("report.html"), &html)?;
    // A side report: a summary that cannot be written must not change the verdict.
    if let Err(e) = report::markdown::append_to_step_summary(name, input.evaluation, input.aborted)
    {
        eprintln!("warning: could not append to $GITHUB_STEP_SUMMARY: {e:#}");
    }
    Ok(())
}

/// The verdict table and where the reports are. The verdict is in the exit code and the report
/// files; a closed stdout (`| head`) must not turn it into an error.
pub(crate) fn print_verdict(evaluation: &measure::Evaluation, out_dir: &Path) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{}", report::table::render(evaluation));
    let _ = writeln!(stdout, "reports: {}", out_dir.display());
}

/// `runs/<UTC time>-<name>/`, sortable by time.
pub(crate) fn default_out_dir(name: &str, now: SystemTime) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Path::new("runs").join(format!("{stamp}-{safe}"))
}
