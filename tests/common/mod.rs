//! Helpers shared by the integration tests: the real binary (always under a deadline), scratch
//! directories, free ports, and the one rule for tests that need a tool this machine may lack.
#![allow(dead_code)]

pub mod dashboard;
// Also compiled into the lib's unit tests (src/services/tests/support.rs), so the rule for
// picking a port lives once.
mod ports;
#[allow(unused_imports)] // Not every test binary picks ports.
pub use ports::free_ports;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How long any one run of the binary may take before the test fails. The longest shipped drill
/// runs 15 s; the margin is for a loaded 2-core machine, not for a hang.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a background process may take to say it is ready (a listening line, a log line).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `faultline` through assert_cmd, killed (and the test failed) after [`RUN_TIMEOUT`].
pub fn faultline() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("faultline")
        .expect("the faultline binary is built for tests");
    cmd.current_dir(repo_root()).timeout(RUN_TIMEOUT);
    cmd
}

/// `faultline` as a std Command, for tests that drive it in the background. Start it with
/// [`spawn`] or run it with [`output`], never with `.spawn()`/`.output()` directly: those have
/// no deadline.
pub fn faultline_std() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.current_dir(repo_root());
    cmd
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True under `CI=true` (or `CI=1`), as CI services and .ci/run's callers set it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The one rule for a test that needs something this machine may not have (`what` says what,
/// and how to get it). Found: true. Missing under CI: the test fails, because CI exists to run
/// it and a skip there would pass while testing nothing. Missing elsewhere: a loud SKIPPED line
/// and false, and the caller returns.
pub fn require_tool(what: &str, found: bool) -> bool {
    if found {
        return true;
    }
    assert!(
        !in_ci(),
        "CI=true but {what} is missing: this test would have been skipped, and a skip in CI \
         passes without testing anything. Provide it (.ci/run installs the gateways and the \
         Python client), or run without CI=true to skip."
    );
    eprintln!(
        "\n*** SKIPPED: {what} is missing; this test did NOT run (under CI=true it fails) ***\n"
    );
    false
}

/// Whether `program` is an executable file in a directory of PATH (or the sbin directories,
/// which a non-root PATH often lacks and where Debian puts haproxy and nginx).
pub fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .any(|dir| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Writes `yaml` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write experiment");
    path
}

/// Reads the run's JSON report.
pub fn report(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("report.json")).expect("report.json exists");
    serde_json::from_str(&text).expect("report.json is JSON")
}

/// Kills a child that outlives its deadline, so that no wait on it and no read from its pipes
/// can block a test past that deadline. Disarmed when dropped.
struct Watchdog {
    _disarm: mpsc::Sender<()>,
    fired: Arc<AtomicBool>,
}

impl Watchdog {
    fn arm(pid: u32, within: Duration) -> Watchdog {
        let (disarm, disarmed) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        std::thread::spawn(move || {
            // Only a timeout fires it: a dropped sender (the test is done with the child) ends
            // the thread quietly.
            if disarmed.recv_timeout(within) == Err(mpsc::RecvTimeoutError::Timeout)
                && still_our_child(pid)
            {
                flag.store(true, Ordering::SeqCst);
                eprintln!("*** watchdog: pid {pid} still running after {within:?}; SIGKILL ***");
                kill_group(pid);
            }
        });
        Watchdog {
            _disarm: disarm,
            fired,
        }
    }
}

/// Whether `pid` is a child of this process not yet reaped (running or a zombie), checked
/// without reaping it; a reaped (and so perhaps reused) pid is not.
fn still_our_child(pid: u32) -> bool {
    // SAFETY: waitid writes only into `info`; WNOWAIT leaves the child waitable for its owner.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        ) == 0
    }
}

/// A background process a test started with [`spawn`]: killed by a watchdog at its deadline,
/// and killed and reaped when dropped (so a failing test leaves nothing behind). Derefs to the
/// [`Child`].
pub struct Proc {
    /// None only once [`Proc::output`] has taken it.
    child: Option<Child>,
    watchdog: Watchdog,
    what: String,
}

