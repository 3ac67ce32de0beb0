//! After a start: stop, kill, restart, pause/resume, exits on its own, drop.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::support::*;
use crate::services::start;
use crate::units::Dur;

#[tokio::test]
async fn stop_sigkills_what_ignores_sigterm_after_the_grace() {
    let (_dir, logs) = logs();
    let mut spec = sh("trap '' TERM; sleep 30");
    spec.stop_grace = Dur::from_millis(400);
    let svc = start("stubborn", &spec, &logs).await.unwrap();
    let pid = svc.pid().unwrap();
    let began = Instant::now();
    svc.stop().await;
    let took = began.elapsed();
    assert!(took >= Duration::from_millis(400), "stopped after {took:?}");
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
    assert!(!alive(pid));
}

#[tokio::test]
async fn stop_leaves_no_process_of_the_group() {
    let (dir, logs) = logs();
    let bg_file = dir.path().join("bg.pid");
    // The background child ignores SIGTERM; the shell does not, so it exits at once and the
    // leftover child must be swept up without waiting out the (long) grace.
    let mut spec = sh(&format!(
        "(trap '' TERM; exec sleep 30) & echo $! > {}; wait",
        bg_file.display()
    ));
    spec.stop_grace = Dur::from_secs(10);
    let svc = start("family", &spec, &logs).await.unwrap();
    let leader = svc.pid().unwrap();
    let child = read_pid(&bg_file).await;
    assert!(alive(child));
    let began = Instant::now();
    svc.stop().await;
    assert!(began.elapsed() < Duration::from_secs(5));
    assert!(!alive(leader));
    assert!(
        gone_within(child, Duration::from_secs(2)).await,
        "child {child} survived"
    );
}

#[tokio::test]
async fn kill_then_restart_comes_back_with_a_new_pid() {
    let (_dir, logs) = logs();
    let addr = free_addr();
    let mut spec = tcp_listener(addr);
    spec.ready = ready_tcp(addr, Duration::from_secs(10));
    let mut svc = start("phoenix", &spec, &logs).await.unwrap();
    let first = svc.pid().unwrap();

    svc.kill().await.unwrap();
    assert_eq!(svc.pid(), None);
    assert!(!alive(first));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "killed, yet listening"
    );
    // Killing a dead service is harmless: rollback may do it twice.
    svc.kill().await.unwrap();
    // So is asking whether it exited: it never resolves while down.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), svc.exited())
            .await
            .is_err()
    );
    assert!(svc.pause().is_err());

    svc.restart().await.unwrap();
    let second = svc.pid().unwrap();
    assert_ne!(first, second);
    assert!(TcpStream::connect(addr).await.is_ok());
    let log = std::fs::read_to_string(svc.log_path()).unwrap();
    assert!(log.contains("start 2 of service `phoenix`"), "{log}");
    svc.stop().await;
    assert!(!alive(second));
}

#[tokio::test]
async fn restart_while_running_stops_the_old_one_first() {
    let (_dir, logs) = logs();
    let addr = free_addr();
    let mut spec = http_server(addr, 200);
    spec.ready = ready_http(format!("http://{addr}/"), Duration::from_secs(10));
    let mut svc = start("again", &spec, &logs).await.unwrap();
    let first = svc.pid().unwrap();
    svc.restart().await.unwrap();
    let second = svc.pid().unwrap();
    assert_ne!(first, second);
    assert!(!alive(first));
    assert_eq!(http_status(addr, Duration::from_secs(2)).await, Some(200));
    svc.stop().await;
}

#[tokio::test]
async fn pause_silences_it_and_resume_brings_it_back() {
    let (_dir, logs) = logs();
    let addr = free_addr();
    let mut spec = http_server(addr, 200);
    spec.ready = ready_http(format!("http://{addr}/"), Duration::from_secs(10));
    spec.stop_grace = Dur::from_secs(10);
    let mut svc = start("frozen", &spec, &logs).await.unwrap();
    assert_eq!(http_status(addr, Duration::from_secs(2)).await, Some(200));

    svc.pause().unwrap();
    // The kernel may still accept the connection; no answer comes.
    assert_eq!(http_status(addr, Duration::from_millis(500)).await, None);

    svc.resume().unwrap();
    assert_eq!(http_status(addr, Duration::from_secs(3)).await, Some(200));

    // Stopping a paused service must not wait out the grace: it is woken up to die.
    svc.pause().unwrap();
    let began = Instant::now();
    svc.stop().await;
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn exited_reports_how_it_ended() {
    let (_dir, logs) = logs();
    let mut svc = start("mayfly", &sh("sleep 0.4; exit 7"), &logs)
        .await
        .unwrap();
    let how = tokio::time::timeout(Duration::from_secs(5), svc.exited())
        .await
        .unwrap();
    assert_eq!(how, "exited with status 7");
    assert_eq!(svc.pid(), None);

    // Back up, then killed from outside, like the OOM killer would.
    svc.restart().await.unwrap();
    let pid = svc.pid().unwrap();
    // SAFETY: a plain kill(2) of the test's own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let how = tokio::time::timeout(Duration::from_secs(5), svc.exited())
        .await
        .unwrap();
    assert_eq!(how, "was killed by signal 9 (SIGKILL)");
    svc.stop().await;
}

#[tokio::test]
async fn dropping_it_kills_the_whole_group() {
    let (dir, logs) = logs();
    let bg_file = dir.path().join("bg.pid");
    let spec = sh(&format!("sleep 30 & echo $! > {}; wait", bg_file.display()));
    let svc = start("orphaned", &spec, &logs).await.unwrap();
    let leader = svc.pid().unwrap();
    let child = read_pid(&bg_file).await;
    drop(svc);
    assert!(gone_within(leader, Duration::from_secs(3)).await);
    assert!(gone_within(child, Duration::from_secs(3)).await);
}
