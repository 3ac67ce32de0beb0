//! Durations leave faultline as milliseconds (`f64`, fields suffixed `_ms`), so a JSON or CSV
//! reader needs no duration parser. Inside, they stay `Duration` so comparisons are exact.

use std::time::Duration;

use serde::Serializer;

/// A duration in milliseconds. Goes through whole nanoseconds so that e.g. 1.2 ms prints as
/// `1.2`, not `1.2000000000000002` as `as_secs_f64() * 1000.0` would.
pub fn millis(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// `serialize_with` for a `Duration` field written as milliseconds.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(millis(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_are_exact_for_round_values() {
        assert_eq!(millis(Duration::from_micros(1200)), 1.2);
        assert_eq!(millis(Duration::from_secs(2)), 2000.0);
        assert_eq!(millis(Duration::ZERO), 0.0);
    }
}
