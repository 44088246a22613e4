//! The auth server's Redis: one connection type ([`Store`]), its errors, the deadline every
//! call gets, and the count of failed calls; the commands and Lua scripts live with their
//! concern: [`users`] (accounts), [`sessions`] (refresh-token sessions), [`revocations`] (the
//! session revocation list), [`throttle`] (login and registration limits).
//!
//! Each Lua script is a `.lua` file under `store/lua/`, loaded with `include_str!`; its header
//! names the keys and arguments it takes, what it returns and the hash slot its keys share.
//! Key names put the part that identifies the owner in a `{...}` hash tag, so that the keys one
//! script touches are in one cluster slot. The key table is in ARCHITECTURE.md.
//!
//! A new concern is a new file here with its own `impl Store`
//! block and its scripts in `store/lua/`, using `Store::call`, `Store::run` and `lua_script!`, so
//! every call keeps the deadline and the error count.
//!
//! Every call has a deadline; past it, or when Redis cannot be reached, the caller gets
//! [`StoreError::Unavailable`] and answers 503, never a verdict on the token.

pub mod revocations;
pub mod sessions;
pub mod throttle;
pub mod users;

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};

pub use self::sessions::{NewSession, RotateOutcome, Rotation, SessionData};
pub use self::throttle::LoginState;
pub use self::users::UserRecord;

/// How long any Redis call may take before the request gets a 503.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(900);

/// A Redis failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis is down, slow, loading, or refusing writes: retry later.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered something this code does not expect: a bug.
    #[error("unexpected redis reply: {0}")]
    Unexpected(String),
}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        // A full Redis (`maxmemory` with `noeviction`) refuses writes: a 503 like an outage,
        // never a verdict on a token (a write refused inside a script leaves nothing changed:
        // Redis checks memory before a script's first write, and then lets it finish).
        if e.code() == Some("OOM") {
            return Self::Unavailable("redis is out of memory (maxmemory reached)".into());
        }
        match e.kind() {
            ErrorKind::Parse
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Server(ServerErrorKind::CrossSlot) => Self::Unexpected(e.to_string()),
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

/// The auth server's Redis. Cheap to clone: clones share one multiplexed connection, which is
/// re-made whenever it breaks.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    timeout: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Store {
    /// A store on `url`. Does not connect: the connection is made on first use and re-made
    /// whenever it breaks, so the server starts and recovers on its own while Redis is down.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|_| StoreError::Unexpected("invalid Redis URL".into()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(250));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self { conn, timeout: CALL_TIMEOUT })
    }

    /// A handle on the connection for one call.
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs one Redis call under the deadline; a failure is counted in
    /// `auth_redis_errors_total`.
    async fn call<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {:?}", self.timeout))),
        };
        if result.is_err() {
            crate::metrics::redis_error();
        }
        result
    }

    /// Runs a prepared script (`EVALSHA`, loading it on `NOSCRIPT`) under the deadline.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        self.call(invocation.invoke_async(&mut conn)).await
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let _: String = self.call(redis::cmd("PING").query_async(&mut conn)).await?;
        Ok(())
    }

    /// Every key matching `pattern`, by `SCAN` (each call under the deadline); for operator
    /// commands only, never a request path. On a Redis Cluster this must scan every primary.
    async fn scan_match(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            let mut conn = self.conn();
            let (next, batch): (u64, Vec<String>) = self.call(cmd.query_async(&mut conn)).await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

/// A script of `store/lua/`, hashed once.
macro_rules! lua_script {
    ($file:literal) => {{
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(include_str!(concat!("lua/", $file))));
        &*SCRIPT
    }};
}
pub(crate) use lua_script;

/// A positive number of ms for `PEXPIRE` (Redis refuses 0 and negative).
fn expiry_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX).max(1)
}

/// A JSON array of roles, as stored.
fn roles_json(roles: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(roles).map_err(|e| StoreError::Unexpected(e.to_string()))
}

/// Parses stored roles.
fn parse_roles(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text)
        .map_err(|_| StoreError::Unexpected("stored roles are not a JSON array".into()))
}

#[cfg(test)]
mod test_util {
    use test_support::RedisServer;

    use super::Store;

    /// A private Redis and a store on it.
    pub(crate) fn store() -> (RedisServer, Store) {
        let redis = RedisServer::start();
        let store = Store::new(&redis.url()).unwrap();
        (redis, store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script of `store/lua/`.
    const SCRIPTS: &[&str] = &[
        include_str!("lua/create_session.lua"),
        include_str!("lua/create_user.lua"),
        include_str!("lua/describe_session.lua"),
        include_str!("lua/end_all_sessions.lua"),
        include_str!("lua/index_session.lua"),
        include_str!("lua/login_check.lua"),
        include_str!("lua/login_failure.lua"),
        include_str!("lua/login_lock_left.lua"),
        include_str!("lua/login_success.lua"),
        include_str!("lua/mark_session.lua"),
        include_str!("lua/publish_revocations.lua"),
        include_str!("lua/read_revocations.lua"),
        include_str!("lua/register_attempt.lua"),
        include_str!("lua/rotate.lua"),
        include_str!("lua/set_disabled.lua"),
        include_str!("lua/set_password.lua"),
        include_str!("lua/set_roles.lua"),
    ];

    #[test]
    fn every_script_has_its_header_and_takes_no_time_from_the_caller() {
        for text in SCRIPTS {
            let header: Vec<&str> = text.lines().take_while(|l| l.starts_with("--")).collect();
            let first = header.first().copied().unwrap_or_default();
            for part in ["KEYS[1]", "ARGV", "Returns", "Slot"] {
                assert!(header.iter().any(|l| l.contains(part)), "{first}: no {part}");
            }
            let argv = header
                .iter()
                .skip_while(|l| !l.contains("ARGV"))
                .take_while(|l| !l.contains("Returns"));
            for line in argv {
                let mut words = line.split(|c: char| !c.is_ascii_alphanumeric());
                assert!(!words.any(|w| w == "now"), "{first}: a time from the caller: {line}");
            }
            // A script that compares or stamps times reads Redis's clock.
            let body = &text[header.iter().map(|l| l.len() + 1).sum::<usize>()..];
            if ["until", "_ms'", "created"].iter().any(|w| body.contains(w))
                && !body.contains("'SADD'")
            {
                assert!(body.contains("redis.call('TIME')"), "{first}: times without TIME");
            }
        }
    }

    #[tokio::test]
    async fn a_stopped_redis_is_unavailable_within_the_deadline() {
        let (mut redis, store) = test_util::store();
        store.ping().await.unwrap();
        redis.stop();
        let start = std::time::Instant::now();
        let err = store.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(start.elapsed() < CALL_TIMEOUT + Duration::from_millis(300));
    }
}
