//! Sessions: a login and every refresh token rotated from it; how each one ends (always
//! marked, then published on the revocation list, then deleted: [`crate::store::sessions`]);
//! the inventory and the bearer routes' check that a token's session is still live.
//!
//! The access token issued with a refresh token is a function of the session, the refresh
//! token and the time of issue only (`jti` derived from the refresh token, `iat` = time of
//! issue, which is Redis's time of the login or rotation; RS256 signatures are deterministic). So when the reuse grace hands out the same
//! successor again, re-signing gives the byte-identical pair without storing the access token.
//!
//! Why one file (~490 lines of code): the ways a session ends (logout, reuse, `logout/all`,
//! rotation limits) must all go mark → publish → delete; [`Sessions`] (login, rotate) and
//! [`Inventory`] (list, end) share that path and the policy, and keeping them together keeps one
//! place where the order is visible.

use std::sync::Arc;
use std::time::Duration;

use std::net::IpAddr;

use access_token::{AccessClaims, Verifier};
use ipnet::{Ipv4Net, Ipv6Net};

use crate::clock::millis;
use crate::error::SessionError;
use crate::metrics;
use crate::revocations::{EndAll, Publisher};
use crate::signing_keys::LiveSigningKeys;
use crate::store::sessions::{
    CreatedSession, EndBy, Marked, SESSIONS_PER_USER, SessionInfo, SessionState,
};
use crate::store::{NewSession, RotateOutcome, Rotation, SessionData, Store, UserRecord};
use crate::throttle::retry_after_secs;
use crate::tokens::{RefreshToken, SessionId, open_successor, seal_successor};

/// The lifetimes and names that go into tokens.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// `exp - iat`.
    pub access_ttl: Duration,
    /// Sliding idle lifetime of a session.
    pub refresh_ttl: Duration,
    /// Absolute lifetime of a session.
    pub max_age: Duration,
    /// Reuse grace after a rotation.
    pub grace: Duration,
    /// Rotations one session may make per [`Self::rotation_window`] (replays excepted).
    pub max_rotations: u32,
    /// The window of [`Self::max_rotations`].
    pub rotation_window: Duration,
}

/// A token pair, ready to send.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The signed access token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: RefreshToken,
    /// Access-token lifetime, seconds.
    pub expires_in: u64,
    /// Time left to use the refresh token, seconds.
    pub refresh_expires_in: u64,
}

/// What a login records about its client, shown by the session inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The `User-Agent` header (cut to 256 characters when stored).
    pub user_agent: Option<String>,
    /// The client's network: its /24 (IPv4) or /48 (IPv6), never the full address.
    pub network: Option<String>,
}

impl ClientInfo {
    /// The client `addr` (the peer, or behind a trusted proxy the forwarded address) and its
    /// `User-Agent`.
    pub fn new(addr: IpAddr, user_agent: Option<String>) -> Self {
        Self { user_agent: user_agent.filter(|ua| !ua.is_empty()), network: network_of(addr) }
    }
}

/// The network an address is shown as: its /24 for IPv4 (an IPv4-mapped IPv6 address is its
/// IPv4 one), its /48 for IPv6; `None` for the unspecified address (no peer).
pub fn network_of(addr: IpAddr) -> Option<String> {
    match addr.to_canonical() {
        IpAddr::V4(v4) if v4.is_unspecified() => None,
        IpAddr::V6(v6) if v6.is_unspecified() => None,
        IpAddr::V4(v4) => Ipv4Net::new(v4, 24).ok().map(|n| n.trunc().to_string()),
        IpAddr::V6(v6) => Ipv6Net::new(v6, 48).ok().map(|n| n.trunc().to_string()),
    }
}

/// One session of the inventory, times in ms since the epoch (Redis time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// What Redis holds.
    pub info: SessionInfo,
    /// `created + AUTH_SESSION_MAX_AGE`.
    pub ends_ms: u64,
    /// The session of the token that asked.
    pub current: bool,
}

