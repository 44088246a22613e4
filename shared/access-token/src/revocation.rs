//! The session revocation list as a resource server holds it: `sid digest → until`, consulted
//! by the [`Verifier`](crate::Verifier) after every verification **and** every hit of its
//! verified-token cache, so a token of an ended session is refused even if it verified before.
//!
//! The list is fed by [`crate::follow`] (the auth server's `GET /revocations`, long-polled) or
//! by anything else that calls [`RevocationList::apply`]. A service wires it in a few lines:
//!
//! ```no_run
//! # async fn wire(keys: std::sync::Arc<access_token::TrustedKeys>) {
//! use std::sync::Arc;
//! use access_token::revocation::RevocationList;
//! use access_token::{Verifier, VerifierConfig};
//! let list = Arc::new(RevocationList::new(None)); // Some(limit): 503 once older than it
//! access_token::follow::spawn(Arc::clone(&list), "http://auth:5000/revocations").unwrap();
//! let verifier = Verifier::new(VerifierConfig::new("http://auth:5000", "photos-api"), keys)
//!     .with_revocations(list);
//! # }
//! ```
//!
//! Why it looks the way it does:
//! - **Keyed by digest**, as the list publishes it (base64url SHA-256 of the `sid`): a request
//!   costs one SHA-256 of the token's `sid` (about 0.2 µs), and none at all while the list is
//!   empty.
//! - **No lock on the request path**: [`SHARDS`] immutable maps, each behind an `ArcSwap`; a
//!   reader loads one (lock-free) and looks up. The single writer (the follower) copies only the
//!   shards an update touches, so an update of k entries costs O(k · n / [`SHARDS`]), never a
//!   copy of the whole list, and readers never wait for it.
//! - **Never forgets early**: a `reset` (a full list) is merged into what is held, and an entry
//!   leaves only once its `until` has passed (then every token of that session has expired,
//!   leeway included). So a Redis that lost the list (a new epoch) cannot un-revoke a session
//!   this process already saw. Memory is bounded by the sessions ended within one access-token
//!   lifetime, and hard-capped at [`MAX_ENTRIES`].
//! - **Staleness**: the list's age is the time since the feed last answered. With a limit set
//!   ([`RevocationList::new`]), a valid token gets [`VerifyError::RevocationListStale`] (503)
//!   once the list is older than that, and also before the first full list has arrived (a list
//!   never fetched is infinitely old). Without a limit, tokens keep being accepted on the list
//!   held (the contract: keep serving while the list cannot be fetched).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::claims::AccessClaims;
use crate::verify::VerifyError;

/// How many independently swapped maps hold the list.
pub const SHARDS: usize = 64;

/// The most entries held (about 100 bytes each): past it, new entries are dropped and logged.
/// The auth server's list holds the sessions ended within one access-token lifetime, far fewer.
pub const MAX_ENTRIES: usize = 2_000_000;

/// SHA-256 of a session id, as the list names it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SidDigest([u8; 32]);

impl SidDigest {
    /// The digest of `sid` (SHA-256 of its UTF-8 text).
    pub fn of(sid: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, sid.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// Parses the list's `sid_sha256` (base64url, no padding, 32 bytes); `None` otherwise.
    pub fn from_base64url(text: &str) -> Option<Self> {
        if text.len() != 43 {
            return None;
        }
        let mut out = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
            Ok(32) => Some(Self(out)),
            _ => None,
        }
    }

    /// The list's text form.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    fn shard(&self) -> usize {
        usize::from(self.0[8]) % SHARDS
    }
}

impl std::fmt::Debug for SidDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SidDigest({})", self.to_base64url())
    }
}

impl Hash for SidDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already uniform (SHA-256 of a server-chosen id): 8 bytes of it are the hash.
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

/// The hasher of the shards: the digest's own bytes (see [`SidDigest`]'s `Hash`), no SipHash.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<SidDigest, u64, BuildHasherDefault<DigestHasher>>;

/// One page of a feed: the contract's `GET /revocations` answer, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Where to continue.
    pub cursor: String,
    /// `revoked` is the whole current list.
    pub reset: bool,
    /// The entries: digest and `until` (Unix seconds).
    pub revoked: Vec<(SidDigest, u64)>,
}

/// The list held in memory, its freshness and its staleness limit. Shared (`Arc`) between the
/// feed that writes it and the [`Verifier`](crate::Verifier)s that read it.
#[derive(Debug)]
pub struct RevocationList {
    shards: Box<[ArcSwap<Shard>]>,
    len: AtomicUsize,
    /// Serialises writers; readers never take it.
    write: Mutex<()>,
    /// The process's time origin for [`Self::last_ok`].
    origin: Instant,
    /// Milliseconds after `origin` of the feed's last answer, plus one (0: never).
    last_ok: AtomicU64,
    /// A full list has been applied.
    ready: AtomicBool,
    max_staleness: Option<Duration>,
}

