//! A bounded cache of verified access tokens, so a token presented again costs a map lookup
//! instead of an RSA verification and a claims parse.
//!
//! What keeps it safe:
//! - the key is the **whole token** (compared byte for byte), so a hit is a token that
//!   verified in full before, not a token that merely resembles one;
//! - only successes are cached, with the claims they produced; a refusal is always computed;
//! - an entry is used only while `exp` (plus the leeway) has not passed, and while `nbf` is
//!   still satisfied, exactly the time checks a fresh verification makes;
//! - entries belong to the key set they were verified with: when [`Keys`](crate::Keys)
//!   installs another set (a reload, a rotation, a removal), the next lookup sees the new set
//!   and drops every entry first. The cache holds that set's `Arc`, so its address cannot be
//!   reused by a newer set while entries refer to it;
//! - it is per [`Verifier`](crate::Verifier), so entries never cross issuers, audiences or
//!   scopes; and bounded ([`DEFAULT_CAPACITY`] tokens, about 1.5 KiB each).

use std::sync::{Arc, Mutex};

use crate::claims::AccessClaims;
use crate::keyset::KeySet;

/// Tokens kept by default (about 6 MiB at most).
pub const DEFAULT_CAPACITY: usize = 4096;

/// Shards, so the workers rarely contend for a lock.
const SHARDS: usize = 16;

struct Shard {
    /// The key set every entry was verified with.
    set: Option<Arc<KeySet>>,
    map: std::collections::HashMap<Box<str>, Arc<AccessClaims>>,
}

pub(crate) struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("capacity", &(self.per_shard * SHARDS)).finish()
    }
}

impl TokenCache {
    /// A cache of about `capacity` tokens.
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(Shard { set: None, map: std::collections::HashMap::new() }))
            .collect();
        Self { shards, per_shard }
    }

    fn shard(&self, token: &str) -> Option<std::sync::MutexGuard<'_, Shard>> {
        // The last characters are signature bytes: spread well enough to pick a shard.
        let tail = token.as_bytes().iter().rev().take(2).fold(0usize, |h, b| h * 31 + *b as usize);
        // A poisoned shard (a panic while held, which nothing here can do) is just not used.
        self.shards.get(tail % SHARDS)?.lock().ok()
    }

    /// The claims of `token` if it verified against `set` before and its time checks still
    /// pass at `now` with `leeway`.
    pub(crate) fn get(
        &self,
        token: &str,
        set: &Arc<KeySet>,
        now: u64,
        leeway: u64,
    ) -> Option<Arc<AccessClaims>> {
        let mut shard = self.shard(token)?;
        if !shard.set.as_ref().is_some_and(|s| Arc::ptr_eq(s, set)) {
            // Another key set: nothing here was verified with it.
            shard.map.clear();
            shard.set = Some(Arc::clone(set));
            return None;
        }
        let claims = shard.map.get(token)?;
        if claims.exp < now.saturating_sub(leeway) || claims.nbf > now.saturating_add(leeway) {
            shard.map.remove(token);
            return None;
        }
        Some(Arc::clone(claims))
    }

    /// Remembers that `token` verified against `set`, giving `claims`.
    pub(crate) fn insert(&self, token: &str, set: &Arc<KeySet>, claims: Arc<AccessClaims>) {
        let Some(mut shard) = self.shard(token) else { return };
        if !shard.set.as_ref().is_some_and(|s| Arc::ptr_eq(s, set)) {
            shard.map.clear();
            shard.set = Some(Arc::clone(set));
        }
        if shard.map.len() >= self.per_shard {
            // Full: drop one entry (the map's iteration order is arbitrary, which is enough
            // for tokens that are all about equally likely to come back).
            if let Some(victim) = shard.map.keys().next().cloned() {
                shard.map.remove(&victim);
            }
        }
        shard.map.insert(token.into(), claims);
    }

    /// Number of cached tokens (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().filter_map(|s| s.lock().ok()).map(|s| s.map.len()).sum()
    }
}
