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

/// What checking a file may look up on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookups {
    /// The file runs here: its host names must resolve here and its `${NAME}` variables be set.
    Here,
    /// The file runs elsewhere (in a Kubernetes pod): its names are that network's and its
    /// variables that environment's, so neither is looked up; only their form is checked.
    Elsewhere,
}

/// Reads, parses and checks one experiment file that runs here.
pub fn load(path: &Path) -> Result<Experiment, ExperimentError> {
    load_with(path, Lookups::Here)
}

/// Reads, parses and checks one experiment file, looking up only what `lookups` allows.
pub fn load_with(path: &Path, lookups: Lookups) -> Result<Experiment, ExperimentError> {
    let source = std::fs::read_to_string(path).map_err(|e| Problem {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the experiment file: {e}"),
        excerpt: None,
    })?;
    parse_with(path, source, lookups)
}

/// Parses and checks experiment text that runs here; `path` names it in errors.
pub fn parse(path: &Path, source: String) -> Result<Experiment, ExperimentError> {
    parse_with(path, source, Lookups::Here)
}

/// Parses and checks experiment text; `path` names it in errors.
pub fn parse_with(
    path: &Path,
    source: String,
    lookups: Lookups,
) -> Result<Experiment, ExperimentError> {
    let file: schema::ExperimentFile =
        serde_saphyr::from_str(&source).map_err(|e| yaml_problem(path, &e))?;
    check::check(path, source, file, lookups)
}

/// What judging a run's records needs of its experiment: its name and budgets.
#[derive(Clone, Debug)]
pub struct Judging {
    pub name: String,
    pub description: Option<String>,
    pub budgets: Budgets,
    pub measure: MeasureSpec,
}

/// Reads the budgets of experiment text without the checks that look at this machine (the
/// environment for header secrets, prompts and CA files): `faultline merge` judges records of
/// a file the segments' runs checked already, in a pod that may have none of those.
pub fn judging(path: &Path, source: &str) -> Result<Judging, ExperimentError> {
    let file: schema::ExperimentFile =
        serde_saphyr::from_str(source).map_err(|e| yaml_problem(path, &e))?;
    Ok(Judging {
        name: file.name,
        description: file.description,
        budgets: file.expect.value,
        measure: file.measure.value,
    })
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
mod tests;
