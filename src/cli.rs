//! Command-line definitions only. Help text, the man-style `--help` and shell completions all
//! come from these; `commands` turns them into validated options.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::units::{Dur, Percent, Size};

#[derive(Debug, Parser)]
#[command(
    name = "faultline",
    version,
    about = "Chaos drills for LLM inference stacks: inject faults, drive load, judge failover against budgets"
)]
pub struct Opts {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an experiment: start its services, drive load, inject faults, judge the budgets.
    Run(RunArgs),
    /// Check experiment files without running anything.
    Validate(ValidateArgs),
    /// Serve a simulated inference host (OpenAI- and Anthropic-compatible).
    Simulate(SimulateArgs),
    /// Print the JSON Schema of experiment files (committed as docs/experiment.schema.json).
    Schema,
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Run on a live inference host: apply faults there for a controller, each on a lease.
    Agent(AgentArgs),
    /// Hold GPU memory (allocated and written) until SIGTERM, Ctrl-C or the end of stdin.
    GpuHog(GpuHogArgs),
    /// Serve TCP fault proxies driven by a Toxiproxy-compatible admin API.
    Proxy(ProxyArgs),
    /// Merge the directories of a drill's segments (`run --segment`) into one report.
    Merge(MergeArgs),
    /// Run drills on Kubernetes: render the objects a drill needs.
    #[command(subcommand)]
    Kube(KubeCommand),
}

/// Where a verdict's reports go: `run` and `merge` write the same ones.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Directory for the reports [default: runs/<time>-<name>/].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write the JSON report to this path.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the JUnit XML report (one test case per budget) to this path.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The segment directories (each `run --segment K/N --out DIR`), every K from 1 to N once.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub reports: ReportArgs,
}

#[derive(Debug, Subcommand)]
pub enum KubeCommand {
    /// Write the manifests of a drill: the experiment's ConfigMap, the Indexed Job of its
    /// segments, the records volume, the agent DaemonSet (when the file has `hosts:`), the
    /// merge Job and a pod to fetch the report from (docs/kubernetes.md).
    Manifests(ManifestsArgs),
}

/// Which of the rendered sets to print when there is no --out.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PartArg {
    /// What is applied first: everything the run needs.
    Drill,
    /// The merge Job, applied once the drill's Job has completed.
    Merge,
    /// A pod holding the records for `kubectl cp`.
    Fetch,
}

/// How the agent reaches the node's GPUs.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GpuArg {
    /// No GPU access (process faults only).
    None,
    /// Every GPU of the node through the NVIDIA runtime class, claiming none (the ones the
    /// inference server uses are the ones to pressure).
    RuntimeClass,
    /// `nvidia.com/gpu` from the device plugin: GPUs given to the agent alone.
    Resource,
}

#[derive(Debug, Args)]
#[group(id = "start", required = true, multiple = false)]
pub struct StartArgs {
    /// Every segment's time zero, RFC 3339 with its zone, e.g. 2026-12-01T10:00:00Z (what
    /// `run --start-at` takes).
    #[arg(long, value_name = "TIME", group = "start")]
    pub start_at: Option<crate::segment::StartAt>,
    /// Time zero this long after rendering, e.g. 3m (leave time for scheduling and image pulls).
    #[arg(long, value_name = "DURATION", group = "start")]
    pub start_in: Option<Dur>,
}

