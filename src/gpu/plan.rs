//! The allocation planner: how many bytes to take on each device, in which chunks, and when.
//!
//! Pure arithmetic over what the driver reported (free and total memory per device), so every
//! rule is unit-tested here without a GPU. The rules, as the README states them:
//!
//! - `allocate: X`: take X bytes.
//! - `fraction: F`: bring the device's *used* memory up to F × total, i.e. take
//!   F × total − (total − free); nothing if the device already uses that much.
//! - `leave_free: X`: take free − X; nothing if less than X is free.
//!
//! Then every amount is capped at free − [`HEADROOM`]: the hog never plans into the last
//! 64 MiB of a device. The driver needs some memory of its own (page tables, the context's
//! scratch space), and a hog that takes every byte makes its *own* last allocation fail,
//! which would end the drill with an error instead of applying the pressure. A capped amount is
//! reported as `clamped`, with both what the target asked for and what is held.

use std::time::Duration;

/// Memory the planner never takes from a device (see the module comment).
pub const HEADROOM: u64 = 64 * MIB;

/// Default chunk size: big enough that a 80 GiB device takes a few hundred calls, small enough
/// that a ramp is smooth and a failure leaves little half-done work.
pub const DEFAULT_CHUNK: u64 = 256 * MIB;

const MIB: u64 = 1024 * 1024;

/// How much memory to take on each chosen device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// This many bytes.
    Allocate(u64),
    /// Used memory up to this share of the total, in (0, 1].
    Fraction(f64),
    /// Everything but this many bytes.
    LeaveFree(u64),
}

/// One device as the driver reported it before the hog allocated anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceMemory {
    pub device: u32,
    pub free: u64,
    pub total: u64,
}

/// What the hog will take on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevicePlan {
    pub device: u32,
    /// What the target asks for on this device, before the cap.
    pub asked: u64,
    /// What will be allocated: `asked`, capped at free − HEADROOM.
    pub bytes: u64,
    /// True when `bytes < asked` because of the cap.
    pub clamped: bool,
}

/// The amount for one device, by the rules in the module comment.
pub fn plan_device(target: Target, mem: DeviceMemory) -> DevicePlan {
    // A driver reporting more free than total memory is wrong; trust the smaller number.
    let free = mem.free.min(mem.total);
    let used = mem.total - free;
    let asked = match target {
        Target::Allocate(bytes) => bytes,
        Target::Fraction(f) => {
            // f64 holds every byte count below 2^53 (8 PiB) exactly; the product is floored so
            // the hog never takes a byte more than the share asked for.
            let share = (f.clamp(0.0, 1.0) * mem.total as f64).floor() as u64;
            share.saturating_sub(used)
        }
        Target::LeaveFree(keep) => free.saturating_sub(keep),
    };
    let ceiling = free.saturating_sub(HEADROOM);
    let bytes = asked.min(ceiling);
    DevicePlan {
        device: mem.device,
        asked,
        bytes,
        clamped: bytes < asked,
    }
}

/// Splits `bytes` into chunks of `chunk` bytes, the last one smaller. `chunk` of 0 is treated
/// as 1 so the function is total; callers validate it first.
pub fn chunks(bytes: u64, chunk: u64) -> Vec<u64> {
    let chunk = chunk.max(1);
    let full = bytes / chunk;
    let rest = bytes % chunk;
    let mut out = vec![chunk; usize::try_from(full).unwrap_or(usize::MAX)];
    if rest > 0 {
        out.push(rest);
    }
    out
}

/// When chunk `k` of `n` is allocated, relative to the start: evenly from 0 to `ramp`
/// (`k × ramp / (n − 1)`), so the first chunk goes at once and the last one at the end of the
/// ramp. Without a ramp, everything at 0: as fast as the driver goes.
pub fn chunk_offset(k: usize, n: usize, ramp: Option<Duration>) -> Duration {
    match ramp {
        Some(ramp) if n > 1 => {
            let nanos = ramp.as_nanos() * k as u128 / (n - 1) as u128;
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        }
        _ => Duration::ZERO,
    }
}

