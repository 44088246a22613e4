//! JSON request bodies whose errors name the field: [`Json`], an extractor like
//! `actix_web::web::Json` (same Content-Type rule, the body limit of [`crate::limits`]) that
//! deserializes through `serde_path_to_error`, so `{"username": 5}` is refused with "`username`
//! must be a string" rather than a position. Messages never quote a value of the body (a
//! password sent as a number stays out of the answer).

use std::future::Future;
use std::pin::Pin;

use access_token::{ApiError, ErrorCode};
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::mime;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use crate::limits::MAX_BODY_BYTES;

/// A JSON body of type `T`; a bad one is 400 `invalid_request` naming the field (see
/// [`parse`]), an oversized one 413 `payload_too_large`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime::Mime>().ok())
            .is_some_and(|m| m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON));
        let payload = payload.take();
        Box::pin(async move {
            if !is_json {
                return Err(
                    ApiError::invalid_request("Content-Type must be application/json").into()
                );
            }
            let body = read_body(payload).await?;
            parse(&body).map(Json).map_err(Into::into)
        })
    }
}

/// Reads a request body of at most [`MAX_BODY_BYTES`] (413 `payload_too_large` past it, without
/// reading the rest).
pub async fn read_body(mut payload: Payload) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::invalid_request("could not read the request body"))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `body`, a JSON object, as a `T`; else 400 `invalid_request` whose description names the field
/// that is missing or has the wrong type (`invalid JSON body: `username` must be a string`), or
/// says where the JSON is malformed. (serde would also read a struct from an array of its
/// fields in order; a body is an object.)
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|&b| b != b'{') {
        return Err(ApiError::invalid_request("invalid JSON body: must be an object"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| describe(&e))?;
    // Trailing bytes after the value are malformed JSON too.
    de.end()
        .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {}", position(&e))))?;
    Ok(value)
}

fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    let path = e.path().to_string();
    let text = inner.to_string();
    let message = text.split(" at line ").next().unwrap_or_default();
    let what = if inner.is_data() {
        if let Some(field) = message.strip_prefix("missing field ") {
            // The path is the object that lacks it.
            let field = field.trim_matches('`');
            if path == "." {
                format!("`{field}` is required")
            } else {
                format!("`{path}.{field}` is required")
            }
        } else if let Some((_, expected)) = message.split_once(", expected ") {
            // "invalid type: integer `5`, expected a string": the value is left out.
            format!("`{path}` must be {expected}")
        } else {
            format!("`{path}` is invalid")
        }
    } else {
        position(inner)
    };
    ApiError::invalid_request(format!("invalid JSON body: {}", truncate(&what)))
}

/// Where a syntax error is, without the input.
fn position(e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "it ends too early".to_owned();
    }
    format!("malformed at line {} column {}", e.line(), e.column())
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        username: String,
        password: String,
        #[serde(default)]
        name: Option<String>,
    }

    fn error(body: &str) -> String {
        parse::<Body>(body.as_bytes()).unwrap_err().body().error_description
    }

    #[test]
    fn a_wrong_type_or_a_missing_field_is_named_and_no_value_is_echoed() {
        assert_eq!(
            error(r#"{"username": 5, "password": "x"}"#),
            "invalid JSON body: `username` must be a string"
        );
        let e = error(r#"{"username": "u", "password": 123456789}"#);
        assert_eq!(e, "invalid JSON body: `password` must be a string");
        assert!(!e.contains("123456789"));
        assert_eq!(
            error(r#"{"username": "u", "password": "p", "name": ["x"]}"#),
            "invalid JSON body: `name` must be a string"
        );
        assert_eq!(error(r#"{"username": "u"}"#), "invalid JSON body: `password` is required");
        let e = error(r#"{"username": "u", "password": "hunter2""#);
        assert!(e.starts_with("invalid JSON body:") && !e.contains("hunter2"), "{e}");
        let e = error(r#"{"username": "u", "password": "p"} trailing"#);
        assert!(e.contains("malformed"), "{e}");
        assert!(parse::<Body>(br#"{"username": "u", "password": "p"}"#).is_ok());
        assert_eq!(error(r#" ["u", "p"]"#), "invalid JSON body: must be an object");
    }
}