/// Starts `cmd` with a deadline of [`RUN_TIMEOUT`].
pub fn spawn(cmd: &mut std::process::Command) -> Proc {
    spawn_within(cmd, RUN_TIMEOUT)
}

/// `faultline run FILE --out OUT` started through [`spawn`], its stderr piped for the test to
/// read and its stdout discarded: for tests that act on a run while it runs (signals).
pub fn spawn_run(file: &Path, out: &Path) -> Proc {
    spawn(
        faultline_std()
            .arg("run")
            .arg(file)
            .arg("--out")
            .arg(out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
    )
}

/// Starts `cmd` in a process group of its own; the watchdog kills the group after `within`.
/// A group, because a child may start its own (nginx's workers outlive a killed master and
/// keep their listening sockets): ending the test's child ends them too.
pub fn spawn_within(cmd: &mut std::process::Command, within: Duration) -> Proc {
    use std::os::unix::process::CommandExt;
    let what = format!("{cmd:?}");
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2) and
    // signal(2), both async-signal-safe, touching no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            // Out of the terminal's group, a Ctrl-C on the tests no longer reaches it: it dies
            // with the test thread that started it instead (each test starts its own).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A background group that touches the terminal gets an error, not a stop.
            libc::signal(libc::SIGTTIN, libc::SIG_IGN);
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            Ok(())
        });
    }
    let child = cmd
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    Proc {
        watchdog: Watchdog::arm(child.id(), within),
        child: Some(child),
        what,
    }
}

impl Proc {
    /// Waits for the exit, polling; None if it is still running after `within`.
    pub fn wait_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status, failing the test if the watchdog had to end the process.
    pub fn wait(&mut self) -> ExitStatus {
        let status = self.deref_mut().wait().expect("wait");
        self.assert_not_timed_out();
        status
    }

    /// Collects stdout and stderr (where piped) and the status, as `Child::wait_with_output`.
    pub fn output(mut self) -> Output {
        let child = self.child.take().expect("a child");
        let out = child.wait_with_output().expect("wait_with_output");
        self.assert_not_timed_out();
        out
    }

    fn assert_not_timed_out(&self) {
        assert!(
            !self.watchdog.fired.load(Ordering::SeqCst),
            "{} ran past its deadline and was killed",
            self.what
        );
    }
}

impl Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.child
            .as_ref()
            .expect("the child was taken by output()")
    }
}

impl DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child was taken by output()")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Reaped already (exited and waited): nothing to kill, and the wait is a no-op.
        if let Some(child) = self.child.as_mut() {
            if still_our_child(child.id()) {
                kill_group(child.id());
            }
            let _ = child.wait();
        }
    }
}

/// SIGKILL to the process group led by `pid`, which must be our unreaped child (running or a
/// zombie): its pid, and so its group's id, cannot have been reused by another process.
fn kill_group(pid: u32) {
    // SAFETY: kill(2) takes integers only; a negative pid names the group.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
}

/// Runs `cmd` to the end like `Command::output` (stdin null, stdout and stderr captured), under
/// [`RUN_TIMEOUT`].
pub fn output(cmd: &mut std::process::Command) -> Output {
    spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .output()
}

/// The lines of a child's pipe, read on a thread so that a test can wait for one with a
/// deadline. The thread keeps draining to the end, so the child never blocks on a full pipe.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
    what: String,
}

