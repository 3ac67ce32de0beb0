//! Experiment file -> typed, cross-checked `Experiment`. This is the only place YAML is read;
//! everything after it works on typed values.

mod check;
pub mod error;
pub mod headers;
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
    End,
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
