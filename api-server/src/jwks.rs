//! Keys from the auth server's JWK Set (`API_JWKS_URL`), as a [`KeySource`], and the timer
//! that keeps them fresh ([`spawn_refresh`]).
//!
//! - At start the set is fetched once; until a fetch brings a key, `/readyz` answers 503 and
//!   the fetch is retried with backoff ([`RETRY_MIN`] doubling to [`RETRY_MAX`]).
//! - Then it is re-fetched when the response's `Cache-Control: max-age` (minus `Age`) runs
//!   out, bounded to [`MIN_REFRESH`]..[`MAX_REFRESH`] ([`DEFAULT_REFRESH`] without one), on
//!   SIGHUP, and on a token naming an unknown `kid` ([`TrustedKeys::refresh_for_unknown_kid`]:
//!   single-flight, at most once a second).
//! - A JWK that cannot be used (not RSA, not for signatures, not RS256, too small, a `kid`
//!   that is not its RFC 7638 thumbprint) is skipped and reported, never fatal for the others.
//! - When a fetch fails (auth server down, bad answer), [`TrustedKeys`] keeps the last good set, so
//!   verification goes on; the fetch is retried with backoff until it works again.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use access_token::keyset::{
    KeyLoad, KeySet, KeySource, KeySourceError, LoadFuture, ReloadTrigger, SkippedKey, TrustedKeys,
};
use access_token::public_key::PublicKey;
use access_token::watch::Hangup;
use jsonwebtoken::jwk::Jwk;
use reqwest::header::{AGE, CACHE_CONTROL, HeaderMap};
use serde::Deserialize;
use tokio::task::JoinHandle;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Time allowed for one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Refresh interval when the JWKS response has no `max-age`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);

/// Shortest refresh interval, whatever `max-age` says (`no-cache`, `max-age=0`): unknown kids
/// refresh the set anyway, so a tiny `max-age` would only load the auth server.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);

/// Longest refresh interval, whatever `max-age` says: a pruned key is dropped at most this late.
pub const MAX_REFRESH: Duration = Duration::from_secs(300);

/// First retry after a failed fetch (or while no key is loaded).
pub const RETRY_MIN: Duration = Duration::from_millis(500);

/// Longest wait between retries after failed fetches.
pub const RETRY_MAX: Duration = Duration::from_secs(10);

/// A JWKS URL and the HTTP client that fetches it. Clones share what the last fetch learned
/// (its `max-age`, whether it worked), so the refresh timer sees fetches made on unknown kids.
#[derive(Debug, Clone)]
pub struct JwksSource {
    url: String,
    client: reqwest::Client,
    last: Arc<Mutex<LastFetch>>,
}

/// What the last fetch learned.
#[derive(Debug, Clone, Copy, Default)]
struct LastFetch {
    ok: bool,
    max_age: Option<Duration>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl JwksSource {
    /// A source for `url` (http or https).
    pub fn new(url: &str) -> Result<Self, String> {
        // The shared policy of our fetches from the auth server (no redirects, connect bound).
        let client = access_token::follow::client_builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { url: url.to_owned(), client, last: Arc::default() })
    }

    fn last(&self) -> LastFetch {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, last: LastFetch) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = last;
    }

    /// Whether the last fetch brought a JWK Set (usable or not).
    pub fn last_fetch_ok(&self) -> bool {
        self.last().ok
    }

    /// When to fetch again after a good fetch: its `max-age` (minus `Age`) within
    /// [`MIN_REFRESH`]..[`MAX_REFRESH`], or [`DEFAULT_REFRESH`].
    pub fn refresh_interval(&self) -> Duration {
        self.last().max_age.unwrap_or(DEFAULT_REFRESH).clamp(MIN_REFRESH, MAX_REFRESH)
    }

    async fn fetch(&self) -> Result<KeyLoad, KeySourceError> {
        let result = self.fetch_inner().await;
        match &result {
            Ok((_, max_age)) => self.record(LastFetch { ok: true, max_age: *max_age }),
            Err(_) => self.record(LastFetch { ok: false, max_age: self.last().max_age }),
        }
        result.map(|(load, _)| load)
    }

    async fn fetch_inner(&self) -> Result<(KeyLoad, Option<Duration>), KeySourceError> {
        let fail = |e: &dyn std::fmt::Display| KeySourceError::Fetch(e.to_string());
        let mut resp = self.client.get(&self.url).send().await.map_err(|e| fail(&e))?;
        if !resp.status().is_success() {
            return Err(fail(&format!("HTTP {}", resp.status())));
        }
        let max_age = max_age(resp.headers());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(&e))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(fail(&"the JWKS is larger than 1 MiB"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((parse_jwks(&body)?, max_age))
    }
}

/// How long a response stays fresh per RFC 9111: `max-age` minus `Age`; zero for `no-cache`
/// or `no-store`; `None` without either.
pub fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else { continue };
        for directive in text.split(',') {
            let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "no-cache" | "no-store" => return Some(Duration::ZERO),
                "max-age" => {
                    if let Ok(secs) = arg.trim().trim_matches('"').parse::<u64>() {
                        max_age = Some(secs);
                    }
                }
                _ => {}
            }
        }
    }
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    max_age.map(|secs| Duration::from_secs(secs.saturating_sub(age)))
}

