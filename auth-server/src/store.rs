//! Every Redis command and Lua script of the auth server.
//!
//! Keys (the `{...}` hash tag puts the keys one script touches in one cluster slot):
//! - `user:{<username>}` hash: `id`, `username`, `name`, `phc`, `roles` (JSON array), `created`;
//! - `sess:{<sid>}` hash: `uid`, `username`, `name`, `roles`, `scope`, `created_ms`, `cur`
//!   (hash of the current refresh token), `prev` (hash of the one rotated last), `rotated_ms`,
//!   `succ` (the current token, encrypted under a key derived from `prev`);
//! - `spent:{<sid>}` set: hashes of every refresh token rotated away in the session;
//! - `usess:{<uid>}` set: the user's session ids (for logout everywhere; stale ids are harmless).
//!
//! Every call has a deadline; past it, or when Redis cannot be reached, the caller gets
//! [`StoreError::Unavailable`] and answers 503, never a verdict on the token.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, ErrorKind, RedisError, ServerErrorKind};

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

struct Scripts {
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
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {:?}", self.timeout))),
        }
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = self.call(redis::cmd("PING").query_async(&mut conn)).await?;
        Ok(())
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
