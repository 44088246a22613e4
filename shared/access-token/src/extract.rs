//! The `Authenticated` actix-web extractor: a handler that takes it cannot run without a
//! verified access token, and no handler reads `Authorization` itself.
//!
//! Failures answer the contract's table (RFC 6750 §3), with the realm and scope of the
//! [`Verifier`] found in the app data:
//!
//! | case | status, `error` | `WWW-Authenticate` |
//! |---|---|---|
//! | no `Authorization` header | 401 `invalid_token` | `Bearer realm="R"` |
//! | malformed header | 400 `invalid_request` | `Bearer realm="R", error="invalid_request"` |
//! | invalid token | 401 `invalid_token` | `Bearer realm="R", error="invalid_token", error_description="..."` |
//! | valid token without the scope | 403 `insufficient_scope` | `Bearer realm="R", error="insufficient_scope", scope="S"` |
//! | valid token of an ended session (on the [revocation list](crate::revocation)) | 401 `invalid_token` "the session has ended" | as for an invalid token |
//! | valid token, revocation list older than its staleness limit | 503 `unavailable` + `Retry-After` | none |
//!
//! A service that names no realm ([`VerifierConfig::realm`](crate::VerifierConfig::realm))
//! gets the same challenges without `realm="R"` (bare `Bearer` for a missing header).
//!
//! Decisions where the contract is silent:
//! - No header: RFC 6750 puts no error code in the challenge, but every body of ours carries
//!   an `error`; the body says `invalid_token` ("an access token is required"), the header
//!   stays the bare `Bearer realm="R"`.
//! - Malformed: a scheme other than `Bearer` (e.g. `Basic`), `Bearer` with no token, more than
//!   one space, characters outside RFC 6750's `b64token`, a non-ASCII value, or two
//!   `Authorization` headers. The scheme is matched case-insensitively (`bearer` works).
//! - A token over [`MAX_TOKEN_BYTES`](crate::verify::MAX_TOKEN_BYTES) is an invalid token (401),
//!   not a malformed request: its syntax may be fine, it is refused for its size.

use std::future::{Future, Ready, ready};
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::dev::Payload;
use actix_web::http::header::{AUTHORIZATION, HeaderValue};
use actix_web::{FromRequest, HttpRequest, web};

use crate::claims::AccessClaims;
use crate::error::{ApiError, ErrorCode};
use crate::verify::{MAX_TOKEN_BYTES, Verifier, VerifyError};

/// The verified claims of the request's bearer token.
///
/// Put it in a handler's arguments; the handler only runs when the token verified (signature,
/// `typ`, `iss`, `aud`, time, scope). Needs a `web::Data<Verifier>` in the app data.
#[derive(Debug, Clone)]
pub struct Authenticated(Arc<AccessClaims>);

impl Authenticated {
    /// The verified claims.
    pub fn claims(&self) -> &AccessClaims {
        &self.0
    }

    /// The verified claims, owned.
    pub fn into_claims(self) -> AccessClaims {
        Arc::unwrap_or_clone(self.0)
    }
}

impl Deref for Authenticated {
    type Target = AccessClaims;

    fn deref(&self) -> &AccessClaims {
        &self.0
    }
}

/// The extractor's future: ready at once when the token's key is loaded (the common case, no
/// allocation), boxed only when an unknown `kid` needs a key re-read.
// The ready variant is large on purpose: boxing it would add the allocation this type avoids.
#[allow(clippy::large_enum_variant)]
pub enum AuthFuture {
    /// Decided synchronously.
    Ready(Ready<Result<Authenticated, ApiError>>),
    /// Waiting for a key re-read.
    Refreshing(Pin<Box<dyn Future<Output = Result<Authenticated, ApiError>>>>),
}

impl std::fmt::Debug for AuthFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ready(_) => "AuthFuture::Ready",
            Self::Refreshing(_) => "AuthFuture::Refreshing",
        })
    }
}

impl Future for AuthFuture {
    type Output = Result<Authenticated, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Ready(ready) => Pin::new(ready).poll(cx),
            Self::Refreshing(fut) => fut.as_mut().poll(cx),
        }
    }
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = AuthFuture;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(verifier) = req.app_data::<web::Data<Verifier>>() else {
            log::error!("Authenticated used on a route without web::Data<Verifier>");
            return AuthFuture::Ready(ready(Err(ApiError::internal())));
        };
        let refuse =
            |e: BearerError| AuthFuture::Ready(ready(Err(e.into_api_error(verifier.realm()))));
        let value = match bearer_header(req) {
            Ok(value) => value,
            Err(e) => return refuse(e),
        };
        // The header's syntax ([`bearer_token`], a scan of the whole ~1 KiB token) is checked
        // only when the token does not verify: a verified token is three base64url segments,
        // so it would pass. A malformed header is still answered 400, before any key re-read.
        let token = match split_bearer(value) {
            Some(token) => token,
            None => match bearer_token(value) {
                Ok(token) => token,
                Err(e) => return refuse(e),
            },
        };
        let err = match verifier.verify_now_shared(token) {
            Ok(claims) => return AuthFuture::Ready(ready(finish(Ok(claims), verifier))),
            Err(err) => err,
        };
        if let Err(e) = bearer_token(value) {
            return refuse(e);
        }
        match err {
            VerifyError::UnknownKid => {
                // Rare: a key we have not seen yet. Own what the wait needs.
                let verifier = web::Data::clone(verifier);
                let value = value.clone();
                AuthFuture::Refreshing(Box::pin(async move {
                    let token =
                        bearer_token(&value).map_err(|e| e.into_api_error(verifier.realm()))?;
                    let result = verifier.verify_shared(token).await;
                    finish(result, &verifier)
                }))
            }
            err => AuthFuture::Ready(ready(finish(Err(err), verifier))),
        }
    }
}