/// One session as `GET /sessions` and `users sessions --json` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SessionItem {
    /// The session id (the `sid` claim of its access tokens).
    pub sid: String,
    /// Login, RFC 3339 UTC.
    pub created_at: String,
    /// The login or the last refresh, RFC 3339 UTC.
    pub last_used_at: String,
    /// When it ends unless refreshed (the refresh-token lifetime), RFC 3339 UTC.
    pub expires_at: String,
    /// When it ends however often it is refreshed (`created_at + AUTH_SESSION_MAX_AGE`).
    pub ends_at: String,
    /// The `User-Agent` at login, at most 256 characters.
    pub user_agent: Option<String>,
    /// The client's network at login: its /24 (IPv4) or /48 (IPv6), never the full address.
    pub address: Option<String>,
    /// The session of the token that asked.
    pub current: bool,
}

/// RFC 3339 UTC, whole seconds, of `ms` since the epoch.
pub fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

impl From<&SessionView> for SessionItem {
    fn from(view: &SessionView) -> Self {
        let info = &view.info;
        Self {
            sid: info.sid.to_string(),
            created_at: rfc3339(info.created_ms),
            last_used_at: rfc3339(info.last_used_ms),
            expires_at: rfc3339(info.expires_ms.min(view.ends_ms)),
            ends_at: rfc3339(view.ends_ms),
            user_agent: info.user_agent.clone(),
            address: info.network.clone(),
            current: view.current,
        }
    }
}

/// A user's sessions as a whole: the inventory, ending them (one, all, all but one), and the
/// bearer routes' live check. Needs no signing key, so the operator commands use it too.
#[derive(Debug, Clone)]
pub struct Inventory {
    store: Store,
    publisher: Publisher,
    max_age: Duration,
}

impl Inventory {
    /// The sessions of `publisher`'s store, whose absolute lifetime is `max_age`.
    pub fn new(publisher: Publisher, max_age: Duration) -> Self {
        Self { store: publisher.store().clone(), publisher, max_age }
    }

    /// What ends sessions.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Ends every session of user `uid` (`except` one: the caller's, for
    /// `DELETE /sessions/others` and a password change), counted under `reason`. A login
    /// racing this does not survive it. Returns how many sessions ended.
    pub async fn end_all(
        &self,
        uid: &str,
        except: Option<&SessionId>,
        reason: &'static str,
    ) -> Result<usize, SessionError> {
        let marked = self
            .store
            .mark_all_sessions(uid, except, None, millis(self.max_age), self.publisher.access_ttl())
            .await?;
        let count = marked.len();
        self.publisher.end(marked, Some(reason)).await.map_err(|e| e.0)?;
        log::info!("user {uid}: {count} session(s) ended ({reason})");
        Ok(count)
    }

    /// After a password change of user `uid` at `changed_ms` (Redis time): ends every other
    /// session logged in by then. A failure is retried in the background with the same bound,
    /// so the retry never ends a session logged in after the change.
    pub async fn end_others_after_password(
        &self,
        uid: &str,
        current: &SessionId,
        changed_ms: u64,
    ) -> Result<usize, SessionError> {
        let job = EndAll {
            uid: uid.to_owned(),
            except: Some(current.clone()),
            logged_in_by: changed_ms,
            max_age_ms: millis(self.max_age),
            reason: "password",
        };
        Ok(self.publisher.end_all(job).await.map_err(|e| e.0)?)
    }

    /// Ends every session of user `uid`.
    pub async fn logout_all(&self, uid: &str) -> Result<(), SessionError> {
        self.end_all(uid, None, "logout_all").await.map(drop)
    }

    /// Ends session `sid` if it is one of user `uid`'s; `false` when it is not (gone, or
    /// someone else's: the same answer).
    pub async fn end_one(
        &self,
        uid: &str,
        sid: &SessionId,
        reason: &'static str,
    ) -> Result<bool, SessionError> {
        let ended = self.end_owned(uid, std::slice::from_ref(sid), reason).await?;
        Ok(ended == 1)
    }

