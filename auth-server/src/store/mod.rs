//! The auth server's Redis: one connection type ([`Store`]), its errors, the deadline every
//! call gets, and the count of failed calls; the commands and Lua scripts live with their
//! concern: [`users`] (accounts), [`sessions`] (refresh-token sessions), [`revocations`] (the
//! session revocation list), [`throttle`] (login and registration limits), [`locks`] (one
//! instance at a time, e.g. scheduled key rotation).
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

mod conn;
pub mod locks;
pub mod revocations;
mod sentinel;
pub mod sessions;
pub mod throttle;
pub mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{ErrorKind, RedisError, ServerErrorKind};
use secrecy::ExposeSecret as _;

use self::conn::Conn;
pub use self::conn::Deployment;
pub use self::sessions::{NewSession, RotateOutcome, Rotation, SessionData};
pub use self::throttle::LoginState;
pub use self::users::UserRecord;
use crate::config::RedisSettings;

/// How long any Redis call may take before the request gets a 503.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(900);

/// How long a write that must not be lost waits for a replica's acknowledgement (`WAIT`).
pub const WAIT_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a write waits again when its `WAIT` timed out but the node has a live replica
/// (one that is behind, e.g. on a loaded machine); within [`CALL_TIMEOUT`].
pub const WAIT_BEHIND_TIMEOUT: Duration = Duration::from_millis(600);

/// After a `WAIT` that no replica answered in time, writes stop waiting for this long (and are
/// counted in `auth_redis_unreplicated_writes_total`): a deployment whose replica is down (e.g.
/// a promoted replica whose old primary has not come back) is not slowed down by every write.
pub const WAIT_BACKOFF: Duration = Duration::from_secs(5);

/// A Redis failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis is down, slow, loading, failing over, or refusing writes: retry later.
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

/// Whether a call may be repeated once on a fresh connection when the first attempt found the
/// connection dead (ARCHITECTURE.md, "Redis: connections, retries and failover").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Running it twice has the effect of running it once (a read, an idempotent write, the
    /// rotation with a grace): repeated after any dropped connection.
    Safe,
    /// Running it twice could count or change something twice: repeated only when the first
    /// attempt cannot have reached Redis (connection refused, `READONLY` from a demoted master).
    Once,
}

/// The auth server's Redis. Cheap to clone: clones share one connection (of the deployment's
/// kind), which is re-made whenever it breaks.
#[derive(Clone)]
pub struct Store {
    conn: Conn,
    timeout: Duration,
    durability: Arc<Durability>,
}

