//! Evaluation -> reports, one file per format. Like measure/, this stage reads records and the
//! evaluation only; it knows nothing about proxies or processes.

pub mod csv;
pub mod json;
pub mod table;