impl Lines {
    /// `what` names the stream in failure messages ("faultline proxy's stderr").
    pub fn new(pipe: impl Read + Send + 'static, what: &str) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep reading so the writer never blocks.
                    continue;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
            what: what.to_string(),
        }
    }

    /// The next line; None at the end of the stream. Fails the test if none comes in `within`.
    pub fn next_within(&mut self, within: Duration) -> Option<String> {
        match self.rx.recv_timeout(within) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "no line from {} within {within:?}; so far:\n{}",
                self.what,
                self.seen.join("\n")
            ),
        }
    }

    /// The next line, which must come within [`START_TIMEOUT`].
    pub fn next_line(&mut self) -> String {
        let what = self.what.clone();
        self.next_within(START_TIMEOUT)
            .unwrap_or_else(|| panic!("{what} ended early; it said:\n{}", self.seen.join("\n")))
    }

    /// Reads up to the first line containing `needle` and returns it; fails the test at the end
    /// of the stream or after `within`, with everything read.
    pub fn until(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no `{needle}` from {} within {within:?} ({e}); it said:\n{}",
                    self.what,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything the stream carried (what was read before included), to its end, which must
    /// come within `within`.
    pub fn read_to_end(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.seen.join("\n"),
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} did not end within {within:?}; so far:\n{}",
                    self.what,
                    self.seen.join("\n")
                ),
            }
        }
    }
}

/// `faultline proxy` on a port the OS picks, with its admin address read from the listening
/// line it prints first.
pub fn start_proxy_server() -> (Proc, SocketAddr) {
    start_proxy_server_with(&[])
}

/// `faultline proxy` with extra flags.
pub fn start_proxy_server_with(flags: &[&str]) -> (Proc, SocketAddr) {
    let mut child = spawn(
        faultline_std()
            .args(["proxy", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let mut lines = Lines::new(
        child.stderr.take().expect("piped stderr"),
        "faultline proxy's stderr",
    );
    let line = lines.until("listening on", START_TIMEOUT);
    let addr = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no admin address in `{line}`"));
    // `lines` is dropped, its thread keeps draining stderr until the proxy exits.
    (child, addr)
}

/// The token the test agents are started with.
pub const AGENT_TOKEN: &str = "a-test-token-that-is-long-enough";

/// `faultline agent` on a free loopback port; killed when dropped.
pub struct AgentProcess {
    child: Proc,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl AgentProcess {
    /// Starts it with `env` added (e.g. LD_LIBRARY_PATH for the fake libcuda).
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> AgentProcess {
        Self::start_with(dir, &[], AGENT_TOKEN, env)
    }

    /// Starts it with extra arguments, a token, and `env` added; its log goes to
    /// `dir/agent.log`.
    pub fn start_with(
        dir: &Path,
        args: &[&str],
        token: &str,
        env: &[(&str, &str)],
    ) -> AgentProcess {
        let log = dir.join("agent.log");
        let mut cmd = faultline_std();
        cmd.args(["agent", "--listen", "127.0.0.1:0"]).args(args);
        // Its own journal unless the test names one: never the user's, never another test's.
        if !args.contains(&"--state-dir") {
            cmd.arg("--state-dir").arg(dir.join("agent-state"));
        }
        let child = spawn(
            cmd.env("FAULTLINE_AGENT_TOKEN", token)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap()),
        );
        // Owned by the guard from the start, so a failed start still kills and reaps it.
        let mut agent = AgentProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = agent.log();
            if let Some(rest) = text.split("listening on http://").nth(1) {
                agent.addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                return agent;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not start within {START_TIMEOUT:?}:\n{text}"
            );
            if let Some(status) = agent.child.try_wait().unwrap() {
                panic!("the agent exited ({status}) before listening:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn process(&mut self) -> &mut Proc {
        &mut self.child
    }
}

/// The ports named in `text` as `HOST:PORT` with a loopback or wildcard host (127.x.x.x,
/// localhost, 0.0.0.0, [::1], [::]), as in `listen`, `upstream`, `ready` and URLs. Port 0 (the
/// OS picks) is left out.
pub fn local_ports(text: &str) -> std::collections::BTreeSet<u16> {
    let mut ports = std::collections::BTreeSet::new();
    for (i, _) in text.match_indices(':') {
        let host_start = text[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | ':')))
            .map_or(0, |j| j + 1);
        let host = &text[host_start..i];
        let local = host == "localhost"
            || host == "0.0.0.0"
            || host == "[::1]"
            || host == "[::]"
            || host.strip_prefix("127.").is_some_and(|rest| {
                rest.split('.').count() == 3 && rest.split('.').all(|o| o.parse::<u8>().is_ok())
            });
        let digits: String = text[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let (true, Ok(port)) = (local, digits.parse::<u16>()) {
            if port != 0 {
                ports.insert(port);
            }
        }
    }
    ports
}

/// Every string value in a YAML document (keys and comments left out).
pub fn yaml_strings(yaml: &str) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let doc: serde_json::Value =
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("not YAML: {e}"));
    let mut out = Vec::new();
    walk(&doc, &mut out);
    out
}

/// The local ports an experiment file uses: those in its values, and those in the files under
/// fixtures/ its values name (a gateway's configuration), comments left out.
pub fn experiment_ports(yaml: &str) -> std::collections::BTreeSet<u16> {
    let mut ports = std::collections::BTreeSet::new();
    for value in yaml_strings(yaml) {
        ports.extend(local_ports(&value));
        for (i, _) in value.match_indices("fixtures/") {
            let rel: String = value[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | ';'))
                .collect();
            let text = std::fs::read_to_string(repo_root().join(&rel))
                .unwrap_or_else(|e| panic!("{rel}, named in an experiment: {e}"));
            for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
                ports.extend(local_ports(line));
            }
        }
    }
    ports
}

