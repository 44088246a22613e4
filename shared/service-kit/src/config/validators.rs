//! The validators both servers' settings use.

use std::fmt;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::text::{from_text, parse_text, text};

/// A boolean: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off` (any case); blank is `false`.
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    parse_text(d, |t| match t.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("`{t}` is not a boolean (true or false)")),
    })
}

/// A whole number of at least `min`.
pub fn count(text: &str, min: u64) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("`{text}` is not a whole number of at least {min}")),
    }
}

/// `#[serde(deserialize_with = "positive_u32")]`: a whole number of at least 1.
pub fn positive_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    parse_text(d, |t| {
        count(t, 1).and_then(|n| u32::try_from(n).map_err(|_| format!("`{t}` is too large")))
    })
}

/// `#[serde(deserialize_with = "non_negative_usize")]`: a whole number, 0 included.
pub fn non_negative_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    parse_text(d, |t| {
        count(t, 0).and_then(|n| usize::try_from(n).map_err(|_| format!("`{t}` is too large")))
    })
}

/// Text that is not blank (trimmed).
pub fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parse_text(d, |t| if t.is_empty() { Err("must not be empty") } else { Ok(t.to_owned()) })
}

/// A path that is not blank.
pub fn non_empty_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    non_empty(d).map(PathBuf::from)
}

/// An absolute `http://` or `https://` URL with a host, no credentials and no fragment; the
/// text is kept as given (trimmed). The message quotes it, so it is not for secrets.
pub fn http_url(text: &str) -> Result<String, String> {
    let bad = || format!("`{text}` is not an http(s) URL");
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let url = url::Url::parse(text).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{}` must not carry credentials", url.origin().ascii_serialization()));
    }
    if url.fragment().is_some() {
        return Err(format!("`{text}` must not have a #fragment"));
    }
    Ok(text.to_owned())
}

/// `#[serde(deserialize_with = "http_url_field")]`: an [`http_url`].
pub fn http_url_field<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parse_text(d, http_url)
}

/// `#[serde(deserialize_with = "optional_http_url")]`: an [`http_url`], or unset/blank.
pub fn optional_http_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match text(d)? {
        Some(t) if !t.is_empty() => http_url(&t).map(Some).map_err(de::Error::custom),
        _ => Ok(None),
    }
}

/// A listen address, `host:port` (port 0 picks a free one), checked to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindAddr(String);

impl BindAddr {
    /// A constant address (a built-in default), taken as it is.
    pub fn from_static(addr: &'static str) -> Self {
        Self(addr.to_owned())
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The port.
    pub fn port(&self) -> Option<u16> {
        self.0.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
    }
}

impl FromStr for BindAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.to_socket_addrs().is_ok_and(|mut addrs| addrs.next().is_some()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!("`{text}` is not a host:port address"))
        }
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BindAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// Browser origins allowed for CORS: exact `scheme://host[:port]` origins, comma- or
/// space-separated, kept in the form browsers send in `Origin` (scheme and host in lower case,
/// a default port left out), so a match is a plain comparison. Empty: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(Vec<String>);

impl Origins {
    /// Whether `origin` (an `Origin` header's value) is one of them.
    pub fn contains(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o == origin)
    }

    /// The origins.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// No origin listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for Origins {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut origins: Vec<String> = Vec::new();
        for item in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()) {
            let origin = origin(item)?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(Self(origins))
    }
}

impl<'de> Deserialize<'de> for Origins {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// One exact origin, serialized as browsers do.
fn origin(item: &str) -> Result<String, String> {
    if item.contains('*') {
        return Err(format!("`{item}`: wildcards are not allowed; list each origin"));
    }
    let bad = || format!("`{item}` is not an origin (scheme://host[:port])");
    let (scheme, rest) = item.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(bad());
    }
    if rest.contains(['/', '?', '#']) {
        return Err(format!("`{item}` has a path, query or fragment; an origin has none"));
    }
    if rest.contains('@') {
        return Err(bad());
    }
    let url = url::Url::parse(item).map_err(|_| bad())?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(url.origin().ascii_serialization())
}

/// Implements `Deserialize` through [`from_text`] for types that are [`FromStr`]:
/// `service_kit::deserialize_from_text!(SameSite);`.
#[macro_export]
macro_rules! deserialize_from_text {
    ($ty:ty) => {
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::config::from_text(d)
            }
        }
    };
}
