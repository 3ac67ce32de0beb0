//! The per-request CSV: one row per record, as the load generator saw it, so a drill can be
//! re-analysed with any tool.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::load::record::RequestRecord;
use crate::measure::ms::millis;

/// The header, written even when there are no records so the file's shape never depends on
/// the run.
pub const HEADER: [&str; 20] = [
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
    "ttft_ms",
    "itl_p50_ms",
    "itl_max_ms",
    "tpot_ms",
    "output_tokens",
    "tokens_per_second",
    "verified",
    "faults",
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
    ttft_ms: Option<f64>,
    itl_p50_ms: Option<f64>,
    itl_max_ms: Option<f64>,
    tpot_ms: Option<f64>,
    output_tokens: Option<u64>,
    tokens_per_second: Option<f64>,
    /// Only for `ok` rows: whether a signal showed the completion whole.
    verified: Option<bool>,
    faults: Option<&'a str>,
}

/// The median and the largest of one request's inter-token gaps, in ms.
fn gaps(itl_us: &[u32]) -> (Option<f64>, Option<f64>) {
    if itl_us.is_empty() {
        return (None, None);
    }
    let mut sorted = itl_us.to_vec();
    sorted.sort_unstable();
    let ms = |us: u32| f64::from(us) / 1000.0;
    (
        sorted.get(sorted.len() / 2).copied().map(ms),
        sorted.last().copied().map(ms),
    )
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
            ttft_ms: r.tokens.ttft.map(millis),
            itl_p50_ms: gaps(&r.tokens.itl_us).0,
            itl_max_ms: gaps(&r.tokens.itl_us).1,
            tpot_ms: r.tokens.tpot(r.latency).map(millis),
            output_tokens: r.tokens.output_tokens,
            tokens_per_second: r.tokens.tokens_per_second(r.latency),
            verified: r.outcome.is_ok().then_some(r.verified),
            faults: r.faults.as_deref(),
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
        let mut streamed = rec("model-a", 1_500).lag_ms(2);
        streamed.tokens = crate::load::record::TokenTiming {
            ttft: Some(std::time::Duration::from_millis(40)),
            itl_us: vec![10_000, 30_000, 20_000],
            output_tokens: Some(4),
        };
        streamed.faults = Some("burst".into());
        let records = vec![streamed, rec("model-b", 2_000).dropped()];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.csv");
        write(&path, &records).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "stream,seq,intended_ms,sent_ms,send_lag_ms,status,outcome,ttfb_ms,latency_ms,\
             bytes,events,served_by,ttft_ms,itl_p50_ms,itl_max_ms,tpot_ms,output_tokens,\
             tokens_per_second,verified,faults"
        );
        // TPOT: (100 ms - 40 ms) / 3 tokens after the first = 20 ms; 4 tokens in 0.1 s.
        assert_eq!(
            lines[1],
            "model-a,0,1500.0,1502.0,2.0,200,ok,20.0,100.0,512,8,primary,40.0,20.0,30.0,20.0,4,\
             40.0,true,burst"
        );
        assert_eq!(lines[2], "model-b,0,2000.0,,,,dropped,,0.0,0,0,,,,,,,,,");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn no_records_still_has_a_header() {
        let mut buf = Vec::new();
        write_to(&mut buf, &[]).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), HEADER.join(",") + "\n");
    }
}
