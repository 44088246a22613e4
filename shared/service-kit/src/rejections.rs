//! The contract's answers for requests refused before a handler runs: a body, path or query
//! the extractors cannot use (their configs, with the body limit), a known path asked with
//! another method (405) and an unknown path (404). Each is an [`ApiError`], so the envelope is
//! the same as a handler's.

use access_token::{ApiError, ErrorCode};
use actix_web::dev::ResourceDef;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, error as actix_error, web};

use crate::limits::MAX_BODY_BYTES;

/// 405 for a known path asked with another method: the contract's envelope (`invalid_request`)
/// and an `Allow` header listing `allowed` (RFC 9110 §15.5.6).
pub fn method_not_allowed(method: &Method, allowed: &[Method]) -> HttpResponse {
    let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    let err =
        ApiError::invalid_request(format!("method {method} is not allowed here; use {allow}"))
            .with_status(StatusCode::METHOD_NOT_ALLOWED);
    let mut res = err.error_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        res.headers_mut().insert(header::ALLOW, value);
    }
    res
}

/// The paths a service mounts and their methods, from its OpenAPI document (which is built from
/// the same registrations as the routes), for the answer to a request no route took: 405 with
/// `Allow` when the path is known, 404 otherwise. (actix's route macros guard the whole resource
/// by method, so another method on a known path falls through to the default service.)
#[derive(Debug, Clone, Default)]
pub struct Unrouted {
    paths: Vec<(ResourceDef, Vec<Method>)>,
}

impl Unrouted {
    /// The paths and methods of `doc`.
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let paths = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    (&item.get, Method::GET),
                    (&item.post, Method::POST),
                    (&item.put, Method::PUT),
                    (&item.delete, Method::DELETE),
                    (&item.patch, Method::PATCH),
                    (&item.head, Method::HEAD),
                    (&item.options, Method::OPTIONS),
                    (&item.trace, Method::TRACE),
                ];
                let methods = methods.into_iter().filter(|(op, _)| op.is_some()).map(|(_, m)| m);
                (ResourceDef::new(path.as_str()), methods.collect())
            })
            .collect();
        Self { paths }
    }

    /// The methods of the known path `path` matches, if any.
    pub fn allowed(&self, path: &str) -> Option<&[Method]> {
        self.paths.iter().find(|(def, _)| def.is_match(path)).map(|(_, m)| m.as_slice())
    }
}

/// The app's `default_service` (with [`Unrouted`] in its app data): 405 + `Allow` for another
/// method on a known path, else 404 `not_found`, both in the contract's envelope.
pub async fn unrouted(req: HttpRequest, known: Option<web::Data<Unrouted>>) -> HttpResponse {
    match known.as_deref().and_then(|k| k.allowed(req.path())) {
        Some(allowed) if !allowed.contains(req.method()) => {
            method_not_allowed(req.method(), allowed)
        }
        _ => ApiError::not_found().error_response(),
    }
}

/// Any path not served: 404 `not_found` in the contract's envelope (a default service).
pub async fn not_found() -> HttpResponse {
    ApiError::not_found().error_response()
}

/// JSON extractor settings: the body limit, and contract errors for bad bodies.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(MAX_BODY_BYTES).error_handler(|err, _req: &HttpRequest| {
        let api = match &err {
            actix_error::JsonPayloadError::OverflowKnownLength { .. }
            | actix_error::JsonPayloadError::Overflow { .. } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            ),
            actix_error::JsonPayloadError::ContentType => {
                ApiError::invalid_request("Content-Type must be application/json")
            }
            actix_error::JsonPayloadError::Deserialize(e) => {
                ApiError::invalid_request(format!("invalid JSON body: {}", describe_json_error(e)))
            }
            _ => ApiError::invalid_request("could not read the request body"),
        };
        api.into()
    })
}

/// Form extractor settings: the body limit, and contract errors for bad bodies.
pub fn form_config() -> web::FormConfig {
    web::FormConfig::default().limit(MAX_BODY_BYTES).error_handler(|err, _req: &HttpRequest| {
        let api = match &err {
            actix_error::UrlencodedError::Overflow { .. } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            ),
            _ => ApiError::invalid_request("invalid form body"),
        };
        api.into()
    })
}

/// Path extractor settings: a bad path segment is a 404, not a 500.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err, _req| ApiError::not_found().into())
}

/// Query extractor settings.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|_err, _req| ApiError::invalid_request("invalid query string").into())
}

/// serde_json's message names the field and position without echoing the input's values,
/// except for "unknown variant"/"invalid type" which quote short literals; passwords never
/// reach here as values because every field is a plain string.
fn describe_json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // Keep the description short; serde_json messages are bounded but the input is not.
    msg.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use actix_web::test::{TestRequest, call_service, init_service, read_body};
    use actix_web::{App, get};
    use utoipa_actix_web::AppExt as _;

    use super::*;

    #[utoipa::path(responses((status = 200, description = "ok")))]
    #[get("/items/{id}")]
    async fn item() -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    #[actix_web::test]
    async fn another_method_on_a_known_path_is_a_405_with_allow_and_the_rest_a_404() {
        let (_, doc) = App::new().into_utoipa_app().service(item).split_for_parts();
        let known = Unrouted::from_openapi(&doc);
        assert_eq!(known.allowed("/items/42"), Some(&[Method::GET][..]));
        assert_eq!(known.allowed("/items"), None);
        let app = init_service(
            App::new()
                .app_data(web::Data::new(known))
                .service(item)
                .default_service(web::to(unrouted)),
        )
        .await;
        let res = call_service(&app, TestRequest::get().uri("/items/7").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = call_service(&app, TestRequest::delete().uri("/items/7").to_request()).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers().get(header::ALLOW).unwrap(), "GET");
        let body: serde_json::Value = serde_json::from_slice(&read_body(res).await).unwrap();
        assert_eq!(body["error"], "invalid_request");
        let res = call_service(&app, TestRequest::get().uri("/elsewhere").to_request()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}