/// When writes that must not be lost wait for a replica.
#[derive(Debug)]
struct Durability {
    /// The deployment has replicas to wait for (Cluster and Sentinel).
    replicas: bool,
    /// After a `WAIT` no replica answered on a node that is alone: until when writes do not
    /// wait, and on which node (`None`: any; on Sentinel, the master that was alone, so that a
    /// late write to a replaced master never skips its `WAIT`).
    skip: std::sync::Mutex<Option<(Option<String>, Instant)>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("deployment", &self.conn.deployment())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A store on the standalone server at `url` (tests and tools).
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let conn = Conn::standalone(url)
            .map_err(|_| StoreError::Unexpected("invalid Redis URL".into()))?;
        Ok(Self::with(conn))
    }

    /// A store on the deployment of `settings`. Does not connect: connections are made on
    /// first use and re-made whenever they break, so the server starts and recovers on its own
    /// while Redis is down. An invalid URL is named by its place, never quoted (it may hold a
    /// password).
    pub fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        fn invalid(what: &'static str) -> impl Fn(RedisError) -> StoreError {
            move |_| StoreError::Unexpected(format!("invalid {what}"))
        }
        let conn = match settings {
            RedisSettings::Standalone { url } => {
                install_tls_provider(std::iter::once(url.expose_secret()));
                Conn::standalone(url.expose_secret()).map_err(invalid("AUTH_REDIS_URL"))?
            }
            RedisSettings::Cluster { urls } => {
                let urls: Vec<&str> = urls.iter().map(|u| u.expose_secret()).collect();
                install_tls_provider(urls.iter().copied());
                Conn::cluster(&urls).map_err(invalid("AUTH_REDIS_CLUSTER_URLS"))?
            }
            RedisSettings::Sentinel { urls, master, login } => {
                let urls: Vec<&str> = urls.iter().map(|u| u.expose_secret()).collect();
                install_tls_provider(urls.iter().copied());
                Conn::sentinel(&urls, master, login).map_err(invalid("AUTH_REDIS_SENTINEL_URLS"))?
            }
        };
        Ok(Self::with(conn))
    }

    fn with(conn: Conn) -> Self {
        let durability = Durability {
            replicas: conn.deployment() != Deployment::Standalone,
            skip: std::sync::Mutex::new(None),
        };
        Self { conn, timeout: CALL_TIMEOUT, durability: Arc::new(durability) }
    }

    /// The deployment this store talks to.
    pub fn deployment(&self) -> Deployment {
        self.conn.deployment()
    }

    /// A handle on the connection for one call.
    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Runs one Redis call under the deadline, repeated once on a fresh connection when the
    /// first attempt found the connection dead and `retry` allows it; a failure is counted in
    /// `auth_redis_errors_total`.
    async fn call<T, F, Fut>(&self, retry: Retry, attempt: F) -> Result<T, StoreError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempts = async {
            match attempt(self.conn()).await {
                Err(e) if may_repeat(&e, retry) => {
                    crate::metrics::redis_retry();
                    log::debug!("redis: repeating a call on a fresh connection after: {e}");
                    attempt(self.conn()).await
                }
                other => other,
            }
        };
        let result = match tokio::time::timeout(self.timeout, attempts).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {:?}", self.timeout))),
        };
        if result.is_err() {
            crate::metrics::redis_error();
        }
        result
    }

    /// Runs a prepared script (`EVALSHA`, loading it on `NOSCRIPT`) under the deadline; for
    /// scripts that are safe to repeat ([`Retry::Safe`]).
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.run_with(Retry::Safe, invocation).await
    }

    /// [`Self::run`] with an explicit retry rule.
    async fn run_with<T: redis::FromRedisValue>(
        &self,
        retry: Retry,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.call(retry, |mut conn| async move { invocation.invoke_async(&mut conn).await }).await
    }

    /// Runs one command under the deadline ([`Retry::Safe`]: reads and idempotent writes).
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.call(Retry::Safe, |mut conn| async move { cmd.query_async(&mut conn).await }).await
    }

    /// After a write to `key` that must not be lost (a rotation, a new session, a new user):
    /// with replicas (Cluster, Sentinel), waits until one acknowledged it (`WAIT 1`, at most
    /// [`WAIT_TIMEOUT`]), so that a failover right after the answer cannot lose it. When none
    /// answers in time:
    /// - if the node has a live replica (online, acknowledging within a second: alive but
    ///   behind), the write waits again up to [`WAIT_BEHIND_TIMEOUT`], else 503: that replica
    ///   could be promoted without it;
    /// - on Sentinel, unless every sentinel answers, names this master in one configuration
    ///   epoch and flags no failover, 503: during a `SENTINEL FAILOVER` the old master accepts
    ///   writes until it is demoted, then drops them;
    /// - else (no live replica: it is down, or this is a promoted replica whose old primary has
    ///   not come back) the write is answered (its node is the only copy there is), counted in
    ///   `auth_redis_unreplicated_writes_total`, and writes stop waiting for [`WAIT_BACKOFF`]
    ///   (the checks above still run for each).
    ///
    /// An error (the connection died after the write) is a 503 too: the client repeats, which
    /// every caller makes safe.
    async fn replicate(&self, key: &str) -> Result<(), StoreError> {
        let d = &self.durability;
        if !d.replicas {
            return Ok(());
        }
        let node = self.conn.node().map(str::to_owned);
        let skipping = |skip: &Option<(Option<String>, Instant)>| {
            skip.as_ref()
                .is_some_and(|(on, until)| Instant::now() < *until && (on.is_none() || *on == node))
        };
        let backing_off =
            skipping(&d.skip.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if !backing_off {
            let acked = self
                .call(Retry::Safe, |mut conn| async move {
                    conn.wait_replicas(key, 1, WAIT_TIMEOUT).await
                })
                .await?;
            if acked > 0 {
                return Ok(());
            }
        }
        // A replica that is alive but behind could be promoted without the write: wait for it
        // longer, else 503 (the client repeats; every caller makes that safe).
        let live =
            self.call(Retry::Safe, |mut conn| async move { conn.replica_live(key).await }).await?;
        if live {
            let acked = self
                .call(Retry::Safe, |mut conn| async move {
                    conn.wait_replicas(key, 1, WAIT_BEHIND_TIMEOUT).await
                })
                .await?;
            if acked > 0 {
                if backing_off {
                    *d.skip.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                }
                return Ok(());
            }
            return Err(StoreError::Unavailable(
                "a live replica did not acknowledge a write in time".into(),
            ));
        }
        // Sentinel: was it written to a master that is being replaced (and will drop it)? Asked
        // for every unreplicated write, also while not waiting: a failover may start any time.
        let alone = self
            .call(Retry::Safe, |mut conn| async move { conn.may_answer_unreplicated().await })
            .await?;
        if !alone {
            return Err(StoreError::Unavailable(
                "no replica acknowledged a write while the master has live replicas or was \
                 replaced"
                    .into(),
            ));
        }
        crate::metrics::redis_unreplicated_write();
        if backing_off {
            return Ok(());
        }
        let mut skip = d.skip.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !skipping(&skip) {
            log::warn!(
                "redis: no replica acknowledged a write within {WAIT_TIMEOUT:?} and none is up; \
                 writes to this node do not wait for replicas for {WAIT_BACKOFF:?}"
            );
        }
        *skip = Some((node, Instant::now() + WAIT_BACKOFF));
        Ok(())
    }

    /// A store whose connection stays on the node it starts on (on Sentinel: the master in
    /// use now), for a write that must not be lost and its [`Self::replicate`]: the `WAIT` and
    /// the checks after it then concern the node that took the write.
    async fn pinned(&self) -> Result<Self, StoreError> {
        let conn = self.call(Retry::Safe, |mut conn| async move { conn.pinned().await }).await?;
        Ok(Self { conn, timeout: self.timeout, durability: Arc::clone(&self.durability) })
    }

    /// `PING` (in a Cluster: every primary).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// Every key matching `pattern`, by `SCAN` (each call under the deadline; in a Cluster on
    /// every primary); for operator commands only, never a request path.
    async fn scan_match(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let nodes =
            self.call(Retry::Safe, |mut conn| async move { conn.scan_nodes().await }).await?;
        let mut keys = Vec::new();
        for node in &nodes {
            let mut cursor = 0_u64;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
                let (next, batch): (u64, Vec<String>) = self
                    .call(Retry::Safe, |mut conn| {
                        let cmd = &cmd;
                        async move { conn.query_on(node.as_ref(), cmd).await }
                    })
                    .await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

/// Whether a failed attempt may be repeated under `retry`.
fn may_repeat(e: &RedisError, retry: Retry) -> bool {
    // Never reached Redis, or refused by a node that is no longer the master: nothing ran.
    let not_run = e.is_connection_refusal() || e.code() == Some("READONLY");
    // The connection died: the command may or may not have run.
    let dropped = (e.is_connection_dropped() || e.is_io_error()) && !e.is_timeout();
    not_run || (retry == Retry::Safe && dropped)
}

/// `rediss://` needs rustls' process-wide provider: aws-lc-rs, which the workspace already
/// builds (keeps one installed before).
fn install_tls_provider<'a>(mut urls: impl Iterator<Item = &'a str>) {
    if urls.any(|u| u.trim_start().to_ascii_lowercase().starts_with("rediss://")) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
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

    #[test]
    fn only_calls_safe_to_repeat_are_repeated_after_a_dropped_connection() {
        use std::io::{Error, ErrorKind as Io};
        let refused = RedisError::from(Error::from(Io::ConnectionRefused));
        let dropped = RedisError::from(Error::from(Io::BrokenPipe));
        let reset = RedisError::from(Error::from(Io::ConnectionReset));
        let timeout = RedisError::from(Error::from(Io::TimedOut));
        // Refused: nothing ran, whatever the call.
        assert!(may_repeat(&refused, Retry::Safe) && may_repeat(&refused, Retry::Once));
        // Dropped: it may have run; only a call that is safe to repeat is.
        for e in [&dropped, &reset] {
            assert!(may_repeat(e, Retry::Safe), "{e}");
            assert!(!may_repeat(e, Retry::Once), "{e}");
        }
        // No answer in time: it may still run; never repeated.
        assert!(!may_repeat(&timeout, Retry::Safe) && !may_repeat(&timeout, Retry::Once));
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
