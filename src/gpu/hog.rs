//! `faultline gpu-hog`: the process that holds the memory.
//!
//! Order matters: first tie the process's life to its parent's (so an orphaned hog cannot keep
//! a GPU full), then load the driver, plan from what each device reports, allocate and write
//! chunk by chunk on the ramp's schedule, say `holding`, and wait for SIGTERM, SIGINT or the
//! end of stdin. Every exit path frees what was allocated (`Holdings` frees on drop too), and
//! if the process dies without freeing, the driver reclaims its memory anyway.

use std::io::Write;

use cudarc::driver::sys::CUdeviceptr;
use tokio::sync::mpsc;

use super::controller::GpuPressure;
use super::driver::{Context, Driver, DriverError};
use super::plan::{self, DeviceMemory, DevicePlan};
use super::report::{DeviceRelease, DeviceReport, HogEvent, HogReport, ReleaseReport};
use crate::exit::{ExitCode, Failure};
use crate::net::ShutdownSignals;
use crate::units::Size;

/// Runs the hog until it is told to release. `watch_stdin`: the end of stdin releases too
/// (how a controller that dies without signalling is noticed, and Ctrl-D in a terminal).
pub fn run(p: &GpuPressure, watch_stdin: bool) -> Result<ExitCode, Failure> {
    die_with_parent()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Environment(format!("cannot start the async runtime: {e}")))?;
    // A current-thread runtime: every driver call runs on this one thread, where the CUDA
    // context was made current.
    runtime.block_on(hold(p, watch_stdin))
}

/// PR_SET_PDEATHSIG: the kernel sends SIGTERM when the parent dies, and SIGTERM releases.
#[cfg(target_os = "linux")]
fn die_with_parent() -> Result<(), Failure> {
    // SAFETY: getppid takes no arguments and cannot fail.
    let parent = unsafe { libc::getppid() };
    // SAFETY: prctl(PR_SET_PDEATHSIG, signal) reads only its integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) };
    if rc != 0 {
        return Err(Failure::Environment(format!(
            "cannot ask to be stopped with the parent process: {}",
            std::io::Error::last_os_error()
        )));
    }
    // The parent may have died before prctl took effect; we would then never get the signal.
    // SAFETY: as above.
    if unsafe { libc::getppid() } != parent {
        return Err(Failure::Environment(
            "the process that started the GPU hog exited before it could hold memory".into(),
        ));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent() -> Result<(), Failure> {
    Ok(())
}

/// What ends the hold: the shared stop signals, and on top of them the end of stdin.
struct Shutdown {
    signals: ShutdownSignals,
    stdin_closed: Option<mpsc::UnboundedReceiver<()>>,
}

impl Shutdown {
    fn new(watch_stdin: bool) -> Result<Shutdown, Failure> {
        let signals = ShutdownSignals::install()?;
        let stdin_closed = watch_stdin.then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            // A plain thread, not tokio's blocking pool: the runtime would wait for a blocked
            // stdin read on shutdown. The thread ends with the process.
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                let _ = tx.send(());
            });
            rx
        });
        Ok(Shutdown {
            signals,
            stdin_closed,
        })
    }

    /// Resolves with the reason once something asks for the release; cancel-safe, and
    /// resolves again at once when polled after that.
    async fn requested(&mut self) -> String {
        let Shutdown {
            signals,
            stdin_closed,
        } = self;
        let eof = async {
            match stdin_closed {
                // `recv` returns None (at once, every time) once the thread has ended.
                Some(rx) => {
                    let _ = rx.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            signal = signals.recv() => signal.to_string(),
            () = eof => "end of stdin".to_string(),
        }
    }
}

/// The retained contexts and every allocation, freed in `release` or, failing that, on drop.
struct Holdings<'d> {
    driver: &'d Driver,
    contexts: Vec<Context>,
    /// (index into `contexts`, pointer, bytes).
    allocations: Vec<(usize, CUdeviceptr, u64)>,
}

impl Holdings<'_> {
    fn held(&self, ctx: usize) -> u64 {
        self.allocations
            .iter()
            .filter(|a| a.0 == ctx)
            .map(|a| a.2)
            .sum()
    }

    /// Frees everything, then gives the contexts back. Keeps going past errors, which are
    /// returned: one failed free must not keep the rest held.
    fn release(&mut self) -> (Vec<DeviceRelease>, Vec<DriverError>) {
        let mut errors = Vec::new();
        let mut freed: Vec<DeviceRelease> = self
            .contexts
            .iter()
            .map(|c| DeviceRelease {
                device: c.device,
                freed: 0,
            })
            .collect();
        for (ctx, ptr, bytes) in self.allocations.drain(..) {
            match self.driver.free(&self.contexts[ctx], ptr) {
                Ok(()) => freed[ctx].freed += bytes,
                Err(e) => errors.push(e),
            }
        }
        for context in self.contexts.drain(..) {
            errors.extend(self.driver.release_context(context));
        }
        (freed, errors)
    }
}

impl Drop for Holdings<'_> {
    fn drop(&mut self) {
        // Empty after a `release`; otherwise an early return is on its way out with an error.
        let _ = self.release();
    }
}

