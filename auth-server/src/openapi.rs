//! The OpenAPI 3.1 document, served at `GET /openapi.json`: collected by `utoipa_actix_web`
//! from the same registrations that mount the routes ([`crate::routes::configure`]), so a route
//! cannot be served and undocumented or the other way round.
//!
//! How it is kept true (the same recipe serves the api-server):
//! - each handler's `#[utoipa::path]` lists every status it answers and its body, which is the
//!   type the handler serializes (`Registered`, `access_token::TokenResponse`, `Metadata`,
//!   `Health`, `Ready`, `access_token::ErrorBody`); the responses many routes repeat are shared
//!   types (`service_kit::openapi::{RateLimited, Unavailable, BearerRefusals}`);
//! - the JWK Set is jsonwebtoken's `JwkSet`, serialized by the key ring, which has no schema of
//!   its own: [`Jwks`] describes it, and a test holds the served set to it;
//! - statuses any route can answer (`service_kit::openapi::COMMON_ERRORS`: 408, 414, 431, 500) are
//!   added to every operation by [`document`], so no handler can forget them.

use service_kit::openapi::BearerAuth;
use utoipa::{OpenApi, ToSchema};

use crate::routes::{self, Serve};

/// The `basic` security scheme (HTTP Basic, RFC 7617): the introspection clients.
#[derive(Debug)]
pub struct BasicAuth;

impl utoipa::Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// One public key (RFC 7517) of the JWK Set.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // describes jsonwebtoken's `Jwk` as the key ring serializes it
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
#[allow(dead_code)] // describes jsonwebtoken's `JwkSet`
pub struct Jwks {
    /// Every published key.
    pub keys: Vec<Jwk>,
}

/// The document's frame: what is not a route.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "auth-server",
        description = "Registers users, logs them in, signs RS256 access tokens, rotates refresh tokens.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(access_token::ErrorBody, access_token::ErrorCode)),
    modifiers(&BearerAuth, &BasicAuth)
)]
pub struct ApiDoc;

/// The document of the routes `serve` mounts, with the statuses of
/// `service_kit::openapi::COMMON_ERRORS` on every operation.
pub fn document(serve: Serve) -> utoipa::openapi::OpenApi {
    service_kit::openapi::document(
        ApiDoc::openapi(),
        |cfg| routes::configure(cfg, serve),
        crate::VERIFIER_REALM,
        "",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_code_schema_lists_every_code_of_shared() {
        let doc = serde_json::to_value(document(Serve::ApiAndMetrics)).unwrap();
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
            | C::InternalError
            | C::InvalidClient
            | C::Forbidden => c.as_str(),
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
            C::InvalidClient,
            C::Forbidden,
        ];
        let mut want: Vec<&str> = codes.into_iter().map(all).collect();
        let mut got = listed.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn the_error_body_and_token_response_schemas_have_the_fields_of_the_shared_types() {
        let doc = serde_json::to_value(document(Serve::ApiAndMetrics)).unwrap();
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
        let doc = serde_json::to_value(document(Serve::ApiAndMetrics)).unwrap();
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
