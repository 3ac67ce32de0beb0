//! The fields of one streamed event's JSON that judging a completion reads, in one borrowed,
//! typed pass. Parsing every event into a `serde_json::Value` tree (and walking it with JSON
//! pointers, which allocate) was the load generator's largest user-space cost per event.
//!
//! Every field is lenient the way reading a `Value` was: a field of an unexpected type reads as
//! absent instead of failing the event, so a backend's odd extra fields never hide its text.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One event's JSON, as far as any API's judging reads it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct EventJson<'a> {
    /// An `error` that is not `null`.
    pub error: NotNull,
    #[serde(rename = "type", borrow)]
    pub kind: Str<'a>,
    /// OpenAI chat and completions: `choices[0]`.
    #[serde(borrow)]
    pub choices: First<Choice<'a>>,
    pub usage: Obj<Usage>,
    /// Anthropic: an object (`text`, `stop_reason`); Responses: the text itself.
    #[serde(borrow)]
    pub delta: Delta<'a>,
    /// Responses: the response object of the final event; rare, so read whole.
    pub response: Option<Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct Choice<'a> {
    #[serde(borrow)]
    pub finish_reason: Str<'a>,
    /// Chat: `delta.content`.
    #[serde(borrow)]
    pub delta: Obj<ChatDelta<'a>>,
    /// Completions: `text`.
    #[serde(borrow)]
    pub text: Str<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct ChatDelta<'a> {
    #[serde(borrow)]
    pub content: Str<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct Usage {
    pub completion_tokens: U64,
    pub output_tokens: U64,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct DeltaObject<'a> {
    #[serde(borrow)]
    pub text: Str<'a>,
    #[serde(borrow)]
    pub stop_reason: Str<'a>,
}

/// A string, or nothing when the field holds anything else.
#[derive(Debug, Default)]
pub(crate) struct Str<'a>(pub Option<Cow<'a, str>>);

/// A non-negative integer (what `Value::as_u64` accepts), or nothing.
#[derive(Debug, Default)]
pub(crate) struct U64(pub Option<u64>);

/// Whether the field holds anything but `null`.
#[derive(Debug, Default)]
pub(crate) struct NotNull(pub bool);

/// An object read as `T`, or nothing when the field is not an object.
#[derive(Debug)]
pub(crate) struct Obj<T>(pub Option<T>);

/// The first element of an array, read as `T`, or nothing.
#[derive(Debug)]
pub(crate) struct First<T>(pub Option<T>);

/// Anthropic's delta object or the Responses API's delta text.
#[derive(Debug, Default)]
pub(crate) enum Delta<'a> {
    #[default]
    Absent,
    Text(Cow<'a, str>),
    Object(DeltaObject<'a>),
}

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<T> Default for First<T> {
    fn default() -> Self {
        First(None)
    }
}

impl Str<'_> {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// Implements the visits of anything a lenient field does not want: each is drained and read
/// as the field's empty value.
macro_rules! ignore_the_rest {
    ($empty:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($empty)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($empty)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($empty)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($empty)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($empty)
        }
    };
}

macro_rules! ignore_strings {
    ($empty:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($empty)
        }
    };
}

macro_rules! ignore_numbers {
    ($empty:expr) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($empty)
        }
    };
}

