//! `faultline agent` through the real binary on 127.0.0.1: authentication, process faults on
//! real `sleep` processes (their state read from /proc), leases as a dead-man's switch, limits,
//! and shutdown on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use faultline::agent::{keep_alive, AgentClient, FaultRequest, FaultSpec, ProcessAction};
use faultline::agent::{KeepAlive, ProcessFault};
use serde_json::{json, Value};

const TOKEN: &str = "agent-test-token-0123456789";

/// A running agent; killed (not shut down) when dropped.
struct Agent {
    process: common::AgentProcess,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let process = common::AgentProcess::start_with(dir.path(), extra, TOKEN, &[]);
        Agent {
            addr: process.addr,
            process,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        self.process.log()
    }

    /// Waits (bounded) for the log to say `words`: the agent logs a lift after it has acted,
    /// so a test that has just seen the effect may be ahead of the line.
    fn logged(&self, words: &str) -> bool {
        self.log_says(words, Duration::from_secs(5))
    }

    /// Waits (bounded) for `needle` in the log. A lift's line follows its SIGCONT by the
    /// journal's fsync, so a test that saw the process resume may still be ahead of the line.
    fn log_says(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        raw(
            self.addr,
            method,
            path,
            Some(&format!("Bearer {TOKEN}")),
            body,
        )
    }

    fn client(&self) -> AgentClient {
        AgentClient::new(self.addr, TOKEN.into())
    }

    /// Waits (bounded) for the agent to exit.
    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        self.process.process().wait_within(within)
    }
}

/// One HTTP/1.1 exchange over a plain socket, so a test can send exactly the bytes it means.
fn raw(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A `sleep` to be paused or killed; killed when dropped.
struct Target(Child);

impl Target {
    fn sleep(arg: &str) -> Target {
        let child = Command::new("sleep")
            .arg(arg)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let target = Target(child);
        assert!(wait_state(target.pid(), 'S', Duration::from_secs(5)));
        target
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The state letter of /proc/<pid>/stat: S sleeping, T stopped, Z zombie.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

fn wait_state(pid: u32, want: char, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if state(pid) == Some(want) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pause(pid: u32, ttl_ms: u64) -> String {
    json!({"fault": {"process": {"action": "pause", "pid": pid}}, "lease_ttl_ms": ttl_ms})
        .to_string()
}

#[test]
fn requests_without_the_token_change_nothing() {
    let agent = Agent::start(&[]);
    let target = Target::sleep("30");
    let body = pause(target.pid(), 5000);
    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some(&*format!("Basic {TOKEN}")),
    ] {
        let (status, answer) = raw(agent.addr, "POST", "/v1/faults", auth, &body);
        assert_eq!(status, 401, "{auth:?}: {answer}");
        assert!(answer["error"].is_string());
    }
    assert_eq!(raw(agent.addr, "GET", "/status", None, "").0, 401);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(state(target.pid()), Some('S'));
    let (status, answer) = agent.call("GET", "/status", "");
    assert_eq!(status, 200);
    assert_eq!(answer["faults"], json!([]));
}

#[test]
fn a_missing_token_is_a_usage_error() {
    let run = |args: &[&str], token: Option<&str>| {
        let mut cmd = common::faultline();
        cmd.arg("agent")
            .args(args)
            .env_remove("FAULTLINE_AGENT_TOKEN");
        if let Some(t) = token {
            cmd.env("FAULTLINE_AGENT_TOKEN", t);
        }
        let out = cmd.timeout(Duration::from_secs(10)).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--listen", "127.0.0.1:0"], None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("FAULTLINE_AGENT_TOKEN"), "{err}");
    let (code, err) = run(&["--listen", "127.0.0.1:0"], Some("  "));
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["--token-file", "/nonexistent/token"], None);
    assert_eq!(code, Some(2), "{err}");
    // Never on the command line, where `ps` would show it.
    assert_eq!(run(&["--token", TOKEN], None).0, Some(2));
}

#[test]
fn a_short_token_stays_on_loopback() {
    let out = common::faultline()
        .args(["agent", "--listen", "0.0.0.0:0"])
        .env("FAULTLINE_AGENT_TOKEN", "short")
        .timeout(Duration::from_secs(10))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("at least 16"), "{err}");
    assert!(!err.contains("listening"), "{err}");
}

#[test]
fn pause_by_pid_until_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    // The file wins over the environment; the agent's environment token is the same anyway.
    let agent = Agent::start(&["--token-file", token_file.to_str().unwrap()]);
    let target = Target::sleep("30");
    let (status, started) = agent.call("POST", "/v1/faults", &pause(target.pid(), 5000));
    assert_eq!(status, 201, "{started}");
    assert!(wait_state(target.pid(), 'T', Duration::from_secs(2)));
    assert_eq!(started["kind"], "process");
    assert_eq!(started["details"]["processes"][0]["pid"], target.pid());
    let id = started["id"].as_str().unwrap();

    let (_, listed) = agent.call("GET", "/v1/faults", "");
    assert_eq!(listed["faults"][0]["id"], id);
    assert!(listed["faults"][0]["lease_expires_in_ms"].as_u64().unwrap() <= 5000);

    let (status, renewed) = agent.call(
        "POST",
        &format!("/v1/faults/{id}/renew"),
        r#"{"lease_ttl_ms": 8000}"#,
    );
    assert_eq!(status, 200, "{renewed}");
    assert!(renewed["lease_expires_in_ms"].as_u64().unwrap() > 7000);

    let (status, stopped) = agent.call("DELETE", &format!("/v1/faults/{id}"), "");
    assert_eq!(status, 200, "{stopped}");
    assert!(wait_state(target.pid(), 'S', Duration::from_secs(2)));
    assert_eq!(agent.call("DELETE", &format!("/v1/faults/{id}"), "").0, 404);
    assert_eq!(
        agent.call("POST", &format!("/v1/faults/{id}/renew"), "").0,
        404
    );
    assert!(agent.logged("stopped by the controller"), "{}", agent.log());
}

#[test]
fn pause_by_command_line_match() {
    // A flag value no other test's agent has, so the self-match below can only hit this one.
    let agent = Agent::start(&["--max-lease-ttl", "61s"]);
    let target = Target::sleep("31.4159");
    let body = json!({"fault": {"process": {"action": "pause", "match": "31.4159"}},
                      "lease_ttl_ms": 5000, "id": "pi"});
    let (status, started) = agent.call("POST", "/v1/faults", &body.to_string());
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["id"], "pi");
    assert_eq!(
        started["details"]["processes"],
        json!([{"pid": target.pid(), "cmdline": "sleep 31.4159"}])
    );
    assert!(wait_state(target.pid(), 'T', Duration::from_secs(2)));
    // The same id twice is a conflict, and changes nothing.
    assert_eq!(agent.call("POST", "/v1/faults", &body.to_string()).0, 409);
    assert_eq!(agent.call("DELETE", "/v1/faults/pi", "").0, 200);
    assert!(wait_state(target.pid(), 'S', Duration::from_secs(2)));

    // A match that hits only the agent (and its ancestors, this test among them) is refused.
    let own = json!({"fault": {"process": {"action": "pause", "match": "--max-lease-ttl 61s"}}});
    let (status, refused) = agent.call("POST", "/v1/faults", &own.to_string());
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["detail"]["excluded"][0]["why"], "the agent itself");
    let none =
        json!({"fault": {"process": {"action": "kill", "match": "no-such-process-4815162342"}}});
    assert_eq!(agent.call("POST", "/v1/faults", &none.to_string()).0, 409);
}

