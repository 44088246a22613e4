//! The OpenAPI 3.1 document, served at `GET /openapi.json` (no auth): collected by
//! `utoipa_actix_web` from the same registrations that mount the routes
//! ([`routes::configure`]), so a route cannot be served and undocumented or the other way round.
//!
//! How it is kept true (the auth server's recipe):
//! - each handler's `#[utoipa::path]` lists every status it answers and its body;
//! - bodies are the types the handlers serialize (`Article`, `Me`, `Health`, `Ready`) and
//!   `access_token::ErrorBody` itself, not copies; the bearer refusals and the 503 are the
//!   shared `service_kit::openapi::{BearerRefusals, Unavailable}`;
//! - statuses any route can answer (the limits' 408, 413, 414, 431, and 500) are added to every
//!   operation by [`document`], so no handler can forget them.

use service_kit::openapi::BearerAuth;
use utoipa::OpenApi;

use crate::routes::{self, Serve};

/// The document's frame: what is not a route.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "api-server",
        description = "The articles API: a resource server that verifies RS256 access tokens (RFC 9068) with public keys alone. Errors are `{\"error\", \"error_description\"}` (RFC 6749 §5.2 style); refusals of a bearer token carry an RFC 6750 `WWW-Authenticate` challenge.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(access_token::ErrorBody, access_token::ErrorCode)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The statuses every route can answer, whatever it does.
const COMMON: &[(&str, &str)] = &[(
    "413",
    "A request body declared larger than 16 KiB (`payload_too_large`); no route reads a body.",
)];

/// The document of the routes `serve` mounts, with the common statuses on every operation.
pub fn document(serve: Serve) -> utoipa::openapi::OpenApi {
    let mut doc = service_kit::openapi::document(
        ApiDoc::openapi(),
        |cfg| routes::configure(cfg, serve),
        crate::REALM,
        crate::REQUIRED_SCOPE,
    );
    service_kit::openapi::add_common_responses(&mut doc, COMMON);
    doc
}

/// The document as JSON, made once at start-up and shared by every worker.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub actix_web::web::Bytes);

impl OpenApiJson {
    /// Serializes `doc`.
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        Self(service_kit::openapi::to_json(doc).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_every_operation_documents_the_common_errors() {
        let doc = serde_json::to_value(document(Serve::ApiAndMetrics)).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, _) in service_kit::openapi::COMMON_ERRORS.iter().chain(COMMON) {
                    assert!(op["responses"][status].is_object(), "{method} {path}: {status}");
                }
            }
        }
    }

    #[test]
    fn the_bodies_are_the_real_types() {
        let doc = serde_json::to_value(document(Serve::ApiAndMetrics)).unwrap();
        let schemas = &doc["components"]["schemas"];
        let fields = |name: &str| -> Vec<String> {
            let mut v: Vec<String> =
                schemas[name]["properties"].as_object().unwrap().keys().cloned().collect();
            v.sort();
            v
        };
        assert_eq!(fields("Article"), ["author", "body", "id", "title"]);
        assert_eq!(fields("Me"), ["exp", "name", "preferred_username", "roles", "scope", "sub"]);
        assert_eq!(fields("ErrorBody"), ["error", "error_description"]);
    }
}
