//! One function per subcommand: turns parsed options into validated settings and work.

mod kube;
mod reports;
mod segments;

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{
    AgentArgs, Command, CompletionsArgs, ContentArg, ExhaustionArg, GpuHogArgs, Opts, OverflowArg,
    RunArgs, SimulateArgs, ValidateArgs,
};
use crate::exit::{ExitCode, Failure};
use crate::experiment::schema::Content;
use crate::experiment::{self, Exhaustion, MemorySpec, Overflow, SimulateSpec};
use crate::units::Dur;
use crate::{measure, metrics, report, run};

pub fn dispatch(opts: Opts) -> anyhow::Result<ExitCode> {
    if matches!(
        opts.command,
        Command::Run(_) | Command::Simulate(_) | Command::Proxy(_)
    ) {
        // Still one thread here: the only moment growing the table costs no stall.
        crate::net::fd_table::reserve();
    }
    match opts.command {
        Command::Run(args) => run_experiment(args),
        Command::Validate(args) => validate(&args),
        Command::Simulate(args) => simulate(args),
        Command::Schema => schema(),
        Command::Completions(args) => completions(&args),
        Command::Agent(args) => agent(args),
        Command::GpuHog(args) => gpu_hog(&args),
        Command::Proxy(args) => proxy(&args),
        Command::Merge(args) => segments::merge(&args),
        Command::Kube(command) => kube::dispatch(command),
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
    let share = segments::share(&args)?;
    let out_dir = args
        .reports
        .out
        .clone()
        .unwrap_or_else(|| reports::default_out_dir(&exp.name, SystemTime::now()));
    if args.dry_run {
        print!("{}", run::plan::render(&exp, seed));
        if let Some(segment) = args.segment.filter(|s| !s.is_leader()) {
            println!(
                "segment {segment}: would send 1 request in {} of each stream, start nothing \
                 and inject nothing (segment 1 does)",
                segment.count()
            );
        }
        return Ok(ExitCode::Success);
    }
    // Before the run, so an unwritable directory costs no drill.
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create the report directory {}", out_dir.display()))?;
    let rt = runtime()?;
    // Bound before the run too, so a taken address costs no drill either.
    let exporter = match args.metrics {
        Some(addr) => {
            let live = std::sync::Arc::new(metrics::Live::new(&exp, seed));
            let exporter = rt.block_on(async { metrics::Exporter::start(addr, live) })?;
            if !args.quiet {
                eprintln!("metrics: http://{}/metrics", exporter.addr());
            }
            Some(exporter)
        }
        None => None,
    };
    let opts = run::RunOptions {
        seed,
        quiet: args.quiet,
        log_dir: out_dir.clone(),
        share,
        live: exporter.as_ref().map(metrics::Exporter::live),
    };
    let outcome = rt.block_on(run::execute(&exp, &opts));
    let concluded = conclude(&exp, seed, share, &args, &out_dir, outcome);
    if let Some(exporter) = exporter {
        // Also when the run could not start: the endpoint then says it is over.
        exporter.live().finish();
        let linger = args.metrics_linger.0;
        if !args.quiet && !linger.is_zero() {
            eprintln!(
                "metrics: serving the final values at http://{}/metrics for {} more (SIGINT or SIGTERM ends it now)",
                exporter.addr(),
                crate::units::human_duration(linger)
            );
        }
        rt.block_on(exporter.linger(linger));
    }
    concluded
}

/// Judges a finished run, writes its reports and prints its verdict.
fn conclude(
    exp: &experiment::Experiment,
    seed: u64,
    share: run::Share,
    args: &RunArgs,
    out_dir: &Path,
    mut outcome: run::RunRecord,
) -> anyhow::Result<ExitCode> {
    let evaluation =
        measure::evaluate(&outcome.records, &outcome.facts, &exp.budgets, &exp.measure);
    let failure = outcome.failure.take();
    let code = if let Some(f) = &failure {
        f.exit_code()
    } else if outcome.aborted.is_some() {
        ExitCode::Aborted
    } else if evaluation.verdict.passed || args.segment.is_some() {
        // A segment's budgets judge its share only: the drill's verdict is the merge's, and a
        // segment's exit says whether it ran and recorded its share (docs/segments.md).
        ExitCode::Success
    } else {
        ExitCode::BudgetMissed
    };

    let ended_early = failure
        .as_ref()
        .map(ToString::to_string)
        .or(outcome.aborted.clone());
    if args.segment.is_some() {
        segments::write_segment(
            out_dir,
            exp,
            seed,
            share,
            &outcome,
            ended_early.clone(),
            code,
        )?;
    }
    let mut info = report::json::ExperimentInfo::from_experiment(exp);
    info.seed = seed;
    let input = reports::ReportInput {
        info,
        description: exp.description.as_deref(),
        started_at: outcome.started_at,
        facts: &outcome.facts,
        records: &outcome.records,
        evaluation: &evaluation,
        code,
        ended_early,
        aborted: outcome.aborted.as_deref(),
    };
    let copies = reports::Copies {
        json: args.reports.json.as_deref(),
        junit: args.reports.junit.as_deref(),
    };
    reports::write_reports(&input, out_dir, &copies)?;
    // A run that could not reach a verdict still leaves its reports, then fails as it must.
    if let Some(f) = failure {
        eprintln!("reports (partial): {}", out_dir.display());
        return Err(f.into());
    }

    reports::print_verdict(&evaluation, out_dir);
    if let Some(segment) = args.segment {
        println!("{}", segments::partial_note(segment));
    }
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
        println!("ABORTED: the verdict covers only the part of the run before the interruption");
    }
    Ok(code)
}

fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let duration = |flag: &str, v: &Option<String>| -> Result<Option<Dur>, Failure> {
        v.as_deref()
            .map(|t| {
                t.parse::<Dur>()
                    .map_err(|e| Failure::Usage(format!("--{flag}: {e}")))
            })
            .transpose()
    };
    let ttft: Dur = args
        .ttft
        .parse()
        .map_err(|e| Failure::Usage(format!("--ttft: {e}")))?;
    if !(args.tokens_per_second.is_finite() && args.tokens_per_second > 0.0) {
        return Err(Failure::Usage("--tokens-per-second must be above zero".into()).into());
    }
    if args.capacity == Some(0) {
        return Err(Failure::Usage("--capacity must be at least 1".into()).into());
    }
    let memory = args
        .kv_tokens
        .map(|kv_tokens| -> Result<MemorySpec, Failure> {
            Ok(MemorySpec {
                kv_tokens,
                leak_per_second: args.leak_per_second.unwrap_or(0),
                leak_after: duration("leak-after", &args.leak_after)?.unwrap_or_default(),
                on_exhaustion: match args.on_exhaustion {
                    ExhaustionArg::Crash => Exhaustion::Crash,
                    ExhaustionArg::Reject => Exhaustion::Reject,
                },
            })
        });
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
        memory: memory.transpose()?,
        cold_start: duration("cold-start", &args.cold_start)?,
        content: match args.content {
            ContentArg::Verifiable => Content::Verifiable,
            ContentArg::Plain => Content::Plain,
        },
    };
    runtime()?.block_on(async {
        // Installed before the server starts, so a stop request is never missed.
        let mut signals = crate::net::ShutdownSignals::install().map_err(Failure::from)?;
        let server = crate::simulate::start_host("simulate", &spec).await?;
        eprintln!(
            "simulated inference host on http://{} (Ctrl-C to stop)",
            server.addr()
        );
        let crashed = tokio::select! {
            _ = signals.recv() => false,
            () = server.wait_crashed() => true,
        };
        server.stop().await;
        Ok::<_, anyhow::Error>(if crashed {
            ExitCode::SimulatedOom
        } else {
            ExitCode::Success
        })
    })
}

/// An agent's limit (`--max-fault-duration`, `--max-lease-ttl`), here or in the manifests.
fn agent_limit(flag: &str, d: std::time::Duration) -> Result<std::time::Duration, Failure> {
    // Zero would refuse every fault; beyond a week a "fault" is an outage, not a drill.
    if d.is_zero() || d > std::time::Duration::from_secs(7 * 24 * 3600) {
        return Err(Failure::Usage(format!(
            "--{flag} must be above zero and at most 7 days; found `{}`",
            Dur(d)
        )));
    }
    Ok(d)
}

