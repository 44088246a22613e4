//! Following the auth server's `GET /revocations` into a [`RevocationList`].
//!
//! One task per list ([`spawn`]):
//! - starts with the **full list** (no cursor), then long-polls from the answer's cursor
//!   (`after=<cursor>&wait=<w>`): a publication reaches it as soon as the auth server answers
//!   the waiting poll (at once on the instance that published, within about 150 ms on others);
//! - `w` is [`DEFAULT_WAIT`], or a third of the staleness limit when that is smaller, so a
//!   healthy list is refreshed at least three times per limit and never looks stale (with a
//!   limit under 3 s it polls without waiting, every quarter of the limit);
//! - on any failure (unreachable, timeout, non-2xx, a bad answer) it counts it
//!   (`revocation_list_fetch_errors_total`), logs the first one of an outage, keeps the list it
//!   holds in force, and retries with exponential backoff ([`RETRY_MIN`] to [`RETRY_MAX`]) and
//!   jitter (±50 %, so a fleet of followers does not reconnect in step); the first answer after
//!   an outage is a full list again (anything missed in between is in it);
//! - a `reset` answer (a full list: none asked, an unknown or too old cursor, a new epoch) is
//!   merged, never a reason to forget (see [`crate::revocation`]); entries leave after their
//!   `until` ([`PRUNE_EVERY`]).
//!
//! Why it lives here and not in the api-server: it is the part every resource server needs to
//! honour the list, and it is small; a service gets it by [`spawn`] and
//! [`Verifier::with_revocations`](crate::Verifier::with_revocations). The HTTP client is built
//! by [`client_builder`], the same policy as the api-server's JWKS client (no redirects, bounded
//! connect time).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::revocation::{Page, RevocationList, SidDigest};
use crate::verify::now_secs;

/// The `wait` of each long poll without a staleness limit (the auth server allows up to 30 s).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(25);
/// Time allowed for an answer beyond the `wait` (and for a full list).
pub const FETCH_MARGIN: Duration = Duration::from_secs(10);
/// Time allowed to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First retry after a failed fetch.
pub const RETRY_MIN: Duration = Duration::from_millis(200);
/// Longest wait between retries.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often entries past their `until` are dropped (at most; on the next answer).
pub const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// Largest answer accepted (about 850 000 entries).
pub const MAX_PAGE_BYTES: usize = 64 * 1024 * 1024;
/// Longest cursor accepted (the auth server's are about 30 characters).
const MAX_CURSOR: usize = 256;

/// The HTTP client policy of our fetches from the auth server (JWKS, revocation list): no
/// redirects (a redirect to elsewhere would be a key or list from elsewhere), bounded connect
/// time. Callers add their own overall timeout.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
}

/// Why a fetch failed. `Display` is one line, never a token (the list holds digests only).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting, sending, reading or a timeout.
    #[error("{0}")]
    Http(String),
    /// A non-2xx answer.
    #[error("HTTP {0}")]
    Status(u16),
    /// An answer that is not the contract's list.
    #[error("not a revocation list: {0}")]
    BadAnswer(&'static str),
}

/// The follower of one list: the URL, the client, the `wait` it asks for.
#[derive(Debug, Clone)]
pub struct Follower {
    list: Arc<RevocationList>,
    url: Url,
    client: reqwest::Client,
    wait: Duration,
}

/// The `wait` for a staleness limit: [`DEFAULT_WAIT`], or a third of the limit in whole
/// seconds when smaller (0 for a limit under 3 s).
pub fn wait_for(limit: Option<Duration>) -> Duration {
    match limit {
        None => DEFAULT_WAIT,
        Some(limit) => DEFAULT_WAIT.min(Duration::from_secs(limit.as_secs() / 3)),
    }
}

