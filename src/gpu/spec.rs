//! `gpu_memory_pressure` as an experiment file writes it, and its validation into a
//! [`GpuPressure`]. The `gpu-hog` command builds the same spec from its flags (in
//! `commands.rs`), so both paths share one set of rules.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::controller::GpuPressure;
use super::plan::{Target, DEFAULT_CHUNK};
use crate::units::{Dur, Percent, Size};

/// Smallest chunk accepted: below this the allocation count explodes (80 GiB in 1-byte
/// chunks would be 86 billion driver calls) for no benefit.
pub const MIN_CHUNK: u64 = 1024 * 1024;

/// ```yaml
/// gpu_memory_pressure: { fraction: 0.9, devices: [0, 1], chunk: 256MiB, ramp: 10s }
/// ```
/// Exactly one of `allocate`, `fraction`, `leave_free`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GpuPressureSpec {
    /// Take this much on each device, e.g. `40GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocate: Option<Size>,
    /// Bring each device's used memory up to this share of its total, e.g. `0.9` or `90%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<Percent>,
    /// Take everything but this much on each device, e.g. `2GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leave_free: Option<Size>,
    /// Device ordinals; every device when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<u32>>,
    /// Allocation size; 256MiB when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<Size>,
    /// Spread the allocations over this long; as fast as possible when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Dur>,
}

impl GpuPressureSpec {
    /// Checks the spec and turns it into what the hog runs. The error reads as a sentence
    /// about the spec's keys; the `gpu-hog` command reports it as a usage error.
    pub fn to_pressure(&self) -> Result<GpuPressure, String> {
        let target = match (self.allocate, self.fraction, self.leave_free) {
            (Some(Size(0)), None, None) => {
                return Err("`allocate` must be above zero".into());
            }
            (Some(Size(bytes)), None, None) => Target::Allocate(bytes),
            (None, Some(share), None) => {
                let f = share.fraction();
                if f <= 0.0 {
                    return Err("`fraction` must be above 0 (and at most 1)".into());
                }
                Target::Fraction(f)
            }
            (None, None, Some(Size(bytes))) => Target::LeaveFree(bytes),
            (None, None, None) => {
                return Err(
                    "say how much GPU memory to take: one of `allocate`, `fraction` or \
                     `leave_free`"
                        .into(),
                )
            }
            _ => return Err("give only one of `allocate`, `fraction` and `leave_free`".to_string()),
        };
        if let Some(devices) = &self.devices {
            if devices.is_empty() {
                return Err("`devices` is empty; leave it out to use every device".into());
            }
            for (i, d) in devices.iter().enumerate() {
                if devices[..i].contains(d) {
                    return Err(format!("device {d} is listed twice in `devices`"));
                }
            }
        }
        let chunk = self.chunk.map_or(DEFAULT_CHUNK, |Size(b)| b);
        if chunk < MIN_CHUNK {
            return Err(format!(
                "`chunk` must be at least {}; found {}",
                Size(MIN_CHUNK),
                Size(chunk)
            ));
        }
        let ramp = self.ramp.map(|Dur(d)| d).filter(|d| *d > Duration::ZERO);
        Ok(GpuPressure {
            target,
            devices: self.devices.clone(),
            chunk,
            ramp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<GpuPressureSpec, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn each_target_reads_from_yaml() {
        let p = parse("{ fraction: 0.9, devices: [0, 1], chunk: 128MiB, ramp: 10s }")
            .unwrap()
            .to_pressure()
            .unwrap();
        assert_eq!(p.target, Target::Fraction(0.9));
        assert_eq!(p.devices, Some(vec![0, 1]));
        assert_eq!(p.chunk, 128 * 1024 * 1024);
        assert_eq!(p.ramp, Some(Duration::from_secs(10)));

        let p = parse("{ allocate: 40GiB }").unwrap().to_pressure().unwrap();
        assert_eq!(p.target, Target::Allocate(40 << 30));
        assert_eq!((p.devices, p.chunk, p.ramp), (None, DEFAULT_CHUNK, None));

        let p = parse("{ leave_free: 2GiB }")
            .unwrap()
            .to_pressure()
            .unwrap();
        assert_eq!(p.target, Target::LeaveFree(2 << 30));

        let p = parse("{ fraction: 50% }").unwrap().to_pressure().unwrap();
        assert_eq!(p.target, Target::Fraction(0.5));
    }

    #[test]
    fn exactly_one_target() {
        let none = parse("{ devices: [0] }")
            .unwrap()
            .to_pressure()
            .unwrap_err();
        assert!(
            none.contains("one of `allocate`, `fraction` or `leave_free`"),
            "{none}"
        );
        let two = parse("{ allocate: 1GiB, fraction: 0.5 }")
            .unwrap()
            .to_pressure()
            .unwrap_err();
        assert!(two.contains("only one"), "{two}");
    }

    #[test]
    fn fractions_must_be_in_zero_to_one() {
        assert!(parse("{ fraction: 0 }")
            .unwrap()
            .to_pressure()
            .unwrap_err()
            .contains("above 0"));
        // Above 1 never makes it past the Percent parser.
        assert!(parse("{ fraction: 1.5 }").is_err());
        assert!(parse("{ fraction: 1 }").unwrap().to_pressure().is_ok());
    }

    #[test]
    fn bad_devices_chunks_and_keys_are_rejected() {
        let err = |y: &str| parse(y).unwrap().to_pressure().unwrap_err();
        assert!(err("{ allocate: 1GiB, devices: [] }").contains("empty"));
        assert!(err("{ allocate: 1GiB, devices: [1, 1] }").contains("twice"));
        assert!(err("{ allocate: 1GiB, chunk: 4KiB }").contains("at least"));
        assert!(err("{ allocate: 0 }").contains("above zero"));
        assert!(parse("{ allocate: 1GiB, device: 0 }").is_err());
    }

    #[test]
    fn a_zero_ramp_is_no_ramp() {
        let p = parse("{ allocate: 1GiB, ramp: 0 }")
            .unwrap()
            .to_pressure()
            .unwrap();
        assert_eq!(p.ramp, None);
    }

    #[test]
    fn specs_round_trip_through_yaml() {
        let spec = parse("{ leave_free: 2GiB, devices: [3], ramp: 1m }").unwrap();
        let yaml = serde_saphyr::to_string(&spec).unwrap();
        assert_eq!(parse(&yaml).unwrap(), spec);
    }
}
