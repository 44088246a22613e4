//! Refresh-token sessions: `sess:{<sid>}` hashes and their `spent:{<sid>}` digests, and each
//! user's index of session ids `usess:{<uid>}` and logout-everywhere generation `ugen:{<uid>}`.
//!
//! What one user can make Redis hold is bounded: a session keeps the last
//! [`SPENT_DIGESTS_KEPT`] spent digests and rotates at most a configured number of times per
//! window; a user has at most [`SESSIONS_PER_USER`] sessions (a login past it ends the oldest).

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

/// A new session to store (its creation time is Redis's, see [`Store::create_session`]).
#[derive(Debug)]
pub struct NewSession<'a> {
    /// Its id.
    pub sid: &'a SessionId,
    /// Hash of its first refresh token.
    pub token_hash: &'a TokenHash,
    /// User id.
    pub uid: &'a str,
    /// Username.
    pub username: &'a str,
    /// Display name.
    pub name: Option<&'a str>,
    /// Roles at login.
    pub roles: &'a [String],
    /// Granted scope.
    pub scope: &'a str,
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
    /// Reuse grace in ms (0: none).
    pub grace_ms: u64,
    /// Sliding idle lifetime in ms.
    pub refresh_ttl_ms: u64,
    /// Absolute lifetime in ms.
    pub max_age_ms: u64,
    /// Rotations allowed per window.
    pub max_rotations: u32,
    /// The window of `max_rotations`, ms.
    pub rotation_window_ms: u64,
}

