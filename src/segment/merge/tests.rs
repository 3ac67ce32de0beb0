use std::time::Duration;

use std::path::Path;

use super::*;
use crate::experiment::{Budgets, MeasureSpec};
use crate::fault::Evidence;
use crate::measure::testutil::{rec, RecordExt};
use crate::measure::FaultWindow;
use crate::segment::manifest::{ExperimentRef, LeaderFacts, Manifest, VERSION};
use crate::segment::Segment;

const EXPERIMENT: &str = "version: 1\nname: drill\n";

/// The schedule of one stream at 10/s for 4 s: request i at i * 100 ms; the fault from 1 s to
/// 2 s turns its requests into 503s, and marks them.
fn schedule() -> Vec<RequestRecord> {
    (0..40u64)
        .map(|i| {
            let r = RequestRecord {
                seq: i,
                ..rec("chat", i * 100).latency_ms(50 + i)
            };
            if (10..20).contains(&i) {
                RequestRecord {
                    faults: Some("burst".into()),
                    ..r.http_error(503)
                }
            } else {
                r
            }
        })
        .collect()
}

fn manifest(segment: Segment, records: usize) -> Manifest {
    Manifest {
        manifest_version: VERSION,
        faultline_version: env!("CARGO_PKG_VERSION").into(),
        experiment: ExperimentRef {
            name: "drill".into(),
            file: "drill.yaml".into(),
            sha256: manifest::sha256_hex(EXPERIMENT.as_bytes()),
        },
        segment,
        start_at: Some("2026-05-01T12:00:00Z".into()),
        started_at: "2026-05-01T12:00:00.000000000Z".into(),
        seed: 3,
        duration: Duration::from_secs(4),
        streams: vec!["chat".into()],
        records,
        unfinished: 0,
        cpu: None,
        load_scheduling: None,
        leader: segment.is_leader().then(|| LeaderFacts {
            fault_windows: vec![FaultWindow {
                id: "burst".into(),
                target: "pp".into(),
                kind: "http_error".into(),
                start: Duration::from_secs(1),
                end: Duration::from_secs(2),
                lift_error: None,
                evidence: Some(Evidence::Requests {
                    touched: 10,
                    seen_by_clients: Some(3),
                }),
            }],
            rate_changes: Vec::new(),
            service_exits: Vec::new(),
        }),
        exit_code: 0,
        ended_early: None,
    }
}

/// Writes segment `k` of `n` of [`schedule`] into `root/name`, after `tweak` had its say.
fn segment_dir(
    root: &Path,
    name: &str,
    k: u32,
    n: u32,
    tweak: impl FnOnce(&mut Manifest),
) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let segment = Segment::new(k, n).unwrap();
    let recs: Vec<RequestRecord> = schedule()
        .into_iter()
        .filter(|r| segment.owns(r.seq))
        .collect();
    let mut m = manifest(segment, recs.len());
    tweak(&mut m);
    records::write(&dir.join(records::FILE), &recs).unwrap();
    std::fs::write(dir.join(manifest::EXPERIMENT_FILE), EXPERIMENT).unwrap();
    manifest::write(&dir, &m).unwrap();
    dir
}

fn four(root: &Path) -> Vec<PathBuf> {
    (1..=4)
        .map(|k| segment_dir(root, &format!("s{k}"), k, 4, |_| {}))
        .collect()
}

fn refusal(dirs: &[PathBuf]) -> String {
    merge(dirs).unwrap_err().to_string()
}

#[test]
fn four_segments_merge_into_the_one_schedule() {
    let root = tempfile::tempdir().unwrap();
    let merged = merge(&four(root.path())).unwrap();
    assert_eq!(merged.records, schedule());
    assert_eq!(merged.source, EXPERIMENT);
    assert_eq!(merged.leader().segment, Segment::new(1, 4).unwrap());
    // Every share's marked responses count, not only the leader's 3.
    assert_eq!(
        merged.facts.windows[0].evidence,
        Some(Evidence::Requests {
            touched: 10,
            seen_by_clients: Some(10)
        })
    );
    assert_eq!(merged.facts.duration, Duration::from_secs(4));
}

/// The JSON report of `records` under `facts`, as `run` and `merge` write it.
fn report_of(records: &[RequestRecord], facts: &RunFacts, started_at: SystemTime) -> String {
    let eval =
        crate::measure::evaluate(records, facts, &Budgets::default(), &MeasureSpec::default());
    let info = crate::report::json::ExperimentInfo {
        name: "drill",
        file: "drill.yaml".into(),
        seed: 3,
        source: EXPERIMENT,
    };
    let json = crate::report::json::JsonReport::new(
        info,
        started_at,
        facts,
        &eval,
        crate::ExitCode::Success,
    );
    crate::report::json::to_string(&json).unwrap()
}

#[test]
fn merging_is_deterministic_and_reports_what_one_process_would() {
    let root = tempfile::tempdir().unwrap();
    let dirs = four(root.path());
    let merged = |dirs: &[PathBuf]| {
        let m = merge(dirs).unwrap();
        report_of(&m.records, &m.facts, m.started_at)
    };
    let forward = merged(&dirs);
    let mut shuffled = dirs.clone();
    shuffled.rotate_left(2);
    shuffled.swap(0, 1);
    assert_eq!(merged(&shuffled), forward);
    assert_eq!(merged(&dirs), forward);
    // The one process: every record, the leader's facts, its marks counted over them all.
    let m = merge(&dirs).unwrap();
    let mut facts = m.facts.clone();
    crate::measure::count_client_marks(&mut facts.windows, &schedule());
    assert_eq!(report_of(&schedule(), &facts, m.started_at), forward);
    assert!(forward.contains("\"seen_by_clients\": 10"), "{forward}");
}

