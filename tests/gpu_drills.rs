//! GPU memory pressure in drills, end to end with the real binary. No machine here has a GPU:
//! the driver path runs against the TEST DOUBLE libcuda built from tests/fake_cuda/ (host
//! memory behind the few driver entry points faultline calls), and the missing-driver path
//! against this machine as it is.

mod common;
mod fake_cuda;

use std::time::{Duration, Instant};

use common::{faultline, free_ports, write, AgentProcess, AGENT_TOKEN};
use fake_cuda::{assert_all_written_and_freed, fake_lib_dir, log, sum, MIB};

fn drill(target: &str, lift_at: &str, end_at: &str) -> String {
    let host = free_ports(1)[0];
    format!(
        r#"version: 1
name: gpu
{target}services:
  sim: {{ simulate: {{ listen: "127.0.0.1:{host}" }} }}
load:
  s: {{ url: "http://127.0.0.1:{host}/v1/chat/completions", rate: 5/s, request: {{ api: openai-chat }} }}
timeline:
  - {{ at: 1s, inject: {{ id: vram, {}fault: {{ gpu_memory_pressure: {{ allocate: 300MiB, chunk: 100MiB }} }} }} }}
  - {{ at: {lift_at}, lift: vram }}
  - {{ at: {end_at}, end: true }}
"#,
        if target.is_empty() {
            ""
        } else {
            "host: node, "
        }
    )
}

#[test]
fn a_local_gpu_fault_holds_written_memory_until_lifted() {
    let Some(lib) = fake_lib_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "gpu.yaml", &drill("", "2s", "3s"));
    let assert = faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .env("LD_LIBRARY_PATH", lib)
        .env("FAKE_CUDA_LOG", dir.path().join("cuda.log"))
        .assert()
        .code(0);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("inject vram (gpu_memory_pressure) on local"),
        "{stderr}"
    );
    assert_all_written_and_freed(dir.path(), 300 * MIB);
}

#[test]
fn without_a_driver_a_gpu_drill_fails_as_an_environment_error_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-cuda-here");
    std::fs::create_dir_all(&empty).unwrap();
    let file = write(dir.path(), "gpu.yaml", &drill("", "2s", "3s"));
    let assert = faultline()
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .env("LD_LIBRARY_PATH", &empty)
        .assert()
        .code(4);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("could not inject vram on local")
            && stderr.contains("no CUDA driver library"),
        "{stderr}"
    );
    assert!(
        stderr.contains("service sim stopped") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn an_agent_holds_gpu_memory_for_a_run_and_its_lease_frees_it_when_the_run_dies() {
    let Some(lib) = fake_lib_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cuda_log = dir.path().join("cuda.log");
    let lib_path = lib.to_str().unwrap();
    let log_path = cuda_log.to_str().unwrap();
    let agent = AgentProcess::start(
        dir.path(),
        &[("LD_LIBRARY_PATH", lib_path), ("FAKE_CUDA_LOG", log_path)],
    );
    let hosts = format!(
        "hosts:\n  node: {{ agent: \"{}\", token_env: FAULTLINE_TEST_AGENT_TOKEN, lease: 1s }}\n",
        agent.addr
    );
    let file = write(dir.path(), "gpu.yaml", &drill(&hosts, "50s", "60s"));
    let mut run = common::spawn(
        common::faultline_std()
            .arg("run")
            .arg(&file)
            .arg("--quiet")
            .arg("--out")
            .arg(dir.path().join("out"))
            .env("FAULTLINE_TEST_AGENT_TOKEN", AGENT_TOKEN)
            .stdout(std::process::Stdio::null()),
    );
    let held = |want: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let l = log(dir.path());
            if sum(&l, "alloc") - sum(&l, "free") == want && sum(&l, "alloc") > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    assert!(
        held(300 * MIB),
        "the agent's hog never held 300 MiB: {:?}",
        log(dir.path())
    );
    std::thread::sleep(Duration::from_millis(1500)); // renewed across more than one lease
    assert_eq!(
        sum(&log(dir.path()), "free"),
        0,
        "released while the controller still renewed"
    );
    run.kill().unwrap(); // the controller dies without rolling back
    let _ = run.wait();
    let killed = Instant::now();
    assert!(
        held(0),
        "the memory was not released after the lease ran out"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "released only after {:?}",
        killed.elapsed()
    );
    assert_all_written_and_freed(dir.path(), 300 * MIB);
}
