//! The OpenAPI 3.1 document, generated with `utoipa` from the handlers' `#[utoipa::path]`
//! attributes and the body types, served at `GET /openapi.json`.
//!
//! How it is kept true (the same recipe serves the api-server):
//! - each handler carries its path, methods, body and every status it answers;
//! - [`routes::ROUTES`] is the one list of routes: `routes::configure` mounts exactly it, and a
//!   test checks the document lists exactly it;
//! - the error envelope is `access_token::ErrorBody` / `access_token::ErrorCode` themselves; the token
//!   response is described by a local mirror named like `access_token::TokenResponse`, checked
//!   against the real type in the tests below;
//! - statuses any route can answer (`service_kit::openapi::COMMON_ERRORS`: 408, 414, 431, 500) are
//!   added to every operation by [`document`], so no handler can forget them.

use service_kit::openapi::BearerAuth;
use utoipa::{OpenApi, ToSchema};

use crate::routes;

/// Login and refresh answer (mirror of `access_token::TokenResponse`).
#[derive(Debug, ToSchema)]
#[schema(as = TokenResponse)]
#[allow(dead_code)] // a schema only
pub struct TokenResponseSchema {
    /// RS256 JWT (RFC 9068).
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(pattern = "^Bearer$")]
    pub token_type: String,
    /// Seconds the access token lives.
    #[schema(minimum = 0)]
    pub expires_in: u64,
    /// Opaque refresh token; absent when `AUTH_REFRESH_COOKIE=true` (it is then a cookie).
    pub refresh_token: Option<String>,
    /// Seconds the refresh token may still be used.
    #[schema(minimum = 0)]
    pub refresh_expires_in: u64,
}

/// One public key (RFC 7517).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a schema only
pub struct Jwk {
    /// `RSA`.
    pub kty: String,
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// `sig`.
    #[schema(rename = "use")]
    pub use_: String,
    /// `RS256`.
    pub alg: String,
    /// Modulus, base64url.
    pub n: String,
    /// Exponent, base64url.
    pub e: String,
}

/// RFC 7517 JWK Set.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a schema only
pub struct Jwks {
    /// Every published key.
    pub keys: Vec<Jwk>,
}

/// RFC 8414 authorization server metadata.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a schema only
pub struct Metadata {
    /// `AUTH_ISSUER`.
    pub issuer: String,
    /// The JWKS URL.
    pub jwks_uri: String,
    /// The refresh endpoint.
    pub token_endpoint: String,
    /// `["refresh_token"]`.
    pub grant_types_supported: Vec<String>,
    /// `["none"]`.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Empty.
    pub response_types_supported: Vec<String>,
    /// `["articles:read"]`.
    pub scopes_supported: Vec<String>,
}

/// `GET /healthz`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a schema only
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `GET /readyz` when ready.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a schema only
pub struct Ready {
    /// `ready`.
    pub status: String,
    /// The signing key.
    pub kid: String,
}

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "auth-server",
        description = "Registers users, logs them in, signs RS256 access tokens, rotates refresh tokens.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        routes::register,
        routes::login,
        routes::token,
        routes::logout,
        routes::logout_all,
        routes::jwks,
        routes::metadata,
        routes::healthz,
        routes::readyz,
        routes::metrics,
        routes::openapi_json,
    ),
    components(schemas(access_token::ErrorBody, access_token::ErrorCode)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The document, with the statuses of `service_kit::openapi::COMMON_ERRORS` on every operation.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    service_kit::openapi::add_common_responses(&mut doc, service_kit::openapi::COMMON_ERRORS);
    doc
}

/// The document as JSON, made once at start-up.
pub fn json() -> String {
    service_kit::openapi::to_json(&document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_code_schema_lists_every_code_of_shared() {
        let doc = serde_json::to_value(document()).unwrap();
        let listed = &doc["components"]["schemas"]["ErrorCode"]["enum"];
        let listed: Vec<&str> =
            listed.as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        use access_token::ErrorCode as C;
        // An exhaustive match: a new code in `shared` does not compile until it is listed here.
        let all = |c: C| match c {
            C::InvalidRequest
            | C::InvalidCredentials
            | C::InvalidGrant
            | C::UsernameTaken
            | C::InvalidToken
            | C::InsufficientScope
            | C::NotFound
            | C::PayloadTooLarge
            | C::RateLimited
            | C::Unavailable
            | C::InternalError => c.as_str(),
        };
        let codes = [
            C::InvalidRequest,
            C::InvalidCredentials,
            C::InvalidGrant,
            C::UsernameTaken,
            C::InvalidToken,
            C::InsufficientScope,
            C::NotFound,
            C::PayloadTooLarge,
            C::RateLimited,
            C::Unavailable,
            C::InternalError,
        ];
        let mut want: Vec<&str> = codes.into_iter().map(all).collect();
        let mut got = listed.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn the_error_body_and_token_response_schemas_have_the_fields_of_the_shared_types() {
        let doc = serde_json::to_value(document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let fields = |name: &str| -> Vec<String> {
            let mut v: Vec<String> =
                schemas[name]["properties"].as_object().unwrap().keys().cloned().collect();
            v.sort();
            v
        };
        let body = serde_json::to_value(access_token::ApiError::internal().body()).unwrap();
        let mut want: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        want.sort();
        assert_eq!(fields("ErrorBody"), want);
        let tokens = serde_json::to_value(access_token::TokenResponse {
            access_token: "a".into(),
            token_type: "Bearer".into(),
            expires_in: 1,
            refresh_token: Some("r".into()),
            refresh_expires_in: 2,
        })
        .unwrap();
        let mut want: Vec<String> = tokens.as_object().unwrap().keys().cloned().collect();
        want.sort();
        assert_eq!(fields("TokenResponse"), want);
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_operation_documents_the_common_errors() {
        let doc = serde_json::to_value(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, _) in service_kit::openapi::COMMON_ERRORS {
                    assert!(op["responses"][status].is_object(), "{method} {path}: {status}");
                }
            }
        }
    }
}
