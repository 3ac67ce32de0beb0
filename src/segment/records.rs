//! `records.jsonl`: a segment's request records, one JSON object a line, lossless: every field
//! of a `RequestRecord` with times as whole nanoseconds, so the merge measures exactly what the
//! segment measured. (`requests.csv` rounds to milliseconds and is for people.)

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::load::record::{Outcome, RequestRecord, TokenTiming};

pub const FILE: &str = "records.jsonl";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    stream: String,
    seq: u64,
    intended_ns: u64,
    sent_ns: Option<u64>,
    status: Option<u16>,
    outcome: Outcome,
    ttfb_ns: Option<u64>,
    latency_ns: u64,
    bytes: u64,
    events: u64,
    served_by: Option<String>,
    ttft_ns: Option<u64>,
    itl_us: Vec<u32>,
    output_tokens: Option<u64>,
    verified: bool,
    faults: Option<String>,
}

fn ns(d: Duration) -> u64 {
    // 584 years of nanoseconds: no run's offset comes near.
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl From<&RequestRecord> for Line {
    fn from(r: &RequestRecord) -> Line {
        // Destructured whole: a field added to RequestRecord fails to compile here until the
        // file carries it too.
        let RequestRecord {
            stream,
            seq,
            intended,
            sent,
            status,
            outcome,
            ttfb,
            latency,
            bytes,
            events,
            served_by,
            tokens:
                TokenTiming {
                    ttft,
                    itl_us,
                    output_tokens,
                },
            verified,
            faults,
        } = r;
        Line {
            stream: stream.to_string(),
            seq: *seq,
            intended_ns: ns(*intended),
            sent_ns: sent.map(ns),
            status: *status,
            outcome: *outcome,
            ttfb_ns: ttfb.map(ns),
            latency_ns: ns(*latency),
            bytes: *bytes,
            events: *events,
            served_by: served_by.as_deref().map(str::to_string),
            ttft_ns: ttft.map(ns),
            itl_us: itl_us.clone(),
            output_tokens: *output_tokens,
            verified: *verified,
            faults: faults.as_deref().map(str::to_string),
        }
    }
}

impl From<Line> for RequestRecord {
    fn from(l: Line) -> RequestRecord {
        RequestRecord {
            stream: Arc::from(l.stream),
            seq: l.seq,
            intended: Duration::from_nanos(l.intended_ns),
            sent: l.sent_ns.map(Duration::from_nanos),
            status: l.status,
            outcome: l.outcome,
            ttfb: l.ttfb_ns.map(Duration::from_nanos),
            latency: Duration::from_nanos(l.latency_ns),
            bytes: l.bytes,
            events: l.events,
            served_by: l.served_by.map(Arc::from),
            tokens: TokenTiming {
                ttft: l.ttft_ns.map(Duration::from_nanos),
                itl_us: l.itl_us,
                output_tokens: l.output_tokens,
            },
            verified: l.verified,
            faults: l.faults.map(Arc::from),
        }
    }
}

pub fn write(path: &Path, records: &[RequestRecord]) -> anyhow::Result<()> {
    let what = || format!("cannot write the records {}", path.display());
    let file = std::fs::File::create(path).with_context(what)?;
    let mut out = BufWriter::new(file);
    for r in records {
        serde_json::to_writer(&mut out, &Line::from(r)).with_context(what)?;
        out.write_all(b"\n").with_context(what)?;
    }
    out.flush().with_context(what)
}

/// Every record of the file, in file order; an unreadable line is an error naming it.
pub fn read(path: &Path) -> Result<Vec<RequestRecord>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut records = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line)
            .map_err(|e| format!("{}:{}: not a request record: {e}", path.display(), n + 1))?;
        records.push(parsed.into());
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_survives_the_file() {
        let full = RequestRecord {
            stream: Arc::from("chat"),
            seq: 41,
            intended: Duration::new(3, 123_456_789),
            sent: Some(Duration::new(3, 124_000_001)),
            status: Some(200),
            outcome: Outcome::Truncated,
            ttfb: Some(Duration::from_nanos(20_000_003)),
            latency: Duration::from_nanos(180_000_007),
            bytes: 4096,
            events: 14,
            served_by: Some(Arc::from("fallback")),
            tokens: TokenTiming {
                ttft: Some(Duration::from_nanos(21_000_009)),
                itl_us: vec![2500, 2501, 9],
                output_tokens: Some(12),
            },
            verified: true,
            faults: Some(Arc::from("burst,slow")),
        };
        let bare = RequestRecord {
            stream: Arc::from("other"),
            seq: 0,
            intended: Duration::ZERO,
            sent: None,
            status: None,
            outcome: Outcome::Dropped,
            ttfb: None,
            latency: Duration::ZERO,
            bytes: 0,
            events: 0,
            served_by: None,
            tokens: TokenTiming::default(),
            verified: false,
            faults: None,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        write(&path, &[full.clone(), bare.clone()]).unwrap();
        assert_eq!(read(&path).unwrap(), vec![full, bare]);
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::write(&path, "{\"stream\": 3}\n").unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            err.contains("records.jsonl:1: not a request record"),
            "{err}"
        );
    }
}