impl Follower {
    /// A follower of `url` (http or https) into `list`.
    pub fn new(list: Arc<RevocationList>, url: &str) -> Result<Self, String> {
        let url = Url::parse(url).map_err(|e| e.to_string())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be an http or https URL".into());
        }
        let client = client_builder().build().map_err(|e| e.to_string())?;
        let wait = wait_for(list.max_staleness());
        Ok(Self { list, url, client, wait })
    }

    /// The `wait` each long poll asks for.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// One request: the full list (`after` none) or what follows `after`, held up to `wait`.
    pub async fn fetch(&self, after: Option<&str>, wait: Duration) -> Result<Page, FetchError> {
        let mut url = self.url.clone();
        if let Some(after) = after {
            url.query_pairs_mut()
                .append_pair("after", after)
                .append_pair("wait", &wait.as_secs().to_string());
        }
        let http = |e: reqwest::Error| FetchError::Http(e.without_url().to_string());
        let mut resp = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(wait + FETCH_MARGIN)
            .send()
            .await
            .map_err(http)?;
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(FetchError::BadAnswer("larger than 64 MiB"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_page(&body)
    }

    /// Follows the list for ever (see the module doc). Runs until its runtime stops.
    pub async fn run(self) {
        let mut cursor: Option<String> = None;
        let mut retry = RETRY_MIN;
        let mut failures = 0u64;
        let mut warned_stale = false;
        let mut pruned = Instant::now();
        loop {
            let wait = if cursor.is_some() { self.wait } else { Duration::ZERO };
            match self.fetch(cursor.as_deref(), wait).await {
                Ok(page) => {
                    if failures > 0 {
                        log::info!(
                            "revocation list: following again after {failures} failed fetch(es)"
                        );
                        failures = 0;
                        warned_stale = false;
                    }
                    retry = RETRY_MIN;
                    let now = now_secs();
                    let held = self.list.apply(&page, now);
                    if page.reset {
                        log::debug!("revocation list: full list read, {held} entries held");
                    }
                    if pruned.elapsed() >= PRUNE_EVERY {
                        self.list.prune(now);
                        pruned = Instant::now();
                    }
                    let quiet = page.revoked.is_empty();
                    cursor = Some(page.cursor);
                    if self.wait.is_zero() && quiet {
                        tokio::time::sleep(self.pause()).await;
                    }
                }
                Err(e) => {
                    crate::metrics::record_revocation_fetch_error();
                    failures += 1;
                    if failures == 1 {
                        log::warn!(
                            "revocation list: cannot fetch it ({e}); the {} entries held stay \
                             in force, retrying",
                            self.list.len()
                        );
                    } else {
                        log::debug!("revocation list: fetch {failures} failed: {e}");
                    }
                    if self.list.is_stale() && !warned_stale {
                        warned_stale = true;
                        log::warn!(
                            "revocation list is older than its staleness limit: authenticated \
                             requests answer 503 until it is fetched again"
                        );
                    }
                    // After an outage, the whole list: whatever was missed is in it.
                    cursor = None;
                    tokio::time::sleep(jitter(retry)).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Between two polls without `wait`: a quarter of the staleness limit, within 100 ms..1 s.
    fn pause(&self) -> Duration {
        let limit = self.list.max_staleness().unwrap_or(Duration::from_secs(4));
        (limit / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }
}

/// Starts following `url` into `list` on the current Tokio runtime, and reports the list on
/// `/metrics` ([`crate::metrics::observe_revocations`]).
pub fn spawn(list: Arc<RevocationList>, url: &str) -> Result<JoinHandle<()>, String> {
    let follower = Follower::new(Arc::clone(&list), url)?;
    crate::metrics::observe_revocations(&list);
    Ok(tokio::spawn(follower.run()))
}

/// `delay` ±50 %, from the OS random source (no seedable state to share).
fn jitter(delay: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let factor = match aws_lc_rs::rand::fill(&mut byte) {
        Ok(()) => 0.5 + f64::from(byte[0]) / 255.0,
        Err(_) => 1.0,
    };
    delay.mul_f64(factor)
}

#[derive(Deserialize)]
struct RawPage {
    cursor: String,
    reset: bool,
    revoked: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    sid_sha256: String,
    until: u64,
}

/// Parses an answer of `GET /revocations`. An entry whose digest is not 32 bytes of base64url
/// is skipped (logged): it names no session we could meet.
pub fn parse_page(body: &[u8]) -> Result<Page, FetchError> {
    let raw: RawPage =
        serde_json::from_slice(body).map_err(|_| FetchError::BadAnswer("not the JSON expected"))?;
    if raw.cursor.is_empty()
        || raw.cursor.len() > MAX_CURSOR
        || !raw.cursor.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(FetchError::BadAnswer("a cursor of unexpected characters"));
    }
    let total = raw.revoked.len();
    let revoked: Vec<(SidDigest, u64)> = raw
        .revoked
        .into_iter()
        .filter_map(|e| SidDigest::from_base64url(&e.sid_sha256).map(|d| (d, e.until)))
        .collect();
    if revoked.len() < total {
        log::warn!("revocation list: {} entries skipped (not a SHA-256)", total - revoked.len());
    }
    Ok(Page { cursor: raw.cursor, reset: raw.reset, revoked })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_keeps_a_healthy_list_well_under_its_limit() {
        assert_eq!(wait_for(None), DEFAULT_WAIT);
        assert_eq!(wait_for(Some(Duration::from_secs(600))), DEFAULT_WAIT);
        assert_eq!(wait_for(Some(Duration::from_secs(30))), Duration::from_secs(10));
        assert_eq!(wait_for(Some(Duration::from_secs(3))), Duration::from_secs(1));
        assert_eq!(wait_for(Some(Duration::from_secs(2))), Duration::ZERO);
    }

    #[test]
    fn pages_are_parsed_strictly() {
        let digest = SidDigest::of("s").to_base64url();
        let body = format!(
            r#"{{"cursor":"Ab_c-9.123-0","reset":true,"revoked":[{{"sid_sha256":"{digest}","until":5}},{{"sid_sha256":"short","until":5}}]}}"#
        );
        let page = parse_page(body.as_bytes()).unwrap();
        assert!(page.reset);
        assert_eq!(page.revoked, [(SidDigest::of("s"), 5)]);
        for bad in [
            "",
            "[]",
            r#"{"cursor":"a","reset":true}"#,
            r#"{"cursor":"a b","reset":true,"revoked":[]}"#,
            r#"{"cursor":"","reset":true,"revoked":[]}"#,
            r#"{"cursor":"a","reset":true,"revoked":[{"sid_sha256":"x","until":-1}]}"#,
        ] {
            assert!(parse_page(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn jitter_stays_within_half_either_way() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1500), "{d:?}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_list_is_a_failed_fetch() {
        let list = Arc::new(RevocationList::new(None));
        let follower = Follower::new(list, "http://127.0.0.1:1/revocations").unwrap();
        assert!(matches!(follower.fetch(None, Duration::ZERO).await, Err(FetchError::Http(_))));
        assert!(Follower::new(Arc::new(RevocationList::new(None)), "ftp://x/").is_err());
    }
}
