//! What the hog says on stdout, one JSON object per line, and what the controller reads back.
//! The same types serialise (in the hog) and deserialise (in the controller), so the two cannot
//! drift apart.

use serde::{Deserialize, Serialize};

use crate::units::Size;

/// One device while the hog holds its memory. Bytes throughout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReport {
    pub device: u32,
    /// What the target asked for on this device (see `plan`), before the cap.
    pub asked: u64,
    /// What the hog allocated, wrote and holds.
    pub held: u64,
    /// Free memory reported by the driver before the hog allocated anything (after its
    /// context was created, so the context's own overhead is not counted as pressure).
    pub free_before: u64,
    /// Free memory reported by the driver once everything was allocated.
    pub free_after: u64,
    pub total: u64,
    /// True when `held < asked` because the device did not have that much to spare.
    pub clamped: bool,
}

/// The `holding` line: every device's memory is allocated and written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HogReport {
    /// The hog's process id.
    pub pid: u32,
    pub devices: Vec<DeviceReport>,
}

/// One device after the hog freed its memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRelease {
    pub device: u32,
    pub freed: u64,
}

/// The `released` line: everything was freed (or the error went to stderr).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseReport {
    /// What ended the hold: `SIGTERM`, `SIGINT`, `end of stdin`.
    pub reason: String,
    pub devices: Vec<DeviceRelease>,
}

/// Every line the hog prints on stdout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HogEvent {
    /// One chunk allocated and written; `held` is the device's running total.
    Allocated {
        device: u32,
        bytes: u64,
        held: u64,
    },
    Holding(HogReport),
    Released(ReleaseReport),
}

impl HogReport {
    pub fn total_held(&self) -> u64 {
        self.devices.iter().map(|d| d.held).sum()
    }

    /// One line per device for people: "device 0: holding 300 MiB (free 1 GiB -> 724 MiB of
    /// 1 GiB)", with the reason when less than asked is held.
    pub fn describe(&self) -> String {
        self.devices
            .iter()
            .map(|d| {
                let mut line = format!(
                    "device {}: holding {} (free {} -> {} of {})",
                    d.device,
                    Size(d.held),
                    Size(d.free_before),
                    Size(d.free_after),
                    Size(d.total)
                );
                if d.clamped {
                    line.push_str(&format!(
                        "; {} was asked, more than the device could spare",
                        Size(d.asked)
                    ));
                }
                line
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json_lines() {
        let holding = HogEvent::Holding(HogReport {
            pid: 7,
            devices: vec![DeviceReport {
                device: 0,
                asked: 10,
                held: 10,
                free_before: 100,
                free_after: 90,
                total: 200,
                clamped: false,
            }],
        });
        let line = serde_json::to_string(&holding).unwrap();
        assert_eq!(
            line,
            r#"{"event":"holding","pid":7,"devices":[{"device":0,"asked":10,"held":10,"free_before":100,"free_after":90,"total":200,"clamped":false}]}"#
        );
        assert_eq!(serde_json::from_str::<HogEvent>(&line).unwrap(), holding);
        let allocated: HogEvent =
            serde_json::from_str(r#"{"event":"allocated","device":1,"bytes":5,"held":5}"#).unwrap();
        assert_eq!(
            allocated,
            HogEvent::Allocated {
                device: 1,
                bytes: 5,
                held: 5
            }
        );
    }

    #[test]
    fn descriptions_say_when_a_device_could_not_spare_enough() {
        let mib = 1024 * 1024;
        let report = HogReport {
            pid: 1,
            devices: vec![DeviceReport {
                device: 1,
                asked: 2048 * mib,
                held: 960 * mib,
                free_before: 1024 * mib,
                free_after: 64 * mib,
                total: 1024 * mib,
                clamped: true,
            }],
        };
        assert_eq!(
            report.describe(),
            "device 1: holding 960.0 MiB (free 1.0 GiB -> 64.0 MiB of 1.0 GiB); \
             2.0 GiB was asked, more than the device could spare"
        );
    }
}
