//! Every Redis command and Lua script of the auth server.
//!
//! Keys (the `{...}` hash tag puts the keys one script touches in one cluster slot):
//! - `user:{<username>}` hash: `id`, `username`, `name`, `phc`, `roles` (JSON array), `created`;
//! - `sess:{<sid>}` hash: `uid`, `username`, `name`, `roles`, `scope`, `created_ms`, `cur`
//!   (hash of the current refresh token), `prev` (hash of the one rotated last), `rotated_ms`,
//!   `succ` (the current token, encrypted under a key derived from `prev`);
//! - `spent:{<sid>}` set: hashes of every refresh token rotated away in the session;
//! - `usess:{<uid>}` set: the user's session ids (for logout everywhere; stale ids are harmless);
//! - `throttle:login:user:{<username>}` and `throttle:login:addr:{<address>}` hashes: `fails`,
//!   `locks` (lockouts so far), `until` (ms); `throttle:register:addr:{<address>}` counter.
//!   The login script touches a user's keys and an address key, which are in different slots:
//!   fine on one Redis (what this server runs on), to be split for a cluster.
//!
//! Every call has a deadline; past it, or when Redis cannot be reached, the caller gets
//! [`StoreError::Unavailable`] and answers 503, never a verdict on the token.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, ErrorKind, RedisError, ServerErrorKind};

use crate::throttle::Limits;
use crate::tokens::{SessionId, TokenHash};

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
        match e.kind() {
            ErrorKind::Parse
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Server(ServerErrorKind::CrossSlot) => Self::Unexpected(e.to_string()),
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

/// A user as stored.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Stable id (UUID v4), the `sub` claim.
    pub id: String,
    /// Lowercased username.
    pub username: String,
    /// Display name.
    pub name: Option<String>,
    /// argon2id PHC string.
    pub phc: Arc<str>,
    /// Roles, copied into each new session.
    pub roles: Vec<String>,
}

/// What a session carries into every access token issued from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionData {
    /// User id.
    pub uid: String,
    /// Username.
    pub username: String,
    /// Display name.
    pub name: Option<String>,
    /// Roles at login.
    pub roles: Vec<String>,
    /// Granted scope.
    pub scope: String,
    /// Login time, ms since the epoch.
    pub created_ms: u64,
}

/// A new session to store.
#[derive(Debug)]
pub struct NewSession<'a> {
    /// Its id.
    pub sid: &'a SessionId,
    /// Hash of its first refresh token.
    pub token_hash: &'a TokenHash,
    /// What it carries.
    pub data: &'a SessionData,
    /// Lifetime of the keys: min(refresh TTL, max age).
    pub ttl_ms: u64,
    /// Absolute session lifetime (the user's session index lives that long after a login).
    pub max_age_ms: u64,
}

/// The inputs of a rotation.
#[derive(Debug)]
pub struct Rotation<'a> {
    /// The session of the presented token.
    pub sid: &'a SessionId,
    /// Hash of the presented token.
    pub presented: &'a TokenHash,
    /// Hash of its would-be successor.
    pub successor: &'a TokenHash,
    /// The successor, encrypted under a key derived from the presented token.
    pub sealed_successor: &'a str,
    /// Now, ms since the epoch.
    pub now_ms: u64,
    /// Reuse grace in ms (0: none).
    pub grace_ms: u64,
    /// Sliding idle lifetime in ms.
    pub refresh_ttl_ms: u64,
    /// Absolute lifetime in ms.
    pub max_age_ms: u64,
}

/// What the rotation script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The presented token was current: the successor is now current.
    Rotated {
        /// The session.
        session: SessionData,
    },
    /// The presented token was rotated within the grace: here is the stored successor again.
    Replay {
        /// The session.
        session: SessionData,
        /// The sealed successor.
        sealed_successor: String,
        /// When the rotation happened, ms since the epoch.
        rotated_ms: u64,
    },
    /// A spent token: the session has been deleted.
    Reuse {
        /// Its user, to clean up the session index.
        uid: String,
    },
    /// The session reached its maximum age and has been deleted.
    Expired {
        /// Its user.
        uid: String,
    },
    /// No such session or token.
    Unknown,
}

// Registration: atomic, so a username is never registered twice.
const CREATE_USER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'username', ARGV[2], 'name', ARGV[3],
  'phc', ARGV[4], 'roles', ARGV[5], 'created', ARGV[6])
return 1
";

const SET_ROLES: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'roles', ARGV[1])
return 1
";

// Rotation, reuse grace and reuse detection in one step.
// KEYS: sess, spent. ARGV: presented, new, now_ms, grace_ms, refresh_ttl_ms, max_age_ms, sealed.
const ROTATE: &str = r"
local s = redis.call('HMGET', KEYS[1], 'cur', 'prev', 'rotated_ms', 'created_ms', 'succ',
  'uid', 'username', 'name', 'roles', 'scope')
