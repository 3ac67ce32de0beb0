//! `segment.json`: what one segment was (which experiment, by the hash of its file's bytes;
//! which share; its time zero; its seed) and, for the leader, the run's facts the merge needs
//! (fault windows, rate changes). Beside it, `experiment.yaml` (the file's bytes) and
//! `records.jsonl` make the directory all a merge needs.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::Segment;
use crate::load::rates::RateMark;
use crate::measure::{ms, FaultWindow, RunFacts};

pub const FILE: &str = "segment.json";
/// The experiment file's bytes, copied so a merge needs nothing but the segment directories.
pub const EXPERIMENT_FILE: &str = "experiment.yaml";
/// Bumped on any change a merge of another faultline could trip over.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub manifest_version: u32,
    pub faultline_version: String,
    pub experiment: ExperimentRef,
    pub segment: Segment,
    /// `--start-at` as given (in UTC), or `None` for a segment that chose its own time zero.
    pub start_at: Option<String>,
    /// Time zero as this segment's clock had it, RFC 3339 UTC.
    pub started_at: String,
    pub seed: u64,
    #[serde(
        rename = "duration_ms",
        serialize_with = "ms::serialize",
        deserialize_with = "ms::deserialize"
    )]
    pub duration: Duration,
    /// The load streams, in the experiment's order.
    pub streams: Vec<String>,
    /// Lines in `records.jsonl`.
    pub records: usize,
    /// Requests still in flight when the segment gave up waiting (after an abort).
    pub unfinished: usize,
    /// How long this segment's machine had every CPU busy, of how long it was watched.
    pub cpu: Option<Cpu>,
    /// What the kernel granted this segment's load threads (absent in manifests from before
    /// it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_scheduling: Option<crate::load::Scheduling>,
    /// The leader's facts; `None` on the other segments, which follow no timeline.
    pub leader: Option<LeaderFacts>,
    /// This segment's own exit code (see docs/segments.md: not the drill's verdict).
    pub exit_code: u8,
    /// Why the segment ended before the end of the timeline, if it did.
    pub ended_early: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentRef {
    pub name: String,
    /// The file's path as the segment was given it.
    pub file: String,
    /// Of the file's bytes, lower-case hex.
    pub sha256: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    #[serde(
        rename = "saturated_ms",
        serialize_with = "ms::serialize",
        deserialize_with = "ms::deserialize"
    )]
    pub saturated: Duration,
    #[serde(
        rename = "observed_ms",
        serialize_with = "ms::serialize",
        deserialize_with = "ms::deserialize"
    )]
    pub observed: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderFacts {
    pub fault_windows: Vec<FaultWindow>,
    pub rate_changes: Vec<RateMark>,
    /// The leader's services that died on their own (absent in manifests from before it was
    /// recorded, and when none did).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_exits: Vec<crate::measure::ServiceExit>,
}

impl Manifest {
    /// The run's facts as the leader had them (its windows, rate changes and CPU), with
    /// `cpu` and `load_scheduling` standing for the whole drill's machines.
    pub fn facts(
        &self,
        cpu: Option<Cpu>,
        load_scheduling: Option<crate::load::Scheduling>,
    ) -> RunFacts {
        let leader = self.leader.as_ref();
        RunFacts {
            duration: self.duration,
            windows: leader.map(|l| l.fault_windows.clone()).unwrap_or_default(),
            streams: self.streams.clone(),
            cpu_saturated: cpu.map(|c| (c.saturated, c.observed)),
            rate_changes: leader.map(|l| l.rate_changes.clone()).unwrap_or_default(),
            service_exits: leader.map(|l| l.service_exits.clone()).unwrap_or_default(),
            load_scheduling,
        }
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn write(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let path = dir.join(FILE);
    let mut text =
        serde_json::to_string_pretty(manifest).context("cannot serialize segment.json")?;
    text.push('\n');
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The manifest of the segment directory `dir`; `Err` says why `dir` is not one.
pub fn read(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join(FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{} is not a segment directory: it has no {FILE} (write one with `faultline run \
                 --segment K/N --out DIR`)",
                dir.display()
            )
        } else {
            format!("cannot read {}: {e}", path.display())
        }
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a segment manifest: {e}", path.display()))?;
    if manifest.manifest_version != VERSION {
        return Err(format!(
            "{}: manifest version {}, this faultline ({}) reads version {VERSION}",
            path.display(),
            manifest.manifest_version,
            env!("CARGO_PKG_VERSION")
        ));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Evidence;

    fn sample() -> Manifest {
        Manifest {
            manifest_version: VERSION,
            faultline_version: "0.1.0".into(),
            experiment: ExperimentRef {
                name: "drill".into(),
                file: "drill.yaml".into(),
                sha256: sha256_hex(b"version: 1"),
            },
            segment: Segment::new(1, 4).unwrap(),
            start_at: Some("2026-05-01T12:00:00Z".into()),
            started_at: "2026-05-01T12:00:00.000Z".into(),
            seed: 7,
            duration: Duration::from_secs(8),
            streams: vec!["chat".into()],
            records: 3,
            unfinished: 0,
            cpu: Some(Cpu {
                saturated: Duration::from_millis(250),
                observed: Duration::new(8, 1),
            }),
            load_scheduling: Some(crate::load::Scheduling {
                pacer: crate::load::Granted::Realtime,
                pacer_gave_up_realtime: true,
                workers: crate::load::Granted::ShortSlice,
            }),
            leader: Some(LeaderFacts {
                fault_windows: vec![FaultWindow {
                    id: "kill".into(),
                    target: "svc".into(),
                    kind: "kill".into(),
                    start: Duration::new(2, 123_456_789),
                    end: Duration::from_secs(5),
                    lift_error: Some("no".into()),
                    evidence: Some(Evidence::Process {
                        expected: "gone",
                        seen: "gone".into(),
                    }),
                }],
                rate_changes: vec![RateMark {
                    stream: "chat".into(),
                    at: Duration::from_millis(3500),
                    from_per_second: 40.0,
                    to_per_second: 80.5,
                    over: Duration::from_millis(1250),
                }],
                service_exits: vec![crate::measure::ServiceExit {
                    service: "gateway".into(),
                    at: Duration::from_millis(4200),
                    how: "was killed by signal 9 (SIGKILL)".into(),
                }],
            }),
            exit_code: 0,
            ended_early: None,
        }
    }

    #[test]
    fn a_manifest_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        write(dir.path(), &m).unwrap();
        assert_eq!(read(dir.path()).unwrap(), m);
    }

    #[test]
    fn the_leaders_service_exits_reach_the_merged_facts() {
        let facts = sample().facts(None, None);
        assert_eq!(facts.service_exits.len(), 1);
        assert_eq!(facts.service_exits[0].service, "gateway");
        // A manifest from before they were recorded still reads, with none.
        let text = serde_json::to_string(&sample()).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["leader"]
            .as_object_mut()
            .unwrap()
            .remove("service_exits");
        json.as_object_mut().unwrap().remove("load_scheduling");
        let old: Manifest = serde_json::from_value(json).unwrap();
        assert!(old.facts(None, None).service_exits.is_empty());
        assert_eq!(old.load_scheduling, None, "and no scheduling record");
    }

    #[test]
    fn a_directory_without_a_manifest_is_not_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(dir.path()).unwrap_err();
        assert!(err.contains("is not a segment directory"), "{err}");
        std::fs::write(dir.path().join(FILE), "{}").unwrap();
        assert!(read(dir.path())
            .unwrap_err()
            .contains("not a segment manifest"));
    }

    #[test]
    fn the_hash_is_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
