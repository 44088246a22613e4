//! What the two OpenAPI 3.1 documents share, so both describe errors and bearer auth the same
//! way: the `bearer` security scheme ([`BearerAuth`]), error responses whose body is
//! [`ErrorBody`](access_token::ErrorBody) (its schema is derived from the real type, so it cannot
//! drift), the responses many routes repeat as types to name in `responses(...)`
//! ([`RateLimited`], [`Unavailable`], [`BearerRefusals`]), and [`add_common_responses`] for the
//! statuses any route can answer whatever it does (the [`limits`](crate::limits), a 500).

use access_token::ErrorBody;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, Modify};
use utoipa_actix_web::AppExt as _;

/// The name of the bearer security scheme: `security(("bearer" = []))` on an operation.
pub const BEARER: &str = "bearer";

/// Statuses every route of either server can answer, from [`crate::limits`] and the error
/// boundary. Pass them (and any of the server's own) to [`add_common_responses`].
pub const COMMON_ERRORS: &[(&str, &str)] = &[
    ("408", "The request took too long (`invalid_request`)."),
    ("414", "The request target is longer than 8 KiB (`invalid_request`)."),
    ("431", "A header line is longer than 8 KiB (`invalid_request`)."),
    ("500", "Unexpected failure (`internal_error`); never carries details."),
];

/// 429 `rate_limited` with `Retry-After`: `responses(..., RateLimited)`.
#[derive(Debug, IntoResponses)]
#[response(
    status = 429,
    description = "Too many attempts (`rate_limited`); retry after `Retry-After` seconds",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
pub struct RateLimited(pub ErrorBody);

/// 503 `unavailable` with `Retry-After`: `responses(..., Unavailable)`.
#[derive(Debug, IntoResponses)]
#[response(
    status = 503,
    description = "A dependency is down or the server is saturated (`unavailable`); retry after `Retry-After` seconds",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
pub struct Unavailable(pub ErrorBody);

/// What a route that needs a bearer token answers when the token will not do (RFC 6750 §3),
/// each with a `WWW-Authenticate: Bearer realm="..."` challenge: `responses(..., BearerRefusals)`.
/// [`name_bearer_challenge`] writes the service's realm and scope into the descriptions.
#[derive(Debug, IntoResponses)]
pub enum BearerRefusals {
    /// A malformed `Authorization` header (`invalid_request`).
    #[response(
        status = 400,
        headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"{realm}\", error=\"invalid_request\"`"))
    )]
    Malformed(ErrorBody),
    /// No token, or an invalid, expired or revoked one (`invalid_token`).
    #[response(
        status = 401,
        headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"{realm}\"`, with `error` and `error_description` when a token was given"))
    )]
    Unauthorized(ErrorBody),
    /// The token lacks the route's scope (`insufficient_scope`).
    #[response(
        status = 403,
        headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{scope}\"`"))
    )]
    InsufficientScope(ErrorBody),
}

/// `#[openapi(modifiers(&BearerAuth))]`: adds the `bearer` HTTP security scheme (JWT).
#[derive(Debug, Clone, Copy)]
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An RS256 access token (RFC 9068) from the auth server."))
                    .build(),
            ),
        );
    }
}

/// A service's document: `frame` (its `#[derive(OpenApi)]`: info, schemas, security schemes)
/// with the routes `configure` registers, collected by `utoipa_actix_web` from the same
/// registrations that mount them (so a route cannot be served and undocumented or the other way
/// round); the bearer challenge named ([`name_bearer_challenge`]) and [`COMMON_ERRORS`] on every
/// operation.
pub fn document(
    frame: OpenApi,
    configure: impl FnOnce(&mut utoipa_actix_web::service_config::ServiceConfig),
    realm: &str,
    scope: &str,
) -> OpenApi {
    let (_, mut doc) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(frame)
        .configure(configure)
        .split_for_parts();
    name_bearer_challenge(&mut doc, realm, scope);
    add_common_responses(&mut doc, COMMON_ERRORS);
    doc
}

/// Writes `realm` and `scope` into the `{realm}` and `{scope}` of the [`BearerRefusals`]
/// header descriptions of every operation of `doc` (an empty scope leaves `scope=` out).
pub fn name_bearer_challenge(doc: &mut OpenApi, realm: &str, scope: &str) {
    for op in operations(doc) {
        for response in op.responses.responses.values_mut() {
            let RefOr::T(response) = response else { continue };
            for header in response.headers.values_mut() {
                if let Some(text) = header.description.as_mut() {
                    if scope.is_empty() {
                        *text = text.replace(", scope=\"{scope}\"", "");
                    }
                    *text = text.replace("{realm}", realm).replace("{scope}", scope);
                }
            }
        }
    }
}

fn operations(doc: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// Adds each `(status, description)` of `statuses` as an [`error_response`] to every operation
/// of `doc` that does not already document that status.
pub fn add_common_responses(doc: &mut OpenApi, statuses: &[(&str, &str)]) {
    for op in operations(doc) {
        add_to_operation(op, statuses);
    }
}

fn add_to_operation(op: &mut Operation, statuses: &[(&str, &str)]) {
    for (status, description) in statuses {
        op.responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| RefOr::T(error_response(description)));
    }
}

/// A response whose body is the error envelope (`#/components/schemas/ErrorBody`).
pub fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))))
                .build(),
        )
        .build()
}

/// The document as JSON (made once at start-up); `{}` and an error log if it cannot be.
pub fn to_json(doc: &OpenApi) -> String {
    doc.to_json().unwrap_or_else(|e| {
        log::error!("cannot serialize the OpenAPI document: {e}");
        "{}".to_owned()
    })
}

#[cfg(test)]
mod tests {
    use utoipa::{OpenApi as _, ToSchema};

    use super::*;
    use access_token::{ErrorBody, ErrorCode};

    #[derive(utoipa::OpenApi)]
    #[openapi(components(schemas(ErrorBody, ErrorCode)), modifiers(&BearerAuth))]
    struct Doc;

    #[test]
    fn the_error_schemas_are_the_real_types() {
        let doc = serde_json::to_value(Doc::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let codes: Vec<&str> = schemas["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(codes.contains(&"invalid_token") && codes.contains(&"forbidden"), "{codes:?}");
        assert_eq!(codes.len(), 13, "the contract's codes, invalid_client and forbidden included");
        let body = serde_json::to_value(access_token::ApiError::internal().body()).unwrap();
        for field in body.as_object().unwrap().keys() {
            assert!(schemas["ErrorBody"]["properties"][field].is_object(), "{field}");
        }
        assert_eq!(ErrorBody::name(), "ErrorBody");
        assert_eq!(doc["components"]["securitySchemes"][BEARER]["scheme"], "bearer");
    }
}
