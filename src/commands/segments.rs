//! The segment side of `run` (what a segment leaves in its out dir) and `merge`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;

use super::reports::{self, Copies, ReportInput};
use crate::cli::{MergeArgs, RunArgs};
use crate::exit::{ExitCode, Failure};
use crate::experiment::{self, Experiment};
use crate::segment::manifest::{self, Cpu, ExperimentRef, LeaderFacts, Manifest};
use crate::segment::{merge::merge as merge_dirs, records, Segment};
use crate::{measure, report, run};

/// The share `run` was asked for, checked: N segments need one time zero.
pub(super) fn share(args: &RunArgs) -> Result<run::Share, Failure> {
    let segment = args.segment.unwrap_or_default();
    if segment.count() > 1 && args.start_at.is_none() {
        return Err(Failure::Usage(format!(
            "--segment {segment} needs --start-at: the {} segments of a drill share one time \
             zero, e.g. --start-at $(date -u -d '+30 sec' +%FT%TZ) given to each",
            segment.count()
        )));
    }
    Ok(run::Share {
        segment,
        start_at: args.start_at,
    })
}

/// What a segment leaves for `faultline merge` beside its own reports: its raw records, the
/// experiment file's bytes, and its manifest.
pub(super) fn write_segment(
    dir: &Path,
    exp: &Experiment,
    seed: u64,
    share: run::Share,
    outcome: &run::RunRecord,
    ended_early: Option<String>,
    code: ExitCode,
) -> anyhow::Result<()> {
    records::write(&dir.join(records::FILE), &outcome.records)?;
    let copy = dir.join(manifest::EXPERIMENT_FILE);
    std::fs::write(&copy, exp.source.as_bytes())
        .with_context(|| format!("cannot write {}", copy.display()))?;
    let facts = &outcome.facts;
    let m = Manifest {
        manifest_version: manifest::VERSION,
        faultline_version: env!("CARGO_PKG_VERSION").into(),
        experiment: ExperimentRef {
            name: exp.name.clone(),
            file: exp.path.display().to_string(),
            // `source` is the file's bytes as read (UTF-8 checked, nothing changed).
            sha256: manifest::sha256_hex(exp.source.as_bytes()),
        },
        segment: share.segment,
        start_at: share.start_at.map(|s| s.to_string()),
        started_at: humantime::format_rfc3339_nanos(outcome.started_at).to_string(),
        seed,
        duration: facts.duration,
        streams: facts.streams.clone(),
        records: outcome.records.len(),
        unfinished: outcome.unfinished,
        cpu: facts.cpu_saturated.map(|(saturated, observed)| Cpu {
            saturated,
            observed,
        }),
        load_scheduling: facts.load_scheduling,
        leader: share.segment.is_leader().then(|| LeaderFacts {
            fault_windows: facts.windows.clone(),
            rate_changes: facts.rate_changes.clone(),
            service_exits: facts.service_exits.clone(),
        }),
        exit_code: code as u8,
        ended_early,
    };
    manifest::write(dir, &m)
}

/// The line under a segment's own verdict.
pub(super) fn partial_note(segment: Segment) -> String {
    format!(
        "segment {segment}: this verdict judges this segment's share only, and its exit code \
         says only that the share ran and was recorded; the drill's verdict is \
         `faultline merge`'s over all {} segments",
        segment.count()
    )
}

pub(super) fn merge(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let merged = merge_dirs(&args.dirs).map_err(|e| Failure::Usage(e.to_string()))?;
    let leader = merged.leader();
    let copy = merged.segments[0].dir.join(manifest::EXPERIMENT_FILE);
    let judging = experiment::judging(&copy, &merged.source)?;
    let evaluation = measure::evaluate(
        &merged.records,
        &merged.facts,
        &judging.budgets,
        &judging.measure,
    );
    // A segment that did not do its part leaves the drill incomplete, whatever the budgets say.
    let incomplete: Vec<String> = merged
        .segments
        .iter()
        .filter(|s| s.manifest.exit_code != 0)
        .map(|s| {
            format!(
                "segment {} ({}) exited {}: {}",
                s.manifest.segment,
                s.dir.display(),
                s.manifest.exit_code,
                s.manifest
                    .ended_early
                    .as_deref()
                    .unwrap_or("no reason recorded")
            )
        })
        .collect();
    let aborted_only = merged
        .segments
        .iter()
        .all(|s| matches!(s.manifest.exit_code, 0 | 3));
    let code = if incomplete.is_empty() {
        if evaluation.verdict.passed {
            ExitCode::Success
        } else {
            ExitCode::BudgetMissed
        }
    } else if aborted_only {
        ExitCode::Aborted
    } else {
        ExitCode::Environment
    };
    let ended_early = (!incomplete.is_empty()).then(|| incomplete.join("; "));
    let out_dir = args
        .reports
        .out
        .clone()
        .unwrap_or_else(|| reports::default_out_dir(&judging.name, SystemTime::now()));
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create the report directory {}", out_dir.display()))?;
    let input = ReportInput {
        info: report::json::ExperimentInfo {
            name: &judging.name,
            file: leader.experiment.file.clone(),
            seed: leader.seed,
            source: &merged.source,
        },
        description: judging.description.as_deref(),
        started_at: merged.started_at,
        facts: &merged.facts,
        records: &merged.records,
        evaluation: &evaluation,
        code,
        aborted: ended_early.as_deref().filter(|_| code == ExitCode::Aborted),
        ended_early: ended_early.clone(),
    };
    reports::write_reports(
        &input,
        &out_dir,
        &Copies {
            json: args.reports.json.as_deref(),
            junit: args.reports.junit.as_deref(),
        },
    )?;
    reports::print_verdict(&evaluation, &out_dir);
    let dirs: Vec<PathBuf> = merged.segments.iter().map(|s| s.dir.clone()).collect();
    eprintln!(
        "merged {} segments ({}): {} requests",
        dirs.len(),
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        merged.records.len()
    );
    let unfinished: usize = merged.segments.iter().map(|s| s.manifest.unfinished).sum();
    if unfinished > 0 {
        eprintln!("{unfinished} request(s) were still in flight when their segments ended and are not in the report");
    }
    if let Some(why) = ended_early {
        eprintln!("the drill is incomplete: {why}");
    }
    Ok(code)
}
