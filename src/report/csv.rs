//! The per-request CSV: one row per record, as the load generator saw it, so a drill can be
//! re-analysed with any tool.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::load::record::RequestRecord;
use crate::measure::ms::millis;

/// The header, written even when there are no records so the file's shape never depends on
/// the run.
pub const HEADER: [&str; 12] = [
    "stream",
    "seq",
    "intended_ms",
    "sent_ms",
    "send_lag_ms",
    "status",
    "outcome",
    "ttfb_ms",
    "latency_ms",
    "bytes",
    "events",
    "served_by",
];

/// One line; `None` fields become empty cells. Field order must match `HEADER`.
#[derive(Serialize)]
struct Row<'a> {
    stream: &'a str,
    seq: u64,
    intended_ms: f64,
    sent_ms: Option<f64>,
    send_lag_ms: Option<f64>,
    status: Option<u16>,
    outcome: &'static str,
    ttfb_ms: Option<f64>,
    latency_ms: f64,
    bytes: u64,
    events: u64,
    served_by: Option<&'a str>,
}

impl<'a> From<&'a RequestRecord> for Row<'a> {
    fn from(r: &'a RequestRecord) -> Self {
        Row {
            stream: &r.stream,
            seq: r.seq,
            intended_ms: millis(r.intended),
            sent_ms: r.sent.map(millis),
            send_lag_ms: r.send_lag().map(millis),
            status: r.status,
            outcome: r.outcome.as_str(),
            ttfb_ms: r.ttfb.map(millis),
            latency_ms: millis(r.latency),
            bytes: r.bytes,
            events: r.events,
            served_by: r.served_by.as_deref(),
        }
    }
}

/// Writes the records to any sink (a file, or a buffer in tests).
pub fn write_to<W: std::io::Write>(sink: W, records: &[RequestRecord]) -> anyhow::Result<()> {
    // Headers are written by hand: serde would only write them with the first row.
    let mut w = ::csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(sink);
    w.write_record(HEADER)?;
    for r in records {
        w.serialize(Row::from(r))?;
    }
    w.flush()?;
    Ok(())
}

pub fn write(path: &Path, records: &[RequestRecord]) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create the CSV report {}", path.display()))?;
    write_to(std::io::BufWriter::new(file), records)
        .with_context(|| format!("cannot write the CSV report {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::testutil::{rec, RecordExt};

    #[test]
    fn header_and_rows() {
        let records = vec![
            rec("model-a", 1_500).lag_ms(2),
            rec("model-b", 2_000).dropped(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.csv");
        write(&path, &records).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "stream,seq,intended_ms,sent_ms,send_lag_ms,status,outcome,ttfb_ms,latency_ms,\
             bytes,events,served_by"
        );
        assert_eq!(
            lines[1],
            "model-a,0,1500.0,1502.0,2.0,200,ok,20.0,100.0,512,8,primary"
        );
        assert_eq!(lines[2], "model-b,0,2000.0,,,,dropped,,0.0,0,0,");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn no_records_still_has_a_header() {
        let mut buf = Vec::new();
        write_to(&mut buf, &[]).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), HEADER.join(",") + "\n");
    }
}