#[test]
fn kill_by_pid() {
    let agent = Agent::start(&[]);
    let mut target = Target::sleep("30");
    let body = json!({"fault": {"process": {"action": "kill", "pid": target.pid()}}});
    let (status, started) = agent.call("POST", "/v1/faults", &body.to_string());
    assert_eq!(status, 201, "{started}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let exit = loop {
        if let Some(status) = target.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the target is still alive");
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(exit.signal(), Some(9));
    // Lifting a kill just ends the fault.
    let id = started["id"].as_str().unwrap();
    assert_eq!(agent.call("DELETE", &format!("/v1/faults/{id}"), "").0, 200);
}

#[test]
fn an_unrenewed_lease_lifts_the_fault() {
    let agent = Agent::start(&[]);
    let target = Target::sleep("30");
    // The lease runs from when the agent applied the fault, at most `sent.elapsed()` ago.
    let sent = Instant::now();
    let (status, started) = agent.call("POST", "/v1/faults", &pause(target.pid(), 500));
    let answered = Instant::now();
    assert_eq!(status, 201, "{started}");
    // SIGSTOP takes effect when the target is next scheduled, which on a loaded machine can be
    // just after the answer (seen as 'R'); well within the half-way check below.
    assert!(wait_state(target.pid(), 'T', Duration::from_millis(200)));
    // Half-way through the lease it must still hold (checked only if we are still there: a
    // loaded machine may have taken that long just to answer).
    let halfway = sent + Duration::from_millis(250);
    if let Some(wait) = halfway.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
        assert_eq!(
            state(target.pid()),
            Some('T'),
            "lifted before the lease ran out"
        );
    }
    // Lifted within the lease (500 ms) plus one check period (100 ms) after it was applied,
    // which was at or before the answer; with margin for a loaded machine.
    assert!(wait_state(
        target.pid(),
        'S',
        Duration::from_millis(900).saturating_sub(answered.elapsed())
    ));
    assert!(
        sent.elapsed() >= Duration::from_millis(500),
        "lifted before the lease ran out"
    );
    assert!(agent.logged("lease expired"), "{}", agent.log());
}