#[test]
fn a_directory_that_is_not_a_segment_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut dirs = four(root.path());
    let stray = root.path().join("stray");
    std::fs::create_dir_all(&stray).unwrap();
    dirs.push(stray);
    let err = refusal(&dirs);
    assert!(err.contains("stray is not a segment directory"), "{err}");
}

#[test]
fn segments_of_different_experiments_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut dirs = four(root.path());
    dirs[2] = segment_dir(root.path(), "other", 3, 4, |m| {
        m.experiment.sha256 = manifest::sha256_hex(b"something else");
    });
    let err = refusal(&dirs);
    assert!(err.contains("s1") && err.contains("other"), "{err}");
    assert!(err.contains("ran different experiment files"), "{err}");
}

#[test]
fn different_counts_start_times_and_seeds_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let base = four(root.path());
    let mut dirs = base.clone();
    dirs[3] = segment_dir(root.path(), "of5", 4, 5, |_| {});
    assert!(refusal(&dirs).contains("is segment 4/5: one drill has one segment count"));
    let mut dirs = base.clone();
    dirs[1] = segment_dir(root.path(), "late", 2, 4, |m| {
        m.start_at = Some("2026-05-01T12:00:05Z".into());
    });
    let err = refusal(&dirs);
    assert!(
        err.contains(
            "late at 2026-05-01T12:00:05Z: the segments of one drill share one --start-at"
        ),
        "{err}"
    );
    let mut dirs = base;
    dirs[1] = segment_dir(root.path(), "seed", 2, 4, |m| m.seed = 4);
    assert!(refusal(&dirs).contains("/seed with seed 4: their draws differ"));
}

#[test]
fn duplicate_and_missing_segments_are_named() {
    let root = tempfile::tempdir().unwrap();
    let mut dirs = four(root.path());
    dirs[3] = segment_dir(root.path(), "again", 3, 4, |_| {});
    let err = refusal(&dirs);
    assert!(err.contains("segment 3/4 appears 2 times"), "{err}");
    assert!(err.contains("s3") && err.contains("again"), "{err}");
    assert!(err.contains("missing segment(s) 4 of 4"), "{err}");
    let err = refusal(&four(root.path())[..2]);
    assert!(
        err.contains("missing segment(s) 3, 4 of 4 (given: 1/4, 2/4)"),
        "{err}"
    );
    assert!(!err.contains("leader"), "{err}");
}

#[test]
fn a_missing_leader_is_said() {
    let root = tempfile::tempdir().unwrap();
    let err = refusal(&four(root.path())[1..]);
    assert!(err.contains("missing segment(s) 1 of 4"), "{err}");
    assert!(
        err.contains("the leader (segment 1/4) is among them"),
        "{err}"
    );
}

#[test]
fn a_changed_experiment_copy_or_a_short_records_file_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dirs = four(root.path());
    std::fs::write(
        dirs[1].join(manifest::EXPERIMENT_FILE),
        "version: 1\nname: edited\n",
    )
    .unwrap();
    let err = refusal(&dirs);
    assert!(
        err.contains("s2/experiment.yaml does not match the sha256"),
        "{err}"
    );
    let dirs = four(root.path());
    let path = dirs[2].join(records::FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let short: Vec<&str> = text.lines().skip(1).collect();
    std::fs::write(&path, short.join("\n")).unwrap();
    let err = refusal(&dirs);
    assert!(
        err.contains("has 9 records where its segment.json says 10"),
        "{err}"
    );
}

#[test]
fn records_of_another_share_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let dirs = four(root.path());
    // Segment 2's records under segment 3's manifest.
    std::fs::copy(dirs[1].join(records::FILE), dirs[2].join(records::FILE)).unwrap();
    let err = refusal(&dirs);
    assert!(
        err.contains("request 1 of stream `chat` is not segment 3/4's to send"),
        "{err}"
    );
}

/// The merged report carries the least any segment's load got, and nothing when a segment (an
/// older faultline's) did not say.
#[test]
fn the_merged_load_scheduling_is_the_least_of_the_segments() {
    use crate::load::{Granted, Scheduling};
    let got = |pacer, gave_up, workers| Scheduling {
        pacer,
        pacer_gave_up_realtime: gave_up,
        workers,
    };
    let each = [
        Some(got(Granted::Realtime, false, Granted::ShortSlice)),
        Some(got(Granted::Realtime, true, Granted::ShortSlice)),
        Some(got(Granted::ShortSlice, false, Granted::ShortSlice)),
        Some(got(Granted::Realtime, false, Granted::Normal)),
    ];
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (1..=4)
        .map(|k| {
            segment_dir(root.path(), &format!("s{k}"), k, 4, |m| {
                m.load_scheduling = each[k as usize - 1];
            })
        })
        .collect();
    assert_eq!(
        merge(&dirs).unwrap().facts.load_scheduling,
        Some(got(Granted::ShortSlice, true, Granted::Normal))
    );
    for missing in [1, 3] {
        let old = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (1..=4)
            .map(|k| {
                segment_dir(old.path(), &format!("s{k}"), k, 4, |m| {
                    m.load_scheduling = each[k as usize - 1].filter(|_| k != missing);
                })
            })
            .collect();
        let merged = merge(&dirs).unwrap().facts.load_scheduling;
        assert_eq!(merged, None, "segment {missing} did not say");
    }
}