#[derive(Debug, Args)]
pub struct ManifestsArgs {
    /// The experiment file (its host names are the cluster's: they are not resolved here).
    pub file: PathBuf,
    /// Pods that share the load (segments 1..N; segment 1 leads).
    #[arg(long, value_name = "N")]
    pub workers: u32,
    /// Namespace of every object.
    #[arg(long, value_name = "NS", default_value = "faultline")]
    pub namespace: String,
    /// Also render the Namespace itself.
    #[arg(long)]
    pub create_namespace: bool,
    /// The faultline image (built from the Dockerfile), e.g. registry.example/faultline:0.1.0.
    #[arg(long)]
    pub image: String,
    #[command(flatten)]
    pub start: StartArgs,
    /// Name of the ReadWriteMany PersistentVolumeClaim holding every segment's records.
    #[arg(long, value_name = "NAME", default_value = "faultline-records")]
    pub records_claim: String,
    /// Size the claim requests.
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub records_size: Size,
    /// Storage class of the claim (one that offers ReadWriteMany) [default: the cluster's].
    #[arg(long, value_name = "NAME")]
    pub storage_class: Option<String>,
    /// Secret whose keys become the segment pods' environment (for `${NAME}` in headers).
    #[arg(long, value_name = "NAME")]
    pub env_secret: Option<String>,
    /// Nodes the agent runs on, by label.
    #[arg(
        long,
        value_name = "KEY=VALUE",
        default_value = "faultline.dev/agent=true"
    )]
    pub agent_node_selector: String,
    /// Secret holding the agent's token under the key `token` (created by you, never rendered).
    #[arg(long, value_name = "NAME", default_value = "faultline-agent-token")]
    pub agent_token_secret: String,
    /// The agent's --max-lease-ttl.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub agent_max_lease_ttl: Dur,
    /// The agent's --max-fault-duration.
    #[arg(long, value_name = "DURATION", default_value = "30m")]
    pub agent_max_fault_duration: Dur,
    /// How the agent reaches the node's GPUs (for gpu_memory_pressure).
    #[arg(long, value_enum, default_value_t = GpuArg::None)]
    pub gpu: GpuArg,
    /// The runtime class for --gpu runtime-class.
    #[arg(long, value_name = "NAME", default_value = "nvidia")]
    pub gpu_runtime_class: String,
    /// GPUs the agent claims with --gpu resource.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub gpu_count: u32,
    /// Write drill.yaml, merge.yaml and fetch.yaml into this directory instead of printing.
    #[arg(long, value_name = "DIR", conflicts_with = "part")]
    pub out: Option<PathBuf>,
    /// Which set to print [default: drill].
    #[arg(long, value_enum)]
    pub part: Option<PartArg>,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address of the admin API.
    #[arg(long, default_value = "127.0.0.1:8474")]
    pub listen: SocketAddr,
    /// Also accept this name (no port) in a request's Host header, e.g. the name other
    /// containers reach it by; repeat for several. Its address and localhost always pass.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// Seed for every random choice of the proxies (toxicity, jitter, slice sizes, HTTP fault
    /// decisions): the same seed and sequence of connections give the same decisions.
    #[arg(long, default_value_t = crate::proxy::tcp::DEFAULT_SEED)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// Seed for every fault decision (overrides the file's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub reports: ReportArgs,
    /// Print what would start, be injected and be judged, and touch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print only the verdict table.
    #[arg(long, short)]
    pub quiet: bool,
    /// Send only share K of N of every stream's schedule (request i when i mod N = K - 1) and
    /// write its raw records for `faultline merge`; segment 1 is the leader, the only one to
    /// start services and apply faults. N above 1 needs --start-at.
    #[arg(long, value_name = "K/N")]
    pub segment: Option<crate::segment::Segment>,
    /// Time zero as an RFC 3339 time with its zone, e.g. 2026-05-01T12:00:00Z: the run waits
    /// for it, and refuses if it has passed. Every segment of a drill gets the same one.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<crate::segment::StartAt>,
    /// Serve live Prometheus metrics at http://ADDR/metrics while the run goes, e.g.
    /// 127.0.0.1:9464 (docs/metrics.md).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// How long --metrics keeps serving after the run, so the last scrape sees its end;
    /// SIGINT or SIGTERM ends it sooner.
    #[arg(long, value_name = "DURATION", default_value = crate::metrics::DEFAULT_LINGER, requires = "metrics")]
    pub metrics_linger: Dur,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Experiment files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub listen: SocketAddr,
    /// Model id the host reports.
    #[arg(long, default_value = "sim")]
    pub model: String,
    /// Time to first token, e.g. 50ms.
    #[arg(long, default_value = "20ms")]
    pub ttft: String,
    /// Tokens streamed per second.
    #[arg(long, default_value_t = 200.0)]
    pub tokens_per_second: f64,
    /// Tokens in every completion.
    #[arg(long, default_value_t = 16)]
    pub completion_tokens: u32,
    /// Requests served at once; unlimited when absent.
    #[arg(long)]
    pub capacity: Option<u32>,
    /// What a full host does with another request.
    #[arg(long, value_enum, default_value_t = OverflowArg::Queue)]
    pub overflow: OverflowArg,
    /// Status answered when rejecting.
    #[arg(long, default_value = "429")]
    pub reject_status: crate::units::ErrorStatus,
    /// Value of the x-served-by header.
    #[arg(long, default_value = "sim")]
    pub served_by: String,
    /// KV-cache capacity in tokens; each request holds prompt + completion tokens while in flight.
    #[arg(long, value_name = "TOKENS")]
    pub kv_tokens: Option<u64>,
    /// KV-cache capacity lost per second to a leak (needs --kv-tokens).
    #[arg(long, value_name = "TOKENS", requires = "kv_tokens")]
    pub leak_per_second: Option<u64>,
    /// When the leak starts, e.g. 30s (needs --kv-tokens).
    #[arg(long, value_name = "DURATION", requires = "kv_tokens")]
    pub leak_after: Option<String>,
    /// What a full KV cache does: crash (exit 137, like an OOM kill) or reject the request.
    #[arg(long, value_enum, default_value_t = ExhaustionArg::Crash, requires = "kv_tokens")]
    pub on_exhaustion: ExhaustionArg,
    /// Model load time after start, answering 503 to everything meanwhile, e.g. 5s.
    #[arg(long, value_name = "DURATION")]
    pub cold_start: Option<String>,
    /// Completion text: verifiable (t<i>/<n> tokens a reader can check) or plain words.
    #[arg(long, value_enum, default_value_t = ContentArg::Verifiable)]
    pub content: ContentArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ContentArg {
    Verifiable,
    Plain,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExhaustionArg {
    Crash,
    Reject,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OverflowArg {
    Queue,
    Reject,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Address to listen on; other than loopback only with a token of 16+ characters.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Environment variable holding the bearer token [default: FAULTLINE_AGENT_TOKEN].
    #[arg(long, value_name = "VAR", conflicts_with = "token_file")]
    pub token_env: Option<String>,
    /// File holding the bearer token (surrounding whitespace is ignored).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Longest any fault may last, however often it is renewed, e.g. 30m.
    #[arg(long, value_name = "DURATION", default_value = "30m")]
    pub max_fault_duration: String,
    /// Longest lease a controller may ask for, e.g. 60s.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub max_lease_ttl: String,
    /// Directory for the journal of what is in force, which a restarted agent undoes
    /// [default: /var/lib/faultline as root, else $XDG_STATE_HOME/faultline or
    /// ~/.local/state/faultline].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How much to take is exactly one of --allocate, --fraction, --leave-free.
#[derive(Debug, Args)]
#[group(id = "target", required = true, multiple = false)]
pub struct GpuHogTarget {
    /// Take this much on each device, e.g. 40GiB.
    #[arg(long, value_name = "SIZE", group = "target")]
    pub allocate: Option<Size>,
    /// Bring each device's used memory up to this share of its total, e.g. 0.9 or 90%.
    #[arg(long, value_name = "SHARE", group = "target")]
    pub fraction: Option<Percent>,
    /// Take everything but this much on each device, e.g. 2GiB.
    #[arg(long, value_name = "SIZE", group = "target")]
    pub leave_free: Option<Size>,
}

#[derive(Debug, Args)]
pub struct GpuHogArgs {
    #[command(flatten)]
    pub target: GpuHogTarget,
    /// A device ordinal; repeat for several [default: every device].
    #[arg(long = "device", value_name = "N")]
    pub devices: Vec<u32>,
    /// Allocation size.
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    pub chunk: Size,
    /// Spread the allocations evenly over this long, e.g. 10s [default: as fast as possible].
    #[arg(long, value_name = "DURATION")]
    pub ramp: Option<Dur>,
    /// Hold until a signal only; for running in the background, where stdin is /dev/null.
    #[arg(long)]
    pub ignore_stdin: bool,
}
