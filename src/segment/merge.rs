//! N segment directories back into one run: checked to be the N shares of one drill (one
//! experiment file, one count, one time zero, one seed, every segment once, the leader among
//! them), then their records concatenated in one deterministic order and the leader's facts
//! taken as the run's. Measuring the result is then exactly what one process would have
//! reported for those records: percentiles come from the merged records, never averaged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use super::manifest::{self, Cpu, Manifest};
use super::records;
use crate::load::RequestRecord;
use crate::measure::RunFacts;

/// Why the directories are not one drill's segments: every problem found, each naming its
/// directories.
#[derive(Debug, thiserror::Error)]
#[error("cannot merge these segments:\n  - {}", .problems.join("\n  - "))]
pub struct MergeError {
    pub problems: Vec<String>,
}

/// One segment as read from its directory.
#[derive(Debug)]
pub struct SegmentDir {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// The segments as one run.
#[derive(Debug)]
pub struct Merged {
    /// In segment order, the leader first.
    pub segments: Vec<SegmentDir>,
    /// The experiment file's text, as every segment ran it.
    pub source: String,
    /// Every segment's records, by intended time, then stream, then position in the schedule.
    pub records: Vec<RequestRecord>,
    pub facts: RunFacts,
    /// The leader's time zero.
    pub started_at: SystemTime,
}

impl Merged {
    pub fn leader(&self) -> &Manifest {
        // `merge` refuses a set without segment 1, and sorts it first.
        &self.segments[0].manifest
    }
}

/// Reads and checks `dirs`, and merges them.
pub fn merge(dirs: &[PathBuf]) -> Result<Merged, MergeError> {
    let mut problems = Vec::new();
    let mut read = Vec::new();
    for dir in dirs {
        match manifest::read(dir) {
            Ok(manifest) => read.push(SegmentDir {
                dir: dir.clone(),
                manifest,
            }),
            Err(why) => problems.push(why),
        }
    }
    let fail = |problems: Vec<String>| Err(MergeError { problems });
    if !problems.is_empty() {
        return fail(problems);
    }
    problems.extend(consistency(&read));
    if !problems.is_empty() {
        return fail(problems);
    }
    read.sort_by_key(|s| s.manifest.segment);

    let mut source = None;
    let mut all = Vec::new();
    for s in &read {
        match segment_contents(s) {
            Ok((text, recs)) => {
                source.get_or_insert(text);
                all.extend(recs);
            }
            Err(why) => problems.push(why),
        }
    }
    let (Some(source), true) = (source, problems.is_empty()) else {
        return fail(problems);
    };
    let leader = &read[0].manifest;
    let started_at = match humantime::parse_rfc3339(&leader.started_at) {
        Ok(t) => t,
        Err(e) => {
            return fail(vec![format!(
                "{}: started_at `{}` is not an RFC 3339 time: {e}",
                read[0].dir.join(manifest::FILE).display(),
                leader.started_at
            )])
        }
    };
    // One order whatever order the directories were named in; within a stream no two
    // records share a sequence number, so this is total.
    all.sort_by(|a, b| (a.intended, &a.stream, a.seq).cmp(&(b.intended, &b.stream, b.seq)));
    let mut facts = leader.facts(busiest(&read), least_scheduling(&read));
    // The leader counted only its own share's marked responses; every share saw the faults.
    crate::measure::count_client_marks(&mut facts.windows, &all);
    Ok(Merged {
        segments: read,
        source,
        records: all,
        facts,
        started_at,
    })
}

/// That the manifests are one drill's N segments, each once.
fn consistency(read: &[SegmentDir]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(first) = read.first() else {
        return vec!["no segment directories given".into()];
    };
    let m0 = &first.manifest;
    let name = |s: &SegmentDir| s.dir.display().to_string();
    for s in &read[1..] {
        let m = &s.manifest;
        if m.experiment.sha256 != m0.experiment.sha256 {
            problems.push(format!(
                "{} and {} ran different experiment files (`{}` sha256 {}, `{}` sha256 {})",
                name(first),
                name(s),
                m0.experiment.name,
                short(&m0.experiment.sha256),
                m.experiment.name,
                short(&m.experiment.sha256)
            ));
        }
        if m.segment.count() != m0.segment.count() {
            problems.push(format!(
                "{} is segment {} and {} is segment {}: one drill has one segment count",
                name(first),
                m0.segment,
                name(s),
                m.segment
            ));
        }
        if m.start_at != m0.start_at {
            problems.push(format!(
                "{} started at {} and {} at {}: the segments of one drill share one --start-at",
                name(first),
                m0.start_at
                    .as_deref()
                    .unwrap_or("its own time (no --start-at)"),
                name(s),
                m.start_at
                    .as_deref()
                    .unwrap_or("its own time (no --start-at)")
            ));
        }
        if m.seed != m0.seed {
            problems.push(format!(
                "{} ran with seed {} and {} with seed {}: their draws differ",
                name(first),
                m0.seed,
                name(s),
                m.seed
            ));
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    let n = m0.segment.count();
    let mut seen: BTreeMap<u32, Vec<&SegmentDir>> = BTreeMap::new();
    for s in read {
        seen.entry(s.manifest.segment.index()).or_default().push(s);
    }
    for (k, dirs) in &seen {
        if dirs.len() > 1 {
            let names: Vec<String> = dirs.iter().map(|s| name(s)).collect();
            problems.push(format!(
                "segment {k}/{n} appears {} times: {}",
                dirs.len(),
                names.join(", ")
            ));
        }
    }
    let missing: Vec<String> = (1..=n)
        .filter(|k| !seen.contains_key(k))
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        let leader = if seen.contains_key(&1) {
            String::new()
        } else {
            format!("; the leader (segment 1/{n}) is among them, and only it has the fault windows")
        };
        problems.push(format!(
            "missing segment(s) {} of {n} (given: {}){leader}",
            missing.join(", "),
            seen.keys()
                .map(|k| format!("{k}/{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    problems
}

/// A segment's experiment text (checked against its hash) and records (checked against its
/// manifest's count and share).
fn segment_contents(s: &SegmentDir) -> Result<(String, Vec<RequestRecord>), String> {
    let m = &s.manifest;
    let path = s.dir.join(manifest::EXPERIMENT_FILE);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if manifest::sha256_hex(&bytes) != m.experiment.sha256 {
        return Err(format!(
            "{} does not match the sha256 in {}: the directory was changed after its run",
            path.display(),
            s.dir.join(manifest::FILE).display()
        ));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    let recs = records::read(&s.dir.join(records::FILE))?;
    if recs.len() != m.records {
        return Err(format!(
            "{} has {} records where its {} says {}: it is incomplete",
            s.dir.join(records::FILE).display(),
            recs.len(),
            manifest::FILE,
            m.records
        ));
    }
    if let Some(r) = recs.iter().find(|r| !m.segment.owns(r.seq)) {
        return Err(format!(
            "{}: request {} of stream `{}` is not segment {}'s to send",
            s.dir.join(records::FILE).display(),
            r.seq,
            r.stream,
            m.segment
        ));
    }
    Ok((text, recs))
}

/// The CPU facts of the segment whose machine was saturated for the largest share of its run:
/// a drill is limited by its busiest worker.
fn busiest(read: &[SegmentDir]) -> Option<Cpu> {
    let share = |c: &Cpu| {
        if c.observed.is_zero() {
            0.0
        } else {
            c.saturated.as_secs_f64() / c.observed.as_secs_f64()
        }
    };
    read.iter()
        .filter_map(|s| s.manifest.cpu)
        .max_by(|a, b| share(a).total_cmp(&share(b)))
}

/// The least any segment's load threads were granted: a drill's send lag is as trustworthy
/// as its worst-scheduled segment's. Unknown if any segment did not record it.
fn least_scheduling(read: &[SegmentDir]) -> Option<crate::load::Scheduling> {
    let mut each = read.iter().map(|s| s.manifest.load_scheduling);
    let first = each.next()??;
    each.try_fold(first, |least, s| Some(least.least(s?)))
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests;