/// One allocation of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub device: u32,
    pub bytes: u64,
    /// Offset from the start of the allocation phase.
    pub at: Duration,
}

/// Every device's chunks on one timeline. Each device ramps over the whole `ramp` on its own,
/// so all devices fill up together; steps at the same moment keep the devices' order.
pub fn schedule(plans: &[DevicePlan], chunk: u64, ramp: Option<Duration>) -> Vec<Step> {
    let mut steps = Vec::new();
    for plan in plans {
        let sizes = chunks(plan.bytes, chunk);
        let n = sizes.len();
        steps.extend(sizes.into_iter().enumerate().map(|(k, bytes)| Step {
            device: plan.device,
            bytes,
            at: chunk_offset(k, n, ramp),
        }));
    }
    // Stable: device order (and chunk order within a device) survives for equal offsets.
    steps.sort_by_key(|s| s.at);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(device: u32, free_mib: u64, total_mib: u64) -> DeviceMemory {
        DeviceMemory {
            device,
            free: free_mib * MIB,
            total: total_mib * MIB,
        }
    }

    #[test]
    fn allocate_takes_the_amount_asked() {
        let p = plan_device(Target::Allocate(300 * MIB), dev(0, 1024, 1024));
        assert_eq!((p.asked, p.bytes, p.clamped), (300 * MIB, 300 * MIB, false));
    }

    #[test]
    fn allocate_is_capped_below_free_and_says_so() {
        let p = plan_device(Target::Allocate(2048 * MIB), dev(0, 924, 1024));
        assert_eq!(p.asked, 2048 * MIB);
        assert_eq!(p.bytes, 924 * MIB - HEADROOM);
        assert!(p.clamped);
        // Just under the ceiling is not clamped.
        let p = plan_device(Target::Allocate(860 * MIB), dev(0, 924, 1024));
        assert_eq!((p.bytes, p.clamped), (860 * MIB, false));
    }

    #[test]
    fn fraction_counts_memory_already_used() {
        // 50% of 1024 MiB is 512 MiB; 100 MiB are used already, so the hog takes 412 MiB.
        let p = plan_device(Target::Fraction(0.5), dev(0, 924, 1024));
        assert_eq!((p.asked, p.bytes, p.clamped), (412 * MIB, 412 * MIB, false));
    }

    #[test]
    fn fraction_already_reached_takes_nothing() {
        let p = plan_device(Target::Fraction(0.1), dev(0, 512, 1024));
        assert_eq!((p.asked, p.bytes, p.clamped), (0, 0, false));
    }

    #[test]
    fn fraction_of_everything_is_capped_by_the_headroom() {
        let p = plan_device(Target::Fraction(1.0), dev(0, 1024, 1024));
        assert_eq!(p.asked, 1024 * MIB);
        assert_eq!(p.bytes, 1024 * MIB - HEADROOM);
        assert!(p.clamped);
    }

    #[test]
    fn fraction_rounds_down_to_whole_bytes() {
        let p = plan_device(
            Target::Fraction(1.0 / 3.0),
            DeviceMemory {
                device: 0,
                free: 1000 * MIB,
                total: 1000 * MIB,
            },
        );
        assert_eq!(p.bytes, (1000 * MIB) / 3);
    }

    #[test]
    fn leave_free_keeps_the_amount_free() {
        // 1024 MiB device, 100 MiB used: leaving 200 MiB free means taking 724 MiB.
        let p = plan_device(Target::LeaveFree(200 * MIB), dev(0, 924, 1024));
        assert_eq!((p.asked, p.bytes, p.clamped), (724 * MIB, 724 * MIB, false));
    }

    #[test]
    fn leave_free_more_than_free_takes_nothing() {
        let p = plan_device(Target::LeaveFree(2048 * MIB), dev(0, 924, 1024));
        assert_eq!((p.asked, p.bytes, p.clamped), (0, 0, false));
    }

    #[test]
    fn leave_free_below_the_headroom_is_raised_to_it() {
        let p = plan_device(Target::LeaveFree(0), dev(0, 924, 1024));
        assert_eq!(p.bytes, 924 * MIB - HEADROOM);
        assert!(p.clamped);
    }

    #[test]
    fn a_full_device_or_a_lying_driver_gets_nothing_or_the_truth() {
        let p = plan_device(Target::Allocate(MIB), dev(0, 10, 1024));
        assert_eq!((p.bytes, p.clamped), (0, true));
        // free > total: the smaller number wins.
        let p = plan_device(Target::LeaveFree(0), dev(0, 4096, 1024));
        assert_eq!(p.bytes, 1024 * MIB - HEADROOM);
        let p = plan_device(Target::Allocate(0), dev(0, 1024, 1024));
        assert_eq!((p.asked, p.bytes, p.clamped), (0, 0, false));
    }

    #[test]
    fn chunks_split_with_a_smaller_last_one() {
        assert_eq!(chunks(1000, 256), vec![256, 256, 256, 232]);
        assert_eq!(chunks(1024, 256), vec![256; 4]);
        assert_eq!(chunks(100, 256), vec![100]);
        assert!(chunks(0, 256).is_empty());
        assert_eq!(chunks(3, 0), vec![1, 1, 1]);
        let sizes = chunks(724 * MIB, DEFAULT_CHUNK);
        assert_eq!(sizes.len(), 3);
        assert_eq!(sizes.iter().sum::<u64>(), 724 * MIB);
    }

    #[test]
    fn ramp_spreads_chunks_evenly_from_zero_to_the_end() {
        let ramp = Some(Duration::from_millis(600));
        let offsets: Vec<_> = (0..4).map(|k| chunk_offset(k, 4, ramp)).collect();
        assert_eq!(
            offsets,
            [0, 200, 400, 600].map(Duration::from_millis).to_vec()
        );
        // One chunk: at once, ramp or not.
        assert_eq!(chunk_offset(0, 1, ramp), Duration::ZERO);
        assert_eq!(chunk_offset(3, 4, None), Duration::ZERO);
    }

    #[test]
    fn schedule_without_ramp_goes_device_by_device() {
        let plans = [
            plan_device(Target::Allocate(300), dev(0, 1024, 1024)),
            plan_device(Target::Allocate(300), dev(1, 1024, 1024)),
        ];
        let steps = schedule(&plans, 128, None);
        let order: Vec<_> = steps.iter().map(|s| (s.device, s.bytes)).collect();
        assert_eq!(
            order,
            vec![(0, 128), (0, 128), (0, 44), (1, 128), (1, 128), (1, 44)]
        );
        assert!(steps.iter().all(|s| s.at == Duration::ZERO));
    }

    #[test]
    fn schedule_with_ramp_fills_devices_together() {
        // Device 0 has 4 chunks, device 1 has 2: each spreads its own over the ramp.
        let plans = [
            plan_device(Target::Allocate(400 * MIB), dev(0, 1024, 1024)),
            plan_device(Target::Allocate(200 * MIB), dev(1, 1024, 2048)),
        ];
        let steps = schedule(&plans, 100 * MIB, Some(Duration::from_millis(900)));
        let timeline: Vec<_> = steps.iter().map(|s| (s.at.as_millis(), s.device)).collect();
        assert_eq!(
            timeline,
            vec![(0, 0), (0, 1), (300, 0), (600, 0), (900, 0), (900, 1)]
        );
        let per_device = |d: u32| {
            steps
                .iter()
                .filter(|s| s.device == d)
                .map(|s| s.bytes)
                .sum::<u64>()
        };
        assert_eq!((per_device(0), per_device(1)), (400 * MIB, 200 * MIB));
    }

    #[test]
    fn different_devices_get_different_amounts_for_one_target() {
        let target = Target::Fraction(0.9);
        let a = plan_device(target, dev(0, 8192, 8192));
        let b = plan_device(target, dev(1, 2048, 4096));
        assert_eq!(a.bytes, (0.9 * (8192 * MIB) as f64).floor() as u64);
        assert_eq!(
            b.bytes,
            (0.9 * (4096 * MIB) as f64).floor() as u64 - 2048 * MIB
        );
    }
}
