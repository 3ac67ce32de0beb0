//! `--start-at`: the wall-clock instant that is every segment's time zero.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

/// An RFC 3339 time with its zone (`Z` or an offset such as `+02:00`), kept as UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StartAt(SystemTime);

impl StartAt {
    pub fn new(at: SystemTime) -> StartAt {
        StartAt(at)
    }

    pub fn time(self) -> SystemTime {
        self.0
    }

    /// How far ahead of `now` it is; `Err` with how late `now` is when it has passed.
    pub fn ahead_of(self, now: SystemTime) -> Result<Duration, Duration> {
        match self.0.duration_since(now) {
            Ok(ahead) if !ahead.is_zero() => Ok(ahead),
            Ok(_) => Err(Duration::ZERO),
            Err(e) => Err(e.duration()),
        }
    }
}

impl fmt::Display for StartAt {
    /// UTC, with the fraction of a second only when there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339(self.0))
    }
}

impl FromStr for StartAt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected an RFC 3339 time with its zone, e.g. 2026-05-01T12:00:00Z or \
                        2026-05-01T14:00:00+02:00 (`date -u -d '+30 sec' +%FT%TZ` prints one)";
        let text = s.trim();
        // humantime reads UTC only; an offset is taken off by hand and applied after.
        let (utc, offset) = match text.char_indices().rev().nth(5) {
            Some((i, sign @ ('+' | '-')))
                if text.len() - i == 6 && text.as_bytes()[i + 3] == b':' =>
            {
                let hours: u64 = text[i + 1..i + 3]
                    .parse()
                    .map_err(|_| format!("`{s}`: {expected}"))?;
                let minutes: u64 = text[i + 4..]
                    .parse()
                    .map_err(|_| format!("`{s}`: {expected}"))?;
                if hours > 23 || minutes > 59 {
                    return Err(format!("`{s}`: the offset is out of range; {expected}"));
                }
                let offset = Duration::from_secs(hours * 3600 + minutes * 60);
                (format!("{}Z", &text[..i]), Some((sign, offset)))
            }
            _ if text.ends_with(['Z', 'z']) => (format!("{}Z", &text[..text.len() - 1]), None),
            _ => return Err(format!("`{s}` has no zone: {expected}")),
        };
        let local =
            humantime::parse_rfc3339(&utc).map_err(|e| format!("`{s}`: {e}; {expected}"))?;
        let at = match offset {
            // 14:00+02:00 is 12:00Z: a positive offset is ahead of UTC.
            Some(('+', d)) => local.checked_sub(d),
            Some((_, d)) => local.checked_add(d),
            None => Some(local),
        };
        at.map(StartAt)
            .ok_or_else(|| format!("`{s}` is out of range; {expected}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        s.parse::<StartAt>().unwrap().time()
    }

    #[test]
    fn utc_and_offsets_name_the_same_instant() {
        let z = at("2026-05-01T12:00:00Z");
        assert_eq!(at("2026-05-01T14:00:00+02:00"), z);
        assert_eq!(at("2026-05-01T07:30:00-04:30"), z);
        assert_eq!(at("2026-05-01T12:00:00+00:00"), z);
        assert_eq!(
            at("2026-05-01T12:00:00.250Z"),
            z + Duration::from_millis(250)
        );
        assert_eq!(StartAt(z).to_string(), "2026-05-01T12:00:00Z");
        assert_eq!(
            StartAt(z + Duration::from_millis(250)).to_string(),
            "2026-05-01T12:00:00.250000000Z"
        );
    }

    #[test]
    fn times_without_a_zone_or_malformed_are_refused() {
        for (text, why) in [
            ("2026-05-01T12:00:00", "has no zone"),
            ("tomorrow", "has no zone"),
            ("2026-05-01T12:00:00+25:00", "out of range"),
            ("2026-13-01T12:00:00Z", "expected an RFC 3339 time"),
            ("2026-05-01 12:00Z", "expected an RFC 3339 time"),
        ] {
            let err = text.parse::<StartAt>().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn lateness_is_measured_from_the_start() {
        let t = at("2026-05-01T12:00:00Z");
        let s = StartAt(t);
        assert_eq!(
            s.ahead_of(t - Duration::from_secs(3)),
            Ok(Duration::from_secs(3))
        );
        assert_eq!(
            s.ahead_of(t + Duration::from_millis(1500)),
            Err(Duration::from_millis(1500))
        );
        assert_eq!(s.ahead_of(t), Err(Duration::ZERO));
    }
}
