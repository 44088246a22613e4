//! Keys from the auth server's JWK Set (`API_JWKS_URL`), as a [`KeySource`].
//!
//! A JWK that cannot be used (not RSA, not RS256, too small) is skipped and reported, never
//! fatal for the others. When the fetch fails, [`Keys`](shared::Keys) keeps the last good
//! set, so verification goes on while the auth server is down.

use std::time::Duration;

use jsonwebtoken::jwk::Jwk;
use serde::Deserialize;
use shared::keys::PublicKey;
use shared::keyset::{DirLoad, KeySet, KeySource, KeySourceError, LoadFuture, SkippedFile};

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Time allowed for one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A JWKS URL and the HTTP client that fetches it.
#[derive(Debug, Clone)]
pub struct JwksSource {
    url: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl JwksSource {
    /// A source for `url` (http or https).
    pub fn new(url: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { url: url.to_owned(), client })
    }

    async fn fetch(&self) -> Result<DirLoad, KeySourceError> {
        let fail = |e: &dyn std::fmt::Display| KeySourceError::Fetch(e.to_string());
        let mut resp = self.client.get(&self.url).send().await.map_err(|e| fail(&e))?;
        if !resp.status().is_success() {
            return Err(fail(&format!("HTTP {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(&e))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(fail(&"the JWKS is larger than 1 MiB"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }
}

/// Parses a JWK Set, skipping the keys it cannot use.
pub fn parse_jwks(body: &[u8]) -> Result<DirLoad, KeySourceError> {
    let raw: RawSet = serde_json::from_slice(body)
        .map_err(|_| KeySourceError::Fetch("not a JWK Set ({\"keys\": [...]})".into()))?;
    let mut keys = Vec::with_capacity(raw.keys.len());
    let mut skipped = Vec::new();
    for (i, value) in raw.keys.into_iter().enumerate() {
        let label = value
            .get("kid")
            .and_then(|k| k.as_str())
            .map(|k| format!("jwk {i} ({})", k.chars().take(64).collect::<String>()))
            .unwrap_or_else(|| format!("jwk {i}"));
        let parsed = serde_json::from_value::<Jwk>(value)
            .map_err(|_| "not a JWK".to_owned())
            .and_then(|jwk| PublicKey::from_jwk(&jwk).map_err(|e| e.to_string()));
        match parsed {
            Ok(key) => keys.push(key),
            Err(reason) => {
                log::warn!("skipping {label} of the JWKS: {reason}");
                skipped.push(SkippedFile { file: label, reason });
            }
        }
    }
    Ok(DirLoad { set: KeySet::from_keys(keys), skipped })
}

impl KeySource for JwksSource {
    fn load(&self) -> LoadFuture<'_> {
        Box::pin(self.fetch())
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let body = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "RS256"},
            "garbage"
        ]});
        let load = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert!(load.set.is_empty());
        assert_eq!(load.skipped.len(), 3);
        assert!(parse_jwks(b"[]").is_err());
    }
}
