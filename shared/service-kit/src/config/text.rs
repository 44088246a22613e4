//! Every value as text, whatever its source, parsed by the setting's own parser; durations.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Any scalar as text (`600` → `"600"`, `true` → `"true"`), a list as its items joined with `,`
/// (so a TOML array and a comma-separated variable mean the same), unset as `None`.
struct Text;

impl<'de> Visitor<'de> for Text {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a number, a boolean or a list of them")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(Text)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Item>()? {
            items.extend(item.0);
        }
        Ok(Some(items.join(",")))
    }
}

struct Item(Option<String>);

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Text).map(Item)
    }
}

/// The value as text, trimmed; `None` when unset.
pub(crate) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(d.deserialize_any(Text)?.map(|t| t.trim().to_owned()))
}

/// `#[serde(deserialize_with = "from_text")]`: a value parsed with its [`FromStr`], whose error
/// is the message (it must not echo a secret).
pub fn from_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    text(d)?.unwrap_or_default().parse().map_err(de::Error::custom)
}

/// `#[serde(deserialize_with = "optional")]`: as [`from_text`], but unset or blank is `None`
/// (so `API_JWKS_URL=` means "not set").
pub fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    match text(d)? {
        Some(t) if !t.is_empty() => t.parse().map(Some).map_err(de::Error::custom),
        _ => Ok(None),
    }
}

/// For `deserialize_with` functions: the value as text (blank when unset), parsed by `parse`.
pub fn parse_text<'de, D, T, E>(
    d: D,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    parse(&text(d)?.unwrap_or_default()).map_err(de::Error::custom)
}

// ---------------------------------------------------------------------------------------------
// Durations

/// Bounds on a duration setting: implement it on an empty enum and name it in
/// `#[serde(deserialize_with = "bounded_duration::<_, Ttl>")]`.
pub trait DurationBounds {
    /// The shortest accepted.
    const MIN: Duration = Duration::ZERO;
    /// The longest accepted.
    const MAX: Duration = Duration::MAX;
    /// Whether a fraction of a second is refused (values that end up in whole-second fields).
    const WHOLE_SECONDS: bool = false;
}

/// Any duration.
#[derive(Debug)]
pub enum AnyDuration {}
impl DurationBounds for AnyDuration {}

/// At least one second.
#[derive(Debug)]
pub enum AtLeastOneSecond {}
impl DurationBounds for AtLeastOneSecond {
    const MIN: Duration = Duration::from_secs(1);
}

/// Checks `value` against `B`; the message says what is wrong.
pub fn check_duration<B: DurationBounds>(value: Duration) -> Result<Duration, String> {
    if value < B::MIN {
        return Err(format!("must be at least {}", humantime::format_duration(B::MIN)));
    }
    if value > B::MAX {
        return Err(format!("must be at most {}", humantime::format_duration(B::MAX)));
    }
    if B::WHOLE_SECONDS && value.subsec_nanos() != 0 {
        return Err("must be a whole number of seconds".into());
    }
    Ok(value)
}

fn parse_duration<B: DurationBounds>(text: &str) -> Result<Duration, String> {
    let value =
        crate::duration::parse(text).map_err(|e| format!("invalid duration `{text}`: {e}"))?;
    check_duration::<B>(value)
}

/// A duration (`900`, `15m`, `7d`) within `B`.
pub fn bounded_duration<'de, D: Deserializer<'de>, B: DurationBounds>(
    d: D,
) -> Result<Duration, D::Error> {
    parse_text(d, parse_duration::<B>)
}

/// An optional duration within `B`: unset or blank is `None`.
pub fn optional_duration<'de, D: Deserializer<'de>, B: DurationBounds>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    match text(d)? {
        Some(t) if !t.is_empty() => parse_duration::<B>(&t).map(Some).map_err(de::Error::custom),
        _ => Ok(None),
    }
}