/// Re-fetches the JWKS into `keys` on a timer and on SIGHUP (see the module docs), on the
/// current tokio runtime. `source` is a clone of the one `keys` reads.
pub fn spawn_refresh(keys: Arc<TrustedKeys>, source: JwksSource) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut hup = Hangup::new();
        let mut retry = RETRY_MIN;
        loop {
            let wait = if source.last_fetch_ok() && !keys.current().is_empty() {
                retry = RETRY_MIN;
                source.refresh_interval()
            } else {
                let wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
                wait
            };
            // A key kept under its removal grace is dropped by a fetch when the grace ends.
            let wait = match keys.recheck_at() {
                Some(at) => wait.min(at.saturating_duration_since(std::time::Instant::now())),
                None => wait,
            };
            let trigger = tokio::select! {
                () = tokio::time::sleep(wait) => ReloadTrigger::Timer,
                () = hup.recv() => {
                    log::info!("SIGHUP: fetching the JWKS again");
                    ReloadTrigger::Signal
                }
            };
            keys.reload_for(trigger).await;
        }
    })
}

/// Parses a JWK Set, skipping the keys it cannot use (reported in [`KeyLoad::skipped`];
/// [`TrustedKeys`] logs them when they change).
pub fn parse_jwks(body: &[u8]) -> Result<KeyLoad, KeySourceError> {
    let raw: RawSet = serde_json::from_slice(body)
        .map_err(|_| KeySourceError::Fetch("not a JWK Set ({\"keys\": [...]})".into()))?;
    let mut keys = Vec::with_capacity(raw.keys.len());
    let mut skipped = Vec::new();
    for (i, value) in raw.keys.into_iter().enumerate() {
        // The kid comes from the network: only its base64url characters reach the log.
        let claimed_kid = value.get("kid").and_then(|k| k.as_str()).map(|k| {
            k.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(64)
                .collect::<String>()
        });
        let label = match &claimed_kid {
            Some(kid) => format!("jwk {i} ({kid})"),
            None => format!("jwk {i}"),
        };
        let parsed = serde_json::from_value::<Jwk>(value)
            .map_err(|_| "not a JWK".to_owned())
            .and_then(|jwk| {
                let key = PublicKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
                match jwk.common.key_id.as_deref() {
                    // A token names its key by kid, and ours are RFC 7638 thumbprints: a JWK
                    // under another kid could never verify a token, so say so.
                    Some(kid) if kid != key.kid() => {
                        Err(format!("its kid is not its RFC 7638 thumbprint {}", key.kid()))
                    }
                    _ => Ok(key),
                }
            });
        match parsed {
            Ok(key) => keys.push(key),
            Err(reason) => {
                log::debug!("skipping {label} of the JWKS: {reason}");
                skipped.push(SkippedKey { file: label, reason });
            }
        }
    }
    Ok(KeyLoad { set: KeySet::from_keys(keys), skipped })
}

impl KeySource for JwksSource {
    fn load(&self) -> LoadFuture<'_> {
        Box::pin(self.fetch())
    }

    fn describe(&self) -> String {
        self.url.clone()
    }

    /// The auth server always publishes the key it signs with: a JWK Set with no usable key is
    /// a broken answer (a proxy's page, a wrong URL), not "trust nothing".
    fn empty_is_failure(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;
    use reqwest::header::HeaderValue;

    /// An INSECURE throwaway public key, for parsing only.
    fn throwaway_key() -> PublicKey {
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der: PublicKeyX509Der<'static> = pair.public_key().as_der().unwrap();
        let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", der.as_ref().to_vec()));
        PublicKey::from_pem(pem.as_bytes()).unwrap()
    }

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let good = throwaway_key();
        let mut renamed = serde_json::to_value(good.jwk()).unwrap();
        renamed["kid"] = "not-the-thumbprint\n<script>".into();
        let body = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "RS256"},
            "garbage",
            good.jwk(),
            renamed,
        ]});
        let load = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(load.set.kids(), vec![good.kid()]);
        assert_eq!(load.skipped.len(), 4);
        assert_eq!(load.skipped[3].file, "jwk 4 (not-the-thumbprintscript)");
        assert!(load.skipped[3].reason.contains("thumbprint"), "{:?}", load.skipped[3]);
        assert!(parse_jwks(b"[]").is_err());
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn max_age_follows_cache_control_and_age() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(max_age(&headers(&[("cache-control", "public, max-age=60")])), secs(60));
        assert_eq!(max_age(&headers(&[("cache-control", "Max-Age=\"15\" , public")])), secs(15));
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=60"), ("age", "25")])), secs(35));
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=60"), ("age", "99")])), secs(0));
        assert_eq!(max_age(&headers(&[("cache-control", "no-cache, max-age=60")])), secs(0));
        assert_eq!(max_age(&headers(&[("cache-control", "public")])), None);
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=soon")])), None);
        assert_eq!(max_age(&headers(&[])), None);
    }

    #[test]
    fn the_refresh_interval_is_bounded() {
        let source = JwksSource::new("http://127.0.0.1:1/jwks").unwrap();
        assert_eq!(source.refresh_interval(), DEFAULT_REFRESH);
        for (max_age, expected) in [
            (0, MIN_REFRESH),
            (3, MIN_REFRESH),
            (60, Duration::from_secs(60)),
            (86_400, MAX_REFRESH),
        ] {
            source.record(LastFetch { ok: true, max_age: Some(Duration::from_secs(max_age)) });
            assert_eq!(source.refresh_interval(), expected, "max-age={max_age}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_jwks_is_a_failed_fetch_that_keeps_the_last_good_set() {
        // Nothing listens on port 1.
        let source = JwksSource::new("http://127.0.0.1:1/jwks").unwrap();
        let key = throwaway_key();
        let keys = TrustedKeys::new(source.clone(), KeySet::from_keys([key.clone()]));
        let outcome = keys.reload().await;
        assert!(matches!(outcome, access_token::keyset::ReloadOutcome::KeptPrevious { .. }));
        assert!(!source.last_fetch_ok());
        assert!(keys.current().contains(key.kid()));
    }
}