macro_rules! ignore_containers {
    ($empty:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($empty)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($empty)
        }
    };
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(s.to_string()))))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(s))))
            }
            ignore_the_rest!(Str(None));
            ignore_numbers!(Str(None));
            ignore_containers!(Str(None));
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = U64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<U64, E> {
                Ok(U64(Some(n)))
            }
            ignore_the_rest!(U64(None));
            ignore_strings!(U64(None));
            ignore_containers!(U64(None));
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for NotNull {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NotNull;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<NotNull, E> {
                Ok(NotNull(true))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<NotNull, E> {
                Ok(NotNull(true))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<NotNull, E> {
                Ok(NotNull(true))
            }
            fn visit_unit<E: de::Error>(self) -> Result<NotNull, E> {
                Ok(NotNull(false))
            }
            fn visit_none<E: de::Error>(self) -> Result<NotNull, E> {
                Ok(NotNull(false))
            }
            ignore_strings!(NotNull(true));
            ignore_numbers!(NotNull(true));
            ignore_containers!(NotNull(true));
        }
        d.deserialize_any(V)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| Obj(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Obj<T>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Obj(None))
            }
            ignore_the_rest!(Obj(None));
            ignore_strings!(Obj(None));
            ignore_numbers!(Obj(None));
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<First<T>, A::Error> {
                let first = seq.next_element::<T>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<First<T>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(First(None))
            }
            ignore_the_rest!(First(None));
            ignore_strings!(First(None));
            ignore_numbers!(First(None));
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Delta<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Delta<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Delta<'a>, E> {
                Ok(Delta::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Delta<'a>, E> {
                Ok(Delta::Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Delta<'a>, E> {
                Ok(Delta::Text(Cow::Owned(s)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Delta<'a>, A::Error> {
                DeltaObject::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Delta::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Delta<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Delta::Absent)
            }
            ignore_the_rest!(Delta::Absent);
            ignore_numbers!(Delta::Absent);
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'a> EventJson<'a> {
    /// Reads `data`; `None` when it is not a JSON object (a keep-alive, a foreign format).
    pub fn parse(data: &'a str) -> Option<Self> {
        // Through `Obj`: a derived struct would also read an array, field by field.
        serde_json::from_str::<Obj<EventJson<'a>>>(data).ok()?.0
    }

    /// An error where the answer belongs: an `error` object (not `null`, which vLLM-style
    /// chunks may carry) or a `type: error` event.
    pub fn is_error(&self) -> bool {
        self.error.0 || self.kind.as_deref() == Some("error")
    }

    fn delta_object(&self) -> Option<&DeltaObject<'a>> {
        match &self.delta {
            Delta::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Anthropic's `delta.stop_reason`.
    pub fn stop_reason(&self) -> Option<&str> {
        self.delta_object().and_then(|o| o.stop_reason.as_deref())
    }

    pub fn usage(&self) -> Option<&Usage> {
        self.usage.0.as_ref()
    }

    pub fn first_choice(&self) -> Option<&Choice<'a>> {
        self.choices.0.as_ref()
    }
}

impl Choice<'_> {
    pub fn delta_content(&self) -> Option<&str> {
        self.delta.0.as_ref().and_then(|d| d.content.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_a_value_would_and_tolerates_odd_types() {
        let e = EventJson::parse(
            r#"{"id":"x","choices":[{"index":0,"delta":{"content":"t0/2 \"q\""},"finish_reason":null},{"x":1}],"usage":null}"#,
        )
        .unwrap();
        let c = e.first_choice().unwrap();
        assert_eq!(c.delta_content(), Some("t0/2 \"q\""));
        assert_eq!(c.finish_reason.as_deref(), None);
        assert!(e.usage().is_none());
        assert!(!e.is_error());

        // Fields of unexpected types read as absent, as `Value::as_str` and friends did.
        let odd = EventJson::parse(
            r#"{"choices":[{"delta":"s","finish_reason":7,"text":["a"]}],"usage":{"completion_tokens":-1,"output_tokens":2.0},"delta":5,"type":{"a":1},"error":null}"#,
        )
        .unwrap();
        let c = odd.first_choice().unwrap();
        assert_eq!(c.delta_content(), None);
        assert_eq!(c.finish_reason.as_deref(), None);
        assert_eq!(c.text.as_deref(), None);
        let u = odd.usage().unwrap();
        assert_eq!((u.completion_tokens.0, u.output_tokens.0), (None, None));
        assert!(matches!(odd.delta, Delta::Absent));
        assert!(!odd.is_error());
        assert!(EventJson::parse(r#"{"choices":"none","usage":[1]}"#)
            .unwrap()
            .first_choice()
            .is_none());
    }

    #[test]
    fn errors_deltas_and_non_objects() {
        assert!(EventJson::parse(r#"{"error":{"message":"boom"}}"#)
            .unwrap()
            .is_error());
        assert!(EventJson::parse(r#"{"error":"boom"}"#).unwrap().is_error());
        assert!(EventJson::parse(r#"{"type":"error"}"#).unwrap().is_error());
        let a = EventJson::parse(
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","text":"hi"},"usage":{"output_tokens":3}}"#,
        )
        .unwrap();
        assert_eq!(a.stop_reason(), Some("end_turn"));
        assert!(matches!(&a.delta, Delta::Object(d) if d.text.as_deref() == Some("hi")));
        assert_eq!(a.usage().unwrap().output_tokens.0, Some(3));
        let r =
            EventJson::parse(r#"{"type":"response.output_text.delta","delta":"a\nb"}"#).unwrap();
        assert!(matches!(&r.delta, Delta::Text(t) if t == "a\nb"));
        assert_eq!(r.stop_reason(), None);
        for not_an_object in ["[1,2]", "\"text\"", "3", "null", "{", ""] {
            assert!(EventJson::parse(not_an_object).is_none(), "{not_an_object}");
        }
    }
}
