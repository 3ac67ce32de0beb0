//! Segments: one drill's load split over N processes (k6's execution segments). Segment K of N
//! sends request i of every stream's schedule when i mod N = K - 1, at the time the whole
//! schedule means it, so each segment sees the whole timeline at 1/N of the rate and the N
//! together send exactly the one schedule. Segment 1 is the leader: it alone starts the
//! services and follows the timeline. Each segment writes its raw records and a manifest
//! (`manifest`, `records`); `merge` turns the N directories back into one run.

pub mod manifest;
pub mod merge;
pub mod records;
mod start_at;

use std::fmt;
use std::str::FromStr;

pub use start_at::StartAt;

/// Segment `index` of `count`, both from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment {
    index: u32,
    count: u32,
}

impl Segment {
    /// The whole schedule: what a run without `--segment` sends.
    pub const WHOLE: Segment = Segment { index: 1, count: 1 };

    /// `None` unless 1 <= index <= count.
    pub fn new(index: u32, count: u32) -> Option<Segment> {
        (index >= 1 && index <= count).then_some(Segment { index, count })
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// Segment 1 starts the services and follows the timeline.
    pub fn is_leader(self) -> bool {
        self.index == 1
    }

    /// Whether request `seq` of a stream's schedule is this segment's to send.
    pub fn owns(self, seq: u64) -> bool {
        seq % u64::from(self.count) == u64::from(self.index - 1)
    }

    /// This segment's first request of a stream's schedule; the next ones follow every
    /// `count()` requests.
    pub fn first(self) -> u64 {
        u64::from(self.index - 1)
    }
}

impl Default for Segment {
    fn default() -> Self {
        Segment::WHOLE
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Segment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected K/N with 1 <= K <= N, e.g. 1/4 for the first of four segments";
        let Some((k, n)) = s.trim().split_once('/') else {
            return Err(format!("`{s}` is not a segment: {expected}"));
        };
        let number = |part: &str, what: &str| -> Result<u32, String> {
            part.trim().parse::<u32>().map_err(|_| {
                format!("`{s}`: the {what} `{part}` is not a whole number; {expected}")
            })
        };
        let (index, count) = (number(k, "segment")?, number(n, "count")?);
        if count == 0 {
            return Err(format!("`{s}`: the count must be at least 1; {expected}"));
        }
        if index == 0 {
            return Err(format!("`{s}`: segments count from 1; {expected}"));
        }
        Segment::new(index, count)
            .ok_or_else(|| format!("`{s}`: there is no segment {index} of {count}; {expected}"))
    }
}

impl serde::Serialize for Segment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Segment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_parse_and_print_as_k_of_n() {
        let s: Segment = "2/4".parse().unwrap();
        assert_eq!((s.index(), s.count(), s.is_leader()), (2, 4, false));
        assert_eq!(s.to_string(), "2/4");
        assert!("1/1".parse::<Segment>().unwrap().is_leader());
        assert_eq!(
            " 3 / 8 ".parse::<Segment>().unwrap(),
            Segment::new(3, 8).unwrap()
        );
    }

    #[test]
    fn bad_segments_are_refused_saying_why() {
        for (text, why) in [
            ("0/4", "segments count from 1"),
            ("5/4", "there is no segment 5 of 4"),
            ("a/b", "the segment `a` is not a whole number"),
            ("1/0", "the count must be at least 1"),
            ("2", "is not a segment"),
            ("-1/4", "is not a whole number"),
            ("1/4/2", "the count `4/2` is not a whole number"),
        ] {
            let err = text.parse::<Segment>().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.contains("expected K/N"), "{text}: {err}");
        }
    }

    #[test]
    fn every_request_belongs_to_exactly_one_segment() {
        for n in 1..=7u32 {
            let all: Vec<Segment> = (1..=n).map(|k| Segment::new(k, n).unwrap()).collect();
            for seq in 0..500u64 {
                let owners: Vec<Segment> = all.iter().copied().filter(|s| s.owns(seq)).collect();
                assert_eq!(owners.len(), 1, "seq {seq} of {n} segments: {owners:?}");
                assert_eq!(owners[0].index(), (seq % u64::from(n)) as u32 + 1);
            }
        }
    }

    #[test]
    fn a_segment_serializes_as_its_text() {
        let s = Segment::new(3, 4).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"3/4\"");
        assert_eq!(serde_json::from_str::<Segment>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Segment>("\"4/3\"").is_err());
    }
}