/// The token of a `Bearer <token>` header, found without checking its characters (see
/// [`bearer_token`] for that): `None` when the scheme is not `Bearer` or the token is not
/// UTF-8.
fn split_bearer(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    let space = memchr::memchr(b' ', bytes)?;
    let (scheme, token) = (bytes.get(..space)?, bytes.get(space + 1..)?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    std::str::from_utf8(token).ok()
}

fn finish(
    result: Result<Arc<AccessClaims>, VerifyError>,
    verifier: &Verifier,
) -> Result<Authenticated, ApiError> {
    crate::metrics::record_verification(&result);
    match result {
        Ok(claims) => Ok(Authenticated(claims)),
        Err(err) => {
            log::debug!("access token refused: {err}");
            Err(token_error(&err, verifier.realm()))
        }
    }
}

/// `Retry-After` of the 503 answered while the revocation list is out of date.
const STALE_RETRY_AFTER: u64 = 5;

/// The response for a refused token: 503 `unavailable` while the revocation list is older
/// than its staleness limit, 403 `insufficient_scope` or 401 `invalid_token`, with
/// the RFC 6750 challenge for `realm`. Public so other entry points (a WebSocket upgrade, a
/// handler verifying a token from a body) answer exactly like the extractor.
pub fn token_error(err: &VerifyError, realm: Option<&str>) -> ApiError {
    let description = err.to_string();
    match err {
        // Not the token's fault: no challenge, a retry later may pass.
        VerifyError::RevocationListStale => {
            ApiError::new(ErrorCode::Unavailable, description).with_retry_after(STALE_RETRY_AFTER)
        }
        VerifyError::InsufficientScope(scope) => {
            let challenge =
                challenge(realm, &[("error", "insufficient_scope"), ("scope", scope.as_str())]);
            ApiError::new(ErrorCode::InsufficientScope, description)
                .with_www_authenticate(challenge)
        }
        _ => {
            let challenge = challenge(
                realm,
                &[("error", "invalid_token"), ("error_description", description.as_str())],
            );
            ApiError::new(ErrorCode::InvalidToken, description).with_www_authenticate(challenge)
        }
    }
}

/// `Bearer realm="R", k="v", ...` (RFC 6750 §3); without a realm and parameters, `Bearer`.
fn challenge(realm: Option<&str>, params: &[(&str, &str)]) -> String {
    let mut out = String::from("Bearer");
    let realm = realm.map(|r| ("realm", r));
    for (i, (name, value)) in realm.iter().chain(params).enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        out.push_str(name);
        out.push_str("=\"");
        out.push_str(&quoted(value));
        out.push('"');
    }
    out
}

/// Why the `Authorization` header could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization` header at all.
    Missing,
    /// A header that is not `Bearer <b64token>`; the text says what is wrong.
    Malformed(&'static str),
}

impl BearerError {
    /// The contract's response for this failure, for `realm`.
    pub fn into_api_error(self, realm: Option<&str>) -> ApiError {
        match self {
            Self::Missing => ApiError::new(ErrorCode::InvalidToken, "an access token is required")
                .with_www_authenticate(challenge(realm, &[])),
            Self::Malformed(why) => ApiError::new(ErrorCode::InvalidRequest, why)
                .with_www_authenticate(challenge(realm, &[("error", "invalid_request")])),
        }
    }
}

/// The single `Authorization` header of `req`.
fn bearer_header(req: &HttpRequest) -> Result<&HeaderValue, BearerError> {
    let mut values = req.headers().get_all(AUTHORIZATION);
    let value = values.next().ok_or(BearerError::Missing)?;
    if values.next().is_some() {
        return Err(BearerError::Malformed("more than one Authorization header"));
    }
    Ok(value)
}

