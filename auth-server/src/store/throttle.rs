//! Login and registration counters (`throttle:*` keys) and each user's known addresses
//! (`uaddr:{<username>}`); the policy is [`crate::throttle`].
//!
//! A login's keys are in two slots: the user's (`{<username>}`: the user, its known
//! addresses, its username-wide bucket and its pair buckets) and the address's
//! (`{<address>}`). Each step reads or writes one of them; the order is in ARCHITECTURE.md.

use super::users::{parse_user, user_key};
use super::{Retry, Store, StoreError, UserRecord, lua_script};
use crate::clock::millis;
use crate::throttle::{KNOWN_ADDRESS_LIFETIME, KNOWN_ADDRESSES_PER_USER, Limits, LoginLocks};

/// What a login finds before its password is checked.
#[derive(Debug, Clone)]
pub struct LoginState {
    /// The user, when the username is valid and exists.
    pub user: Option<UserRecord>,
    /// The lockouts that apply, and whether the address is known for the user.
    pub locks: LoginLocks,
}

fn uaddr_key(username: &str) -> String {
    format!("uaddr:{{{username}}}")
}
fn login_user_key(username: &str) -> String {
    format!("throttle:login:user:{{{username}}}")
}
fn login_pair_key(username: &str, address: &str) -> String {
    format!("throttle:login:pair:{{{username}}}:{address}")
}
fn login_addr_key(address: &str) -> String {
    format!("throttle:login:addr:{{{address}}}")
}
fn register_addr_key(address: &str) -> String {
    format!("throttle:register:addr:{{{address}}}")
}

