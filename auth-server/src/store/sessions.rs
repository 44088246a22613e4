//! Refresh-token sessions: `sess:{<sid>}` hashes and their `spent:{<sid>}` digests, and each
//! user's index of session ids `usess:{<uid>}` (for logout everywhere).

use redis::AsyncCommands as _;

use super::{Store, StoreError, expiry_ms, lua_script, parse_roles, roles_json};
use crate::tokens::{SessionId, TokenHash};

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
    /// Stores a new session and adds it to its user's index (index first: a session is never
    /// out of reach of "logout everywhere").
    pub async fn create_session(&self, new: NewSession<'_>) -> Result<(), StoreError> {
        let data = new.data;
        let sess = sess_key(new.sid);
        let mut pipe = redis::pipe();
        pipe.sadd(usess_key(&data.uid), new.sid.as_str())
            .ignore()
            .pexpire(usess_key(&data.uid), expiry_ms(new.max_age_ms))
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
            .pexpire(&sess, expiry_ms(new.ttl_ms))
            .ignore();
        let mut conn = self.conn();
        self.call(pipe.query_async::<()>(&mut conn)).await
    }

    /// Runs the rotation script (one round trip, atomic).
    pub async fn rotate(&self, r: Rotation<'_>) -> Result<RotateOutcome, StoreError> {
        let mut invocation = lua_script!("rotate.lua").key(sess_key(r.sid));
        invocation
            .key(spent_key(r.sid))
            .arg(r.presented.as_str())
            .arg(r.successor.as_str())
            .arg(r.now_ms)
            .arg(r.grace_ms)
            .arg(r.refresh_ttl_ms)
            .arg(r.max_age_ms)
            .arg(r.sealed_successor);
        let reply: Vec<String> = self.run(&invocation).await?;
        parse_rotation(reply)
    }

    /// Ends the session of the presented token if the token belongs to it; returns its user.
    pub async fn end_session(
        &self,
        sid: &SessionId,
        presented: &TokenHash,
    ) -> Result<Option<String>, StoreError> {
        let mut invocation = lua_script!("end_session.lua").key(sess_key(sid));
        invocation.key(spent_key(sid)).arg(presented.as_str());
        self.run(&invocation).await
    }

    /// Drops a session id from its user's index (after the session itself is gone).
    pub async fn forget_session(&self, uid: &str, sid: &SessionId) -> Result<(), StoreError> {
        let mut conn = self.conn();
        self.call(conn.srem::<_, _, ()>(usess_key(uid), sid.as_str())).await
    }

    /// Ends every session of user `uid`; returns how many ids were in its index.
    pub async fn end_all_sessions(&self, uid: &str) -> Result<usize, StoreError> {
        let mut conn = self.conn();
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
            let roles = parse_roles(&next()?)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_ms;
    use crate::store::test_util;
    use crate::tokens::RefreshToken;

    const DAY_MS: u64 = 86_400_000;

    fn data() -> SessionData {
        SessionData {
            uid: "uid-1".into(),
            username: "alice".into(),
            name: None,
            roles: vec!["user".into()],
            scope: "articles:read".into(),
            created_ms: now_ms(),
        }
    }

    async fn login(store: &Store, data: &SessionData) -> RefreshToken {
        let token = RefreshToken::generate().unwrap();
        let new = NewSession {
            sid: &token.sid(),
            token_hash: &token.hash(),
            data,
            ttl_ms: DAY_MS,
            max_age_ms: 30 * DAY_MS,
        };
        store.create_session(new).await.unwrap();
        token
    }

    async fn rotate(store: &Store, presented: &RefreshToken, grace_ms: u64) -> RotateOutcome {
        let successor = presented.successor().unwrap();
        store
            .rotate(Rotation {
                sid: &presented.sid(),
                presented: &presented.hash(),
                successor: &successor.hash(),
                sealed_successor: "sealed",
                now_ms: now_ms(),
                grace_ms,
                refresh_ttl_ms: DAY_MS,
                max_age_ms: 30 * DAY_MS,
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_session_rotates_replays_within_the_grace_and_dies_on_reuse() {
        let (_redis, store) = test_util::store();
        let data = data();
        let first = login(&store, &data).await;
        assert_eq!(
            rotate(&store, &first, 10_000).await,
            RotateOutcome::Rotated { session: data.clone() }
        );
        match rotate(&store, &first, 10_000).await {
            RotateOutcome::Replay { session, sealed_successor, .. } => {
                assert_eq!(session, data);
                assert_eq!(sealed_successor, "sealed");
            }
            other => panic!("{other:?}"),
        }
        // Without a grace, the same token is reuse: the session is gone.
        assert_eq!(rotate(&store, &first, 0).await, RotateOutcome::Reuse { uid: "uid-1".into() });
        assert_eq!(rotate(&store, &first, 10_000).await, RotateOutcome::Unknown);
        let stranger = RefreshToken::generate().unwrap();
        assert_eq!(rotate(&store, &stranger, 10_000).await, RotateOutcome::Unknown);
    }

    #[tokio::test]
    async fn only_a_token_of_the_session_ends_it_and_logout_everywhere_ends_them_all() {
        let (_redis, store) = test_util::store();
        let data = data();
        let one = login(&store, &data).await;
        let two = login(&store, &data).await;
        let forged = RefreshToken::parse(&format!("{}{}", one.sid(), "A".repeat(42))).unwrap();
        assert_eq!(store.end_session(&one.sid(), &forged.hash()).await.unwrap(), None);
        assert_eq!(
            store.end_session(&one.sid(), &one.hash()).await.unwrap().as_deref(),
            Some("uid-1")
        );
        assert_eq!(rotate(&store, &one, 0).await, RotateOutcome::Unknown);
        store.forget_session("uid-1", &one.sid()).await.unwrap();

        assert_eq!(store.end_all_sessions("uid-1").await.unwrap(), 1);
        assert_eq!(rotate(&store, &two, 0).await, RotateOutcome::Unknown);
        assert_eq!(store.end_all_sessions("uid-1").await.unwrap(), 0);
    }
}