if not s[1] then return {'unknown'} end
local now = tonumber(ARGV[3])
local created = tonumber(s[4])
local ends = created + tonumber(ARGV[6])
if now >= ends then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {'expired', s[6]}
end
local fields = {s[6], s[7], s[8] or '', s[9], s[10], s[4]}
if ARGV[1] == s[1] then
  redis.call('HSET', KEYS[1], 'prev', s[1], 'cur', ARGV[2], 'rotated_ms', ARGV[3], 'succ', ARGV[7])
  redis.call('SADD', KEYS[2], ARGV[1])
  local ttl = math.min(tonumber(ARGV[5]), ends - now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  return {'rotated', fields[1], fields[2], fields[3], fields[4], fields[5], fields[6]}
end
local grace = tonumber(ARGV[4])
if s[2] and s[2] ~= '' and ARGV[1] == s[2] and grace > 0 and now - tonumber(s[3]) <= grace then
  return {'replay', fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], s[5], s[3]}
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {'reuse', s[6]}
end
return {'unknown'}
";

// Logout: only a token of the session (current, just rotated, or spent) ends it, so that
// knowing a sid (it is in every access token) is not enough.
// KEYS: sess, spent. ARGV: presented.
const END_SESSION: &str = r"
local s = redis.call('HMGET', KEYS[1], 'cur', 'prev', 'uid')
if not s[1] then return false end
if ARGV[1] == s[1] or ARGV[1] == s[2] or redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[1], KEYS[2])
  return s[3]
end
return false
";

// A login attempt: refuse it if the username or the address is locked out; else count it as
// a failure up front (a success takes it back) and lock out past the limit; and fetch the user.
// KEYS: throttle user, throttle addr, user. ARGV: now_ms, user max, addr max, first lockout ms,
// longest lockout ms, window ms, 1 when the username is valid (else the user keys are unused).
const LOGIN_ATTEMPT: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[6])
local has_user = ARGV[7] == '1'
local function wait_of(key)
  local u = tonumber(redis.call('HGET', key, 'until') or '0')
  if u > now then return u - now end
  return 0
end
local function fail(key, max)
  local n = redis.call('HINCRBY', key, 'fails', 1)
  local wait = 0
  if n > max then
    local locks = redis.call('HINCRBY', key, 'locks', 1)
    wait = tonumber(ARGV[4])
    local cap = tonumber(ARGV[5])
    for _ = 2, locks do
      wait = wait * 2
      if wait >= cap then break end
    end
    if wait > cap then wait = cap end
    redis.call('HSET', key, 'until', now + wait, 'fails', 0)
  end
  redis.call('PEXPIRE', key, wait + window)
  return wait
end
local wait = wait_of(KEYS[2])
if has_user then wait = math.max(wait, wait_of(KEYS[1])) end
if wait > 0 then return {'locked', wait} end
if has_user then wait = fail(KEYS[1], tonumber(ARGV[2])) end
wait = math.max(wait, fail(KEYS[2], tonumber(ARGV[3])))
if wait > 0 then return {'locked', wait} end
if not has_user then return {'open'} end
local u = redis.call('HMGET', KEYS[3], 'id', 'username', 'name', 'phc', 'roles')
if not u[1] then return {'open'} end
return {'open', u[1], u[2] or '', u[3] or '', u[4] or '', u[5] or ''}
";

// Takes back the failure a login attempt counted: the username's count is cleared on a
// success (ARGV[1] = 'clear') or decremented (a refused hash), the address's decremented.
// KEYS: throttle user (may be unused), throttle addr. ARGV: clear | undo, 1 when the user key is used.
const LOGIN_SETTLE: &str = r"
local function undo(key)
  if tonumber(redis.call('HGET', key, 'fails') or '0') > 0 then
    redis.call('HINCRBY', key, 'fails', -1)
  end
end
if ARGV[2] == '1' then
  if ARGV[1] == 'clear' then redis.call('DEL', KEYS[1]) else undo(KEYS[1]) end
end
undo(KEYS[2])
return 1
";

// One registration attempt from an address; returns 0, or the ms to wait when over the limit.
// KEYS: counter. ARGV: max, window ms.
const REGISTER_ATTEMPT: &str = r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
if n > tonumber(ARGV[1]) then return ttl end
return 0
";

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

struct Scripts {
    login_attempt: redis::Script,
    login_settle: redis::Script,
    register_attempt: redis::Script,
    create_user: redis::Script,
    set_roles: redis::Script,
    rotate: redis::Script,
    end_session: redis::Script,
}

/// The auth server's Redis. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    timeout: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

