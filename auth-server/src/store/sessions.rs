//! Refresh-token sessions: `sess:{<sid>}` hashes and their `spent:{<sid>}` digests, and each
//! user's index of session ids `usess:{<uid>}` and logout-everywhere generation `ugen:{<uid>}`.
//!
//! A session ends in ordered single-slot steps (ARCHITECTURE.md has the argument for each
//! path): (1) it is **marked** revoked in its slot ([`Store::mark_session`], or the rotation
//! script on reuse), which refuses every token of it from then on and yields `until`; (2) it is
//! **published** on the revocation list; (3) its keys are **deleted**; (4) its id leaves the
//! user's index ([`Store::end_marked`] runs 2–4). A failure after (1) leaves a session that
//! refuses its tokens and is published again when one of them is presented.
//!
//! What one user can make Redis hold is bounded: a session keeps the last
//! [`SPENT_DIGESTS_KEPT`] spent digests and rotates at most a configured number of times per
//! window; a user has at most [`SESSIONS_PER_USER`] sessions (a login past it ends the oldest).
//!
//! Why one file (~570 lines of code, half of them argument lists and reply parsers of the
//! scripts): the session's keys, its index and the four ending steps are one key layout, and
//! each script's arguments must match the `.lua` header next to the call; split by operation,
//! the key names and the ending order would have to be read across files.

use std::time::Duration;

use super::revocations::{Revoked, SidDigest, VERIFIER_LEEWAY_SECS, retention};
use super::{Retry, Store, StoreError, expiry_ms, lua_script, parse_roles, roles_json};
use crate::clock::millis;
use crate::tokens::{SessionId, TokenHash};

/// How much before its caller gives up a rotation script stops acting ([`Store::rotate`]): more
/// than the time between the `TIME` reply and sending the script, which starts the deadline.
const LATE_MARGIN_MS: u64 = 150;

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
    /// The `User-Agent` sent at login, at most [`USER_AGENT_MAX_CHARS`] characters.
    pub user_agent: Option<&'a str>,
    /// The client's network at login (a /24 or /48, never the full address).
    pub network: Option<&'a str>,
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
    /// The access-token lifetime (for `until` when the rotation detects reuse).
    pub access_ttl: Duration,
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
    /// A spent token: the session is marked revoked; the caller publishes it, then deletes it.
    Reuse(Marked),
    /// A token of a session marked revoked whose end did not complete: publish it again.
    Revoked(Marked),
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

/// The longest `User-Agent` a session keeps (characters; a longer one is cut).
pub const USER_AGENT_MAX_CHARS: usize = 256;

/// Who may end a session (checked in its slot by `mark_session.lua`).
#[derive(Debug, Clone, Copy)]
pub enum EndBy<'a> {
    /// The holder of one of its refresh tokens (current, just rotated, or a kept spent one).
    Token(&'a TokenHash),
    /// Its owner, by user id (a verified access token's `sub`, or an operator command).
    Owner(&'a str),
}

/// A session marked revoked (step 1 done): what steps 2–4 need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    /// The session.
    pub sid: SessionId,
    /// Its user.
    pub uid: String,
    /// Unix seconds: the newest `exp` of its access tokens + [`VERIFIER_LEEWAY_SECS`].
    pub until: u64,
}

impl Marked {
    /// Its entry on the revocation list.
    pub fn entry(&self) -> Revoked {
        Revoked { sid_sha256: SidDigest::of(&self.sid).as_str().to_owned(), until: self.until }
    }
}

/// The step of [`Store::end_marked`] that failed; the earlier ones are done.
#[derive(Debug, thiserror::Error)]
pub enum EndFailure {
    /// Step 2: nothing published, nothing deleted (the sessions stay marked).
    #[error("publishing the revocations: {0}")]
    Publish(StoreError),
    /// Step 3: published, not (all) deleted (they stay marked until deleted or expired).
    #[error("deleting published sessions: {0}")]
    Delete(StoreError),
}

impl From<EndFailure> for StoreError {
    fn from(e: EndFailure) -> Self {
        match e {
            EndFailure::Publish(e) | EndFailure::Delete(e) => e,
        }
    }
}

