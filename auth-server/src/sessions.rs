//! Sessions: a login and every refresh token rotated from it.
//!
//! The access token issued with a refresh token is a function of the session, the refresh
//! token and the time of issue only (`jti` derived from the refresh token, `iat` = time of
//! issue, which is Redis's time of the login or rotation; RS256 signatures are deterministic). So when the reuse grace hands out the same
//! successor again, re-signing gives the byte-identical pair without storing the access token.

use std::sync::Arc;
use std::time::Duration;

use access_token::AccessClaims;

use crate::clock::millis;
use crate::error::SessionError;
use crate::metrics;
use crate::signing_keys::LiveSigningKeys;
use crate::store::sessions::{CreatedSession, SESSIONS_PER_USER};
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

/// Issues, rotates and ends sessions.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: Store,
    keys: Arc<LiveSigningKeys>,
    policy: Arc<Policy>,
}

impl Sessions {
    /// Sessions in `store`, signed with the active key of `keys`.
    pub fn new(store: Store, keys: Arc<LiveSigningKeys>, policy: Policy) -> Self {
        Self { store, keys, policy: Arc::new(policy) }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Starts a session for `user` (who just proved their password). Its creation time is
    /// Redis's, so every instance computes the same max age and the same first `iat`.
    pub async fn login(&self, user: &UserRecord) -> Result<Issued, SessionError> {
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
            })
            .await?;
        let Some(CreatedSession { created_ms, evicted }) = created else {
            log::info!("user {}: login raced a logout everywhere; its session dropped", user.id);
            return Err(SessionError::LoggedOutMeanwhile);
        };
        if !evicted.is_empty() {
            log::info!(
                "user {}: {} oldest session(s) ended, past {SESSIONS_PER_USER} sessions",
                user.id,
                evicted.len()
            );
            metrics::sessions_revoked("evicted", u64::try_from(evicted.len()).unwrap_or(1));
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
            })
            .await
            .inspect_err(|_| metrics::refresh("error"))?;
        metrics::refresh(match &outcome {
            RotateOutcome::Rotated { .. } => "rotated",
            RotateOutcome::Replay { .. } => "replay",
            RotateOutcome::Limited { .. } => "limited",
            RotateOutcome::Reuse { .. } => "reuse",
            RotateOutcome::Expired { .. } => "expired",
            RotateOutcome::Unknown => "unknown",
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
            RotateOutcome::Reuse { uid } => {
                log::warn!(
                    "session {sid} of user {uid}: spent refresh token presented, session revoked"
                );
                metrics::sessions_revoked("reuse", 1);
                self.forget(&uid, &sid).await;
                Err(SessionError::InvalidGrant("spent refresh token: session revoked"))
            }
            RotateOutcome::Expired { uid } => {
                metrics::sessions_revoked("max_age", 1);
                self.forget(&uid, &sid).await;
                Err(SessionError::InvalidGrant("session reached its maximum age"))
            }
            RotateOutcome::Unknown => Err(SessionError::InvalidGrant("unknown refresh token")),
        }
    }

    /// Ends the session of `presented`, if it is a token of a live session. Unknown tokens are
    /// not an error (logout gives no oracle).
    pub async fn logout(&self, presented: &str) -> Result<(), SessionError> {
        let Ok(presented) = RefreshToken::parse(presented) else {
            return Ok(());
        };
        let sid = presented.sid();
        if let Some(uid) = self.store.end_session(&sid, &presented.hash()).await? {
            log::info!("session {sid} of user {uid} ended by logout");
            metrics::sessions_revoked("logout", 1);
            self.forget(&uid, &sid).await;
        }
        Ok(())
    }

    /// Ends every session of user `uid`.
    pub async fn logout_all(&self, uid: &str) -> Result<(), SessionError> {
        let count = self.store.end_all_sessions(uid, millis(self.policy.max_age)).await?;
        log::info!("user {uid}: logged out everywhere ({count} session ids)");
        metrics::sessions_revoked("logout_all", u64::try_from(count).unwrap_or(u64::MAX));
        Ok(())
    }

    async fn forget(&self, uid: &str, sid: &SessionId) {
        // Best effort: a stale id in the index only costs a DEL of a missing key later.
        if let Err(e) = self.store.forget_session(uid, sid).await {
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