fn agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let limit = |flag: &str, text: &str| -> Result<std::time::Duration, Failure> {
        let d = text
            .parse::<Dur>()
            .map_err(|e| Failure::Usage(format!("--{flag}: {e}")))?
            .0;
        agent_limit(flag, d)
    };
    let limits = crate::agent::Limits {
        max_fault_duration: limit("max-fault-duration", &args.max_fault_duration)?,
        max_lease_ttl: limit("max-lease-ttl", &args.max_lease_ttl)?,
    };
    let token = match (&args.token_file, &args.token_env) {
        (Some(path), _) => crate::agent::Token::from_file(path),
        (None, var) => crate::agent::Token::from_env(
            var.as_deref()
                .unwrap_or(crate::agent::auth::DEFAULT_TOKEN_ENV),
        ),
    }
    .map_err(Failure::Usage)?;
    // Checked here too (Agent::start repeats it) so the refusal comes before the runtime starts.
    crate::agent::auth::check_exposure(args.listen, &token).map_err(Failure::Usage)?;
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => crate::agent::journal::default_dir().map_err(Failure::Usage)?,
    };
    let config = crate::agent::AgentConfig {
        listen: args.listen,
        token,
        limits,
        state_dir,
    };
    Ok(runtime()?.block_on(crate::agent::run(config))?)
}

fn gpu_hog(args: &GpuHogArgs) -> anyhow::Result<ExitCode> {
    let pressure = pressure_spec(args).to_pressure().map_err(Failure::Usage)?;
    Ok(crate::gpu::hog::run(&pressure, !args.ignore_stdin)?)
}

fn schema() -> anyhow::Result<ExitCode> {
    let text = experiment::schema::json_schema().context("cannot render the JSON Schema")?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("cannot write the JSON Schema to stdout")?;
    Ok(ExitCode::Success)
}

/// The `gpu-hog` flags as a spec, so they pass the same checks as a file's.
fn pressure_spec(args: &GpuHogArgs) -> crate::gpu::GpuPressureSpec {
    crate::gpu::GpuPressureSpec {
        allocate: args.target.allocate,
        fraction: args.target.fraction,
        leave_free: args.target.leave_free,
        devices: (!args.devices.is_empty()).then(|| args.devices.clone()),
        chunk: Some(args.chunk),
        ramp: args.ramp,
    }
}

fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Opts::command();
    clap_complete::generate(args.shell, &mut cmd, "faultline", &mut std::io::stdout());
    Ok(ExitCode::Success)
}

fn proxy(args: &crate::cli::ProxyArgs) -> anyhow::Result<ExitCode> {
    Ok(runtime()?.block_on(crate::proxy::admin::run(
        args.listen,
        &args.allow_hosts,
        args.seed,
    ))?)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::gpu::{GpuPressure, Target};

    #[test]
    fn out_dirs_sort_by_time_and_are_path_safe() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let dir = reports::default_out_dir("my drill/1", t);
        assert_eq!(dir, Path::new("runs/20261118T110640Z-my_drill_1"));
    }

    /// What the controller passes to a `gpu-hog` process reads back as the same pressure.
    fn round_trip(p: &GpuPressure) -> GpuPressure {
        use clap::Parser;
        let argv = ["faultline".to_string(), "gpu-hog".to_string()]
            .into_iter()
            .chain(p.hog_args());
        let Command::GpuHog(args) = Opts::try_parse_from(argv).unwrap().command else {
            panic!("not gpu-hog");
        };
        pressure_spec(&args).to_pressure().unwrap()
    }

    #[test]
    fn hog_flags_reproduce_the_pressure_exactly() {
        for p in [
            GpuPressure {
                target: Target::Fraction(0.9),
                devices: Some(vec![1, 0]),
                chunk: 256 << 20,
                ramp: Some(Duration::from_nanos(1_500_000_001)),
            },
            GpuPressure {
                target: Target::Allocate((40 << 30) + 1),
                devices: None,
                chunk: 3 << 20,
                ramp: None,
            },
            GpuPressure {
                target: Target::LeaveFree(2 << 30),
                devices: Some(vec![7]),
                chunk: 1 << 20,
                ramp: Some(Duration::from_secs(10)),
            },
            GpuPressure {
                target: Target::Fraction(1.0 / 3.0),
                devices: None,
                chunk: 1 << 30,
                ramp: None,
            },
        ] {
            assert_eq!(round_trip(&p), p);
        }
    }
}
