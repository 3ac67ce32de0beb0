//! Experiment file -> typed, cross-checked `Experiment`. This is the only place YAML is read;
//! everything after it works on typed values.

mod check;
pub mod error;
pub mod headers;
pub mod prompts;
pub mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ExperimentError, Problem};
pub use schema::{
    AbortIf, Api, Budgets, CommandSpec, Exhaustion, GatewaySpec, HostSpec, LoadStreamSpec,
    MeasureSpec, MemorySpec, Overflow, ProxyDriver, ProxyMode, ProxySpec, ReadySpec, RequestSpec,
    ServiceSpec, SimulateSpec, Strategy, ToxiproxyServer,
};

use crate::fault::FaultSpec;

/// A checked experiment: every name resolves, every step fits the timeline, every budget can be
/// measured.
#[derive(Clone, Debug)]
pub struct Experiment {
    pub path: PathBuf,
    /// The file as written, carried into the JSON report so a drill can be re-run from it.
    pub source: String,
    pub name: String,
    pub description: Option<String>,
    pub seed: u64,
    pub services: Vec<Service>,
    pub proxies: Vec<Proxy>,
    /// The Toxiproxy server that `driver: toxiproxy` proxies live on.
    pub toxiproxy: Option<ToxiproxyServer>,
    /// Live hosts with agents, in file order.
    pub hosts: Vec<(String, HostSpec)>,
    pub streams: Vec<LoadStream>,
    /// Sorted by time; auto-lifts from `duration:` are already in place.
    pub timeline: Vec<Step>,
    /// When the run ends.
    pub end: Duration,
    pub budgets: Budgets,
    pub measure: MeasureSpec,
    pub abort_if: Option<AbortIf>,
    /// The longest any fault may stay injected; the timeline is checked against it.
    pub max_fault_duration: Duration,
}

#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub spec: ServiceSpec,
}

#[derive(Clone, Debug)]
pub struct Proxy {
    pub name: String,
    pub spec: ProxySpec,
    /// `spec.upstream_tls`, built (CA file read) when the file was checked.
    pub tls: crate::net::Tls,
}

#[derive(Clone, Debug)]
pub struct LoadStream {
    pub name: String,
    pub target: Target,
    pub spec: LoadStreamSpec,
    /// `spec.headers`, resolved (environment variables read) when the file was checked.
    pub headers: Vec<headers::RequestHeader>,
    /// `spec.request.prompts`, read and checked when the file was checked.
    pub prompts: Option<std::sync::Arc<[prompts::Prompt]>>,
    /// The rate changes the timeline makes to this stream, in time order.
    pub rate_changes: Vec<(Duration, RateChange)>,
    /// `spec.tls`, built (CA file read) when the file was checked.
    pub tls: crate::net::Tls,
}

/// Where a load stream sends: parsed once from its `url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub scheme: crate::net::Scheme,
    /// Host and port, the host as written: it is resolved again at each new connection, as a
    /// real client resolves it, so DNS-based failover acts on the load as it acts on clients.
    pub addr: crate::net::HostPort,
    /// The `Host` header value, as written in the URL.
    pub authority: String,
    pub path_and_query: String,
}

