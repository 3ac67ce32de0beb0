//! `--dry-run`: what a run would start, inject and judge, without touching anything.

use std::fmt::Write;

use crate::experiment::{Action, Experiment, LiftTarget, ServiceSpec};
use crate::units::human_duration;

/// The plan as text, in the order things would happen.
pub fn render(exp: &Experiment, seed: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dry run of `{}` ({}), seed {}, {} long",
        exp.name,
        exp.path.display(),
        seed,
        human_duration(exp.end)
    );
    if let Some(d) = &exp.description {
        let _ = writeln!(out, "  {d}");
    }
    let _ = writeln!(
        out,
        "\nservices (started in this order, stopped in reverse):"
    );
    if exp.services.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for s in &exp.services {
        let _ = writeln!(out, "  {:<16} {}", s.name, describe_service(&s.spec));
    }
    let _ = writeln!(out, "\nfault proxies:");
    if exp.proxies.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for p in &exp.proxies {
        let _ = writeln!(
            out,
            "  {:<16} {} -> {}",
            p.name, p.spec.listen, p.spec.upstream
        );
    }
    let _ = writeln!(out, "\nload (open loop, from 0s to the end):");
    for l in &exp.streams {
        let r = &l.spec.request;
        let api = r.api.name();
        let _ = writeln!(
            out,
            "  {:<16} {} POST {} ({api}, {}, model {}), timeout {}",
            l.name,
            l.spec.rate,
            l.spec.url.value,
            if r.stream {
                "streaming"
            } else {
                "not streaming"
            },
            r.model,
            l.spec.timeout
        );
        // What varies per request, drawn from the seed shown above.
        let mut drawn = Vec::new();
        if let Some(t) = &r.prompt_tokens {
            drawn.push(format!("prompt_tokens {t}"));
        }
        if let (Some(p), Some(loaded)) = (&r.prompts, &l.prompts) {
            drawn.push(format!(
                "prompts from {} ({} prompts)",
                p.value,
                loaded.len()
            ));
        }
        if let Some(t) = &r.max_tokens {
            drawn.push(format!("max_tokens {t}"));
        }
        if !drawn.is_empty() {
            let _ = writeln!(out, "  {:<16}   per request: {}", "", drawn.join(", "));
        }
        // As written: `${NAME}` stays a name, the environment's value is never shown.
        for h in &l.headers {
            let _ = writeln!(out, "  {:<16}   header {}: {}", "", h.name, h.written);
        }
    }
    let _ = writeln!(out, "\ntimeline:");
    for step in &exp.timeline {
        let what = match &step.action {
            Action::Inject(inj) => {
                let fault = serde_json::to_string(&inj.fault)
                    .unwrap_or_else(|_| inj.fault.kind().to_string());
                format!("inject `{}` on {}: {fault}", inj.id, inj.target.name())
            }
            Action::Lift(LiftTarget::All) => "lift every fault".to_string(),
            Action::Lift(LiftTarget::Fault(id)) => format!("lift `{id}`"),
            Action::Rate(change) => {
                let to = crate::load::rates::number(change.to.as_per_second());
                if change.over.is_zero() {
                    format!("rate of `{}` steps to {to}/s", change.stream)
                } else {
                    format!(
                        "rate of `{}` ramps to {to}/s over {}",
                        change.stream,
                        human_duration(change.over)
                    )
                }
            }
            Action::End => {
                "end: stop the load, lift everything, stop everything, judge".to_string()
            }
        };
        let _ = writeln!(out, "  {:>8}  {what}", human_duration(step.at));
    }
    let _ = writeln!(
        out,
        "  no fault may stay injected longer than {}",
        human_duration(exp.max_fault_duration)
    );
    let _ = writeln!(out, "\nbudgets:");
    let budgets = serde_json::to_value(&exp.budgets).ok();
    match budgets
        .as_ref()
        .and_then(|b| b.as_object())
        .filter(|o| !o.is_empty())
    {
        None => {
            let _ = writeln!(out, "  (none: the run always passes)");
        }
        Some(map) => {
            for (name, value) in map {
                let _ = writeln!(out, "  {name}: {}", compact(value));
            }
        }
    }
    if let Some(a) = &exp.abort_if {
        let _ = writeln!(
            out,
            "\nabort_if: client error rate over {} for {} stops the run (exit 3)",
            a.error_rate_over, a.sustained
        );
    }
    let _ = writeln!(out, "\nnothing was started: this was a dry run");
    out
}

fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn describe_service(spec: &ServiceSpec) -> String {
    match spec {
        ServiceSpec::Simulate(s) => {
            let mut d = format!(
                "simulated host on {} (ttft {}, {} tokens/s, {} tokens",
                s.listen, s.ttft, s.tokens_per_second, s.completion_tokens
            );
            if let Some(c) = s.capacity {
                let _ = write!(d, ", capacity {c}");
            }
            if let Some(m) = &s.memory {
                let _ = write!(d, ", KV cache {} tokens", m.kv_tokens);
                if m.leak_per_second > 0 {
                    let _ = write!(d, " leaking {}/s after {}", m.leak_per_second, m.leak_after);
                }
            }
            if let Some(c) = s.cold_start {
                let _ = write!(d, ", cold start {c}");
            }
            d + ")"
        }
        ServiceSpec::Gateway(g) => {
            let ups: Vec<String> = g.upstreams.iter().map(ToString::to_string).collect();
            format!(
                "reference gateway on {} -> {} ({}, {} retries, eject after {} for {})",
                g.listen,
                ups.join(", "),
                match g.strategy {
                    crate::experiment::Strategy::Failover => "failover",
                    crate::experiment::Strategy::RoundRobin => "round robin",
                },
                g.retries,
                g.eject_after,
                g.cooldown
            )
        }
        ServiceSpec::Command(c) => {
            let mut d = format!("command: {}", c.command.join(" "));
            if let Some(r) = &c.ready {
                match (&r.tcp, &r.http) {
                    (Some(addr), _) => {
                        let _ = write!(d, " (ready: tcp {addr} within {})", r.within);
                    }
                    (None, Some(url)) => {
                        let _ = write!(d, " (ready: http {url} within {})", r.within);
                    }
                    (None, None) => {}
                }
            }
            d
        }
    }
}