/// What [`Store::end_marked`] did.
#[derive(Debug, Default)]
pub struct Ended {
    /// Entries on the list after the publication (`None`: nothing to publish).
    pub list_size: Option<u64>,
    /// Sessions deleted now (not those a concurrent end deleted first).
    pub deleted: usize,
    /// Step 4 failed: the ids are left in their index (harmless: a stale id costs a `DEL` of
    /// a missing key later).
    pub stale_index: Option<StoreError>,
}

/// A live session, as the inventory shows it (times in ms since the epoch, Redis time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session.
    pub sid: SessionId,
    /// Login time.
    pub created_ms: u64,
    /// The login or the last rotation.
    pub last_used_ms: u64,
    /// When it ends if not refreshed (the key's TTL).
    pub expires_ms: u64,
    /// The `User-Agent` at login.
    pub user_agent: Option<String>,
    /// The client network at login.
    pub network: Option<String>,
}

/// What the bearer routes find of an access token's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// Live, and the user's.
    Live,
    /// Gone, or not the user's.
    Ended,
    /// Marked revoked, its end not complete (publish it again).
    Marked(Marked),
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSession {
    /// Its creation time (Redis time, ms since the epoch).
    pub created_ms: u64,
    /// The user's oldest sessions past [`SESSIONS_PER_USER`], which the caller ends (marked,
    /// published, deleted, like any other end) to stay within the limit.
    pub evicted: Vec<SessionId>,
}