/// The test plays the controller: it renews from its own runtime, then dies (the runtime and
/// its keep-alive are dropped). Renewals hold the fault well past one lease; after the death,
/// the fault is lifted within the lease.
#[test]
fn a_dead_controller_loses_its_faults() {
    let agent = Agent::start(&[]);
    let target = Target::sleep("30");
    let client = agent.client();
    let pid = target.pid();
    let ttl = Duration::from_millis(600);
    let died = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let req = FaultRequest {
            fault: FaultSpec::Process(ProcessFault {
                action: ProcessAction::Pause,
                pid: Some(pid),
                pattern: None,
            }),
            lease_ttl_ms: Some(600),
            max_duration_ms: None,
            id: None,
        };
        let renewing: KeepAlive = rt.block_on(async {
            let started = client.start(&req).await.unwrap();
            keep_alive(client.clone(), started.id, ttl)
        });
        // Three leases long: only renewals keep it paused.
        let held = rt.block_on(async {
            let mut held = true;
            for _ in 0..18 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                held &= state(pid) == Some('T');
            }
            held
        });
        assert!(!renewing.is_lost());
        drop(renewing);
        drop(rt);
        (held, Instant::now())
    });
    let (held, death) = died.join().unwrap();
    assert!(held, "the fault was lifted while renewed");
    let lifted = wait_state(pid, 'S', Duration::from_millis(900));
    assert!(
        lifted,
        "still paused {:?} after the controller died",
        death.elapsed()
    );
}

#[test]
fn the_maximum_duration_beats_renewals() {
    let agent = Agent::start(&[]);
    let target = Target::sleep("30");
    let client = agent.client();
    let pid = target.pid();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let req = FaultRequest {
        fault: FaultSpec::Process(ProcessFault {
            action: ProcessAction::Pause,
            pid: Some(pid),
            pattern: None,
        }),
        lease_ttl_ms: Some(300),
        max_duration_ms: Some(900),
        id: None,
    };
    let (renewing, began) = rt.block_on(async {
        let started = client.start(&req).await.unwrap();
        (
            keep_alive(client.clone(), started.id, Duration::from_millis(300)),
            Instant::now(),
        )
    });
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(state(pid), Some('T'), "renewals did not hold the fault");
    assert!(wait_state(pid, 'S', Duration::from_millis(900)));
    assert!(began.elapsed() >= Duration::from_millis(800));
    assert!(agent.logged("maximum duration of 900ms"), "{}", agent.log());
    // The keep-alive notices the fault is gone and stops by itself.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !renewing.is_lost() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let why = rt
        .block_on(renewing.stop())
        .expect("renewing ended by itself");
    assert!(why.to_string().contains(&agent.addr.to_string()), "{why}");
}

#[test]
fn sigterm_lifts_every_fault_and_exits_0() {
    let mut agent = Agent::start(&[]);
    let targets = [Target::sleep("30"), Target::sleep("30")];
    for t in &targets {
        assert_eq!(
            agent.call("POST", "/v1/faults", &pause(t.pid(), 5000)).0,
            201
        );
        assert!(wait_state(t.pid(), 'T', Duration::from_secs(2)));
    }
    let pid = i32::try_from(agent.process.process().id()).unwrap();
    // SAFETY: a plain kill(2) to the agent this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = agent
        .wait_exit(Duration::from_secs(10))
        .expect("the agent exited");
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    // Resumed before the agent exited; a resumed process may still show 'R' for a moment.
    for t in &targets {
        assert!(
            wait_state(t.pid(), 'S', Duration::from_secs(2)),
            "{:?}",
            state(t.pid())
        );
    }
    assert!(
        agent.log().contains("agent shutting down (SIGTERM)"),
        "{}",
        agent.log()
    );
}

