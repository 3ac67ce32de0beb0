//! `faultline gpu-hog` and `RunningHog`, run for real against a TEST DOUBLE of libcuda
//! (tests/fake_cuda/fake_libcuda.c, compiled here with `cc`) that backs device memory with
//! host memory and logs every allocation and free. No GPU or CUDA is needed; what this cannot
//! show (real device memory, real driver errors and timings) needs a machine with a GPU.

mod common;
mod fake_cuda;

use std::process::{Command, Stdio};
use std::time::Duration;

use fake_cuda::*;
use faultline::gpu::{GpuPressure, RunningHog, Target};
const NO_DRIVER: &str = "no CUDA driver library (libcuda.so) found: this machine has no NVIDIA \
driver, or it is not on the loader path";

#[test]
fn without_a_driver_library_it_exits_4_with_a_clear_message() {
    let ldconfig = Command::new("/sbin/ldconfig").arg("-p").output();
    let real = ldconfig.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(" libcuda.so"));
    // CI has no GPU, so there this path must be tested, not skipped.
    if !common::require_tool(
        "a loader path without a real libcuda (this machine has one)",
        !real,
    ) {
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let out = common::output(
        common::faultline_std()
            .args(["gpu-hog", "--allocate", "1GiB"])
            .env("LD_LIBRARY_PATH", empty.path()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains(NO_DRIVER), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn allocate_holds_exactly_that_written_and_end_of_stdin_releases_it() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let mut hog = Hog::spawn(hog_command(
        lib,
        scratch.path(),
        &["--allocate", "300MiB"],
        &[],
    ));
    let report = hog.holding();
    assert_eq!(
        device(&report, 0),
        (
            300 * MIB,
            300 * MIB,
            1024 * MIB,
            724 * MIB,
            1024 * MIB,
            false
        )
    );
    assert_eq!(report["pid"].as_u64(), Some(u64::from(hog.child.id())));
    assert_eq!(hog.progress, 2, "256 MiB + 44 MiB");
    drop(hog.stdin.take());
    let (released, status) = hog.released();
    assert_eq!(released["reason"], "end of stdin");
    assert_eq!(released["devices"][0]["freed"].as_u64(), Some(300 * MIB));
    assert!(status.success());
    assert_all_written_and_freed(scratch.path(), 300 * MIB);
}

#[test]
fn leave_free_counts_memory_already_used_and_sigterm_releases() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let cmd = hog_command(
        lib,
        scratch.path(),
        &["--leave-free", "200MiB"],
        &[("FAKE_CUDA_USED_MIB", "100")],
    );
    let mut hog = Hog::spawn(cmd);
    let report = hog.holding();
    assert_eq!(
        device(&report, 0),
        (
            724 * MIB,
            724 * MIB,
            924 * MIB,
            200 * MIB,
            1024 * MIB,
            false
        )
    );
    hog.signal(libc::SIGTERM);
    let (released, status) = hog.released();
    assert_eq!(released["reason"], "SIGTERM");
    assert!(status.success());
    assert_all_written_and_freed(scratch.path(), 724 * MIB);
}

#[test]
fn fraction_tops_used_memory_up_to_the_share() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    // 50% of 1024 MiB = 512 MiB used in all; 100 MiB already are, so 412 MiB more.
    let cmd = hog_command(
        lib,
        scratch.path(),
        &["--fraction", "0.5"],
        &[("FAKE_CUDA_USED_MIB", "100")],
    );
    let mut hog = Hog::spawn(cmd);
    assert_eq!(
        device(&hog.holding(), 0),
        (
            412 * MIB,
            412 * MIB,
            924 * MIB,
            512 * MIB,
            1024 * MIB,
            false
        )
    );
    hog.signal(libc::SIGINT);
    let (released, status) = hog.released();
    assert_eq!(released["reason"], "SIGINT");
    assert!(status.success());
}

#[test]
fn more_than_the_device_can_spare_is_clamped_and_reported() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let mut hog = Hog::spawn(hog_command(
        lib,
        scratch.path(),
        &["--allocate", "2GiB"],
        &[],
    ));
    // Capped at free minus the 64 MiB headroom.
    assert_eq!(
        device(&hog.holding(), 0),
        (
            2048 * MIB,
            960 * MIB,
            1024 * MIB,
            64 * MIB,
            1024 * MIB,
            true
        )
    );
}

