//! Verifies the bearer access token of `POST /logout/all` against the server's own public keys.
//!
//! Interim: `shared` is getting the verifier and extractor the api-server uses; once it exports
//! them, this module should be replaced by that extractor (same rules: RS256 pinned, `typ`
//! checked, `iss`/`aud`/`exp`/`nbf` validated, the `kid` only a map key).

use actix_web::HttpRequest;
use actix_web::http::header;
use jsonwebtoken::{Algorithm, Validation};
use shared::claims::ACCESS_TOKEN_TYP;
use shared::{AccessClaims, ApiError, ErrorCode};

use crate::keys::KeyRing;

const REALM: &str = "auth";
/// Clock skew tolerated on `exp`/`nbf`/`iat`, seconds.
const LEEWAY_SECS: u64 = 30;

fn unauthorized(description: &'static str) -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, description).with_www_authenticate(format!(
        "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{description}\""
    ))
}

/// The verified claims of the request's `Authorization: Bearer` token.
pub fn verify_bearer(
    req: &HttpRequest,
    keys: &KeyRing,
    issuer: &str,
    audience: &str,
) -> Result<AccessClaims, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::new(ErrorCode::InvalidToken, "an access token is required")
            .with_www_authenticate(format!("Bearer realm=\"{REALM}\"")));
    };
    let malformed = || {
        ApiError::invalid_request("the Authorization header must be `Bearer <access token>`")
            .with_www_authenticate(format!("Bearer realm=\"{REALM}\", error=\"invalid_request\""))
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(malformed());
    }

    let header = jsonwebtoken::decode_header(token).map_err(|_| unauthorized("malformed token"))?;
    if header.alg != Algorithm::RS256 {
        return Err(unauthorized("the token is not RS256"));
    }
    if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
        return Err(unauthorized("the token is not an access token"));
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.public_key(kid))
        .ok_or_else(|| unauthorized("unknown signing key"))?;

    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<AccessClaims>(token, key.decoding_key(), &validation)
        .map(|data| data.claims)
        .map_err(|e| {
            log::debug!("access token refused: {e}");
            unauthorized("the access token is invalid or expired")
        })
}
