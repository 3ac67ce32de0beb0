//! Typed values for the units an experiment file speaks: durations (`250ms`), rates (`50/s`),
//! percentages (`1%`) and sizes (`2GiB`). Each parses from its YAML scalar once, at the edge.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

/// A duration written with a unit: `250ms`, `10s`, `1m30s`, `500us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn from_millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub const fn from_secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
}

/// The longest duration an experiment may name.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed == "0" {
            return Ok(Dur(Duration::ZERO));
        }
        let d = humantime::parse_duration(trimmed).map_err(|_| {
            format!("expected a duration with a unit, like 250ms, 10s or 1m30s; found `{s}`")
        })?;
        // Bounded so that no clock arithmetic downstream can overflow.
        if d > MAX_DURATION {
            return Err(format!("durations are limited to 30 days; found `{s}`"));
        }
        Ok(Dur(d))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_duration(self.0, f)
    }
}

/// Prints a duration the way a person reads a budget: `1.25s`, `250ms`, `80µs`.
pub fn fmt_duration(d: Duration, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let nanos = d.as_nanos();
    if nanos == 0 {
        write!(f, "0s")
    } else if nanos >= 60_000_000_000 {
        let (minutes, rest) = (d.as_secs() / 60, d.as_secs_f64() % 60.0);
        let seconds = trim_float(rest, 3);
        if seconds == "0" {
            write!(f, "{minutes}m")
        } else {
            write!(f, "{minutes}m{seconds}s")
        }
    } else if nanos >= 1_000_000_000 {
        write!(f, "{}s", trim_float(d.as_secs_f64(), 3))
    } else if nanos >= 1_000_000 {
        write!(f, "{}ms", trim_float(nanos as f64 / 1e6, 2))
    } else {
        write!(f, "{}µs", trim_float(nanos as f64 / 1e3, 1))
    }
}

/// Human form of a duration, for messages and tables.
pub fn human_duration(d: Duration) -> String {
    struct H(Duration);
    impl fmt::Display for H {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt_duration(self.0, f)
        }
    }
    H(d).to_string()
}

fn trim_float(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A request rate: `50/s`, `3000/m`, `10/min`, `36000/h`.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Rate {
    per_second: f64,
}

impl Rate {
    /// A rate from one a day to a million a second; others are not drills.
    pub fn per_second(v: f64) -> Option<Self> {
        (v.is_finite() && (1.0 / 86_400.0..=1_000_000.0).contains(&v))
            .then_some(Rate { per_second: v })
    }
    pub fn as_per_second(self) -> f64 {
        self.per_second
    }
    /// Gap between two consecutive sends at this rate.
    pub fn interval(self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("expected a rate like 50/s, 3000/m or 100/h; found `{s}`");
        let (count, unit) = s.trim().split_once('/').ok_or_else(err)?;
        let count: f64 = count.trim().parse().map_err(|_| err())?;
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => return Err(err()),
        };
        Rate::per_second(count / seconds)
            .ok_or_else(|| format!("a rate must be between one a day and 1000000/s; found `{s}`"))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", trim_float(self.per_second, 3))
    }
}

/// A share between 0 and 1, written `1%`, `0.1%` or as a plain fraction `0.3`.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Default)]
pub struct Percent {
    fraction: f64,
}

impl Percent {
    pub const ZERO: Percent = Percent { fraction: 0.0 };
    pub const ALL: Percent = Percent { fraction: 1.0 };

    pub fn from_fraction(v: f64) -> Option<Self> {
        (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(Percent { fraction: v })
    }
    pub fn fraction(self) -> f64 {
        self.fraction
    }
}

impl std::str::FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let fraction = if let Some(p) = t.strip_suffix('%') {
            p.trim().parse::<f64>().map(|v| v / 100.0)
        } else {
            t.parse::<f64>()
        }
        .map_err(|_| {
            format!("expected a percentage like 1% or 0.5%, or a fraction like 0.3; found `{s}`")
        })?;
        Percent::from_fraction(fraction)
            .ok_or_else(|| format!("a percentage must be between 0% and 100%; found `{s}`"))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", trim_float(self.fraction * 100.0, 3))
    }
}

/// A size in bytes: `512KiB`, `2GiB`, `1.5GB`, or a plain number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Size(pub u64);

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| Size(b.as_u64()))
            .map_err(|_| format!("expected a size like 512KiB or 2GiB; found `{s}`"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize::b(self.0).display().iec())
    }
}

/// Accepts a YAML string or number and hands its text to `FromStr`, so `0.3`, `1%` and `10s`
/// all arrive the same way.
struct ScalarText<T>(std::marker::PhantomData<T>);

impl<'de, T> Visitor<'de> for ScalarText<T>
where
    T: std::str::FromStr<Err = String>,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
}

macro_rules! scalar_serde {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(ScalarText::<$t>(std::marker::PhantomData))
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

scalar_serde!(Dur);
scalar_serde!(Rate);
scalar_serde!(Percent);
scalar_serde!(Size);

// Hand-written schemas: these types (de)serialize through their text form, so a derived schema
// would describe the Rust struct rather than what a file may write. Each pattern follows the
// `FromStr` above (and the humantime and bytesize parsers it delegates to). Ranges a pattern
// cannot express (a rate's bounds, a percentage over 100%) are stated in the description and
// left to `faultline validate`, which stays the authority.

/// Unit names humantime accepts, longest first within each family.
const DURATION_UNITS: &str = "nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|\
minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|\
years|year|yrs|yr|y";

/// A non-negative decimal number as Rust's `f64` parser reads it (exponent allowed).
const DECIMAL: &str = r"\+?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?";

impl JsonSchema for Dur {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration with a unit: 250ms, 10s, 1m30s, 500us; 0 on its own \
                needs none. At most 30 days.",
            "anyOf": [
                {
                    "type": "string",
                    "pattern": format!(r"^\s*(0|(\d+(\.\d+)?\s*({DURATION_UNITS})\s*)+)$"),
                },
                { "const": 0 },
            ],
        })
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A request rate: 50/s, 3000/m (or /min), 100/h; between one a day \
                and 1000000/s.",
            "type": "string",
            "pattern": format!(r"^\s*{DECIMAL}\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$"),
        })
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A share between 0% and 100%: 1%, 0.5%, or a fraction such as 0.3.",
            "anyOf": [
                { "type": "string", "pattern": format!(r"^\s*{DECIMAL}\s*%?\s*$") },
                { "type": "number", "minimum": 0, "maximum": 1 },
            ],
        })
    }
}