fn non_negative(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

impl Store {
    /// Reads what a login of `username` (normalized; `None` when it is not a valid username)
    /// from `address` (its bucket) finds: two reads, one per slot, run concurrently.
    pub async fn login_state(
        &self,
        username: Option<&str>,
        address: &str,
    ) -> Result<LoginState, StoreError> {
        let mut addr = lua_script!("login_lock_left.lua").prepare_invoke();
        addr.key(login_addr_key(address));
        let Some(username) = username else {
            let address_ms: i64 = self.run(&addr).await?;
            let locks =
                LoginLocks { address_ms: non_negative(address_ms), ..LoginLocks::default() };
            return Ok(LoginState { user: None, locks });
        };
        let mut check = lua_script!("login_check.lua").key(user_key(username));
        check
            .key(uaddr_key(username))
            .key(login_user_key(username))
            .key(login_pair_key(username, address))
            .arg(address)
            .arg(millis(KNOWN_ADDRESS_LIFETIME));
        let (reply, address_ms): (Vec<redis::Value>, i64) =
            tokio::try_join!(self.run(&check), self.run(&addr))?;
        let bad = || StoreError::Unexpected("malformed login check reply".into());
        let mut it = reply.into_iter();
        let mut number = || -> Result<i64, StoreError> {
            it.next().and_then(|v| redis::from_redis_value(v).ok()).ok_or_else(bad)
        };
        let (pair_ms, username_ms, known) = (number()?, number()?, number()?);
        let values: Vec<Option<String>> =
            it.map(|v| redis::from_redis_value(v).map_err(|_| bad())).collect::<Result<_, _>>()?;
        Ok(LoginState {
            user: parse_user(values)?,
            locks: LoginLocks {
                pair_ms: non_negative(pair_ms),
                address_ms: non_negative(address_ms),
                username_ms: non_negative(username_ms),
                known_address: known == 1,
            },
        })
    }

    /// Counts a verified failure (wrong password or unknown user) of `username` from
    /// `address` in its pair, username and address buckets (only the address's for an
    /// invalid username): one single-slot script per bucket, run concurrently.
    pub async fn login_failed(
        &self,
        username: Option<&str>,
        address: &str,
        limits: &Limits,
    ) -> Result<(), StoreError> {
        let failure = |key: String, max: u32| {
            let mut invocation = lua_script!("login_failure.lua").key(key);
            invocation
                .arg(max)
                .arg(millis(limits.lockout))
                .arg(millis(limits.lockout_max))
                .arg(millis(limits.failure_window));
            invocation
        };
        let addr = failure(login_addr_key(address), limits.max_failures_per_address);
        let Some(username) = username else {
            return self.run_with::<i64>(Retry::Once, &addr).await.map(drop);
        };
        let pair = failure(login_pair_key(username, address), limits.max_failures_per_pair);
        let wide = failure(login_user_key(username), limits.max_failures_per_username);
        // A failure counted twice would lock out sooner: repeated only when it cannot have run.
        tokio::try_join!(
            self.run_with::<i64>(Retry::Once, &pair),
            self.run_with::<i64>(Retry::Once, &wide),
            self.run_with::<i64>(Retry::Once, &addr)
        )
        .map(drop)
    }

    /// A successful login of `username` from `address`: clears the pair's failures and
    /// remembers the address for the user.
    pub async fn login_succeeded(&self, username: &str, address: &str) -> Result<(), StoreError> {
        let mut invocation = lua_script!("login_success.lua").key(uaddr_key(username));
        invocation
            .key(login_pair_key(username, address))
            .arg(address)
            .arg(KNOWN_ADDRESSES_PER_USER)
            .arg(millis(KNOWN_ADDRESS_LIFETIME));
        self.run::<i64>(&invocation).await.map(drop)
    }

    /// Counts a registration attempt from `address`; `Some(ms to wait)` past the limit.
    pub async fn register_attempt(
        &self,
        address: &str,
        limits: &Limits,
    ) -> Result<Option<u64>, StoreError> {
        let mut invocation = lua_script!("register_attempt.lua").key(register_addr_key(address));
        invocation.arg(limits.max_registrations_per_address).arg(millis(limits.register_window));
        let wait: i64 = self.run_with(Retry::Once, &invocation).await?;
        Ok((wait > 0).then(|| u64::try_from(wait).unwrap_or(1)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::store::test_util;

    fn limits() -> Limits {
        Limits {
            max_failures_per_pair: 2,
            max_failures_per_address: 3,
            max_failures_per_username: 4,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
            lockout_max: Duration::from_secs(3600),
            max_registrations_per_address: 2,
            register_window: Duration::from_secs(3600),
        }
    }

    async fn locks(store: &Store, username: &str, address: &str) -> LoginLocks {
        store.login_state(Some(username), address).await.unwrap().locks
    }

    #[tokio::test]
    async fn each_bucket_locks_at_its_limit_and_nothing_is_counted_before_a_failure() {
        let (_redis, store) = test_util::store();
        let limits = limits();
        // Reading the state counts nothing.
        for _ in 0..10 {
            assert_eq!(locks(&store, "alice", "192.0.2.1").await, LoginLocks::default());
        }
        store.login_failed(Some("alice"), "192.0.2.1", &limits).await.unwrap();
        assert_eq!(locks(&store, "alice", "192.0.2.1").await.refusal(), None);
        store.login_failed(Some("alice"), "192.0.2.1", &limits).await.unwrap();
        let l = locks(&store, "alice", "192.0.2.1").await;
        assert!((59_000..=60_000).contains(&l.pair_ms), "the second failure locks the pair: {l:?}");
        assert_eq!((l.address_ms, l.username_ms), (0, 0));
        // The same username from another address, another username from this one: free.
        assert_eq!(locks(&store, "alice", "192.0.2.2").await.refusal(), None);
        assert_eq!(locks(&store, "bob", "192.0.2.1").await.refusal(), None);

        // The third failure from the address (another username) locks the address.
        store.login_failed(Some("bob"), "192.0.2.1", &limits).await.unwrap();
        assert!(locks(&store, "carol", "192.0.2.1").await.address_ms > 59_000);
        // An invalid username counts for the address only.
        store.login_failed(None, "192.0.2.9", &limits).await.unwrap();
        let state = store.login_state(None, "192.0.2.9").await.unwrap();
        assert!(state.user.is_none());
        assert_eq!(state.locks.refusal(), None);

        // Four failures of alice across addresses lock the username for unknown addresses.
        store.login_failed(Some("alice"), "198.51.100.1", &limits).await.unwrap();
        store.login_failed(Some("alice"), "198.51.100.2", &limits).await.unwrap();
        let l = locks(&store, "alice", "198.51.100.3").await;
        assert!(l.username_ms > 59_000 && !l.known_address, "{l:?}");
    }

    #[tokio::test]
    async fn a_success_clears_the_pair_and_makes_the_address_known() {
        let (_redis, store) = test_util::store();
        let limits = limits();
        let user = UserRecord {
            id: "u1".into(),
            username: "alice".into(),
            name: None,
            phc: Arc::from("$argon2id$x"),
            roles: vec!["user".into()],
            disabled: false,
            version: 0,
        };
        store.create_user(&user).await.unwrap();
        store.login_failed(Some("alice"), "192.0.2.1", &limits).await.unwrap();
        store.login_succeeded("alice", "192.0.2.1").await.unwrap();
        let state = store.login_state(Some("alice"), "192.0.2.1").await.unwrap();
        assert_eq!(state.user.unwrap().id, "u1");
        assert!(state.locks.known_address);
        // The cleared pair needs two failures again to lock.
        store.login_failed(Some("alice"), "192.0.2.1", &limits).await.unwrap();
        assert_eq!(locks(&store, "alice", "192.0.2.1").await.pair_ms, 0);
        assert!(!locks(&store, "alice", "192.0.2.2").await.known_address);

        // Only the most recent addresses are kept.
        for i in 0..KNOWN_ADDRESSES_PER_USER + 1 {
            store.login_succeeded("alice", &format!("203.0.113.{i}")).await.unwrap();
        }
        assert!(!locks(&store, "alice", "192.0.2.1").await.known_address, "the oldest is gone");
        assert!(locks(&store, "alice", "203.0.113.16").await.known_address);
    }

    #[tokio::test]
    async fn each_lockout_doubles_up_to_the_cap() {
        let (_redis, store) = test_util::store();
        let limits = Limits {
            max_failures_per_pair: 1,
            lockout: Duration::from_secs(10),
            lockout_max: Duration::from_secs(35),
            ..limits()
        };
        let mut waits = Vec::new();
        for _ in 0..4 {
            store.login_failed(Some("dave"), "192.0.2.1", &limits).await.unwrap();
            waits.push(locks(&store, "dave", "192.0.2.1").await.pair_ms.div_ceil(1000));
        }
        assert_eq!(waits, [10, 20, 35, 35]);
    }

    #[tokio::test]
    async fn lockouts_run_on_redis_time_whatever_the_callers_clock() {
        let (_redis, store) = test_util::store();
        // A caller with a clock far off, passing its time as an old client did: the script
        // takes no time argument, so the lockout is the first one, counted from Redis's now.
        for (user, skewed_now_ms) in [("erin", 0_u64), ("fay", 4_102_444_800_000)] {
            let mut raw = lua_script!("login_failure.lua").key(login_pair_key(user, "192.0.2.1"));
            raw.arg(1).arg(60_000).arg(3_600_000).arg(60_000).arg(skewed_now_ms);
            assert_eq!(store.run::<i64>(&raw).await.unwrap(), 60_000);
            let left = locks(&store, user, "192.0.2.1").await.pair_ms;
            assert!((59_000..=60_000).contains(&left), "{user}: {left}");
        }
    }

    #[tokio::test]
    async fn registrations_are_counted_per_address() {
        let (_redis, store) = test_util::store();
        let limits = limits();
        assert_eq!(store.register_attempt("192.0.2.1", &limits).await.unwrap(), None);
        assert_eq!(store.register_attempt("192.0.2.1", &limits).await.unwrap(), None);
        let wait = store.register_attempt("192.0.2.1", &limits).await.unwrap().unwrap();
        assert!(wait > 3_500_000, "{wait}");
        assert_eq!(store.register_attempt("192.0.2.2", &limits).await.unwrap(), None);
    }
}
