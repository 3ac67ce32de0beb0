//! What a load stream's requests look like beyond one fixed body: token counts drawn per request
//! (`prompt_tokens`, `max_tokens`), and rate changes on the timeline. Each type is checked as it
//! is read, so an impossible distribution never reaches the load generator.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::units::{Dur, Rate};

/// The longest prompt a stream may generate, in words: more would not fit a request body a
/// server accepts (the simulator refuses bodies over 4 MiB).
pub const MAX_PROMPT_TOKENS: u32 = 200_000;

/// A token count for each request: fixed, or drawn from the run's seed.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "TokensSpec", into = "TokensSpec")]
pub enum Tokens {
    Fixed(u32),
    /// Uniform over `[min, max]`, both included.
    Uniform {
        min: u32,
        max: u32,
    },
    /// Normal, rounded, and clamped to at least 1 (and at most `max`, the field's limit).
    Normal {
        mean: f64,
        stddev: f64,
    },
}

/// A token count as written: `64`, `{ min: 10, max: 500 }` or `{ mean: 200, stddev: 50 }`.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, Serialize)]
#[serde(untagged)]
pub enum TokensSpec {
    Fixed(u32),
    Uniform(UniformSpec),
    Normal(NormalSpec),
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UniformSpec {
    #[schemars(range(min = 1))]
    pub min: u32,
    #[schemars(range(min = 1))]
    pub max: u32,
}

#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NormalSpec {
    pub mean: f64,
    #[schemars(range(min = 0))]
    pub stddev: f64,
}

impl JsonSchema for Tokens {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Tokens".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = TokensSpec::json_schema(generator);
        schema.insert(
            "description".into(),
            "A token count: a number, `{ min, max }` (uniform, both included) or `{ mean, \
             stddev }` (normal, clamped to at least 1), drawn per request from the run's seed."
                .into(),
        );
        schema
    }
}

impl fmt::Display for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tokens::Fixed(n) => write!(f, "{n}"),
            Tokens::Uniform { min, max } => write!(f, "uniform {min}..={max}"),
            Tokens::Normal { mean, stddev } => write!(f, "normal mean {mean} stddev {stddev}"),
        }
    }
}

impl TryFrom<TokensSpec> for Tokens {
    type Error = String;
    fn try_from(spec: TokensSpec) -> Result<Self, String> {
        match spec {
            TokensSpec::Fixed(0) => Err("a token count must be at least 1".into()),
            TokensSpec::Fixed(n) => Ok(Tokens::Fixed(n)),
            TokensSpec::Uniform(UniformSpec { min, max }) => {
                if min == 0 {
                    Err("`min` must be at least 1".into())
                } else if max < min {
                    Err(format!("`max` ({max}) is below `min` ({min})"))
                } else {
                    Ok(Tokens::Uniform { min, max })
                }
            }
            TokensSpec::Normal(NormalSpec { mean, stddev }) => {
                if !(mean.is_finite() && mean >= 1.0) {
                    Err(format!("`mean` must be a number of at least 1, not {mean}"))
                } else if !(stddev.is_finite() && stddev >= 0.0) {
                    Err(format!(
                        "`stddev` must be a number of at least 0, not {stddev}"
                    ))
                } else {
                    Ok(Tokens::Normal { mean, stddev })
                }
            }
        }
    }
}

impl From<Tokens> for TokensSpec {
    fn from(t: Tokens) -> Self {
        match t {
            Tokens::Fixed(n) => TokensSpec::Fixed(n),
            Tokens::Uniform { min, max } => TokensSpec::Uniform(UniformSpec { min, max }),
            Tokens::Normal { mean, stddev } => TokensSpec::Normal(NormalSpec { mean, stddev }),
        }
    }
}

impl Tokens {
    /// The largest count this can give, with `limit` the field's own ceiling.
    pub fn most(&self, limit: u32) -> u32 {
        match *self {
            Tokens::Fixed(n) => n.min(limit),
            Tokens::Uniform { max, .. } => max.min(limit),
            Tokens::Normal { .. } => limit,
        }
    }
}

/// A timeline step that changes a load stream's rate: a step to `to` at the step's time, or a
/// linear ramp to it over `over`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateStepSpec {
    /// The load stream whose rate changes.
    #[schemars(with = "String")]
    pub stream: serde_saphyr::Spanned<String>,
    /// The rate from the step on (or at the ramp's end).
    pub to: Rate,
    /// Reach `to` linearly over this long; without it the rate steps at once.
    #[serde(default)]
    #[schemars(with = "Option<Dur>")]
    pub over: Option<serde_saphyr::Spanned<Dur>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(yaml: &str) -> Result<Tokens, String> {
        serde_saphyr::from_str::<Tokens>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn the_three_forms_read() {
        assert_eq!(tokens("64"), Ok(Tokens::Fixed(64)));
        assert_eq!(
            tokens("{ min: 10, max: 500 }"),
            Ok(Tokens::Uniform { min: 10, max: 500 })
        );
        assert_eq!(
            tokens("{ mean: 200, stddev: 50 }"),
            Ok(Tokens::Normal {
                mean: 200.0,
                stddev: 50.0
            })
        );
    }

    #[test]
    fn impossible_distributions_are_refused_as_read() {
        let low = tokens("{ min: 10, max: 5 }").unwrap_err();
        assert!(low.contains("`max` (5) is below `min` (10)"), "{low}");
        assert!(tokens("{ min: 0, max: 5 }").is_err());
        assert!(tokens("0").is_err());
        let sd = tokens("{ mean: 20, stddev: -1 }").unwrap_err();
        assert!(sd.contains("stddev"), "{sd}");
        assert!(tokens("{ mean: 0.5, stddev: 1 }").is_err());
        assert!(tokens("{ min: 1, max: 5, mean: 3 }").is_err());
    }
}