impl JsonSchema for Size {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: 512KiB, 2GiB, 1.5GB (units are case-insensitive; KiB, MiB... \
                are powers of 1024, kB, MB... of 1000), or a plain number of bytes.",
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^\s*(\d+|(\d+(\.\d*)?|\.\d+)\s*([bB]|[kKmMgGtTpPeE][iI]?[bB]?))\s*$",
                },
                { "type": "integer", "minimum": 0 },
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(
            "250ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!("1m30s".parse::<Dur>().unwrap().0, Duration::from_secs(90));
        assert_eq!("0".parse::<Dur>().unwrap().0, Duration::ZERO);
        assert!("10".parse::<Dur>().is_err());
        assert!("ten seconds".parse::<Dur>().is_err());
    }

    #[test]
    fn rates_take_per_second_minute_hour() {
        assert_eq!("50/s".parse::<Rate>().unwrap().as_per_second(), 50.0);
        assert_eq!("120/m".parse::<Rate>().unwrap().as_per_second(), 2.0);
        assert_eq!("3600/h".parse::<Rate>().unwrap().as_per_second(), 1.0);
        assert!("0/s".parse::<Rate>().is_err());
        assert!("2000000/s".parse::<Rate>().is_err());
        assert!("100000000y".parse::<Dur>().is_err());
        assert!("50".parse::<Rate>().is_err());
        assert!("50/day".parse::<Rate>().is_err());
    }

    #[test]
    fn percentages_take_percent_or_fraction() {
        assert_eq!("1%".parse::<Percent>().unwrap().fraction(), 0.01);
        assert_eq!("0.3".parse::<Percent>().unwrap().fraction(), 0.3);
        assert!("120%".parse::<Percent>().is_err());
        assert!("-1%".parse::<Percent>().is_err());
        assert_eq!(Percent::from_fraction(0.005).unwrap().to_string(), "0.5%");
    }

    #[test]
    fn sizes_take_iec_and_si_units() {
        assert_eq!("2GiB".parse::<Size>().unwrap().0, 2 * 1024 * 1024 * 1024);
        assert_eq!("1kB".parse::<Size>().unwrap().0, 1000);
        assert_eq!("4096".parse::<Size>().unwrap().0, 4096);
        assert!("lots".parse::<Size>().is_err());
    }

    #[test]
    fn durations_print_for_people() {
        assert_eq!(human_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(human_duration(Duration::from_micros(80)), "80µs");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(human_duration(Duration::from_millis(1_198_500)), "19m58.5s");
    }
}

/// An HTTP error status (400-599): checked where it is read, so every later use is infallible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct ErrorStatus(u16);

impl ErrorStatus {
    pub const fn new(v: u16) -> Option<ErrorStatus> {
        if v >= 400 && v <= 599 {
            Some(ErrorStatus(v))
        } else {
            None
        }
    }

    pub fn code(self) -> u16 {
        self.0
    }

    pub fn status(self) -> hyper::StatusCode {
        // Every code in 400..=599 is a valid status code, so the fallback is never taken.
        hyper::StatusCode::from_u16(self.0).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl TryFrom<u16> for ErrorStatus {
    type Error = String;
    fn try_from(v: u16) -> Result<Self, String> {
        ErrorStatus::new(v).ok_or_else(|| format!("{v} is not an HTTP error status (400-599)"))
    }
}

impl JsonSchema for ErrorStatus {
    fn schema_name() -> Cow<'static, str> {
        "ErrorStatus".into()
    }
    // By hand, not derived: the derive would describe the `u16` inside, 0-65535.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An HTTP error status, 400-599.",
            "type": "integer",
            "minimum": 400,
            "maximum": 599,
        })
    }
}

impl From<ErrorStatus> for u16 {
    fn from(s: ErrorStatus) -> u16 {
        s.0
    }
}

impl std::str::FromStr for ErrorStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let v: u16 = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an HTTP status code"))?;
        ErrorStatus::try_from(v)
    }
}

impl fmt::Display for ErrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod error_status_tests {
    use super::ErrorStatus;

    #[test]
    fn only_4xx_and_5xx_are_error_statuses() {
        for ok in [400u16, 429, 503, 599] {
            assert_eq!(ErrorStatus::try_from(ok).map(ErrorStatus::code), Ok(ok));
        }
        for bad in [0u16, 200, 302, 399, 600, 999] {
            let e = ErrorStatus::try_from(bad).unwrap_err();
            assert_eq!(e, format!("{bad} is not an HTTP error status (400-599)"));
        }
        assert_eq!(
            "503".parse::<ErrorStatus>().map(|s| s.status().as_u16()),
            Ok(503)
        );
        assert!("five".parse::<ErrorStatus>().is_err());
        // Read from YAML as a plain number, so a bad one is an error at its line and column.
        let e = serde_saphyr::from_str::<ErrorStatus>("200")
            .unwrap_err()
            .to_string();
        assert!(e.contains("200 is not an HTTP error status"), "{e}");
    }
}