fn user_key(username: &str) -> String {
    format!("user:{{{username}}}")
}
fn sess_key(sid: &SessionId) -> String {
    format!("sess:{{{sid}}}")
}
fn spent_key(sid: &SessionId) -> String {
    format!("spent:{{{sid}}}")
}
fn usess_key(uid: &str) -> String {
    format!("usess:{{{uid}}}")
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
        let scripts = Scripts {
            login_attempt: redis::Script::new(LOGIN_ATTEMPT),
            login_settle: redis::Script::new(LOGIN_SETTLE),
            register_attempt: redis::Script::new(REGISTER_ATTEMPT),
            create_user: redis::Script::new(CREATE_USER),
            set_roles: redis::Script::new(SET_ROLES),
            rotate: redis::Script::new(ROTATE),
            end_session: redis::Script::new(END_SESSION),
        };
        Ok(Self { conn, scripts: Arc::new(scripts), timeout: CALL_TIMEOUT })
    }

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

    /// `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = self.call(redis::cmd("PING").query_async(&mut conn)).await?;
        Ok(())
    }

    /// Counts a login attempt and fetches its user, in one round trip; see [`crate::throttle`].
    pub async fn login_attempt(
        &self,
        t: &LoginThrottle<'_>,
        now_ms: u64,
    ) -> Result<LoginAttempt, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.login_attempt.key(login_user_key(t.username));
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
        let reply: Vec<redis::Value> = self.call(invocation.invoke_async(&mut conn)).await?;
        parse_login_attempt(reply)
    }

    /// Settles a counted login attempt: `success` clears the username's failures, otherwise
    /// (the password was never checked) the attempt is taken back.
    pub async fn login_settle(
        &self,
        t: &LoginThrottle<'_>,
        success: bool,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.login_settle.key(login_user_key(t.username));
        invocation
            .key(login_addr_key(t.address))
            .arg(if success { "clear" } else { "undo" })
            .arg(if t.username.is_some() { "1" } else { "0" });
        self.call(invocation.invoke_async::<i64>(&mut conn)).await.map(drop)
    }

    /// Counts a registration attempt from `address`; `Some(ms to wait)` past the limit.
    pub async fn register_attempt(
        &self,
        address: &str,
        limits: &Limits,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.register_attempt.key(register_addr_key(address));
        invocation.arg(limits.max_registrations_per_address).arg(millis(limits.register_window));
        let wait: i64 = self.call(invocation.invoke_async(&mut conn)).await?;
        Ok((wait > 0).then(|| u64::try_from(wait).unwrap_or(1)))
    }

    /// Stores a new user; `false` when the username is taken.
    pub async fn create_user(&self, user: &UserRecord, created: u64) -> Result<bool, StoreError> {
        let roles = roles_json(&user.roles)?;
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.create_user.key(user_key(&user.username));
        invocation
            .arg(&user.id)
            .arg(&user.username)
            .arg(user.name.as_deref().unwrap_or(""))
            .arg(&*user.phc)
            .arg(roles)
            .arg(created);
        let created: i64 = self.call(invocation.invoke_async(&mut conn)).await?;
        Ok(created == 1)
    }

    /// The user named `username` (already lowercased), if any.
    pub async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let fields: std::collections::HashMap<String, String> =
            self.call(conn.hgetall(user_key(username))).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let field = |name: &str| {
            fields
                .get(name)
                .cloned()
                .ok_or_else(|| StoreError::Unexpected(format!("user record without `{name}`")))
        };
        let roles: Vec<String> = serde_json::from_str(&field("roles")?)
            .map_err(|_| StoreError::Unexpected("user record with bad `roles`".into()))?;
        let name = field("name")?;
        Ok(Some(UserRecord {
            id: field("id")?,
            username: field("username")?,
            name: (!name.is_empty()).then_some(name),
            phc: Arc::from(field("phc")?),
            roles,
        }))
    }

    /// Replaces a user's roles; `false` when there is no such user.
    pub async fn set_roles(&self, username: &str, roles: &[String]) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.set_roles.key(user_key(username));
        invocation.arg(roles_json(roles)?);
        let done: i64 = self.call(invocation.invoke_async(&mut conn)).await?;
        Ok(done == 1)
    }

    /// Stores a new session and adds it to its user's index (index first: a session is never
    /// out of reach of "logout everywhere").
    pub async fn create_session(&self, new: NewSession<'_>) -> Result<(), StoreError> {
        let data = new.data;
        let sess = sess_key(new.sid);
        let mut pipe = redis::pipe();
        pipe.sadd(usess_key(&data.uid), new.sid.as_str())
            .ignore()
            .pexpire(usess_key(&data.uid), saturating_i64(new.max_age_ms))
            .ignore()
            .hset_multiple(
                &sess,
                &[
                    ("uid", data.uid.as_str()),
                    ("username", data.username.as_str()),
                    ("name", data.name.as_deref().unwrap_or("")),
                    ("roles", roles_json(&data.roles)?.as_str()),
                    ("scope", data.scope.as_str()),
                    ("created_ms", data.created_ms.to_string().as_str()),
                    ("cur", new.token_hash.as_str()),
                    ("prev", ""),
                    ("rotated_ms", "0"),
                    ("succ", ""),
                ],
            )
            .ignore()
            .pexpire(&sess, saturating_i64(new.ttl_ms))
            .ignore();
        let mut conn = self.conn.clone();
        self.call(pipe.query_async::<()>(&mut conn)).await
    }

    /// Runs the rotation script (one round trip, atomic).
    pub async fn rotate(&self, r: Rotation<'_>) -> Result<RotateOutcome, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.rotate.key(sess_key(r.sid));
        invocation
            .key(spent_key(r.sid))
            .arg(r.presented.as_str())
            .arg(r.successor.as_str())
            .arg(r.now_ms)
            .arg(r.grace_ms)
            .arg(r.refresh_ttl_ms)
            .arg(r.max_age_ms)
            .arg(r.sealed_successor);
        let reply: Vec<String> = self.call(invocation.invoke_async(&mut conn)).await?;
        parse_rotation(reply)
    }

    /// Ends the session of the presented token if the token belongs to it; returns its user.
    pub async fn end_session(
        &self,
        sid: &SessionId,
        presented: &TokenHash,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.end_session.key(sess_key(sid));
        invocation.key(spent_key(sid)).arg(presented.as_str());
        self.call(invocation.invoke_async(&mut conn)).await
    }

    /// Drops a session id from its user's index (after the session itself is gone).
    pub async fn forget_session(&self, uid: &str, sid: &SessionId) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.call(conn.srem::<_, _, ()>(usess_key(uid), sid.as_str())).await
    }

    /// Ends every session of user `uid`; returns how many ids were in its index.
    pub async fn end_all_sessions(&self, uid: &str) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        let sids: Vec<String> = self.call(conn.smembers(usess_key(uid))).await?;
        if sids.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for sid in &sids {
            if let Some(sid) = SessionId::parse(sid) {
                pipe.del(&[sess_key(&sid), spent_key(&sid)]).ignore();
            }
            // Remove each id rather than the whole set: a login racing with this keeps its entry.
            pipe.srem(usess_key(uid), sid).ignore();
        }
        self.call(pipe.query_async::<()>(&mut conn)).await?;
        Ok(sids.len())
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
            let fields: Vec<String> = it
                .map(|v| redis::from_redis_value(v).map_err(|_| bad()))
                .collect::<Result<_, _>>()?;
            let [id, username, name, phc, roles] = match <[String; 5]>::try_from(fields) {
                Ok(f) => f,
                Err(f) if f.is_empty() => return Ok(LoginAttempt::Open(None)),
                Err(_) => return Err(bad()),
            };
            let roles: Vec<String> = serde_json::from_str(&roles)
                .map_err(|_| StoreError::Unexpected("user record with bad `roles`".into()))?;
            if phc.is_empty() || username.is_empty() {
                return Err(StoreError::Unexpected("user record without `phc`".into()));
            }
            Ok(LoginAttempt::Open(Some(UserRecord {
                id,
                username,
                name: (!name.is_empty()).then_some(name),
                phc: Arc::from(phc),
                roles,
            })))
        }
        _ => Err(bad()),
    }
}

