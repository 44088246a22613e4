//! Durations in configuration: `900` (seconds), `15m`, `7d`, `1h 30m`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// Parses `900`, `15m`, `7d`, `250ms`: a bare number is seconds, anything else goes to humantime.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (expected e.g. 900, 15m, 7d)"))
}

/// Serde `deserialize_with` for a duration given as a string or an integer number of seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(secs) => Ok(Duration::from_secs(secs)),
        Raw::Text(t) => parse(&t).map_err(de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_contract_forms() {
        assert_eq!(parse("900").unwrap(), Duration::from_secs(900));
        assert_eq!(parse("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_nonsense_with_a_hint() {
        let err = parse("fifteen").unwrap_err();
        assert!(err.contains("15m"), "{err}");
        assert!(parse("").is_err());
        assert!(parse("-5").is_err());
    }
}