#[test]
fn a_ramp_spreads_the_chunks_over_its_duration() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let args = [
        "--allocate",
        "400MiB",
        "--chunk",
        "100MiB",
        "--ramp",
        "600ms",
    ];
    let mut hog = Hog::spawn(hog_command(lib, scratch.path(), &args, &[]));
    hog.holding();
    assert_eq!(hog.progress, 4);
    let allocs: Vec<u64> = log(scratch.path())
        .iter()
        .filter(|e| e.1 == "alloc")
        .map(|e| e.0)
        .collect();
    assert_eq!(allocs.len(), 4);
    let spread = allocs[3] - allocs[0];
    assert!(
        (400..3000).contains(&spread),
        "allocations spread over {spread} ms"
    );
    // Planned at 0, 200, 400, 600 ms: consecutive gaps are never far below 200 ms.
    assert!(allocs.windows(2).all(|w| w[1] - w[0] >= 150), "{allocs:?}");
}

#[test]
fn sigterm_during_the_ramp_frees_what_was_allocated_so_far() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let args = ["--allocate", "400MiB", "--chunk", "100MiB", "--ramp", "3s"];
    let mut hog = Hog::spawn(hog_command(lib, scratch.path(), &args, &[]));
    let first = hog.next_line();
    assert!(first.contains(r#""event":"allocated""#), "{first}");
    hog.signal(libc::SIGTERM);
    let (released, status) = hog.released();
    assert!(status.success());
    assert_eq!(released["reason"], "SIGTERM");
    let freed = released["devices"][0]["freed"].as_u64().unwrap();
    assert!((100 * MIB..400 * MIB).contains(&freed), "{released}");
    assert_all_written_and_freed(scratch.path(), freed);
}

#[test]
fn a_driver_error_midway_frees_what_was_allocated_and_exits_4() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    // Stdin is closed at once here; without --ignore-stdin that would be a release.
    let args = [
        "--allocate",
        "400MiB",
        "--chunk",
        "100MiB",
        "--ignore-stdin",
    ];
    let cmd = hog_command(
        lib,
        scratch.path(),
        &args,
        &[("FAKE_CUDA_FAIL_ALLOC_AFTER", "2")],
    );
    let mut cmd = cmd;
    let out = common::output(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("CUDA_ERROR_OUT_OF_MEMORY (out of memory)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("freed the 200.0 MiB already allocated"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("holding"));
    assert_all_written_and_freed(scratch.path(), 200 * MIB);
}

#[test]
fn driver_init_errors_and_missing_devices_exit_4_by_name() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = common::output(&mut hog_command(lib, scratch.path(), args, env));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--allocate", "1MiB"], &[("FAKE_CUDA_INIT_ERROR", "100")]);
    assert_eq!(code, Some(4));
    assert!(
        stderr.contains("cuInit failed: CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)"),
        "{stderr}"
    );
    let (code, stderr) = run(
        &["--allocate", "1MiB", "--device", "2"],
        &[("FAKE_CUDA_DEVICES", "2")],
    );
    assert_eq!(code, Some(4));
    assert!(
        stderr.contains("there is no CUDA device 2: this machine has 2 (0 to 1)"),
        "{stderr}"
    );
    let (code, stderr) = run(
        &["--allocate", "1MiB", "--device", "0", "--device", "0"],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn every_device_by_default_or_only_those_named() {
    let Some(lib) = fake_lib_dir() else { return };
    for (args, expect) in [
        (&["--allocate", "100MiB"][..], vec![0, 1]),
        (&["--allocate", "100MiB", "--device", "1"][..], vec![1]),
    ] {
        let scratch = tempfile::tempdir().unwrap();
        let mut hog = Hog::spawn(hog_command(
            lib,
            scratch.path(),
            args,
            &[("FAKE_CUDA_DEVICES", "2")],
        ));
        let report = hog.holding();
        let devices: Vec<u64> = report["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["device"].as_u64().unwrap())
            .collect();
        assert_eq!(devices, expect);
        drop(hog.stdin.take());
        assert!(hog.released().1.success());
        let log = log(scratch.path());
        for d in [0u32, 1] {
            let on_d: u64 = log
                .iter()
                .filter(|e| e.1 == "alloc" && e.2 == d)
                .map(|e| e.4)
                .sum();
            assert_eq!(
                on_d,
                if expect.contains(&u64::from(d)) {
                    100 * MIB
                } else {
                    0
                }
            );
        }
    }
}

#[test]
fn a_sigkilled_hog_is_simply_gone() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let mut hog = Hog::spawn(hog_command(
        lib,
        scratch.path(),
        &["--allocate", "64MiB"],
        &[],
    ));
    hog.holding();
    let pid = hog.child.id();
    hog.signal(libc::SIGKILL);
    let status = hog.child.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    // Its memory belonged to the process; the (real) driver reclaims it with the process.
    assert!(gone(pid));
}

#[test]
fn the_hog_dies_with_its_parent() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    // A foreground child of `sh` (a background one would get /dev/null as stdin), followed by
    // another command so that sh does not simply exec it.
    let mut parent = Command::new("sh");
    parent
        .args([
            "-c",
            "\"$0\" gpu-hog --allocate 64MiB; echo parent-continued",
        ])
        .arg(env!("CARGO_BIN_EXE_faultline"))
        .env("LD_LIBRARY_PATH", lib)
        .env("FAKE_CUDA_LOG", scratch.path().join("cuda.log"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    // stdin stays open (held in `hog`), so only the parent-death signal can end the hold.
    let mut hog = Hog::spawn(parent);
    let pid = hog.holding()["pid"].as_u64().unwrap() as u32;
    assert_ne!(pid, hog.child.id());
    hog.signal(libc::SIGKILL);
    hog.child.wait();
    assert!(wait_gone(pid), "the hog outlived its parent by 2 s");
    let line = hog.next_line();
    assert!(line.contains(r#""reason":"SIGTERM""#), "{line}");
    assert_all_written_and_freed(scratch.path(), 64 * MIB);
}

#[tokio::test]
async fn running_hog_starts_holds_and_releases() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let pressure = GpuPressure {
        target: Target::LeaveFree(500 * MIB),
        devices: Some(vec![0]),
        chunk: 128 * MIB,
        ramp: Some(Duration::from_millis(100)),
    };
    let hog = within(RunningHog::start_command(
        fake_command(lib, scratch.path()),
        &pressure,
    ))
    .await
    .unwrap();
    let pid = hog.pid().unwrap();
    let d = &hog.report().devices[0];
    assert_eq!(
        (d.device, d.asked, d.held, d.free_before, d.free_after),
        (0, 500 * MIB, 500 * MIB, 1000 * MIB, 500 * MIB)
    );
    assert!(!gone(pid));
    let released = within(hog.release()).await.unwrap();
    assert_eq!(released.reason, "SIGTERM");
    assert_eq!(released.devices[0].freed, 500 * MIB);
    assert!(gone(pid));
    assert_all_written_and_freed(scratch.path(), 500 * MIB);
}

#[tokio::test]
async fn running_hog_reports_why_it_could_not_start() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let mut cmd = fake_command(lib, scratch.path());
    cmd.env("FAKE_CUDA_DEVICES", "1");
    let pressure = GpuPressure {
        target: Target::Allocate(MIB),
        devices: Some(vec![5]),
        chunk: MIB,
        ramp: None,
    };
    let err = within(RunningHog::start_command(cmd, &pressure))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), faultline::ExitCode::Environment);
    assert_eq!(
        err.to_string(),
        "GPU memory pressure did not start: the hog exited with status 4: there is no CUDA device 5: this machine has 1 (0 to 0)"
    );
}

#[tokio::test]
async fn a_dropped_running_hog_takes_its_process_with_it() {
    let Some(lib) = fake_lib_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let pressure = GpuPressure {
        target: Target::Allocate(32 * MIB),
        devices: None,
        chunk: 16 * MIB,
        ramp: None,
    };
    let hog = within(RunningHog::start_command(
        fake_command(lib, scratch.path()),
        &pressure,
    ))
    .await
    .unwrap();
    let pid = hog.pid().unwrap();
    drop(hog);
    // kill_on_drop sent SIGKILL synchronously; the wait only covers the kernel's part.
    assert!(wait_gone(pid));
}
