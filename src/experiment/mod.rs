//! Experiment file -> typed, cross-checked `Experiment`. This is the only place YAML is read;
//! everything after it works on typed values.

mod check;
pub mod error;
pub mod schema;
pub mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ExperimentError, Problem};
pub use schema::{
    Api, Budgets, GatewaySpec, LoadStreamSpec, MeasureSpec, Overflow, ProxyMode, ProxySpec,
    RequestSpec, ServiceSpec, SimulateSpec, Strategy,
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
    pub streams: Vec<LoadStream>,
    /// Sorted by time; auto-lifts from `duration:` are already in place.
    pub timeline: Vec<Step>,
    /// When the run ends.
    pub end: Duration,
    pub budgets: Budgets,
    pub measure: MeasureSpec,
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
}

#[derive(Clone, Debug)]
pub struct LoadStream {
    pub name: String,
    pub target: Target,
    pub spec: LoadStreamSpec,
}

/// Where a load stream sends: parsed once from its `url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header value, as written in the URL.
    pub authority: String,
    pub path_and_query: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Inject(Injection),
    Lift(LiftTarget),
    End,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Injection {
    pub id: String,
    pub proxy: String,
    pub fault: FaultSpec,
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
