//! One function per subcommand: turns parsed options into validated settings and work.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{
    Command, CompletionsArgs, Opts, OverflowArg, RunArgs, SimulateArgs, ValidateArgs,
};
use crate::exit::{ExitCode, Failure};
use crate::experiment::{self, units::Dur, Overflow, SimulateSpec};
use crate::{measure, report, run};

pub fn dispatch(opts: Opts) -> anyhow::Result<ExitCode> {
    match opts.command {
        Command::Run(args) => run_experiment(args),
        Command::Validate(args) => validate(&args),
        Command::Simulate(args) => simulate(args),
        Command::Completions(args) => completions(&args),
    }
}

fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::Success;
    for file in &args.files {
        match experiment::load(file) {
            Ok(exp) => println!(
                "{}: ok ({} services, {} proxies, {} load streams, {} timeline steps)",
                file.display(),
                exp.services.len(),
                exp.proxies.len(),
                exp.streams.len(),
                exp.timeline.len()
            ),
            Err(e) => {
                eprintln!("{e}");
                code = ExitCode::BadInput;
            }
        }
    }
    Ok(code)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run_experiment(args: RunArgs) -> anyhow::Result<ExitCode> {
    let exp = experiment::load(&args.file)?;
    let seed = args.seed.unwrap_or(exp.seed);
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| default_out_dir(&exp.name, SystemTime::now()));
    if args.dry_run {
        print!("{}", run::plan::render(&exp, seed));
        return Ok(ExitCode::Success);
    }
    let opts = run::RunOptions {
        seed,
        quiet: args.quiet,
        log_dir: out_dir.clone(),
    };
    // Before the run, so an unwritable directory costs no drill.
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create the report directory {}", out_dir.display()))?;

    let outcome = runtime()?.block_on(run::execute(&exp, &opts))?;
    let evaluation =
        measure::evaluate(&outcome.records, &outcome.facts, &exp.budgets, &exp.measure);
    let code = if outcome.aborted.is_some() {
        ExitCode::Aborted
    } else if evaluation.verdict.passed {
        ExitCode::Success
    } else {
        ExitCode::BudgetMissed
    };

    let mut info = report::json::ExperimentInfo::from_experiment(&exp);
    info.seed = seed;
    let json =
        report::json::JsonReport::new(info, outcome.started_at, &outcome.facts, &evaluation, code);
    let json_path = out_dir.join("report.json");
    report::json::write(&json_path, &json)?;
    if let Some(extra) = &args.json {
        report::json::write(extra, &json)?;
    }
    report::csv::write(&out_dir.join("requests.csv"), &outcome.records)?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", report::table::render(&evaluation))?;
    writeln!(stdout, "reports: {}", out_dir.display())?;
    if let Some(reason) = &outcome.aborted {
        eprintln!("aborted: {reason}; every fault was lifted and every service stopped");
        if outcome.unfinished > 0 {
            eprintln!(
                "{} request(s) were still in flight and are not in the report",
                outcome.unfinished
            );
        }
    }
    if code == ExitCode::Aborted {
        writeln!(
            stdout,
            "ABORTED: the verdict covers only the part of the run before the interruption"
        )?;
    }
    Ok(code)
}

/// `runs/<UTC time>-<name>/`, sortable by time.
fn default_out_dir(name: &str, now: SystemTime) -> PathBuf {
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

fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let ttft: Dur = args.ttft.parse().map_err(Failure::Usage)?;
    if !(args.tokens_per_second.is_finite() && args.tokens_per_second > 0.0) {
        return Err(Failure::Usage("--tokens-per-second must be above zero".into()).into());
    }
    let spec = SimulateSpec {
        listen: args.listen,
        model: args.model,
        ttft,
        tokens_per_second: args.tokens_per_second,
        completion_tokens: args.completion_tokens.max(1),
        capacity: args.capacity,
        overflow: match args.overflow {
            OverflowArg::Queue => Overflow::Queue,
            OverflowArg::Reject => Overflow::Reject,
        },
        reject_status: args.reject_status,
        served_by: Some(args.served_by),
        memory: None,
        cold_start: None,
    };
    runtime()?.block_on(async {
        let server = crate::simulate::start_host("simulate", &spec).await?;
        eprintln!(
            "simulated inference host on http://{} (Ctrl-C to stop)",
            server.addr()
        );
        let _ = tokio::signal::ctrl_c().await;
        server.stop().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::Success)
}

fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Opts::command();
    clap_complete::generate(args.shell, &mut cmd, "faultline", &mut std::io::stdout());
    Ok(ExitCode::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_dirs_sort_by_time_and_are_path_safe() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let dir = default_out_dir("my drill/1", t);
        assert_eq!(dir, Path::new("runs/20261118T110640Z-my_drill_1"));
    }
}