/// What the rotation script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The presented token was current: the successor is now current.
    Rotated {
        /// The session.
        session: SessionData,
        /// When (Redis time, ms since the epoch): the successor's access token's `iat`.
        rotated_ms: u64,
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
    /// The session rotated as often as its window allows; nothing changed (the presented
    /// token stays current).
    Limited {
        /// Until the window ends, ms.
        retry_ms: u64,
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

/// How many spent refresh-token digests a session keeps for reuse detection: a spent token
/// among the last this many rotations is detected as reuse (and revokes the session); an older
/// one is only unknown (`invalid_grant` without a revocation). See docs/hardening.md.
pub const SPENT_DIGESTS_KEPT: u32 = 64;

/// How many sessions one user may have; a login past it ends the user's oldest session.
pub const SESSIONS_PER_USER: u32 = 100;

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSession {
    /// Its creation time (Redis time, ms since the epoch).
    pub created_ms: u64,
    /// The user's oldest sessions, ended to stay within [`SESSIONS_PER_USER`].
    pub evicted: Vec<SessionId>,
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
    /// which returns the user's logout-everywhere generation and the oldest sessions past
    /// [`SESSIONS_PER_USER`]; (2) the session hash and its TTL, atomically, stamped with Redis's
    /// time; (3) the generation is read again. When a logout everywhere ran in between (the
    /// generation changed), the session is deleted and `None` returned: a login racing a logout
    /// everywhere does not survive it. Then the evicted sessions are ended and dropped from the
    /// index. ARCHITECTURE.md has the argument.
    pub async fn create_session(
        &self,
        new: NewSession<'_>,
    ) -> Result<Option<CreatedSession>, StoreError> {
        let (generation, evicted) = self.index_session(new.uid, new.sid, new.max_age_ms).await?;
        let created_ms = self.store_session(&new).await?;
        if !self.generation_is(new.uid, generation).await? {
            self.delete_sessions(std::slice::from_ref(new.sid)).await?;
            self.forget_sessions(new.uid, std::slice::from_ref(new.sid)).await?;
            return Ok(None);
        }
        if !evicted.is_empty() {
            self.delete_sessions(&evicted).await?;
            self.forget_sessions(new.uid, &evicted).await?;
        }
        Ok(Some(CreatedSession { created_ms, evicted }))
    }

    /// Login step 1: the sid joins the index; returns the user's generation and the sids past
    /// the per-user limit, oldest first.
    async fn index_session(
        &self,
        uid: &str,
        sid: &SessionId,
        max_age_ms: u64,
    ) -> Result<(i64, Vec<SessionId>), StoreError> {
        let mut index = lua_script!("index_session.lua").key(usess_key(uid));
        index
            .key(ugen_key(uid))
            .arg(sid.as_str())
            .arg(expiry_ms(max_age_ms))
            .arg(SESSIONS_PER_USER);
        let reply: Vec<redis::Value> = self.run(&index).await?;
        let bad = || StoreError::Unexpected("malformed session index reply".into());
        let mut it = reply.into_iter();
        let generation: i64 =
            it.next().and_then(|v| redis::from_redis_value(v).ok()).ok_or_else(bad)?;
        let evicted = it
            .map(|v| redis::from_redis_value::<String>(v).map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        // An id that does not parse is not a session of ours: nothing to end.
        Ok((generation, evicted.iter().filter_map(|id| SessionId::parse(id)).collect()))
    }

    /// Login step 2: the session hash with its TTL; returns its creation time.
    async fn store_session(&self, new: &NewSession<'_>) -> Result<u64, StoreError> {
        let mut create = lua_script!("create_session.lua").key(sess_key(new.sid));
        create
            .arg(new.uid)
            .arg(new.username)
            .arg(new.name.unwrap_or(""))
            .arg(roles_json(new.roles)?)
            .arg(new.scope)
            .arg(new.token_hash.as_str())
            .arg(expiry_ms(new.ttl_ms));
        let created: String = self.run(&create).await?;
        created.parse().map_err(|_| StoreError::Unexpected("malformed session time".into()))
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
            .arg(r.grace_ms)
            .arg(r.refresh_ttl_ms)
            .arg(r.max_age_ms)
            .arg(r.sealed_successor)
            .arg(SPENT_DIGESTS_KEPT)
            .arg(r.max_rotations)
            .arg(expiry_ms(r.rotation_window_ms));
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
        self.forget_sessions(uid, std::slice::from_ref(sid)).await
    }

    async fn forget_sessions(&self, uid: &str, sids: &[SessionId]) -> Result<(), StoreError> {
        let ids: Vec<&str> = sids.iter().map(SessionId::as_str).collect();
        let mut conn = self.conn();
        self.call(conn.zrem::<_, _, ()>(usess_key(uid), &ids)).await
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
        self.call(conn.zrem::<_, _, ()>(&usess, &ids)).await?;
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
        "limited" => {
            let retry_ms: i64 = next()?.parse().map_err(|_| bad())?;
            Ok(RotateOutcome::Limited { retry_ms: u64::try_from(retry_ms).unwrap_or(1).max(1) })
        }
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
                let rotated_ms = next()?.parse().map_err(|_| bad())?;
                return Ok(RotateOutcome::Rotated { session, rotated_ms });
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
    use crate::store::test_util;
    use crate::tokens::RefreshToken;

    const DAY_MS: u64 = 86_400_000;
    const UID: &str = "uid-1";

    fn roles() -> Vec<String> {
        vec!["user".into()]
    }

    fn new_session<'a>(
        sid: &'a SessionId,
        hash: &'a TokenHash,
        roles: &'a [String],
    ) -> NewSession<'a> {
        NewSession {
            sid,
            token_hash: hash,
            uid: UID,
            username: "alice",
            name: None,
            roles,
            scope: "articles:read",
            ttl_ms: DAY_MS,
            max_age_ms: 30 * DAY_MS,
        }
    }

    /// Logs in: a new session; returns its first token and creation time.
    async fn login(store: &Store) -> (RefreshToken, u64) {
        let token = RefreshToken::generate().unwrap();
        let (sid, hash, roles) = (token.sid(), token.hash(), roles());
        let created = store.create_session(new_session(&sid, &hash, &roles)).await.unwrap();
        (token, created.expect("no logout everywhere raced").created_ms)
    }

    async fn rotate_with(
        store: &Store,
        presented: &RefreshToken,
        grace_ms: u64,
        max_age_ms: u64,
    ) -> RotateOutcome {
        let successor = presented.successor().unwrap();
        store
            .rotate(Rotation {
                sid: &presented.sid(),
                presented: &presented.hash(),
                successor: &successor.hash(),
                sealed_successor: "sealed",
                grace_ms,
                refresh_ttl_ms: DAY_MS,
                max_age_ms,
                max_rotations: 1_000_000,
                rotation_window_ms: 3_600_000,
            })
            .await
            .unwrap()
    }

    async fn rotate(store: &Store, presented: &RefreshToken, grace_ms: u64) -> RotateOutcome {
        rotate_with(store, presented, grace_ms, 30 * DAY_MS).await
    }

    /// Redis's clock, in ms.
    fn redis_now_ms(redis: &test_support::RedisServer) -> u64 {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut redis.connection()).unwrap();
        secs * 1000 + micros / 1000
    }

    #[tokio::test]
    async fn a_session_rotates_replays_within_the_grace_and_dies_on_reuse() {
        let (_redis, store) = test_util::store();
        let (first, created_ms) = login(&store).await;
        let RotateOutcome::Rotated { session, rotated_ms } = rotate(&store, &first, 10_000).await
        else {
            panic!("the first token is current")
        };
        assert_eq!(
            session,
            SessionData {
                uid: UID.into(),
                username: "alice".into(),
                name: None,
                roles: roles(),
                scope: "articles:read".into(),
                created_ms,
            }
        );
        assert!(rotated_ms >= created_ms);
        match rotate(&store, &first, 10_000).await {
            RotateOutcome::Replay { session: again, sealed_successor, rotated_ms: when } => {
                assert_eq!(again, session);
                assert_eq!(sealed_successor, "sealed");
                assert_eq!(when, rotated_ms, "the replay carries the rotation's time");
            }
            other => panic!("{other:?}"),
        }
        // Without a grace, the same token is reuse: the session is gone.
        assert_eq!(rotate(&store, &first, 0).await, RotateOutcome::Reuse { uid: UID.into() });
        assert_eq!(rotate(&store, &first, 10_000).await, RotateOutcome::Unknown);
        let stranger = RefreshToken::generate().unwrap();
        assert_eq!(rotate(&store, &stranger, 10_000).await, RotateOutcome::Unknown);
    }

    #[tokio::test]
    async fn only_a_token_of_the_session_ends_it_and_logout_everywhere_ends_them_all() {
        let (_redis, store) = test_util::store();
        let (one, _) = login(&store).await;
        let (two, _) = login(&store).await;
        let forged = RefreshToken::parse(&format!("{}{}", one.sid(), "A".repeat(42))).unwrap();
        assert_eq!(store.end_session(&one.sid(), &forged.hash()).await.unwrap(), None);
        assert_eq!(store.end_session(&one.sid(), &one.hash()).await.unwrap().as_deref(), Some(UID));
        assert_eq!(rotate(&store, &one, 0).await, RotateOutcome::Unknown);
        store.forget_session(UID, &one.sid()).await.unwrap();

        assert_eq!(store.end_all_sessions(UID, DAY_MS).await.unwrap(), 1);
        assert_eq!(rotate(&store, &two, 0).await, RotateOutcome::Unknown);
        assert_eq!(store.end_all_sessions(UID, DAY_MS).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_login_racing_a_logout_everywhere_does_not_survive_it() {
        let (_redis, store) = test_util::store();
        // Logout everywhere between the index step and the session, or between the session
        // and the check: either way the check sees it.
        for racing_before_the_session in [true, false] {
            let token = RefreshToken::generate().unwrap();
            let (sid, hash, roles) = (token.sid(), token.hash(), roles());
            let new = new_session(&sid, &hash, &roles);
            let (generation, _) = store.index_session(UID, new.sid, DAY_MS).await.unwrap();
            if racing_before_the_session {
                assert_eq!(store.end_all_sessions(UID, DAY_MS).await.unwrap(), 1);
                store.store_session(&new).await.unwrap();
            } else {
                store.store_session(&new).await.unwrap();
                assert_eq!(store.end_all_sessions(UID, DAY_MS).await.unwrap(), 1);
            }
            assert!(!store.generation_is(UID, generation).await.unwrap());
        }
        // A login after the logout everywhere keeps its session.
        let (after, _) = login(&store).await;
        assert!(matches!(rotate(&store, &after, 0).await, RotateOutcome::Rotated { .. }));
    }

    #[tokio::test]
    async fn a_session_has_its_ttl_from_the_start() {
        let (redis, store) = test_util::store();
        let (token, _) = login(&store).await;
        let ttl: i64 =
            redis::cmd("PTTL").arg(sess_key(&token.sid())).query(&mut redis.connection()).unwrap();
        assert!((DAY_MS as i64 - 5_000..=DAY_MS as i64).contains(&ttl), "{ttl}");
    }

    #[tokio::test]
    async fn session_times_are_redis_time_whatever_the_callers_clock() {
        let (redis, store) = test_util::store();
        let before = redis_now_ms(&redis);
        let (token, created_ms) = login(&store).await;
        let RotateOutcome::Rotated { rotated_ms, .. } = rotate(&store, &token, 10_000).await else {
            panic!("current")
        };
        let after = redis_now_ms(&redis);
        assert!((before..=after).contains(&created_ms), "{before} {created_ms} {after}");
        assert!((created_ms..=after).contains(&rotated_ms));

        // A caller with a clock far off (as an old client passing its time would): the script
        // takes no time argument, so a trailing one changes nothing: the replay is on time and
        // the session not expired, by Redis's clock.
        let successor = token.successor().unwrap();
        for skewed_now_ms in [0_u64, 4_102_444_800_000] {
            let mut raw = lua_script!("rotate.lua").key(sess_key(&token.sid()));
            raw.key(spent_key(&token.sid()))
                .arg(token.hash().as_str())
                .arg(successor.hash().as_str())
                .arg(10_000)
                .arg(DAY_MS)
                .arg(30 * DAY_MS)
                .arg("sealed")
                .arg(SPENT_DIGESTS_KEPT)
                .arg(1_000_000)
                .arg(3_600_000)
                .arg(skewed_now_ms);
            let reply: Vec<String> = store.run(&raw).await.unwrap();
            assert_eq!(reply[0], "replay", "{skewed_now_ms}: {reply:?}");
        }
        // Max age on Redis's clock: a session older than the max age is expired.
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let (fresh, _) = login(&store).await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert_eq!(
            rotate_with(&store, &fresh, 0, 20).await,
            RotateOutcome::Expired { uid: UID.into() }
        );
    }

    async fn rotation_with(
        store: &Store,
        presented: &RefreshToken,
        max_rotations: u32,
    ) -> (RotateOutcome, RefreshToken) {
        let successor = presented.successor().unwrap();
        let outcome = store
            .rotate(Rotation {
                sid: &presented.sid(),
                presented: &presented.hash(),
                successor: &successor.hash(),
                sealed_successor: "sealed",
                grace_ms: 10_000,
                refresh_ttl_ms: DAY_MS,
                max_age_ms: 30 * DAY_MS,
                max_rotations,
                rotation_window_ms: 3_600_000,
            })
            .await
            .unwrap();
        (outcome, successor)
    }

    fn memory_usage(redis: &test_support::RedisServer, sid: &SessionId) -> u64 {
        let mut conn = redis.connection();
        [sess_key(sid), spent_key(sid)]
            .iter()
            .map(|key| {
                let bytes: Option<u64> =
                    redis::cmd("MEMORY").arg("USAGE").arg(key).query(&mut conn).unwrap();
                bytes.unwrap_or(0)
            })
            .sum()
    }

    #[tokio::test]
    async fn ten_thousand_rotations_leave_a_bounded_footprint_and_recent_reuse_detected() {
        let (redis, store) = test_util::store();
        let (first, _) = login(&store).await;
        let sid = first.sid();
        let mut chain = vec![first];
        let mut footprint_at_100 = 0;
        for i in 1..=10_000 {
            let (outcome, next) = rotation_with(&store, &chain[chain.len() - 1], u32::MAX).await;
            assert!(matches!(outcome, RotateOutcome::Rotated { .. }), "rotation {i}: {outcome:?}");
            chain.push(next);
            if chain.len() > SPENT_DIGESTS_KEPT as usize + 2 {
                chain.remove(0);
            }
            if i == 100 {
                footprint_at_100 = memory_usage(&redis, &sid);
            }
        }
        let footprint = memory_usage(&redis, &sid);
        let spent: u64 =
            redis::cmd("ZCARD").arg(spent_key(&sid)).query(&mut redis.connection()).unwrap();
        assert_eq!(spent, u64::from(SPENT_DIGESTS_KEPT));
        // Unbounded, 10 000 digests of 43 characters were over 500 KB.
        assert!(footprint <= 8 * 1024, "10 000 rotations hold {footprint} bytes");
        eprintln!(
            "one session after 100 rotations: {footprint_at_100} B, after 10 000: {footprint} B"
        );

        // The oldest digest kept still counts as reuse; one older than that is only unknown.
        // chain = [t(n-65), t(n-64), ..., t(n)], t(n) current.
        let too_old = chain[0].clone();
        let oldest_kept = chain[1].clone();
        assert_eq!(rotate(&store, &too_old, 0).await, RotateOutcome::Unknown);
        assert_eq!(rotate(&store, &oldest_kept, 0).await, RotateOutcome::Reuse { uid: UID.into() });
    }

    #[tokio::test]
    async fn past_the_rotation_limit_nothing_changes_and_replays_are_not_counted() {
        let (_redis, store) = test_util::store();
        let (a, _) = login(&store).await;
        let (outcome, b) = rotation_with(&store, &a, 2).await;
        assert!(matches!(outcome, RotateOutcome::Rotated { .. }));
        for _ in 0..5 {
            let (outcome, _) = rotation_with(&store, &a, 2).await;
            assert!(matches!(outcome, RotateOutcome::Replay { .. }), "{outcome:?}");
        }
        let (outcome, c) = rotation_with(&store, &b, 2).await;
        assert!(
            matches!(outcome, RotateOutcome::Rotated { .. }),
            "replays were counted: {outcome:?}"
        );
        let (outcome, _) = rotation_with(&store, &c, 2).await;
        let RotateOutcome::Limited { retry_ms } = outcome else { panic!("{outcome:?}") };
        assert!((3_590_000..=3_600_000).contains(&retry_ms), "{retry_ms}");
        // The refused token is still the current one: with a higher limit it rotates.
        let (outcome, _) = rotation_with(&store, &c, 3).await;
        assert!(matches!(outcome, RotateOutcome::Rotated { .. }), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_login_past_the_sessions_per_user_ends_the_oldest() {
        let (_redis, store) = test_util::store();
        let (oldest, _) = login(&store).await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let (second, _) = login(&store).await;
        for _ in 2..SESSIONS_PER_USER {
            login(&store).await;
        }
        let token = RefreshToken::generate().unwrap();
        let (sid, hash, roles) = (token.sid(), token.hash(), roles());
        let created =
            store.create_session(new_session(&sid, &hash, &roles)).await.unwrap().unwrap();
        assert_eq!(created.evicted, [oldest.sid()]);
        assert_eq!(rotate(&store, &oldest, 0).await, RotateOutcome::Unknown);
        assert!(matches!(rotate(&store, &second, 0).await, RotateOutcome::Rotated { .. }));
        assert_eq!(store.end_all_sessions(UID, DAY_MS).await.unwrap(), SESSIONS_PER_USER as usize);
    }

    #[tokio::test]
    async fn a_full_redis_is_unavailable_and_changes_nothing() {
        let (redis, store) = test_util::store();
        let (token, _) = login(&store).await;
        let mut conn = redis.connection();
        let config = |conn: &mut redis::Connection, name: &str, value: &str| {
            redis::cmd("CONFIG").arg("SET").arg(name).arg(value).query::<()>(conn).unwrap();
        };
        config(&mut conn, "maxmemory-policy", "noeviction");
        config(&mut conn, "maxmemory", "1");
        let successor = token.successor().unwrap();
        let full = store
            .rotate(Rotation {
                sid: &token.sid(),
                presented: &token.hash(),
                successor: &successor.hash(),
                sealed_successor: "sealed",
                grace_ms: 10_000,
                refresh_ttl_ms: DAY_MS,
                max_age_ms: 30 * DAY_MS,
                max_rotations: 10,
                rotation_window_ms: 3_600_000,
            })
            .await;
        assert!(
            matches!(&full, Err(StoreError::Unavailable(m)) if m.contains("memory")),
            "{full:?}"
        );
        let fresh = RefreshToken::generate().unwrap();
        let (sid, hash, roles) = (fresh.sid(), fresh.hash(), roles());
        let login = store.create_session(new_session(&sid, &hash, &roles)).await;
        assert!(matches!(login, Err(StoreError::Unavailable(_))), "{login:?}");

        config(&mut conn, "maxmemory", "0");
        assert!(
            matches!(rotate(&store, &token, 0).await, RotateOutcome::Rotated { .. }),
            "the refused rotation changed nothing"
        );
    }
}