impl Target {
    /// The URI requests are sent to.
    pub fn uri(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.as_str(),
            self.addr,
            self.path_and_query
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Inject(Box<Injection>),
    Lift(LiftTarget),
    /// A load stream's rate changes: load, not a fault, so it opens no fault window.
    Rate(RateChange),
    End,
}

/// A rate step (`over` zero) or a linear ramp to `to` over `over`, from the step's time.
#[derive(Clone, Debug, PartialEq)]
pub struct RateChange {
    pub stream: String,
    pub to: crate::units::Rate,
    pub over: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Injection {
    pub id: String,
    pub target: FaultTarget,
    /// The fault as the file states it (for the reports and `--dry-run`).
    pub fault: FaultSpec,
    /// The same fault, checked and in the form its backend applies.
    pub action: crate::fault::FaultAction,
}

/// What a fault acts on: a proxy's traffic or a service's process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultTarget {
    Proxy(String),
    Service(String),
    /// A live host, through its agent.
    Host(String),
    /// The machine faultline runs on (GPU faults without a `host:`).
    Local,
}

impl FaultTarget {
    pub fn name(&self) -> &str {
        match self {
            FaultTarget::Proxy(n) | FaultTarget::Service(n) | FaultTarget::Host(n) => n,
            FaultTarget::Local => "local",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiftTarget {
    All,
    Fault(String),
}

/// Reads, parses and checks one experiment file.
pub fn load(path: &Path) -> Result<Experiment, ExperimentError> {
    let source = std::fs::read_to_string(path).map_err(|e| Problem {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the experiment file: {e}"),
        excerpt: None,
    })?;
    parse(path, source)
}

/// Parses and checks experiment text; `path` names it in errors.
pub fn parse(path: &Path, source: String) -> Result<Experiment, ExperimentError> {
    let file: schema::ExperimentFile =
        serde_saphyr::from_str(&source).map_err(|e| yaml_problem(path, &e))?;
    check::check(path, source, file)
}

fn yaml_problem(path: &Path, e: &serde_saphyr::Error) -> Problem {
    let rendered = e.to_string();
    // The parser renders "error: line L column C: message" and then an excerpt; keep the
    // message and the excerpt, and name the real file in place of "<input>".
    let mut lines = rendered.lines();
    let head = lines.next().unwrap_or_default();
    let message = head
        .strip_prefix("error: ")
        .and_then(|rest| {
            rest.split_once(": ")
                .filter(|(pos, _)| pos.starts_with("line "))
                .map(|(_, m)| m)
        })
        .unwrap_or(head)
        .to_string();
    let excerpt: Vec<&str> = lines.collect();
    let excerpt = (!excerpt.is_empty()).then(|| {
        excerpt
            .join("\n")
            .replace("<input>", &path.display().to_string())
    });
    match e.location() {
        Some(loc) => Problem {
            excerpt,
            ..Problem::at(path, loc, message)
        },
        None => Problem {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message,
            excerpt,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{FaultSpec, LatencyPoint};

    const FILE: &str = r#"
version: 1
name: t
services:
  host: { simulate: { listen: "127.0.0.1:9001" } }
proxies:
  p: { listen: "127.0.0.1:9011", upstream: "127.0.0.1:9001" }
load:
  a: { url: "http://localhost:9011/v1/chat/completions", rate: 120/m, request: { api: openai-chat } }
  b: { url: "http://127.0.0.1:9011/v1/messages", rate: 5/s, request: { api: anthropic-messages, stream: false } }
timeline:
  - { at: 9s, end: true }
  - { at: 2s, inject: { proxy: p, duration: 3s, fault: { latency: { delay: 200ms, where: per_chunk } } } }
  - { at: 1s, inject: { id: errs, proxy: p, fault: { http_error: { status: 529, probability: 25% } } } }
  - { at: 6s, lift: errs }
expect:
  max_error_rate: 0.5%
  streams:
    b: { max_errors: 0 }
"#;

    fn parsed() -> Experiment {
        parse(Path::new("t.yaml"), FILE.to_string()).unwrap()
    }

    #[test]
    fn the_timeline_is_sorted_with_auto_lifts_in_place() {
        let exp = parsed();
        let at: Vec<u64> = exp.timeline.iter().map(|s| s.at.as_secs()).collect();
        assert_eq!(at, vec![1, 2, 5, 6, 9]);
        assert_eq!(exp.end, Duration::from_secs(9));
        assert_eq!(
            exp.timeline[2].action,
            Action::Lift(LiftTarget::Fault("p/latency".into()))
        );
        assert_eq!(exp.timeline[4].action, Action::End);
    }

    #[test]
    fn values_arrive_typed() {
        let exp = parsed();
        assert_eq!(exp.streams[0].spec.rate.as_per_second(), 2.0);
        assert_eq!(exp.streams[0].target.addr.port(), 9011);
        assert_eq!(exp.streams[0].target.addr.host(), "localhost");
        assert_eq!(exp.streams[0].target.authority, "localhost:9011");
        assert_eq!(exp.streams[1].target.path_and_query, "/v1/messages");
        assert!(!exp.streams[1].spec.request.stream);
        assert_eq!(exp.budgets.max_error_rate.unwrap().fraction(), 0.005);
        assert_eq!(exp.budgets.streams["b"].value.max_errors, Some(0));
        let Action::Inject(inj) = &exp.timeline[1].action else {
            panic!("not an injection")
        };
        match &inj.fault {
            FaultSpec::Latency(l) => {
                assert_eq!(l.delay.0, Duration::from_millis(200));
                assert_eq!(l.point, LatencyPoint::PerChunk);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(exp.seed, 0);
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let exp = parsed();
        let s = &exp.streams[0].spec;
        assert_eq!(s.timeout.0, Duration::from_secs(10));
        assert_eq!(s.served_by.header, "x-served-by");
        assert_eq!(exp.measure.window.0, Duration::from_secs(1));
        let ServiceSpec::Simulate(sim) = &exp.services[0].spec else {
            panic!("not a host")
        };
        assert_eq!((sim.completion_tokens, sim.overflow), (16, Overflow::Queue));
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let bad = FILE.replace("rate: 5/s", "rate: fast");
        let err = parse(Path::new("dir/t.yaml"), bad).unwrap_err();
        let p = &err.problems[0];
        assert_eq!((p.line, p.column), (10, 56));
        assert!(
            err.to_string()
                .starts_with("dir/t.yaml:10:56: expected a rate"),
            "{err}"
        );
        assert!(p
            .excerpt
            .as_deref()
            .unwrap_or_default()
            .contains("dir/t.yaml:10:56"));
    }

    #[test]
    fn both_cut_points_at_once_are_refused() {
        let bad = FILE.replace(
            "{ latency: { delay: 200ms, where: per_chunk } }",
            "{ truncate_stream: { after_bytes: 10, after_events: 2 } }",
        );
        let err = parse(Path::new("t.yaml"), bad).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }

    fn with_step(step: &str) -> String {
        FILE.replace(
            "  - { at: 6s, lift: errs }\n",
            &format!("  - {{ at: 6s, lift: errs }}\n  - {step}\n"),
        )
    }

    #[test]
    fn rate_steps_are_typed_and_given_to_their_stream() {
        let text = with_step("{ at: 3s, rate: { stream: a, to: 10/s, over: 2s } }").replace(
            "  - { at: 6s, lift: errs }\n",
            "  - { at: 6s, lift: errs }\n  - { at: 7s, rate: { stream: a, to: 1/s } }\n",
        );
        let exp = parse(Path::new("t.yaml"), text).unwrap();
        let rates: Vec<(u64, &RateChange)> = exp
            .timeline
            .iter()
            .filter_map(|s| match &s.action {
                Action::Rate(r) => Some((s.at.as_secs(), r)),
                _ => None,
            })
            .collect();
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[0].0, 3);
        assert_eq!(rates[0].1.over, Duration::from_secs(2));
        assert_eq!(rates[1].1.over, Duration::ZERO);
        let a = &exp.streams[0];
        assert_eq!(a.rate_changes.len(), 2);
        assert_eq!(a.rate_changes[1].1.to.as_per_second(), 1.0);
        assert!(exp.streams[1].rate_changes.is_empty());
    }

    #[test]
    fn rate_steps_that_cannot_happen_are_refused() {
        for (step, says) in [
            (
                "{ at: 3s, rate: { stream: nope, to: 10/s } }",
                "t.yaml:16:31: `rate` names no load stream `nope`; streams: a, b",
            ),
            (
                "{ at: 8s, rate: { stream: a, to: 10/s, over: 2s } }",
                "this ramp would end at 10s, after the end of the run at 9s",
            ),
            (
                "{ at: 10s, rate: { stream: a, to: 10/s } }",
                "past the end of the run",
            ),
            (
                "{ at: 3s, rate: { stream: a, to: 0/s } }",
                "a rate must be between one a day and 1000000/s",
            ),
            (
                "{ at: 3s, lift: all, rate: { stream: a, to: 5/s } }",
                "exactly one of `inject`, `lift`, `rate` or `end`",
            ),
        ] {
            let err = parse(Path::new("t.yaml"), with_step(step)).unwrap_err();
            assert!(err.to_string().contains(says), "{step}: {err}");
        }
    }

    #[test]
    fn a_warmup_that_reaches_the_first_fault_is_refused() {
        let ok = format!("{FILE}measure: {{ warmup: 900ms }}\n");
        let exp = parse(Path::new("t.yaml"), ok).unwrap();
        assert_eq!(
            exp.measure.warmup,
            Some(crate::units::Dur::from_millis(900))
        );
        let bad = format!("{FILE}measure: {{ warmup: 1s }}\n");
        let err = parse(Path::new("t.yaml"), bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("`measure.warmup` of 1s reaches the first fault at 1s"),
            "{err}"
        );
    }

    #[test]
    fn prompts_files_are_read_relative_to_the_experiment_with_file_and_line() {
        let dir = std::env::temp_dir().join(format!("faultline-prompts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("good.jsonl"), "{\"prompt\": \"a b\"}\n").unwrap();
        std::fs::write(
            dir.join("bad.jsonl"),
            "{\"prompt\": \"a\"}\n{\"text\": 1}\n",
        )
        .unwrap();
        let experiment = dir.join("t.yaml");
        let with = |extra: &str| {
            FILE.replace(
                "request: { api: openai-chat }",
                &format!("request: {{ api: openai-chat, {extra} }}"),
            )
        };
        let exp = parse(&experiment, with("prompts: good.jsonl")).unwrap();
        assert_eq!(
            exp.streams[0].prompts.as_deref(),
            Some(&[prompts::Prompt::Text("a b".into())][..])
        );
        let err = parse(&experiment, with("prompts: bad.jsonl")).unwrap_err();
        let bad = dir.join("bad.jsonl");
        assert!(
            err.to_string().contains(&format!(
                "{}:2:1: prompts of load stream `a`",
                bad.display()
            )),
            "{err}"
        );
        let err = parse(&experiment, with("prompts: missing.jsonl")).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
        let err = parse(
            &experiment,
            with("prompts: good.jsonl, prompt_tokens: { min: 1, max: 9 }"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("keep one"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn with_host(agent: &str) -> String {
        FILE.replace(
            "proxies:\n",
            &format!("hosts:\n  gpu-1: {{ agent: \"{agent}\" }}\nproxies:\n"),
        )
    }

    #[test]
    fn host_agents_are_named_by_host_and_port_and_not_resolved() {
        let exp = parse(
            Path::new("t.yaml"),
            with_host("faultline-agent.chaos.svc.cluster.local:7070"),
        )
        .unwrap();
        let agent = &exp.hosts[0].1.agent;
        assert_eq!(
            (agent.host(), agent.port()),
            ("faultline-agent.chaos.svc.cluster.local", 7070)
        );
        let exp = parse(Path::new("t.yaml"), with_host("10.1.2.3:7070")).unwrap();
        assert_eq!(exp.hosts[0].1.agent.to_string(), "10.1.2.3:7070");
        for (agent, says) in [
            ("gpu-node", "t.yaml:7:19: `gpu-node` needs a port"),
            ("gpu-node:", "t.yaml:7:19: `gpu-node:`: `` is not a port"),
            (":7070", "t.yaml:7:19: `:7070` has no host"),
            (
                "gpu-node:0",
                "t.yaml:7:10: host `gpu-1`: agent `gpu-node:0`: port 0",
            ),
        ] {
            let err = parse(Path::new("t.yaml"), with_host(agent)).unwrap_err();
            assert!(err.to_string().starts_with(says), "{agent}: {err}");
        }
    }

    #[test]
    fn duplicate_fault_ids_are_refused() {
        let bad = FILE
            .replace("id: errs,", "id: p/latency,")
            .replace("lift: errs", "lift: all");
        let err = parse(Path::new("t.yaml"), bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("fault id `p/latency` is already used"),
            "{err}"
        );
    }
}
