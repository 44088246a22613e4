//! The contract's answers for requests refused before a handler runs: a body, path or query
//! the extractors cannot use (their configs, with the body limit), and a known path asked with
//! another method (405). Each is an [`ApiError`], so the envelope is the same as a handler's.

use access_token::{ApiError, ErrorCode};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, error as actix_error, web};

use crate::limits::MAX_BODY_BYTES;

/// 405 for a known path asked with another method: the contract's envelope (`invalid_request`)
/// and an `Allow` header listing `allowed` (RFC 9110 §15.5.6).
pub fn method_not_allowed(
    method: &actix_web::http::Method,
    allowed: &[actix_web::http::Method],
) -> HttpResponse {
    let allow = allowed.iter().map(actix_web::http::Method::as_str).collect::<Vec<_>>().join(", ");
    let err =
        ApiError::invalid_request(format!("method {method} is not allowed here; use {allow}"))
            .with_status(StatusCode::METHOD_NOT_ALLOWED);
    let mut res = err.error_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        res.headers_mut().insert(header::ALLOW, value);
    }
    res
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
