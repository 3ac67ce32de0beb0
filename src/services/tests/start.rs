//! Starting: readiness probes and every way a start can fail.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::support::*;
use crate::exit::ExitCode;
use crate::services::start;

#[tokio::test]
async fn ready_by_tcp() {
    let (_dir, logs) = logs();
    let addr = free_addr();
    let mut spec = tcp_listener(addr);
    spec.ready = ready_tcp(addr, Duration::from_secs(10));
    let svc = start("listener", &spec, &logs).await.unwrap();
    let pid = svc.pid().unwrap();
    assert_eq!(svc.name(), "listener");
    assert!(TcpStream::connect(addr).await.is_ok());
    svc.stop().await;
    assert!(!alive(pid));
}

#[tokio::test]
async fn ready_by_http_2xx() {
    let (_dir, logs) = logs();
    let addr = free_addr();
    let mut spec = http_server(addr, 204);
    spec.ready = ready_http(format!("http://{addr}/health"), Duration::from_secs(10));
    let svc = start("web", &spec, &logs).await.unwrap();
    assert_eq!(http_status(addr, Duration::from_secs(2)).await, Some(204));
    svc.stop().await;
}

#[tokio::test]
async fn http_probe_wants_2xx_not_just_an_answer() {
    let (_dir, logs) = logs();
    let addr = free_addr();
    let mut spec = http_server(addr, 503);
    spec.ready = ready_http(format!("http://{addr}/"), Duration::from_secs(2));
    let msg = environment_message(start("sick", &spec, &logs).await);
    assert!(
        msg.contains("service `sick` was not ready within 2s"),
        "{msg}"
    );
    assert!(msg.contains("last attempt: answered 503"), "{msg}");
}

#[tokio::test]
async fn a_missing_program_is_named() {
    let (_dir, logs) = logs();
    let spec = spec(&["faultline-test-no-such-program", "--flag"]);
    let result = start("ghost", &spec, &logs).await;
    assert!(matches!(&result, Err(f) if f.exit_code() == ExitCode::Environment));
    let msg = environment_message(result);
    assert!(msg.contains("service `ghost`"), "{msg}");
    assert!(msg.contains("faultline-test-no-such-program"), "{msg}");
    assert!(msg.contains("not found on PATH"), "{msg}");
}

#[tokio::test]
async fn a_missing_working_directory_is_not_blamed_on_the_program() {
    let (dir, logs) = logs();
    let mut spec = sh("exit 0");
    spec.cwd = Some(dir.path().join("nowhere"));
    let msg = environment_message(start("lost", &spec, &logs).await);
    assert!(msg.contains("working directory"), "{msg}");
}

#[tokio::test]
async fn exiting_early_quotes_the_status_and_the_log() {
    let (_dir, logs) = logs();
    let spec = sh("echo boom >&2; exit 3");
    let msg = environment_message(start("early", &spec, &logs).await);
    assert!(
        msg.contains("service `early` exited with status 3 before it was ready"),
        "{msg}"
    );
    assert!(msg.contains("boom"), "{msg}");
    assert!(msg.contains("early.log"), "{msg}");

    // With a probe, the exit is noticed at once rather than after `within`.
    let mut spec = sh("echo bad config >&2; exit 3");
    spec.ready = ready_tcp(free_addr(), Duration::from_secs(20));
    let began = Instant::now();
    let msg = environment_message(start("early", &spec, &logs).await);
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(
        msg.contains("status 3") && msg.contains("bad config"),
        "{msg}"
    );
    // The second start's message quotes only its own output.
    assert!(!msg.contains("boom"), "{msg}");
}

#[tokio::test]
async fn never_ready_gives_up_on_time_and_leaves_nothing() {
    let (dir, logs) = logs();
    let pid_file = dir.path().join("pid");
    let addr = free_addr();
    let mut spec = sh(&format!(
        "echo $$ > {}; echo still warming up; exec sleep 30",
        pid_file.display()
    ));
    let within = Duration::from_millis(600);
    spec.ready = ready_tcp(addr, within);
    let began = Instant::now();
    let msg = environment_message(start("slow", &spec, &logs).await);
    let took = began.elapsed();
    assert!(took >= within, "gave up after {took:?}");
    assert!(took < within + Duration::from_secs(2), "took {took:?}");
    assert!(
        msg.contains(&format!(
            "service `slow` was not ready within 600ms (probe: tcp {addr}"
        )),
        "{msg}"
    );
    assert!(msg.contains("still warming up"), "{msg}");
    let pid = read_pid(&pid_file).await;
    assert!(!alive(pid), "pid {pid} survived a failed start");
}

#[tokio::test]
async fn stdout_and_stderr_land_in_the_log() {
    let (_dir, logs) = logs();
    let spec = sh("echo to-stdout; echo to-stderr >&2; exec sleep 30");
    let svc = start("chatty", &spec, &logs).await.unwrap();
    assert_eq!(svc.log_path(), logs.join("chatty.log"));
    let text = file_contains(svc.log_path(), &["to-stdout", "to-stderr"]).await;
    assert!(
        text.starts_with("--- faultline: start 1 of service `chatty`"),
        "{text}"
    );
    svc.stop().await;
}

#[tokio::test]
async fn env_and_cwd_are_applied() {
    let (dir, logs) = logs();
    let workdir = dir.path().join("work");
    std::fs::create_dir(&workdir).unwrap();
    let mut spec = sh("echo \"FOO=$FOO\"; echo \"in $(pwd -P)\"; exec sleep 30");
    spec.env.insert("FOO".into(), "bar baz".into());
    spec.cwd = Some(workdir.clone());
    let svc = start("envy", &spec, &logs).await.unwrap();
    let real = workdir.canonicalize().unwrap();
    let expected = format!("in {}", real.display());
    file_contains(svc.log_path(), &["FOO=bar baz", &expected]).await;
    svc.stop().await;
}

#[tokio::test]
async fn a_port_already_taken_is_reported_not_probed() {
    let (_dir, logs) = logs();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = squatter.local_addr().unwrap();
    let mut spec = sh("exec sleep 30");
    spec.ready = ready_tcp(addr, Duration::from_secs(5));
    let msg = environment_message(start("late", &spec, &logs).await);
    assert!(
        msg.contains(&format!("already accepts connections on {addr}")),
        "{msg}"
    );
    assert!(
        !logs.join("late.log").exists(),
        "it should not even have started"
    );
}

#[tokio::test]
async fn faultline_means_this_binary() {
    let (_dir, logs) = logs();
    // The test binary stands in for faultline: `--help` makes it print and exit 0, which
    // proves it was found and spawned.
    let spec = spec(&["faultline", "--help"]);
    let msg = environment_message(start("self", &spec, &logs).await);
    assert!(
        msg.contains("service `self` exited with status 0 before it was ready"),
        "{msg}"
    );
    assert!(msg.contains("run it in the foreground"), "{msg}");
}
