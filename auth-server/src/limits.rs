//! Limits on every input that the extractors do not already bound.
//!
//! | what | limit | answer |
//! |---|---|---|
//! | request head (line + headers) | 128 KiB, 96 headers (actix-http) | connection closed / 431 |
//! | one header line (name + value) | [`MAX_HEADER_BYTES`] = 8 KiB | 431 `invalid_request` |
//! | request target (path + query) | [`MAX_URI_BYTES`] = 8 KiB | 414 `invalid_request` |
//! | body | `shared::error::MAX_BODY_BYTES` = 16 KiB | 413 `payload_too_large` |
//! | fields | username 64, password 128, name 128 characters; refresh token 64 | 400 |
//! | head arrival | [`CLIENT_REQUEST_TIMEOUT`] | 408, connection closed |
//! | whole request (body included) | [`REQUEST_DEADLINE`] | 408 `invalid_request` |
//! | idle keep-alive | [`KEEP_ALIVE`] | connection closed |

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use shared::ApiError;

/// Longest header line (name and value) accepted.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Longest request target (path and query) accepted.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// A client must send the request head within this time of connecting (slowloris).
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// After the response, how long a client may take to close the connection.
pub const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an idle keep-alive connection stays open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The longest any request may take, reading a slow body included.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// Checks the header lines and the request target, then runs the request under
/// [`REQUEST_DEADLINE`].
pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(err) = head_error(&req) {
        return Err(err.into());
    }
    match tokio::time::timeout(REQUEST_DEADLINE, next.call(req)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::invalid_request("the request took too long")
            .with_status(StatusCode::REQUEST_TIMEOUT)
            .into()),
    }
}

fn head_error(req: &ServiceRequest) -> Option<ApiError> {
    let uri = req.uri();
    let target = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if target > MAX_URI_BYTES {
        return Some(
            ApiError::invalid_request(format!(
                "the request target is longer than {MAX_URI_BYTES} bytes"
            ))
            .with_status(StatusCode::URI_TOO_LONG),
        );
    }
    let too_long = req
        .headers()
        .iter()
        .any(|(name, value)| name.as_str().len() + value.len() > MAX_HEADER_BYTES);
    too_long.then(|| {
        ApiError::invalid_request(format!("a header line is longer than {MAX_HEADER_BYTES} bytes"))
            .with_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    })
}
