//! Evaluation -> reports, one file per format. Like measure/, this stage reads records and the
//! evaluation only; it knows nothing about proxies or processes.

pub mod csv;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod table;

#[cfg(test)]
pub(crate) mod testdata;

use std::time::{SystemTime, UNIX_EPOCH};

/// RFC 3339, UTC, millisecond precision, or `None` for a time humantime cannot format: it
/// panics on times before 1970 or after 9999, and a report must never panic over a clock.
pub(crate) fn rfc3339_millis(t: SystemTime) -> Option<String> {
    // 10000-01-01T00:00:00Z, humantime's upper limit.
    const MAX_SECS: u64 = 253_402_300_800;
    let since = t.duration_since(UNIX_EPOCH).ok()?;
    (since.as_secs() < MAX_SECS).then(|| humantime::format_rfc3339_millis(t).to_string())
}