/// Parses `Bearer <token>` (RFC 6750 §2.1; the scheme is case-insensitive).
pub fn bearer_token(value: &HeaderValue) -> Result<&str, BearerError> {
    // `HeaderValue::to_str`'s test (visible ASCII or tab), in a form the compiler vectorises:
    // the header is a whole token (~1 KiB), on every request.
    let not_ascii = || BearerError::Malformed("the Authorization header is not ASCII");
    if !is_visible_ascii(value.as_bytes()) {
        return Err(not_ascii());
    }
    let text = std::str::from_utf8(value.as_bytes()).map_err(|_| not_ascii())?;
    let Some((scheme, token)) = text.split_once(' ') else {
        return Err(if text.eq_ignore_ascii_case("bearer") {
            BearerError::Malformed("no token after Bearer")
        } else {
            BearerError::Malformed("expected Authorization: Bearer <token>")
        });
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Malformed("the Authorization scheme must be Bearer"));
    }
    if token.is_empty() {
        return Err(BearerError::Malformed("no token after Bearer"));
    }
    if token.starts_with(' ') {
        return Err(BearerError::Malformed("exactly one space must follow Bearer"));
    }
    // An oversized token is refused by the verifier (401) without scanning it here.
    if token.len() <= MAX_TOKEN_BYTES && !is_b64token(token) {
        return Err(BearerError::Malformed("the token has characters outside base64url"));
    }
    Ok(token)
}

/// Whether every byte is visible ASCII or a tab (what [`HeaderValue::to_str`] accepts). No
/// early exit and no branch per byte, so it compiles to vector code.
fn is_visible_ascii(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |ok, &b| ok & ((b.wrapping_sub(0x20) < 0x5f) | (b == b'\t')))
}

/// RFC 6750 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty() && body.bytes().fold(true, |ok, b| ok & is_b64token_char(b))
}

/// One character of a `b64token` before its `=` padding; branch-free (see [`is_b64token`]).
fn is_b64token_char(b: u8) -> bool {
    // `b | 0x20` is the lowercase of a letter, and no other byte lands in `a..=z` that way.
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter
        | digit
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

/// Makes `text` safe inside a quoted-string: our descriptions never hold `"` or `\`, but a
/// realm or scope comes from configuration.
fn quoted(text: &str) -> std::borrow::Cow<'_, str> {
    if text.bytes().all(|b| b != b'"' && b != b'\\' && (b == b'\t' || !b.is_ascii_control())) {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(
            text.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_branch_free_byte_checks_agree_with_their_definitions() {
        for b in 0..=u8::MAX {
            let visible = HeaderValue::from_bytes(&[b]).is_ok_and(|v| v.to_str().is_ok());
            assert_eq!(is_visible_ascii(&[b]), visible, "byte {b:#x}");
            let b64 =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(is_b64token_char(b), b64, "byte {b:#x}");
        }
        assert!(is_visible_ascii(b"Bearer abc.DEF_-~+/=\t"));
        assert!(!is_visible_ascii(b"Bearer abc\x7f"));
        assert!(is_b64token("abc.DEF_-~+/=="));
        assert!(!is_b64token("=="));
        assert!(!is_b64token("a=b"));
        // A bad byte anywhere in a long token.
        let long = "aB3-._~+/".repeat(100);
        assert!(is_b64token(&long));
        for at in [0, 31, 32, 500, long.len() - 1] {
            let mut bad = long.clone().into_bytes();
            bad[at] = b'!';
            assert!(!is_b64token(std::str::from_utf8(&bad).unwrap()), "bad byte at {at}");
        }
    }

    fn parse(value: &str) -> Result<&str, BearerError> {
        // Leak is fine in a test: HeaderValue borrows.
        let value: &'static HeaderValue =
            Box::leak(Box::new(HeaderValue::from_str(value).unwrap()));
        bearer_token(value)
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        assert_eq!(parse("bearer abc.def.ghi"), Ok("abc.def.ghi"));
        assert_eq!(parse("BEARER abc.def.ghi"), Ok("abc.def.ghi"));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "Bearer",
            "Bearer  abc.def.ghi",
            "Basic dXNlcjpwYXNz",
            "abc.def.ghi",
            "Bearer a b",
            "Bearer a\"b",
        ] {
            assert!(matches!(parse(bad), Err(BearerError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn challenges_name_the_realm_only_when_there_is_one() {
        assert_eq!(BearerError::Missing.into_api_error(None).www_authenticate(), Some("Bearer"));
        assert_eq!(
            BearerError::Missing.into_api_error(Some("photos")).www_authenticate(),
            Some("Bearer realm=\"photos\"")
        );
        let scope = token_error(&VerifyError::InsufficientScope("photos:read".into()), None);
        assert_eq!(
            scope.www_authenticate(),
            Some("Bearer error=\"insufficient_scope\", scope=\"photos:read\"")
        );
        let expired = token_error(&VerifyError::Expired, Some("p\"x"));
        assert_eq!(
            expired.www_authenticate(),
            Some(
                "Bearer realm=\"px\", error=\"invalid_token\", \
                 error_description=\"the token has expired\""
            )
        );
    }

    #[test]
    fn quoted_strings_cannot_be_broken_out_of() {
        assert_eq!(quoted("ar\"ti\\cles"), "articles");
        assert_eq!(quoted("articles"), "articles");
    }
}