/// The verdict row of `budget` (scope `all` first) in a JSON report.
pub fn verdict_row<'a>(report: &'a serde_json::Value, budget: &str) -> &'a serde_json::Value {
    report["evaluation"]["verdict"]["rows"]
        .as_array()
        .expect("verdict rows")
        .iter()
        .find(|r| r["budget"] == budget)
        .unwrap_or_else(|| panic!("no verdict row for {budget}"))
}

/// What one `faultline run` of a written experiment left.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The run's out dir (inside the caller's temp dir).
    pub out: PathBuf,
}

impl Ran {
    pub fn report(&self) -> serde_json::Value {
        report(&self.out)
    }
}

/// Writes `yaml` to `dir/name` and runs it with `--out dir/out` under the common deadline,
/// with `env` added to the run's environment.
pub fn run_experiment(dir: &Path, name: &str, yaml: &str, env: &[(&str, &str)]) -> Ran {
    let file = write(dir, name, yaml);
    let out = dir.join("out");
    let run = faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .envs(env.iter().copied())
        .output()
        .expect("faultline runs");
    Ran {
        code: run.status.code(),
        stdout: String::from_utf8_lossy(&run.stdout).to_string(),
        stderr: String::from_utf8_lossy(&run.stderr).to_string(),
        out,
    }
}

/// One row of a run's `requests.csv`, its cells by column name.
pub struct CsvRow(std::collections::HashMap<String, String>);

impl CsvRow {
    /// The cell of `column`; the test fails if the CSV has no such column.
    pub fn get(&self, column: &str) -> &str {
        self.0
            .get(column)
            .unwrap_or_else(|| panic!("requests.csv has no column {column}"))
    }

    /// The cell of `column` as a number (milliseconds, say).
    pub fn num(&self, column: &str) -> f64 {
        let cell = self.get(column);
        cell.parse()
            .unwrap_or_else(|_| panic!("{column} is not a number: {cell:?}"))
    }
}

/// Every row of `out/requests.csv`.
pub fn requests_csv(out: &Path) -> Vec<CsvRow> {
    let mut reader = csv::Reader::from_path(out.join("requests.csv")).expect("requests.csv exists");
    let headers = reader.headers().expect("csv header").clone();
    reader
        .records()
        .map(|r| {
            let r = r.expect("csv row");
            CsvRow(
                headers
                    .iter()
                    .zip(r.iter())
                    .map(|(h, c)| (h.to_string(), c.to_string()))
                    .collect(),
            )
        })
        .collect()
}
