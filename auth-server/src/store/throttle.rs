//! Login and registration counters (`throttle:*` keys); the policy is [`crate::throttle`].

use super::users::{USER_FIELDS, parse_user, user_key};
use super::{Store, StoreError, UserRecord, lua_script};
use crate::clock::millis;
use crate::throttle::Limits;

/// What the login script found.
#[derive(Debug, Clone)]
pub enum LoginAttempt {
    /// The username or the address is locked out for this many more ms.
    Locked {
        /// Time left, ms.
        wait_ms: u64,
    },
    /// Go ahead; the user, if it exists (the attempt is counted as a failure until settled).
    Open(Option<UserRecord>),
}

/// Keys and thresholds of one login attempt.
#[derive(Debug)]
pub struct LoginThrottle<'a> {
    /// The normalized username, when it is a valid one.
    pub username: Option<&'a str>,
    /// The client's address bucket ([`crate::throttle::address_bucket`]).
    pub address: &'a str,
    /// The thresholds.
    pub limits: &'a Limits,
}

fn login_user_key(username: Option<&str>) -> String {
    // An invalid username has no key of its own (the script does not touch this one then).
    format!("throttle:login:user:{{{}}}", username.unwrap_or(""))
}
fn login_addr_key(address: &str) -> String {
    format!("throttle:login:addr:{{{address}}}")
}
fn register_addr_key(address: &str) -> String {
    format!("throttle:register:addr:{{{address}}}")
}

impl Store {
    /// Counts a login attempt and fetches its user, in one round trip; see [`crate::throttle`].
    pub async fn login_attempt(
        &self,
        t: &LoginThrottle<'_>,
        now_ms: u64,
    ) -> Result<LoginAttempt, StoreError> {
        let mut invocation = lua_script!("login_attempt.lua").key(login_user_key(t.username));
        invocation
            .key(login_addr_key(t.address))
            .key(user_key(t.username.unwrap_or("")))
            .arg(now_ms)
            .arg(t.limits.max_failures_per_user)
            .arg(t.limits.max_failures_per_address)
            .arg(millis(t.limits.lockout))
            .arg(millis(t.limits.lockout_max))
            .arg(millis(t.limits.failure_window))
            .arg(if t.username.is_some() { "1" } else { "0" });
        let reply: Vec<redis::Value> = self.run(&invocation).await?;
        parse_login_attempt(reply)
    }

    /// Settles a counted login attempt: `success` clears the username's failures, otherwise
    /// (the password was never checked) the attempt is taken back.
    pub async fn login_settle(
        &self,
        t: &LoginThrottle<'_>,
        success: bool,
    ) -> Result<(), StoreError> {
        let mut invocation = lua_script!("login_settle.lua").key(login_user_key(t.username));
        invocation
            .key(login_addr_key(t.address))
            .arg(if success { "clear" } else { "undo" })
            .arg(if t.username.is_some() { "1" } else { "0" });
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
        let wait: i64 = self.run(&invocation).await?;
        Ok((wait > 0).then(|| u64::try_from(wait).unwrap_or(1)))
    }
}

fn parse_login_attempt(reply: Vec<redis::Value>) -> Result<LoginAttempt, StoreError> {
    let bad = || StoreError::Unexpected("malformed login reply".into());
    let mut it = reply.into_iter();
    let status: String = it.next().and_then(|v| redis::from_redis_value(v).ok()).ok_or_else(bad)?;
    match status.as_str() {
        "locked" => {
            let wait_ms: i64 =
                it.next().and_then(|v| redis::from_redis_value(v).ok()).ok_or_else(bad)?;
            Ok(LoginAttempt::Locked { wait_ms: u64::try_from(wait_ms).unwrap_or(1).max(1) })
        }
        "open" => {
            let values: Vec<Option<String>> = it
                .map(|v| redis::from_redis_value(v).map_err(|_| bad()))
                .collect::<Result<_, _>>()?;
            if values.is_empty() {
                return Ok(LoginAttempt::Open(None));
            }
            debug_assert_eq!(values.len(), USER_FIELDS.len());
            Ok(LoginAttempt::Open(parse_user(values)?))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::now_ms;
    use crate::store::test_util;

    fn limits() -> Limits {
        Limits {
            max_failures_per_user: 2,
            max_failures_per_address: 3,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
            lockout_max: Duration::from_secs(3600),
            max_registrations_per_address: 2,
            register_window: Duration::from_secs(3600),
        }
    }

    #[tokio::test]
    async fn failures_past_the_limit_lock_the_username_and_the_address() {
        let (_redis, store) = test_util::store();
        let limits = limits();
        let t = LoginThrottle { username: Some("alice"), address: "192.0.2.1", limits: &limits };
        for _ in 0..2 {
            assert!(matches!(
                store.login_attempt(&t, now_ms()).await.unwrap(),
                LoginAttempt::Open(None)
            ));
        }
        let LoginAttempt::Locked { wait_ms } = store.login_attempt(&t, now_ms()).await.unwrap()
        else {
            panic!("the third failure locks the username")
        };
        assert!((59_000..=60_000).contains(&wait_ms), "{wait_ms}");
        // Another address is free for another username.
        let other = LoginThrottle { username: Some("bob"), address: "192.0.2.2", limits: &limits };
        assert!(matches!(
            store.login_attempt(&other, now_ms()).await.unwrap(),
            LoginAttempt::Open(None)
        ));
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
