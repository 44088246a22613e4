//! The error envelope of every service that speaks the contract:
//! `{"error": "<code>", "error_description": "..."}` (RFC 6749 §5.2 style).
//!
//! It lives with the tokens because it is wire contract: the [`Authenticated`](crate::Authenticated)
//! extractor answers with it, and so does every handler of a service. Every error ends up as
//! an [`ApiError`]; its [`ResponseError`] impl is the only place where an error becomes an HTTP
//! response, so status, body and headers stay consistent.

use std::borrow::Cow;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

/// The error codes of the contract, one per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed request: bad JSON, a bad field, a missing parameter.
    InvalidRequest,
    /// Wrong username or password (the same for both).
    InvalidCredentials,
    /// Refresh token unknown, expired, revoked or spent.
    InvalidGrant,
    /// Registration of a username that exists.
    UsernameTaken,
    /// Access token missing a valid signature or claim.
    InvalidToken,
    /// Access token valid but without the needed scope.
    InsufficientScope,
    /// No such resource (or not the caller's).
    NotFound,
    /// Request body over the limit.
    PayloadTooLarge,
    /// Too many attempts; see `Retry-After`.
    RateLimited,
    /// A dependency (Redis) is down or the server is saturated; see `Retry-After`.
    Unavailable,
    /// Anything unexpected. Never carries details.
    InternalError,
    /// A client authentication failed (RFC 6749 §5.2): the auth server's introspection caller.
    InvalidClient,
    /// A cross-site request refused: a refresh cookie sent from an origin that is neither the
    /// issuer's nor listed, or a refused CORS preflight.
    Forbidden,
}

impl ErrorCode {
    /// The code as it appears in the `error` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidGrant => "invalid_grant",
            Self::UsernameTaken => "username_taken",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::NotFound => "not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::InternalError => "internal_error",
            Self::InvalidClient => "invalid_client",
            Self::Forbidden => "forbidden",
        }
    }

    /// The HTTP status the contract gives this code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest | Self::InvalidGrant => StatusCode::BAD_REQUEST,
            Self::InvalidCredentials | Self::InvalidToken | Self::InvalidClient => {
                StatusCode::UNAUTHORIZED
            }
            Self::InsufficientScope | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::UsernameTaken => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON error body (RFC 6749 §5.2 style).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: ErrorCode,
    /// Human-readable reason; never a token, a key path or an internal message.
    pub error_description: String,
}

/// An error response: code, description and the headers the contract asks for.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    description: Cow<'static, str>,
    www_authenticate: Option<String>,
    retry_after: Option<u64>,
    status: Option<StatusCode>,
}

impl ApiError {
    /// An error with the contract's status for `code`.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            www_authenticate: None,
            retry_after: None,
            status: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// 503 `unavailable` with `Retry-After`.
    pub fn unavailable(retry_after_secs: u64) -> Self {
        Self::new(ErrorCode::Unavailable, "the service is temporarily unavailable, retry later")
            .with_retry_after(retry_after_secs)
    }

    /// 500 `internal_error`; the cause must be logged by the caller, never sent.
    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "internal error")
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "not found")
    }

    /// Adds a `WWW-Authenticate` header (RFC 6750 §3).
    pub fn with_www_authenticate(mut self, value: impl Into<String>) -> Self {
        self.www_authenticate = Some(value.into());
        self
    }

    /// Adds a `Retry-After` header, in seconds (at least 1).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// Overrides the status (e.g. 401 without an error code for a missing bearer token).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human-readable description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The `WWW-Authenticate` challenge sent with this error, if any.
    pub fn www_authenticate(&self) -> Option<&str> {
        self.www_authenticate.as_deref()
    }

    /// The body this error is sent with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: self.code, error_description: self.description.to_string() }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status.unwrap_or_else(|| self.code.status())
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if let Some(value) = &self.www_authenticate
            && let Ok(value) = HeaderValue::from_str(value)
        {
            res.insert_header((header::WWW_AUTHENTICATE, value));
        }
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs));
        }
        res.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serializes_to_its_contract_string() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::InvalidCredentials,
            ErrorCode::InvalidGrant,
            ErrorCode::UsernameTaken,
            ErrorCode::InvalidToken,
            ErrorCode::InsufficientScope,
            ErrorCode::NotFound,
            ErrorCode::PayloadTooLarge,
            ErrorCode::RateLimited,
            ErrorCode::Unavailable,
            ErrorCode::InternalError,
            ErrorCode::InvalidClient,
            ErrorCode::Forbidden,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
        }
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let res = ApiError::unavailable(0).error_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "1");
    }
}