async fn hold(p: &GpuPressure, watch_stdin: bool) -> Result<ExitCode, Failure> {
    let mut shutdown = Shutdown::new(watch_stdin)?;
    let env = |e: DriverError| Failure::Environment(e.to_string());
    let driver = Driver::load().map_err(env)?;
    let count = driver.device_count().map_err(env)?;
    let devices = choose_devices(p.devices.as_deref(), count)?;

    let mut holdings = Holdings {
        driver: &driver,
        contexts: Vec::new(),
        allocations: Vec::new(),
    };
    let mut before = Vec::new();
    for &device in &devices {
        let context = driver.retain_context(device).map_err(env)?;
        holdings.contexts.push(context);
        let (free, total) = driver.mem_info(&context).map_err(env)?;
        before.push(DeviceMemory {
            device,
            free,
            total,
        });
    }
    let plans: Vec<DevicePlan> = before
        .iter()
        .map(|m| plan::plan_device(p.target, *m))
        .collect();
    let start = tokio::time::Instant::now();
    for step in plan::schedule(&plans, p.chunk, p.ramp) {
        tokio::select! {
            // Biased: a release asked for during the ramp wins over the next allocation.
            biased;
            reason = shutdown.requested() => return finish(&mut holdings, &reason),
            () = tokio::time::sleep_until(start + step.at) => {}
        }
        let ctx = devices.iter().position(|&d| d == step.device).unwrap_or(0);
        match driver.alloc_and_touch(&holdings.contexts[ctx], step.bytes) {
            Ok(ptr) => holdings.allocations.push((ctx, ptr, step.bytes)),
            Err(e) => {
                let held: u64 = holdings.allocations.iter().map(|a| a.2).sum();
                let (_, free_errors) = holdings.release();
                for fe in free_errors {
                    eprintln!("while freeing after the error: {fe}");
                }
                let freed = match held {
                    0 => String::new(),
                    _ => format!("; freed the {} already allocated", Size(held)),
                };
                return Err(Failure::Environment(format!("{e}{freed}")));
            }
        }
        emit(&HogEvent::Allocated {
            device: step.device,
            bytes: step.bytes,
            held: holdings.held(ctx),
        });
    }

    let mut report = HogReport {
        pid: std::process::id(),
        devices: Vec::new(),
    };
    for (ctx, (mem, plan)) in before.iter().zip(&plans).enumerate() {
        let (free_after, _) = driver.mem_info(&holdings.contexts[ctx]).map_err(env)?;
        report.devices.push(DeviceReport {
            device: mem.device,
            asked: plan.asked,
            held: holdings.held(ctx),
            free_before: mem.free,
            free_after,
            total: mem.total,
            clamped: plan.clamped,
        });
    }
    emit(&HogEvent::Holding(report.clone()));
    let how = if watch_stdin {
        "SIGTERM, Ctrl-C or the end of stdin releases it"
    } else {
        "SIGTERM or Ctrl-C releases it"
    };
    eprintln!("{}\n{how}", report.describe());

    let reason = shutdown.requested().await;
    finish(&mut holdings, &reason)
}

/// Frees everything and says so; exit 4 if the driver refused to free something.
fn finish(holdings: &mut Holdings<'_>, reason: &str) -> Result<ExitCode, Failure> {
    let (devices, errors) = holdings.release();
    emit(&HogEvent::Released(ReleaseReport {
        reason: reason.to_string(),
        devices,
    }));
    match errors.as_slice() {
        [] => Ok(ExitCode::Success),
        _ => Err(Failure::Environment(format!(
            "releasing GPU memory: {} (the driver frees the rest when this process exits)",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

/// The devices asked for, checked against what exists; every device when none were named.
fn choose_devices(asked: Option<&[u32]>, count: u32) -> Result<Vec<u32>, Failure> {
    if count == 0 {
        return Err(Failure::Environment(
            "the CUDA driver reports no devices".into(),
        ));
    }
    let Some(asked) = asked else {
        return Ok((0..count).collect());
    };
    match asked.iter().find(|&&d| d >= count) {
        Some(d) => Err(Failure::Environment(format!(
            "there is no CUDA device {d}: this machine has {count} (0 to {})",
            count - 1
        ))),
        None => Ok(asked.to_vec()),
    }
}

/// One JSON line on stdout, flushed at once (the controller waits for it). A closed stdout is
/// ignored: the controller is gone, and the parent-death signal or stdin will end the hold.
fn emit(event: &HogEvent) {
    if let Ok(line) = serde_json::to_string(event) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_default_to_all_and_must_exist() {
        assert_eq!(choose_devices(None, 3).unwrap(), vec![0, 1, 2]);
        assert_eq!(choose_devices(Some(&[2, 0]), 3).unwrap(), vec![2, 0]);
        let err = choose_devices(Some(&[0, 3]), 3).unwrap_err().to_string();
        assert_eq!(
            err,
            "there is no CUDA device 3: this machine has 3 (0 to 2)"
        );
        assert!(choose_devices(None, 0).is_err());
    }
}