#[test]
fn bad_input_is_refused_and_starts_nothing() {
    let agent = Agent::start(&["--max-lease-ttl", "2s", "--max-fault-duration", "1m"]);
    let target = Target::sleep("30");
    let pid = target.pid();
    let bad = [
        "{not json".to_string(),
        json!({"fault": {"process": {"action": "pause", "pid": pid}}, "lease": 5}).to_string(),
        json!({"fault": {"process": {"action": "stop", "pid": pid}}}).to_string(),
        json!({"fault": {"process": {"action": "pause"}}}).to_string(),
        json!({"fault": {"process": {"action": "pause", "pid": pid, "match": "sleep"}}})
            .to_string(),
        pause(pid, 2001),
        pause(pid, 0),
        json!({"fault": {"process": {"action": "pause", "pid": pid}}, "max_duration_ms": 60_001})
            .to_string(),
        json!({"fault": {"process": {"action": "pause", "pid": pid}}, "id": "a/b"}).to_string(),
    ];
    for body in &bad {
        let (status, answer) = agent.call("POST", "/v1/faults", body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(!answer["error"].as_str().unwrap().is_empty());
    }
    let (status, answer) = agent.call("POST", "/v1/faults", &pause(pid, 2001));
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("--max-lease-ttl"),
        "{status} {answer}"
    );
    assert_eq!(agent.call("GET", "/v1/nothing", "").0, 404);
    assert_eq!(agent.call("PUT", "/v1/faults", "").0, 405);
    assert_eq!(agent.call("GET", "/v1/faults/f1", "").0, 405);
    // No NVIDIA driver on this host: the hog's own explanation, and nothing held.
    let gpu = json!({"fault": {"gpu_memory_pressure": {"fraction": 0.9}}}).to_string();
    let (status, answer) = agent.call("POST", "/v1/faults", &gpu);
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("no CUDA driver library"),
        "{answer}"
    );
    assert_eq!(agent.call("GET", "/status", "").1["faults"], json!([]));
    assert_eq!(state(pid), Some('S'));
}

/// The journal of `state_dir`, parsed.
fn journal(state_dir: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(state_dir.join("agent-journal.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// An agent killed with SIGKILL lifts nothing, so its pause stays in force; the next agent
/// with the same state directory finds it in the journal, resumes the process and says so.
#[test]
fn a_successor_resumes_what_a_killed_agent_left_paused() {
    let scratch = tempfile::tempdir().unwrap();
    let state_dir = scratch.path().join("agent-state");
    let flags = ["--state-dir", state_dir.to_str().unwrap()];
    let target = Target::sleep("30");
    let mut first = Agent::start(&flags);
    // A long lease: only the kill, not the dead-man's switch, may end this agent's hold.
    let (status, started) = first.call("POST", "/v1/faults", &pause(target.pid(), 50_000));
    assert_eq!(status, 201, "{started}");
    assert!(wait_state(target.pid(), 'T', Duration::from_secs(2)));
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&state_dir), 0o700);
    assert_eq!(mode(&state_dir.join("agent-journal.json")), 0o600);
    let recorded = journal(&state_dir);
    assert_eq!(recorded["records"][0]["pid"], target.pid(), "{recorded}");
    assert_eq!(recorded["records"][0]["what"], "paused", "{recorded}");

    first.process.process().kill().unwrap(); // SIGKILL: no shutdown, no lift
    first.process.process().wait();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        state(target.pid()),
        Some('T'),
        "nothing resumes it but a successor"
    );

    let second = Agent::start(&flags);
    let deadline = Instant::now() + Duration::from_secs(5);
    while state(target.pid()) == Some('T') {
        assert!(Instant::now() < deadline, "not resumed:\n{}", second.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        matches!(state(target.pid()), Some('S' | 'R')),
        "{:?}",
        state(target.pid())
    );
    let line = format!(
        "resumed pid {} (`sleep 30`), left paused by a previous agent",
        target.pid()
    );
    assert!(
        second.log_says(&line, Duration::from_secs(2)),
        "{}",
        second.log()
    );
    assert_eq!(
        journal(&state_dir)["records"],
        json!([]),
        "the journal is cleared"
    );
}

/// A corrupt journal stops the agent with an error naming the file; it never starts serving.
#[test]
fn a_corrupt_journal_is_a_clear_error() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("agent-journal.json");
    std::fs::write(&file, "{\"version\": 1, \"records\": [").unwrap();
    let out = common::faultline()
        .args(["agent", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(scratch.path())
        .env("FAULTLINE_AGENT_TOKEN", TOKEN)
        .timeout(Duration::from_secs(10))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!("{} is corrupt", file.display())),
        "{err}"
    );
    assert!(
        !err.contains("listening") && !err.contains("panicked"),
        "{err}"
    );
}

/// Two agents on one state directory would undo each other's faults as leftovers.
#[test]
fn a_second_agent_on_the_same_state_dir_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let flags = ["--state-dir", scratch.path().to_str().unwrap()];
    let _first = Agent::start(&flags);
    let out = common::faultline()
        .args(["agent", "--listen", "127.0.0.1:0"])
        .args(flags)
        .env("FAULTLINE_AGENT_TOKEN", TOKEN)
        .timeout(Duration::from_secs(10))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("another faultline agent"), "{err}");
}