impl RevocationList {
    /// An empty list, not ready. `max_staleness`: refuse valid tokens with
    /// [`VerifyError::RevocationListStale`] once the list is older than that (`None`: never).
    pub fn new(max_staleness: Option<Duration>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| ArcSwap::from_pointee(Shard::default())).collect(),
            len: AtomicUsize::new(0),
            write: Mutex::new(()),
            origin: Instant::now(),
            last_ok: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            max_staleness,
        }
    }

    /// When this list was created (the follower's start).
    pub fn created(&self) -> Instant {
        self.origin
    }

    /// The staleness limit.
    pub fn max_staleness(&self) -> Option<Duration> {
        self.max_staleness
    }

    /// The request-path check, after the token verified: [`VerifyError::SessionEnded`] when its
    /// `sid` is listed, else [`VerifyError::RevocationListStale`] when the list is older than
    /// the limit. A listed session is refused even on a stale list (what is known stays known).
    pub fn check(&self, claims: &AccessClaims) -> Result<(), VerifyError> {
        if self.contains_sid(&claims.sid) {
            return Err(VerifyError::SessionEnded);
        }
        if self.is_stale() {
            return Err(VerifyError::RevocationListStale);
        }
        Ok(())
    }

    /// Whether the session `sid` is listed.
    pub fn contains_sid(&self, sid: &str) -> bool {
        if self.len.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.contains(&SidDigest::of(sid))
    }

    /// Whether `digest` is listed.
    pub fn contains(&self, digest: &SidDigest) -> bool {
        self.shards.get(digest.shard()).is_some_and(|shard| shard.load().contains_key(digest))
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a full list has arrived (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The time since the feed last answered; `None` before its first answer.
    pub fn age(&self) -> Option<Duration> {
        match self.last_ok.load(Ordering::Acquire) {
            0 => None,
            stamp => {
                let at = Duration::from_millis(stamp - 1);
                Some(self.origin.elapsed().saturating_sub(at))
            }
        }
    }

    /// Whether a staleness limit is set and the list is older than it (or never arrived).
    pub fn is_stale(&self) -> bool {
        let Some(limit) = self.max_staleness else { return false };
        if !self.is_ready() {
            return true;
        }
        self.age().is_none_or(|age| age > limit)
    }

    /// Records that the feed answered now (also an answer with nothing new).
    pub fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_ok.store(ms + 1, Ordering::Release);
    }

    /// Applies one page of the feed: merges its entries (a reset is merged too: see the
    /// module doc), drops those past their `until` (`now`, Unix seconds) from the shards it
    /// touches, marks the list fresh, and ready after a full list. Returns the entries held.
    pub fn apply(&self, page: &Page, now: u64) -> usize {
        let _writer = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let mut by_shard: Vec<Vec<(SidDigest, u64)>> = vec![Vec::new(); SHARDS];
        for (digest, until) in &page.revoked {
            if *until >= now
                && let Some(bucket) = by_shard.get_mut(digest.shard())
            {
                bucket.push((*digest, *until));
            }
        }
        let mut dropped = 0usize;
        for (i, fresh) in by_shard.into_iter().enumerate() {
            if fresh.is_empty() {
                continue;
            }
            let Some(slot) = self.shards.get(i) else { continue };
            let mut next: Shard = (**slot.load()).clone();
            let before = next.len();
            next.retain(|_, until| *until >= now);
            let mut len = self.len.load(Ordering::Relaxed) + next.len() - before;
            for (digest, until) in fresh {
                match next.get_mut(&digest) {
                    Some(held) => *held = (*held).max(until),
                    None if len < MAX_ENTRIES => {
                        next.insert(digest, until);
                        len += 1;
                    }
                    None => dropped += 1,
                }
            }
            slot.store(Arc::new(next));
            self.len.store(len, Ordering::Relaxed);
        }
        if dropped > 0 {
            log::error!(
                "revocation list: {dropped} entries dropped, the list holds its maximum of \
                 {MAX_ENTRIES}"
            );
        }
        if page.reset {
            self.ready.store(true, Ordering::Release);
        }
        self.touch();
        self.len()
    }

    /// Drops every entry whose `until` is before `now` (Unix seconds); returns the entries held.
    pub fn prune(&self, now: u64) -> usize {
        let _writer = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in self.shards.iter() {
            let current = slot.load();
            if current.values().all(|until| *until >= now) {
                continue;
            }
            let mut next: Shard = (**current).clone();
            let before = next.len();
            next.retain(|_, until| *until >= now);
            self.len.fetch_sub(before - next.len(), Ordering::Relaxed);
            slot.store(Arc::new(next));
        }
        self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sid: &str) -> AccessClaims {
        serde_json::from_value(serde_json::json!({
            "iss": "i", "aud": "a", "sub": "u", "preferred_username": "p", "scope": "s",
            "iat": 1, "exp": 2, "jti": "j", "sid": sid
        }))
        .unwrap()
    }

    fn page(reset: bool, entries: &[(&str, u64)]) -> Page {
        Page {
            cursor: "c".into(),
            reset,
            revoked: entries.iter().map(|(sid, until)| (SidDigest::of(sid), *until)).collect(),
        }
    }

    #[test]
    fn the_digest_is_the_lists_base64url_sha256_of_the_sid() {
        // echo -n s1 | sha256sum, as base64url without padding.
        let digest = SidDigest::of("s1");
        let text = digest.to_base64url();
        assert_eq!(text.len(), 43);
        assert_eq!(SidDigest::from_base64url(&text), Some(digest));
        for bad in ["", "abc", &format!("{text}A"), &text.replace(text.as_bytes()[0] as char, "+")]
        {
            if bad != text {
                assert_eq!(SidDigest::from_base64url(bad), None, "{bad}");
            }
        }
    }

    #[test]
    fn a_listed_session_is_refused_and_others_pass() {
        let list = RevocationList::new(None);
        assert!(list.check(&claims("s1")).is_ok(), "an empty list refuses nothing");
        list.apply(&page(true, &[("s1", 100)]), 50);
        assert_eq!(list.check(&claims("s1")), Err(VerifyError::SessionEnded));
        assert!(list.check(&claims("s2")).is_ok());
        assert!(list.is_ready());
    }

    #[test]
    fn a_reset_merges_and_entries_leave_only_after_until() {
        let list = RevocationList::new(None);
        list.apply(&page(true, &[("a", 100), ("b", 200)]), 50);
        // A reset that no longer names "a" (a Redis that lost the list) does not forget it.
        list.apply(&page(true, &[("c", 300)]), 60);
        assert!(list.contains_sid("a") && list.contains_sid("b") && list.contains_sid("c"));
        assert_eq!(list.len(), 3);
        // Entries already past their until are not taken.
        list.apply(&page(false, &[("late", 10)]), 60);
        assert!(!list.contains_sid("late"));
        // A re-publication keeps the later until.
        list.apply(&page(false, &[("a", 250)]), 60);
        assert_eq!(list.prune(150), 3, "a now lasts until 250");
        assert_eq!(list.prune(251), 1);
        assert!(list.contains_sid("c") && !list.contains_sid("a") && !list.contains_sid("b"));
    }

    #[test]
    fn many_entries_spread_over_the_shards_and_prune_exactly() {
        let list = RevocationList::new(None);
        let entries: Vec<(String, u64)> =
            (0..10_000u64).map(|i| (format!("sid-{i}"), 1000 + i % 2)).collect();
        let page = Page {
            cursor: String::new(),
            reset: true,
            revoked: entries.iter().map(|(s, u)| (SidDigest::of(s), *u)).collect(),
        };
        assert_eq!(list.apply(&page, 0), 10_000);
        assert!(list.shards.iter().all(|s| !s.load().is_empty()), "every shard used");
        assert!(entries.iter().all(|(s, _)| list.contains_sid(s)));
        assert_eq!(list.prune(1001), 5_000);
        assert_eq!(list.shards.iter().map(|s| s.load().len()).sum::<usize>(), 5_000);
    }

    #[test]
    fn a_staleness_limit_refuses_before_the_first_list_and_once_old() {
        let list = RevocationList::new(Some(Duration::from_millis(50)));
        assert_eq!(list.check(&claims("s")), Err(VerifyError::RevocationListStale));
        list.apply(&page(false, &[]), 0);
        assert!(list.is_stale(), "a delta is not a full list");
        list.apply(&page(true, &[("gone", u64::MAX)]), 0);
        assert!(list.check(&claims("s")).is_ok());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(list.check(&claims("s")), Err(VerifyError::RevocationListStale));
        assert_eq!(list.check(&claims("gone")), Err(VerifyError::SessionEnded));
        list.touch();
        assert!(list.check(&claims("s")).is_ok());
        // Without a limit a list that never came is not stale.
        assert!(!RevocationList::new(None).is_stale());
    }
}
