//! Refresh-token sessions: `sess:{<sid>}` hashes and their `spent:{<sid>}` digests, and each
//! user's index of session ids `usess:{<uid>}` and logout-everywhere generation `ugen:{<uid>}`.

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
fn ugen_key(uid: &str) -> String {
    format!("ugen:{{{uid}}}")
}

impl Store {
    /// Stores a new session, in three single-slot steps: (1) its sid joins the user's index,
    /// which returns the user's logout-everywhere generation; (2) the session hash and its TTL,
    /// atomically; (3) the generation is read again. When a logout everywhere ran in between
    /// (the generation changed), the session is deleted and `false` returned: a login racing
    /// a logout everywhere does not survive it. ARCHITECTURE.md has the argument.
    pub async fn create_session(&self, new: NewSession<'_>) -> Result<bool, StoreError> {
        let uid = &new.data.uid;
        let generation = self.index_session(uid, new.sid, new.max_age_ms).await?;
        self.store_session(&new).await?;
        if self.generation_is(uid, generation).await? {
            return Ok(true);
        }
        self.delete_sessions(std::slice::from_ref(new.sid)).await?;
        self.forget_session(uid, new.sid).await?;
        Ok(false)
    }

    /// Login step 1: the sid joins the index; returns the user's generation.
    async fn index_session(
        &self,
        uid: &str,
        sid: &SessionId,
        max_age_ms: u64,
    ) -> Result<i64, StoreError> {
        let mut index = lua_script!("index_session.lua").key(usess_key(uid));
        index.key(ugen_key(uid)).arg(sid.as_str()).arg(expiry_ms(max_age_ms));
        self.run(&index).await
    }

    /// Login step 2: the session hash with its TTL.
    async fn store_session(&self, new: &NewSession<'_>) -> Result<(), StoreError> {
        let data = new.data;
        let mut create = lua_script!("create_session.lua").key(sess_key(new.sid));
        create
            .arg(&data.uid)
            .arg(&data.username)
            .arg(data.name.as_deref().unwrap_or(""))
            .arg(roles_json(&data.roles)?)
            .arg(&data.scope)
            .arg(data.created_ms)
            .arg(new.token_hash.as_str())
            .arg(expiry_ms(new.ttl_ms));
        self.run::<i64>(&create).await.map(drop)
    }

    /// Login step 3: whether the user's generation is still `generation`.
    async fn generation_is(&self, uid: &str, generation: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let now: Option<i64> = self.call(conn.get(ugen_key(uid))).await?;
        Ok(now.unwrap_or(0) == generation)
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

    /// Ends every session of user `uid`, in three single-slot steps: (1) bump the user's
    /// generation and read the index; (2) delete each indexed session; (3) remove those ids
    /// from the index (each id rather than the whole set: a login racing this keeps its entry
    /// until its own check drops it). Returns how many ids were in the index.
    pub async fn end_all_sessions(&self, uid: &str, max_age_ms: u64) -> Result<usize, StoreError> {
        let usess = usess_key(uid);
        let mut bump = lua_script!("end_all_sessions.lua").key(&usess);
        bump.key(ugen_key(uid)).arg(expiry_ms(max_age_ms));
        let ids: Vec<String> = self.run(&bump).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let sids: Vec<SessionId> = ids.iter().filter_map(|id| SessionId::parse(id)).collect();
        self.delete_sessions(&sids).await?;
        let mut conn = self.conn();
        self.call(conn.srem::<_, _, ()>(&usess, &ids)).await?;
        Ok(ids.len())
    }

    /// Deletes sessions whatever their tokens: one `DEL` per session (its keys share a slot).
    async fn delete_sessions(&self, sids: &[SessionId]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for sid in sids {
            pipe.del(&[sess_key(sid), spent_key(sid)]).ignore();
        }
        let mut conn = self.conn();
        self.call(pipe.query_async::<()>(&mut conn)).await
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
        assert!(store.create_session(new).await.unwrap());
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

        assert_eq!(store.end_all_sessions("uid-1", DAY_MS).await.unwrap(), 1);
        assert_eq!(rotate(&store, &two, 0).await, RotateOutcome::Unknown);
        assert_eq!(store.end_all_sessions("uid-1", DAY_MS).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_login_racing_a_logout_everywhere_does_not_survive_it() {
        let (_redis, store) = test_util::store();
        let data = data();
        // Logout everywhere between the index step and the session: the check drops it.
        for racing_before_the_session in [true, false] {
            let token = RefreshToken::generate().unwrap();
            let new = NewSession {
                sid: &token.sid(),
                token_hash: &token.hash(),
                data: &data,
                ttl_ms: DAY_MS,
                max_age_ms: 30 * DAY_MS,
            };
            let generation = store.index_session(&data.uid, new.sid, DAY_MS).await.unwrap();
            if racing_before_the_session {
                assert_eq!(store.end_all_sessions(&data.uid, DAY_MS).await.unwrap(), 1);
                store.store_session(&new).await.unwrap();
            } else {
                store.store_session(&new).await.unwrap();
                assert_eq!(store.end_all_sessions(&data.uid, DAY_MS).await.unwrap(), 1);
            }
            assert!(!store.generation_is(&data.uid, generation).await.unwrap());
        }
        // A login after the logout everywhere keeps its session.
        let after = login(&store, &data).await;
        assert!(matches!(rotate(&store, &after, 0).await, RotateOutcome::Rotated { .. }));
    }
}