fn parse_marked(sid: &SessionId, reply: Option<Vec<String>>) -> Result<Option<Marked>, StoreError> {
    let Some(reply) = reply else { return Ok(None) };
    let [uid, until]: [String; 2] =
        reply.try_into().map_err(|_| StoreError::Unexpected("malformed mark reply".into()))?;
    let until =
        until.parse().map_err(|_| StoreError::Unexpected("malformed revocation time".into()))?;
    Ok(Some(Marked { sid: sid.clone(), uid, until }))
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
    /// everywhere does not survive it (no token of it was handed out: nothing to publish).
    /// The caller ends the evicted sessions. ARCHITECTURE.md has the argument.
    pub async fn create_session(
        &self,
        new: NewSession<'_>,
    ) -> Result<Option<CreatedSession>, StoreError> {
        let store = self.pinned().await?;
        let (generation, evicted) = store.index_session(new.uid, new.sid, new.max_age_ms).await?;
        let created_ms = store.store_session(&new).await?;
        if !store.generation_is(new.uid, generation).await? {
            store.drop_unissued_session(new.uid, new.sid).await?;
            return Ok(None);
        }
        // Both the session and its index entry must survive a failover (one node each in a
        // Cluster, possibly the same).
        let (session, index) = (sess_key(new.sid), usess_key(new.uid));
        tokio::try_join!(store.replicate(&session), store.replicate(&index))?;
        Ok(Some(CreatedSession { created_ms, evicted }))
    }

    /// Deletes a session no token was handed out of (a login that lost a race): nothing to
    /// publish.
    pub async fn drop_unissued_session(
        &self,
        uid: &str,
        sid: &SessionId,
    ) -> Result<(), StoreError> {
        self.delete_sessions(std::slice::from_ref(sid)).await?;
        self.forget_sessions(uid, std::slice::from_ref(sid)).await
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
            .arg(expiry_ms(new.ttl_ms))
            .arg(new.user_agent.map(cut_user_agent).unwrap_or_default())
            .arg(new.network.unwrap_or(""));
        let created: String = self.run(&create).await?;
        created.parse().map_err(|_| StoreError::Unexpected("malformed session time".into()))
    }

    /// Login step 3: whether the user's generation is still `generation`.
    async fn generation_is(&self, uid: &str, generation: i64) -> Result<bool, StoreError> {
        let now: Option<i64> = self.query(redis::cmd("GET").arg(ugen_key(uid))).await?;
        Ok(now.unwrap_or(0) == generation)
    }

    /// Runs the rotation script (atomic), after a `TIME` on the node that will run it.
    ///
    /// The script gets a deadline in that node's time: a little before this call gives up on
    /// it. A call given up on answers 503 and the client repeats it; if the abandoned script
    /// still ran later (held up in a connection while the retry and the next rotation went
    /// through), it would present a token already rotated past: reuse, and the session would
    /// end. Past the deadline the script changes nothing. One more round trip per rotation.
    pub async fn rotate(&self, r: Rotation<'_>) -> Result<RotateOutcome, StoreError> {
        let store = self.pinned().await?;
        let key = sess_key(r.sid);
        let redis_now = store.call(Retry::Safe, |mut conn| {
            let key = key.as_str();
            async move { conn.time_ms(key).await }
        });
        let deadline = redis_now.await? + millis(store.timeout).saturating_sub(LATE_MARGIN_MS);
        let mut invocation = lua_script!("rotate.lua").key(&key);
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
            .arg(expiry_ms(r.rotation_window_ms))
            .arg(r.access_ttl.as_secs())
            .arg(VERIFIER_LEEWAY_SECS)
            .arg(deadline);
        // Repeating a rotation whose first attempt ran is a grace replay (the same pair);
        // without a grace it would be reuse, so it is then repeated only when it cannot have run.
        let retry = if r.grace_ms > 0 { Retry::Safe } else { Retry::Once };
        let reply: Vec<String> = store.run_with(retry, &invocation).await?;
        let outcome = parse_rotation(r.sid, reply)?;
        // A replay hands out a pair as surely as the rotation did: it must be one a failover
        // keeps too (answered by a master that is being replaced, it might not be).
        if matches!(outcome, RotateOutcome::Rotated { .. } | RotateOutcome::Replay { .. }) {
            store.replicate(&key).await?;
        }
        Ok(outcome)
    }

    /// Step 1 of ending a session: marks it revoked if `by` may end it (a token of it, or its
    /// owner); `None` when the session is gone or `by` may not end it. Marking a marked
    /// session again returns its first `until` (no token was issued since).
    pub async fn mark_session(
        &self,
        sid: &SessionId,
        by: EndBy<'_>,
        access_ttl: Duration,
    ) -> Result<Option<Marked>, StoreError> {
        let mut invocation = lua_script!("mark_session.lua").key(sess_key(sid));
        invocation.key(spent_key(sid));
        match by {
            EndBy::Token(hash) => invocation.arg("token").arg(hash.as_str()),
            EndBy::Owner(uid) => invocation.arg("owner").arg(uid),
        };
        invocation.arg(access_ttl.as_secs()).arg(VERIFIER_LEEWAY_SECS);
        let reply: Option<Vec<String>> = self.run(&invocation).await?;
        parse_marked(sid, reply)
    }

    /// Step 1 of ending every session of user `uid` (but `except`; and with `logged_in_by`,
    /// a Redis time in ms, only those logged in at or before it): (a) bump the user's
    /// generation and read the index (a login racing this drops its own session when it sees
    /// the new generation), (b) mark each indexed session the user owns; ids whose session is
    /// gone leave the index at once. The caller runs [`Self::end_marked`] on the result.
    pub async fn mark_all_sessions(
        &self,
        uid: &str,
        except: Option<&SessionId>,
        logged_in_by: Option<u64>,
        max_age_ms: u64,
        access_ttl: Duration,
    ) -> Result<Vec<Marked>, StoreError> {
        let mut bump = lua_script!("end_all_sessions.lua").key(usess_key(uid));
        bump.key(ugen_key(uid)).arg(expiry_ms(max_age_ms));
        if let Some(bound) = logged_in_by {
            bump.arg(bound);
        }
        let ids: Vec<String> = self.run(&bump).await?;
        let sids: Vec<SessionId> = ids
            .iter()
            .filter_map(|id| SessionId::parse(id))
            .filter(|sid| Some(sid) != except)
            .collect();
        let marks = sids.iter().map(|sid| self.mark_session(sid, EndBy::Owner(uid), access_ttl));
        let marks = futures_util::future::try_join_all(marks).await?;
        let (mut marked, mut stale) = (Vec::new(), Vec::new());
        for (sid, mark) in sids.into_iter().zip(marks) {
            match mark {
                Some(m) => marked.push(m),
                None => stale.push(sid),
            }
        }
        if !stale.is_empty() {
            self.forget_sessions(uid, &stale).await?;
        }
        Ok(marked)
    }

    /// Steps 2–4 of ending marked sessions, in this order: publish them all on the revocation
    /// list (one script in its slot), delete each session's keys, drop their ids from their
    /// users' indexes. Safe to run again (a re-publication adds nothing to the list).
    pub async fn end_marked(
        &self,
        marked: &[Marked],
        access_ttl: Duration,
    ) -> Result<Ended, EndFailure> {
        if marked.is_empty() {
            return Ok(Ended::default());
        }
        let entries: Vec<Revoked> = marked.iter().map(Marked::entry).collect();
        let published = self
            .publish_revocations(&entries, retention(access_ttl))
            .await
            .map_err(EndFailure::Publish)?;
        let sids: Vec<SessionId> = marked.iter().map(|m| m.sid.clone()).collect();
        let deleted = self.delete_sessions(&sids).await.map_err(EndFailure::Delete)?;
        let mut by_user: Vec<(&str, Vec<SessionId>)> = Vec::new();
        for m in marked {
            match by_user.iter_mut().find(|(uid, _)| *uid == m.uid) {
                Some((_, sids)) => sids.push(m.sid.clone()),
                None => by_user.push((&m.uid, vec![m.sid.clone()])),
            }
        }
        let mut stale_index = None;
        for (uid, sids) in by_user {
            if let Err(e) = self.forget_sessions(uid, &sids).await {
                stale_index = Some(e);
            }
        }
        Ok(Ended { list_size: Some(published.size), deleted, stale_index })
    }

    /// The live sessions of user `uid`, newest first (marked ones have ended: left out).
    pub async fn list_sessions(&self, uid: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let ids: Vec<String> =
            self.query(redis::cmd("ZRANGE").arg(usess_key(uid)).arg(0).arg(-1)).await?;
        let sids: Vec<SessionId> = ids.iter().filter_map(|id| SessionId::parse(id)).collect();
        let reads = sids.iter().map(|sid| async move {
            let invocation = lua_script!("describe_session.lua").key(sess_key(sid));
            let reply: Option<Vec<String>> = self.run(&invocation).await?;
            Ok::<_, StoreError>(reply)
        });
        let replies = futures_util::future::try_join_all(reads).await?;
        let bad = || StoreError::Unexpected("malformed session description".into());
        let mut sessions = Vec::new();
        for (sid, reply) in sids.into_iter().zip(replies) {
            let Some(reply) = reply else { continue };
            let [owner, created, rotated, ua, net, expires]: [String; 6] =
                reply.try_into().map_err(|_| bad())?;
            if owner != uid {
                continue;
            }
            let created_ms: u64 = created.parse().map_err(|_| bad())?;
            let rotated_ms: u64 = rotated.parse().map_err(|_| bad())?;
            sessions.push(SessionInfo {
                sid,
                created_ms,
                last_used_ms: created_ms.max(rotated_ms),
                expires_ms: expires.parse().map_err(|_| bad())?,
                user_agent: (!ua.is_empty()).then_some(ua),
                network: (!net.is_empty()).then_some(net),
            });
        }
        sessions.sort_by(|a, b| {
            b.created_ms.cmp(&a.created_ms).then_with(|| a.sid.as_str().cmp(b.sid.as_str()))
        });
        Ok(sessions)
    }

    /// Whether `sid` is a live session of user `uid` (the bearer routes' check: an access token
    /// verifies long after its session may have ended).
    pub async fn session_state(
        &self,
        sid: &SessionId,
        uid: &str,
    ) -> Result<SessionState, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(sess_key(sid)).arg(&["uid", "revoked"]);
        let [owner, revoked]: [Option<String>; 2] = self.query(&cmd).await?;
        if owner.as_deref() != Some(uid) {
            return Ok(SessionState::Ended);
        }
        match revoked {
            None => Ok(SessionState::Live),
            Some(until) => {
                let until = until
                    .parse()
                    .map_err(|_| StoreError::Unexpected("malformed revocation time".into()))?;
                Ok(SessionState::Marked(Marked { sid: sid.clone(), uid: uid.to_owned(), until }))
            }
        }
    }

    /// Drops session ids from their user's index (after the sessions themselves are gone).
    pub async fn forget_sessions(&self, uid: &str, sids: &[SessionId]) -> Result<(), StoreError> {
        if sids.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = sids.iter().map(SessionId::as_str).collect();
        self.query(redis::cmd("ZREM").arg(usess_key(uid)).arg(&ids)).await
    }

    /// Deletes sessions whatever their tokens: one `DEL` per session (its keys share a slot).
    /// Only after they were published, or for a session no token was handed out of.
    /// Returns how many of them still existed.
    /// One pipeline per session, run concurrently: in a Cluster the sessions live in
    /// different slots, and a pipeline goes to one node.
    async fn delete_sessions(&self, sids: &[SessionId]) -> Result<usize, StoreError> {
        let deletes = sids.iter().map(|sid| async move {
            let mut pipe = redis::pipe();
            pipe.del(sess_key(sid)).del(spent_key(sid)).ignore();
            let pipe = &pipe;
            let deleted: (i64,) = self
                .call(Retry::Safe, |mut conn| async move { pipe.query_async(&mut conn).await })
                .await?;
            Ok::<_, StoreError>(deleted.0 > 0)
        });
        let deleted = futures_util::future::try_join_all(deletes).await?;
        Ok(deleted.into_iter().filter(|d| *d).count())
    }
}