    /// Marks each of `sids` that user `uid` owns, then publishes and deletes them.
    pub async fn end_owned(
        &self,
        uid: &str,
        sids: &[SessionId],
        reason: &'static str,
    ) -> Result<usize, SessionError> {
        let ttl = self.publisher.access_ttl();
        let marks = sids.iter().map(|sid| self.store.mark_session(sid, EndBy::Owner(uid), ttl));
        let marked: Vec<Marked> =
            futures_util::future::try_join_all(marks).await?.into_iter().flatten().collect();
        let count = marked.len();
        self.publisher.end(marked, Some(reason)).await.map_err(|e| e.0)?;
        Ok(count)
    }

    /// Whether the session of a verified access token is live; a token of a session marked
    /// revoked has it published again (in the background) and is refused like an ended one.
    pub async fn check_live(&self, claims: &AccessClaims) -> Result<SessionId, SessionError> {
        let sid = SessionId::parse(&claims.sid).ok_or(SessionError::Ended)?;
        match self.store.session_state(&sid, &claims.sub).await? {
            SessionState::Live => Ok(sid),
            SessionState::Ended => Err(SessionError::Ended),
            SessionState::Marked(marked) => {
                self.publisher.end_in_background(vec![marked]);
                Err(SessionError::Ended)
            }
        }
    }

    /// The live sessions of user `uid`, newest first; `current` marks the caller's.
    pub async fn list(
        &self,
        uid: &str,
        current: Option<&SessionId>,
    ) -> Result<Vec<SessionView>, SessionError> {
        let max_age = millis(self.max_age);
        let sessions = self.store.list_sessions(uid).await?;
        Ok(sessions
            .into_iter()
            .map(|info| SessionView {
                ends_ms: info.created_ms.saturating_add(max_age),
                current: Some(&info.sid) == current,
                info,
            })
            .collect())
    }
}

/// Issues, rotates and ends sessions.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: Store,
    keys: Arc<LiveSigningKeys>,
    policy: Arc<Policy>,
    inventory: Inventory,
    publisher: Publisher,
}

