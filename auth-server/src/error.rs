//! One error enum per concern, and the one place where each becomes a contract error.
//!
//! Expected outcomes (bad input, wrong password, unknown token) map to their status and code.
//! Unexpected ones are logged here, once, with their cause, and leave as an opaque
//! `internal_error`; a Redis outage leaves as `unavailable` with `Retry-After`.

use access_token::{ApiError, ErrorCode};

use crate::passwords::HashError;
use crate::store::StoreError;
use crate::tokens::{CryptoError, SignError};

/// Seconds a client should wait before retrying when Redis is down.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A bad field in a request body. The description names the field and never echoes a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidField(pub String);

/// `POST /register`.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// A field failed validation.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The username exists.
    #[error("username taken")]
    Taken,
    /// Too many registrations from this client address.
    #[error("rate limited")]
    RateLimited {
        /// `Retry-After`.
        retry_after_secs: u64,
    },
    /// Redis.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing.
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// `POST /login` (credentials; the session part is [`SessionError`]).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password: the same answer for both.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A field longer than any valid one (checked before anything else).
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// Too many failures for this username or from this client address.
    #[error("rate limited")]
    RateLimited {
        /// `Retry-After`.
        retry_after_secs: u64,
    },
    /// Redis.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// Creating the session.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// Sessions: issuing, rotating and ending them.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The refresh token is unknown, expired, revoked or spent (the reason is for the log).
    #[error("invalid grant: {0}")]
    InvalidGrant(&'static str),
    /// Redis.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Random generator or cipher.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Signing the access token.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// A stored successor that the presented token cannot open.
    #[error("stored successor does not open with the presented token")]
    Successor,
    /// The session rotated as often as `AUTH_REFRESH_MAX_ROTATIONS` allows in its window.
    #[error("rotation limit reached")]
    RateLimited {
        /// `Retry-After`.
        retry_after_secs: u64,
    },
    /// A logout everywhere of the user ran while this login stored its session, which was
    /// dropped: the client may log in again.
    #[error("a logout everywhere ran during the login")]
    LoggedOutMeanwhile,
    /// The user was disabled, or its roles or password changed, while this login stored its
    /// session, which was dropped.
    #[error("the user changed during the login")]
    UserChanged {
        /// Disabled (or deleted): the login is refused; otherwise it may be retried.
        disabled: bool,
    },
    /// The bearer token's session has ended (logged out, revoked, or gone).
    #[error("the session has ended")]
    Ended,
}

/// `POST /password`.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The new password breaks the rules.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The current password check (wrong, throttled, Redis, hashing).
    #[error(transparent)]
    Check(#[from] LoginError),
    /// Redis.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing the new password.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// Ending the other sessions.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// The answer to an `/introspect` caller that is not a client of `AUTH_INTROSPECTION_CLIENTS`
/// with its secret (RFC 6749 §5.2; the reason is not told).
pub fn invalid_client() -> ApiError {
    ApiError::new(ErrorCode::InvalidClient, "client authentication failed")
        .with_www_authenticate(r#"Basic realm="auth", charset="UTF-8""#)
}

impl From<crate::revocations::PollError> for ApiError {
    fn from(e: crate::revocations::PollError) -> Self {
        match e {
            crate::revocations::PollError::Busy => {
                log::debug!("GET /revocations refused: too many requests waiting");
                ApiError::new(ErrorCode::Unavailable, "too many requests are waiting; retry later")
                    .with_retry_after(crate::revocations::BUSY_RETRY_AFTER_SECS)
            }
            crate::revocations::PollError::Store(e) => store_error(&e),
        }
    }
}

/// The answer to a bearer token whose session has ended (RFC 6750 challenge of realm `auth`).
pub fn session_ended() -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, "the session has ended").with_www_authenticate(
        r#"Bearer realm="auth", error="invalid_token", error_description="the session has ended""#,
    )
}

fn store_error(e: &StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(cause) => {
            log::warn!("redis unavailable: {cause}");
            ApiError::unavailable(RETRY_AFTER_SECS)
        }
        StoreError::Unexpected(cause) => {
            log::error!("unexpected redis reply: {cause}");
            ApiError::internal()
        }
    }
}

fn hash_error(e: &HashError) -> ApiError {
    match e {
        HashError::Busy => {
            log::warn!("password hashing saturated: request refused");
            ApiError::unavailable(RETRY_AFTER_SECS)
        }
        HashError::Failed(_) => internal(e),
    }
}

fn rate_limited(retry_after_secs: u64) -> ApiError {
    ApiError::new(ErrorCode::RateLimited, "too many attempts; retry later")
        .with_retry_after(retry_after_secs)
}

fn internal(e: &dyn std::error::Error) -> ApiError {
    log::error!("internal error: {e}");
    ApiError::internal()
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Invalid(field) => ApiError::invalid_request(field.0),
            RegisterError::Taken => {
                ApiError::new(ErrorCode::UsernameTaken, "this username is already registered")
            }
            RegisterError::RateLimited { retry_after_secs } => rate_limited(retry_after_secs),
            RegisterError::Store(e) => store_error(&e),
            RegisterError::Hash(e) => hash_error(&e),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => {
                ApiError::new(ErrorCode::InvalidCredentials, "invalid username or password")
            }
            LoginError::Invalid(field) => ApiError::invalid_request(field.0),
            LoginError::RateLimited { retry_after_secs } => rate_limited(retry_after_secs),
            LoginError::Store(e) => store_error(&e),
            LoginError::Hash(e) => hash_error(&e),
            LoginError::Session(e) => e.into(),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::InvalidGrant(reason) => {
                log::debug!("refresh refused: {reason}");
                ApiError::new(
                    ErrorCode::InvalidGrant,
                    "the refresh token is invalid, expired, revoked or already used",
                )
            }
            SessionError::Store(e) => store_error(&e),
            SessionError::Crypto(e) => internal(&e),
            SessionError::Sign(e) => internal(&e),
            SessionError::Successor => internal(&SessionError::Successor),
            SessionError::LoggedOutMeanwhile | SessionError::UserChanged { disabled: false } => {
                ApiError::unavailable(RETRY_AFTER_SECS)
            }
            SessionError::UserChanged { disabled: true } => LoginError::InvalidCredentials.into(),
            SessionError::Ended => session_ended(),
            SessionError::RateLimited { retry_after_secs } => rate_limited(retry_after_secs),
        }
    }
}

impl From<PasswordError> for ApiError {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Invalid(field) => ApiError::invalid_request(field.0),
            PasswordError::Check(e) => e.into(),
            PasswordError::Store(e) => store_error(&e),
            PasswordError::Hash(e) => hash_error(&e),
            PasswordError::Session(e) => e.into(),
        }
    }
}