/// `ua` cut to [`USER_AGENT_MAX_CHARS`] characters.
fn cut_user_agent(ua: &str) -> &str {
    ua.char_indices().nth(USER_AGENT_MAX_CHARS).map_or(ua, |(end, _)| &ua[..end])
}

fn parse_rotation(sid: &SessionId, reply: Vec<String>) -> Result<RotateOutcome, StoreError> {
    let bad = || StoreError::Unexpected("malformed rotation reply".into());
    let mut it = reply.into_iter();
    let status = it.next().ok_or_else(bad)?;
    let mut next = || it.next().ok_or_else(bad);
    let marked = |uid: String, until: String| -> Result<Marked, StoreError> {
        Ok(Marked { sid: sid.clone(), uid, until: until.parse().map_err(|_| bad())? })
    };
    match status.as_str() {
        "unknown" => Ok(RotateOutcome::Unknown),
        "late" => Err(StoreError::Unavailable(
            "the rotation reached redis after its deadline and changed nothing".into(),
        )),
        "expired" => Ok(RotateOutcome::Expired { uid: next()? }),
        "reuse" => {
            let (uid, until) = (next()?, next()?);
            Ok(RotateOutcome::Reuse(marked(uid, until)?))
        }
        "revoked" => {
            let (uid, until) = (next()?, next()?);
            Ok(RotateOutcome::Revoked(marked(uid, until)?))
        }
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
    const TTL: Duration = Duration::from_secs(900);

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
            user_agent: Some("curl/8.5"),
            network: Some("127.0.0.0/24"),
        }
    }

    /// Ends every session of the user, all steps; returns how many were ended.
    async fn end_all(store: &Store) -> usize {
        let marked = store.mark_all_sessions(UID, None, None, DAY_MS, TTL).await.unwrap();
        store.end_marked(&marked, TTL).await.unwrap();
        marked.len()
    }

    /// Ends the session of `token` as logout does, all steps.
    async fn logout(store: &Store, token: &RefreshToken) -> Option<Marked> {
        let marked = store.mark_session(&token.sid(), EndBy::Token(&token.hash()), TTL).await;
        let marked = marked.unwrap()?;
        store.end_marked(std::slice::from_ref(&marked), TTL).await.unwrap();
        Some(marked)
    }

    /// The digests on the revocation list.
    async fn listed(store: &Store) -> Vec<crate::store::revocations::Revoked> {
        let read =
            store.read_revocations(None, 10_000, crate::store::revocations::OnReset::WholeList);
        read.await.unwrap().entries.into_iter().map(|(_, r)| r).collect()
    }

    fn exists(redis: &test_support::RedisServer, sid: &SessionId) -> bool {
        redis::cmd("EXISTS").arg(sess_key(sid)).query::<i64>(&mut redis.connection()).unwrap() == 1
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
                access_ttl: TTL,
            })
            .await
            .unwrap()
    }

    async fn rotate(store: &Store, presented: &RefreshToken, grace_ms: u64) -> RotateOutcome {
        rotate_with(store, presented, grace_ms, 30 * DAY_MS).await
    }

    /// The rotation script's call as `Store::rotate` makes it, with `deadline` (ms, Redis time;
    /// 0: none) and a successor chosen here.
    fn raw_rotation(
        presented: &RefreshToken,
        successor: &TokenHash,
        deadline: u64,
    ) -> redis::ScriptInvocation<'static> {
        let mut invocation = lua_script!("rotate.lua").key(sess_key(&presented.sid()));
        invocation
            .key(spent_key(&presented.sid()))
            .arg(presented.hash().as_str())
            .arg(successor.as_str())
            .arg(10_000)
            .arg(DAY_MS)
            .arg(30 * DAY_MS)
            .arg("sealed")
            .arg(SPENT_DIGESTS_KEPT)
            .arg(1_000_000)
            .arg(3_600_000)
            .arg(TTL.as_secs())
            .arg(VERIFIER_LEEWAY_SECS)
            .arg(deadline);
        invocation
    }

    /// Redis's clock, in ms.
    fn redis_now_ms(redis: &test_support::RedisServer) -> u64 {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut redis.connection()).unwrap();
        secs * 1000 + micros / 1000
    }

    #[tokio::test]
    async fn a_session_rotates_replays_within_the_grace_and_is_marked_on_reuse() {
        let (redis, store) = test_util::store();
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
        // Without a grace, the same token is reuse: the session is marked, not deleted, and
        // `until` is the newest iat (the rotation) + the access TTL + the leeway.
        let RotateOutcome::Reuse(marked) = rotate(&store, &first, 0).await else { panic!("reuse") };
        let until = rotated_ms / 1000 + TTL.as_secs() + VERIFIER_LEEWAY_SECS;
        assert_eq!(marked, Marked { sid: first.sid(), uid: UID.into(), until });
        assert!(exists(&redis, &first.sid()), "published before deleted: still there");
        // Marked: every token of it is refused, and presenting one asks for a re-publication;
        // a token that is not of the session is only unknown.
        let current = first.successor().unwrap(); // not the stored successor: unknown
        assert_eq!(rotate(&store, &current, 10_000).await, RotateOutcome::Unknown);
        assert_eq!(rotate(&store, &first, 10_000).await, RotateOutcome::Revoked(marked.clone()));
        store.end_marked(std::slice::from_ref(&marked), TTL).await.unwrap();
        assert!(!exists(&redis, &first.sid()));
        assert_eq!(rotate(&store, &first, 10_000).await, RotateOutcome::Unknown);
        let stranger = RefreshToken::generate().unwrap();
        assert_eq!(rotate(&store, &stranger, 10_000).await, RotateOutcome::Unknown);
        assert_eq!(listed(&store).await, [marked.entry()]);
    }

    /// A rotation its caller gave up on (503) that reaches Redis only after the client's retry
    /// and the next rotation: with its deadline past it changes nothing; without one it would
    /// present a token rotated past, and end the session as reuse.
    #[tokio::test]
    async fn a_rotation_script_run_after_its_deadline_changes_nothing() {
        let (redis, store) = test_util::store();
        let (first, _) = login(&store).await;
        let (outcome, second) = rotation_with(&store, &first, 1_000_000).await;
        assert!(matches!(outcome, RotateOutcome::Rotated { .. }));
        let (outcome, third) = rotation_with(&store, &second, 1_000_000).await;
        assert!(matches!(outcome, RotateOutcome::Rotated { .. }));
        let late = |deadline: u64| {
            let successor = third.successor().unwrap().hash();
            let invocation = raw_rotation(&first, &successor, deadline);
            invocation.invoke::<Vec<String>>(&mut redis.connection()).unwrap()
        };
        assert_eq!(late(redis_now_ms(&redis) - 1), ["late"]);
        // Nothing changed: the current token still rotates.
        let (outcome, _) = rotation_with(&store, &third, 1_000_000).await;
        assert!(matches!(outcome, RotateOutcome::Rotated { .. }));
        // Before its deadline the same call is what reuse detection is for.
        assert_eq!(late(redis_now_ms(&redis) + 60_000)[0], "reuse");
    }

    #[tokio::test]
    async fn only_a_token_of_the_session_or_its_owner_ends_it_and_logout_everywhere_ends_them_all()
    {
        let (redis, store) = test_util::store();
        let (one, _) = login(&store).await;
        let (two, _) = login(&store).await;
        let forged = RefreshToken::parse(&format!("{}{}", one.sid(), "A".repeat(42))).unwrap();
        let by_forged = store.mark_session(&one.sid(), EndBy::Token(&forged.hash()), TTL).await;
        assert_eq!(by_forged.unwrap(), None, "knowing the sid is not enough");
        let by_stranger = store.mark_session(&one.sid(), EndBy::Owner("uid-2"), TTL).await;
        assert_eq!(by_stranger.unwrap(), None, "nor being another user");
        assert!(listed(&store).await.is_empty(), "nothing published");
        assert!(matches!(rotate(&store, &one, 10_000).await, RotateOutcome::Rotated { .. }));

        let marked = logout(&store, &one).await.expect("a token of the session");
        assert_eq!(marked.uid, UID);
        assert!(!exists(&redis, &one.sid()));
        assert_eq!(rotate(&store, &one, 0).await, RotateOutcome::Unknown);
        assert_eq!(listed(&store).await, [marked.entry()]);

        assert_eq!(end_all(&store).await, 1);
        assert_eq!(rotate(&store, &two, 0).await, RotateOutcome::Unknown);
        assert_eq!(listed(&store).await.len(), 2);
        assert_eq!(end_all(&store).await, 0);
        let indexed: u64 =
            redis::cmd("ZCARD").arg(usess_key(UID)).query(&mut redis.connection()).unwrap();
        assert_eq!(indexed, 0, "ended ids leave the index");
    }

    #[tokio::test]
    async fn a_marked_session_whose_publication_failed_is_still_there_and_refuses_its_tokens() {
        let (redis, store) = test_util::store();
        let (token, _) = login(&store).await;
        let (other, _) = login(&store).await;
        // Break the list's slot: the publication (step 2) fails with WRONGTYPE.
        let mut conn = redis.connection();
        redis::cmd("SET").arg("rev:stream:{revocations}").arg("x").query::<()>(&mut conn).unwrap();
        let marked = store.mark_session(&token.sid(), EndBy::Token(&token.hash()), TTL).await;
        let marked = marked.unwrap().unwrap();
        assert!(store.end_marked(std::slice::from_ref(&marked), TTL).await.is_err());
        assert!(exists(&redis, &token.sid()), "not deleted before it is published");
        let all = store.mark_all_sessions(UID, None, None, DAY_MS, TTL).await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(store.end_marked(&all, TTL).await.is_err());
        assert!(exists(&redis, &other.sid()), "logout everywhere does not delete first either");
        // Refused meanwhile: rotation, the bearer check, the inventory.
        assert_eq!(rotate(&store, &token, 10_000).await, RotateOutcome::Revoked(marked.clone()));
        assert_eq!(
            store.session_state(&token.sid(), UID).await.unwrap(),
            SessionState::Marked(marked.clone())
        );
        assert!(store.list_sessions(UID).await.unwrap().is_empty());
        // The marked session lives at least until its tokens cannot pass any more.
        let ttl: i64 = redis::cmd("PTTL").arg(sess_key(&token.sid())).query(&mut conn).unwrap();
        assert!(ttl > 0);
        // Repaired: the retry publishes, then deletes.
        redis::cmd("DEL").arg("rev:stream:{revocations}").query::<()>(&mut conn).unwrap();
        let ended = store.end_marked(&all, TTL).await.unwrap();
        assert_eq!(ended.deleted, 2);
        assert!(!exists(&redis, &token.sid()) && !exists(&redis, &other.sid()));
        assert_eq!(listed(&store).await.len(), 2);
        // Run again (a retry racing a repeated request): nothing more deleted or counted.
        assert_eq!(store.end_marked(&all, TTL).await.unwrap().deleted, 0);
    }

    #[tokio::test]
    async fn a_bound_on_login_time_leaves_later_logins_alone() {
        let (redis, store) = test_util::store();
        let (before, _) = login(&store).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let bound = redis_now_ms(&redis);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (after, _) = login(&store).await;
        let marked = store.mark_all_sessions(UID, None, Some(bound), DAY_MS, TTL).await.unwrap();
        assert_eq!(marked.iter().map(|m| m.sid.clone()).collect::<Vec<_>>(), [before.sid()]);
        store.end_marked(&marked, TTL).await.unwrap();
        assert!(matches!(rotate(&store, &after, 0).await, RotateOutcome::Rotated { .. }));
    }

    #[tokio::test]
    async fn a_marked_session_lives_at_least_until_its_tokens_expire() {
        let (redis, store) = test_util::store();
        let token = RefreshToken::generate().unwrap();
        let (sid, hash, roles) = (token.sid(), token.hash(), roles());
        // An idle TTL of 2 s, far shorter than the access tokens' 900 s.
        let new = NewSession { ttl_ms: 2_000, ..new_session(&sid, &hash, &roles) };
        store.create_session(new).await.unwrap().unwrap();
        store.mark_session(&sid, EndBy::Owner(UID), TTL).await.unwrap().unwrap();
        let ttl: i64 =
            redis::cmd("PTTL").arg(sess_key(&sid)).query(&mut redis.connection()).unwrap();
        assert!(ttl > 1_000_000, "{ttl}");
    }

    #[tokio::test]
    async fn the_inventory_lists_live_sessions_newest_first_with_what_login_stored() {
        let (redis, store) = test_util::store();
        let (old, created_old) = login(&store).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let long_ua = "é".repeat(300);
        let token = RefreshToken::generate().unwrap();
        let (sid, hash, roles) = (token.sid(), token.hash(), roles());
        let new = NewSession {
            user_agent: Some(&long_ua),
            network: None,
            ..new_session(&sid, &hash, &roles)
        };
        let created_new = store.create_session(new).await.unwrap().unwrap().created_ms;
        let RotateOutcome::Rotated { rotated_ms, .. } = rotate(&store, &old, 0).await else {
            panic!("rotates")
        };
        let sessions = store.list_sessions(UID).await.unwrap();
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions[0].sid, sid, "newest first");
        assert_eq!(sessions[0].created_ms, created_new);
        assert_eq!(sessions[0].last_used_ms, created_new);
        assert_eq!(sessions[0].user_agent.as_deref(), Some("é".repeat(256).as_str()));
        assert_eq!(sessions[0].network, None);
        assert_eq!(sessions[1].sid, old.sid());
        assert_eq!(sessions[1].created_ms, created_old);
        assert_eq!(sessions[1].last_used_ms, rotated_ms, "a rotation moves last use");
        assert_eq!(sessions[1].user_agent.as_deref(), Some("curl/8.5"));
        assert_eq!(sessions[1].network.as_deref(), Some("127.0.0.0/24"));
        let now = redis_now_ms(&redis);
        assert!((now + DAY_MS - 5_000..=now + DAY_MS).contains(&sessions[1].expires_ms));
        assert!(store.list_sessions("uid-2").await.unwrap().is_empty());

        assert_eq!(store.session_state(&sid, UID).await.unwrap(), SessionState::Live);
        assert_eq!(store.session_state(&sid, "uid-2").await.unwrap(), SessionState::Ended);
        // Ending all but one.
        let marked = store.mark_all_sessions(UID, Some(&sid), None, DAY_MS, TTL).await.unwrap();
        assert_eq!(marked.len(), 1);
        assert_eq!(marked[0].sid, old.sid());
        store.end_marked(&marked, TTL).await.unwrap();
        let left: Vec<SessionId> =
            store.list_sessions(UID).await.unwrap().into_iter().map(|s| s.sid).collect();
        assert_eq!(left, std::slice::from_ref(&sid));
        assert_eq!(store.session_state(&old.sid(), UID).await.unwrap(), SessionState::Ended);
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
                assert_eq!(end_all(&store).await, 0, "its session is not stored yet");
                store.store_session(&new).await.unwrap();
            } else {
                store.store_session(&new).await.unwrap();
                assert_eq!(end_all(&store).await, 1);
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

        // A caller with a clock far off: the only time the script takes is its deadline, which
        // the store takes from the node's own `TIME` (0: none; far ahead: none in practice), so
        // the replay is on time and the session not expired, by Redis's clock.
        let successor = token.successor().unwrap();
        for skewed_now_ms in [0_u64, 4_102_444_800_000] {
            let raw = raw_rotation(&token, &successor.hash(), skewed_now_ms);
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
                access_ttl: TTL,
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
        assert!(matches!(rotate(&store, &oldest_kept, 0).await, RotateOutcome::Reuse(_)));
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
        // The caller ends it like any other end (the domain does, publishing it).
        let marked = store.mark_session(&oldest.sid(), EndBy::Owner(UID), TTL).await.unwrap();
        store.end_marked(&[marked.unwrap()], TTL).await.unwrap();
        assert_eq!(rotate(&store, &oldest, 0).await, RotateOutcome::Unknown);
        assert!(matches!(rotate(&store, &second, 0).await, RotateOutcome::Rotated { .. }));
        assert_eq!(end_all(&store).await, SESSIONS_PER_USER as usize);
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
                access_ttl: TTL,
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
