//! TODO

pub mod record;
