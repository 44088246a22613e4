//! A bounded cache of verified access tokens, so a token presented again costs a map lookup
//! instead of an RSA verification and a claims parse. The map is `quick_cache`'s (sharded,
//! bounded, scan-resistant eviction); what makes it safe is ours:
//! - the key is the **whole token** (compared byte for byte), so a hit is a token that
//!   verified in full before, not a token that merely resembles one;
//! - only successes are cached, with the claims they produced; a refusal is always computed;
//! - an entry is used only while `exp` (plus the leeway) has not passed, and while `nbf` is
//!   still satisfied, exactly the time checks a fresh verification makes;
//! - an entry belongs to the key set it was verified with ([`KeySet::id`]): a lookup against
//!   another set never uses it, and the first lookup that sees a newer set (a reload that
//!   changed something, a rotation, a removal) empties the cache. A reload that changes
//!   nothing keeps the same set, so the cache stays warm;
//! - it is per [`Verifier`](crate::Verifier), so entries never cross issuers, audiences or
//!   scopes; and bounded ([`DEFAULT_CAPACITY`] tokens, about 1.5 KiB each).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::Cache;

use crate::claims::AccessClaims;
use crate::keyset::KeySet;

/// Tokens kept by default (about 6 MiB at most).
pub const DEFAULT_CAPACITY: usize = 4096;

/// What a hit returns: the claims, and the set they were verified with.
#[derive(Clone)]
struct Entry {
    claims: Arc<AccessClaims>,
    set: u64,
}

pub(crate) struct TokenCache {
    entries: Cache<Box<str>, Entry>,
    /// The newest key set seen ([`KeySet::id`] grows with every new set).
    newest_set: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("capacity", &self.entries.capacity()).finish()
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { entries: Cache::new(capacity.max(1)), newest_set: AtomicU64::new(0) }
    }

    /// Empties the cache the first time a set newer than any seen shows up; answers whether
    /// `set` is the newest (entries for an older one are not worth keeping).
    fn see(&self, set: &KeySet) -> bool {
        let id = set.id();
        let newest = self.newest_set.fetch_max(id, Ordering::AcqRel);
        if newest < id {
            self.entries.clear();
        }
        newest <= id
    }

    /// The claims of `token` if it verified against `set` before and its time checks still
    /// pass at `now` with `leeway`.
    pub(crate) fn get(
        &self,
        token: &str,
        set: &KeySet,
        now: u64,
        leeway: u64,
    ) -> Option<Arc<AccessClaims>> {
        self.see(set);
        let entry = self.entries.get(token)?;
        let claims = &entry.claims;
        if entry.set != set.id()
            || claims.exp < now.saturating_sub(leeway)
            || claims.nbf > now.saturating_add(leeway)
        {
            self.entries.remove(token);
            return None;
        }
        Some(entry.claims)
    }

    /// Remembers that `token` verified against `set`, giving `claims`.
    pub(crate) fn insert(&self, token: &str, set: &KeySet, claims: Arc<AccessClaims>) {
        if self.see(set) {
            self.entries.insert(token.into(), Entry { claims, set: set.id() });
        }
    }

    /// Number of cached tokens (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Arc<AccessClaims> {
        Arc::new(AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "s".into(),
            preferred_username: "u".into(),
            name: None,
            roles: Vec::new(),
            scope: String::new(),
            iat: 1,
            nbf: 1,
            exp,
            jti: String::new(),
            sid: String::new(),
        })
    }

    #[test]
    fn an_entry_serves_only_its_own_set_and_a_late_insert_for_an_old_set_is_dropped() {
        let cache = TokenCache::new(16);
        let (old, new) = (KeySet::empty(), KeySet::empty());
        cache.insert("t", &old, claims(100));
        assert!(cache.get("t", &old, 50, 0).is_some());
        // The same token looked up against a newer set: a miss, and the cache is emptied.
        assert!(cache.get("t", &new, 50, 0).is_none());
        assert_eq!(cache.len(), 0);
        // A verification that started with the old set and finishes now is not kept.
        cache.insert("t", &old, claims(100));
        assert_eq!(cache.len(), 0);
        assert!(cache.get("t", &old, 50, 0).is_none());
        // A clone of a set is the same set.
        cache.insert("u", &new, claims(100));
        assert!(cache.get("u", &new.clone(), 50, 0).is_some());
        // Never past exp + leeway.
        assert!(cache.get("u", &new, 105, 5).is_some());
        assert!(cache.get("u", &new, 106, 5).is_none());
    }
}
