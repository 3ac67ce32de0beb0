//! Durations leave faultline as milliseconds (`f64`, fields suffixed `_ms`), so a JSON or CSV
//! reader needs no duration parser. Inside, they stay `Duration` so comparisons are exact.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// A duration in milliseconds. Goes through whole nanoseconds so that e.g. 1.2 ms prints as
/// `1.2`, not `1.2000000000000002` as `as_secs_f64() * 1000.0` would.
pub fn millis(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// `serialize_with` for a `Duration` field written as milliseconds.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(millis(*d))
}

/// `deserialize_with` for a field written by [`serialize`]: back to the very nanosecond, for
/// any offset below about a month (where f64 milliseconds still hold every nanosecond).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let ms = f64::deserialize(d)?;
    let ns = (ms * 1e6).round();
    if !(ns.is_finite() && ns >= 0.0 && ns < u64::MAX as f64) {
        return Err(serde::de::Error::custom(format!(
            "{ms} is not a duration in milliseconds"
        )));
    }
    Ok(Duration::from_nanos(ns as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_read_back_to_the_nanosecond() {
        for d in [
            Duration::new(1234, 567_891_234),
            Duration::from_nanos(1),
            Duration::new(200_000, 999_999_999),
            Duration::ZERO,
        ] {
            let text = serde_json::to_string(&millis(d)).unwrap();
            let mut de = serde_json::Deserializer::from_str(&text);
            assert_eq!(deserialize(&mut de).unwrap(), d, "{text}");
        }
    }

    #[test]
    fn millis_are_exact_for_round_values() {
        assert_eq!(millis(Duration::from_micros(1200)), 1.2);
        assert_eq!(millis(Duration::from_secs(2)), 2000.0);
        assert_eq!(millis(Duration::ZERO), 0.0);
    }
}