impl Sessions {
    /// Sessions in `store`, signed with the active key of `keys`, published on the revocation
    /// list by `publisher` when they end.
    pub fn new(
        store: Store,
        keys: Arc<LiveSigningKeys>,
        policy: Policy,
        publisher: Publisher,
    ) -> Self {
        let inventory = Inventory::new(publisher.clone(), policy.max_age);
        Self { store, keys, policy: Arc::new(policy), inventory, publisher }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The user's sessions as a whole.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Starts a session for `user` (who just proved their password) from `client`. Its
    /// creation time is Redis's, so every instance computes the same max age and the same
    /// first `iat`. A login that raced a logout everywhere, a disable, a role or a password
    /// change of the user drops its session before answering (its token was never handed
    /// out): a 503 to retry, or for a disabled user `invalid_credentials`.
    pub async fn login(
        &self,
        user: &UserRecord,
        client: &ClientInfo,
    ) -> Result<Issued, SessionError> {
        let token = RefreshToken::generate()?;
        let sid = token.sid();
        let created = self
            .store
            .create_session(NewSession {
                sid: &sid,
                token_hash: &token.hash(),
                uid: &user.id,
                username: &user.username,
                name: user.name.as_deref(),
                roles: &user.roles,
                scope: crate::tokens::ISSUED_SCOPE,
                ttl_ms: millis(self.policy.refresh_ttl.min(self.policy.max_age)),
                max_age_ms: millis(self.policy.max_age),
                user_agent: client.user_agent.as_deref(),
                network: client.network.as_deref(),
            })
            .await?;
        let Some(CreatedSession { created_ms, evicted }) = created else {
            log::info!("user {}: login raced a logout everywhere; its session dropped", user.id);
            return Err(SessionError::LoggedOutMeanwhile);
        };
        // The user as the password check read it must still be so now that the session is
        // stored and indexed: a disable, role or password change that started meanwhile
        // either sees this session in the index it ends, or is seen here.
        if !self.store.user_unchanged(&user.username, user.version).await? {
            self.store.drop_unissued_session(&user.id, &sid).await?;
            let disabled = self.store.get_user(&user.username).await?.is_none_or(|u| u.disabled);
            log::info!("user {}: login raced a change of the user; its session dropped", user.id);
            return Err(SessionError::UserChanged { disabled });
        }
        if !evicted.is_empty() {
            log::info!(
                "user {}: {} oldest session(s) ended, past {SESSIONS_PER_USER} sessions",
                user.id,
                evicted.len()
            );
            // The new session is stored: the login answers even if this fails (the oldest
            // stay marked and are retried; the next login ends them otherwise).
            let _ = self.inventory.end_owned(&user.id, &evicted, "evicted").await;
        }
        let data = SessionData {
            uid: user.id.clone(),
            username: user.username.clone(),
            name: user.name.clone(),
            roles: user.roles.clone(),
            scope: crate::tokens::ISSUED_SCOPE.to_owned(),
            created_ms,
        };
        self.issue(&data, &sid, token, created_ms)
    }

    /// Rotates `presented` (as the client sent it): a new pair, the same pair again within the
    /// grace, or `invalid_grant` (and the session revoked when a spent token comes back).
    pub async fn refresh(&self, presented: &str) -> Result<Issued, SessionError> {
        let presented = RefreshToken::parse(presented).map_err(|_| {
            metrics::refresh("unknown");
            SessionError::InvalidGrant("malformed refresh token")
        })?;
        let sid = presented.sid();
        let successor = presented.successor()?;
        let sealed = seal_successor(&presented, &successor)?;
        let outcome = self
            .store
            .rotate(Rotation {
                sid: &sid,
                presented: &presented.hash(),
                successor: &successor.hash(),
                sealed_successor: &sealed,
                grace_ms: millis(self.policy.grace),
                refresh_ttl_ms: millis(self.policy.refresh_ttl),
                max_age_ms: millis(self.policy.max_age),
                max_rotations: self.policy.max_rotations,
                rotation_window_ms: millis(self.policy.rotation_window),
                access_ttl: self.policy.access_ttl,
            })
            .await
            .inspect_err(|_| metrics::refresh("error"))?;
        metrics::refresh(match &outcome {
            RotateOutcome::Rotated { .. } => "rotated",
            RotateOutcome::Replay { .. } => "replay",
            RotateOutcome::Limited { .. } => "limited",
            RotateOutcome::Reuse(_) => "reuse",
            RotateOutcome::Revoked(_) | RotateOutcome::Unknown => "unknown",
            RotateOutcome::Expired { .. } => "expired",
        });
        match outcome {
            RotateOutcome::Rotated { session, rotated_ms } => {
                self.issue(&session, &sid, successor, rotated_ms)
            }
            RotateOutcome::Replay { session, sealed_successor, rotated_ms } => {
                let successor =
                    open_successor(&presented, &sealed_successor).ok_or(SessionError::Successor)?;
                log::debug!("session {sid}: refresh replayed within the grace");
                self.issue(&session, &sid, successor, rotated_ms)
            }
            RotateOutcome::Limited { retry_ms } => {
                log::info!("session {sid}: rotation limit reached");
                Err(SessionError::RateLimited { retry_after_secs: retry_after_secs(retry_ms) })
            }
            RotateOutcome::Reuse(marked) => {
                log::warn!(
                    "session {sid} of user {}: spent refresh token presented, session revoked",
                    marked.uid
                );
                // Marked by the script: published, then deleted. A failure is retried in the
                // background; the answer is the same (the token is spent either way).
                let _ = self.publisher.end(vec![marked], Some("reuse")).await;
                Err(SessionError::InvalidGrant("spent refresh token: session revoked"))
            }
            RotateOutcome::Revoked(marked) => {
                // Ended earlier but not completely (Redis failed in between): again.
                let _ = self.publisher.end(vec![marked], None).await;
                Err(SessionError::InvalidGrant("revoked session"))
            }
            RotateOutcome::Expired { uid } => {
                // Its end by age is not a revocation: its access tokens stay valid until
                // they expire, like those of a session that went idle.
                metrics::sessions_revoked("max_age", 1);
                self.forget(&uid, &sid).await;
                Err(SessionError::InvalidGrant("session reached its maximum age"))
            }
            RotateOutcome::Unknown => Err(SessionError::InvalidGrant("unknown refresh token")),
        }
    }

    /// Ends the session of `presented`, if it is a token of a live session (counted under
    /// `reason`: `logout` or `revoke`); `true` when it ended one. Unknown tokens are not an
    /// error (logout gives no oracle).
    pub async fn logout(
        &self,
        presented: &str,
        reason: &'static str,
    ) -> Result<bool, SessionError> {
        let Ok(presented) = RefreshToken::parse(presented) else {
            return Ok(false);
        };
        let sid = presented.sid();
        let by = EndBy::Token(&presented.hash());
        let Some(marked) = self.store.mark_session(&sid, by, self.policy.access_ttl).await? else {
            return Ok(false);
        };
        log::info!("session {sid} of user {} ended ({reason})", marked.uid);
        self.publisher.end(vec![marked], Some(reason)).await.map_err(|e| e.0)?;
        Ok(true)
    }

    /// `POST /revoke` (RFC 7009): ends the session of a refresh token, or of a valid access
    /// token of ours (its signature, issuer, audience and times checked by `verifier`);
    /// anything else is ignored. The two kinds cannot be mistaken for each other (a refresh
    /// token has no dots), so a `token_type_hint` changes nothing (RFC 7009 §2.1 lets the
    /// server search every type). Returns whether a session ended.
    pub async fn revoke(&self, token: &str, verifier: &Verifier) -> Result<bool, SessionError> {
        if RefreshToken::parse(token).is_ok() {
            return self.logout(token, "revoke").await;
        }
        match verifier.verify(token).await {
            Ok(claims) => match SessionId::parse(&claims.sid) {
                Some(sid) => self.inventory.end_one(&claims.sub, &sid, "revoke").await,
                None => Ok(false),
            },
            Err(e) => {
                log::debug!("revoke: not a valid access token of ours: {e}");
                Ok(false)
            }
        }
    }

    async fn forget(&self, uid: &str, sid: &SessionId) {
        // Best effort: a stale id in the index only costs a DEL of a missing key later.
        if let Err(e) = self.store.forget_sessions(uid, std::slice::from_ref(sid)).await {
            log::warn!("session {sid}: could not drop it from the index of user {uid}: {e}");
        }
    }

    /// The pair for `refresh_token`, issued at `issued_ms`. Deterministic, see the module doc.
    fn issue(
        &self,
        session: &SessionData,
        sid: &SessionId,
        refresh_token: RefreshToken,
        issued_ms: u64,
    ) -> Result<Issued, SessionError> {
        let p = &self.policy;
        let iat = issued_ms / 1000;
        let expires_in = p.access_ttl.as_secs();
        let claims = AccessClaims {
            iss: p.issuer.clone(),
            aud: p.audience.clone().into(),
            sub: session.uid.clone(),
            preferred_username: session.username.clone(),
            name: session.name.clone(),
            roles: session.roles.clone(),
            scope: session.scope.clone(),
            iat,
            nbf: iat,
            exp: iat + expires_in,
            jti: refresh_token.paired_jti(),
            sid: sid.to_string(),
        };
        let access_token = self.keys.load().signer().sign(&claims)?;
        let session_ends_ms = session.created_ms.saturating_add(millis(p.max_age));
        let refresh_left_ms = millis(p.refresh_ttl).min(session_ends_ms.saturating_sub(issued_ms));
        Ok(Issued {
            access_token,
            refresh_token,
            expires_in,
            refresh_expires_in: refresh_left_ms / 1000,
        })
    }
}