fn roles_json(roles: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(roles).map_err(|e| StoreError::Unexpected(e.to_string()))
}

fn saturating_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX).max(1)
}

fn parse_rotation(reply: Vec<String>) -> Result<RotateOutcome, StoreError> {
    let bad = || StoreError::Unexpected("malformed rotation reply".into());
    let mut it = reply.into_iter();
    let status = it.next().ok_or_else(bad)?;
    let mut next = || it.next().ok_or_else(bad);
    match status.as_str() {
        "unknown" => Ok(RotateOutcome::Unknown),
        "expired" => Ok(RotateOutcome::Expired { uid: next()? }),
        "reuse" => Ok(RotateOutcome::Reuse { uid: next()? }),
        "rotated" | "replay" => {
            let uid = next()?;
            let username = next()?;
            let name = next()?;
            let roles: Vec<String> = serde_json::from_str(&next()?).map_err(|_| bad())?;
            let scope = next()?;
            let created_ms = next()?.parse().map_err(|_| bad())?;
            let session = SessionData {
                uid,
                username,
                name: (!name.is_empty()).then_some(name),
                roles,
                scope,
                created_ms,
            };
            if status == "rotated" {
                return Ok(RotateOutcome::Rotated { session });
            }
            let sealed_successor = next()?;
            let rotated_ms = next()?.parse().map_err(|_| bad())?;
            Ok(RotateOutcome::Replay { session, sealed_successor, rotated_ms })
        }
        _ => Err(bad()),
    }
}
