//! Limits on every input that the extractors do not already bound, the same in both servers.
//!
//! | what | limit | answer |
//! |---|---|---|
//! | request head (line + headers) | 128 KiB, 96 headers (actix-http) | connection closed / 431 |
//! | one header line (name + value) | [`MAX_HEADER_BYTES`] = 8 KiB | 431 `invalid_request` |
//! | request target (path + query) | [`MAX_URI_BYTES`] = 8 KiB | 414 `invalid_request` |
//! | head arrival | [`CLIENT_REQUEST_TIMEOUT`] | 408, connection closed |
//! | whole request (body included) | [`REQUEST_DEADLINE`] | 408 `invalid_request` |
//! | idle keep-alive | [`KEEP_ALIVE`] | connection closed |
//! | after the response, closing | [`CLIENT_DISCONNECT_TIMEOUT`] | connection dropped |
//!
//! Bodies are bounded by the extractors' configs ([`crate::rejections::json_config`],
//! [`crate::rejections::form_config`], [`MAX_BODY_BYTES`]).
//!
//! [`check`] applies the header-line limit to every header. A resource server whose
//! `Authorization` header carries the token uses [`head_error`] with that header exempt, so an
//! over-long token gets the contract's 401 with `WWW-Authenticate` from the verifier (which
//! refuses tokens over [`access_token::verify::MAX_TOKEN_BYTES`] before parsing) rather than a bare 431;
//! it is still bounded by the 128 KiB head limit.

use std::future::Future;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderName;
use actix_web::middleware::Next;

use access_token::ApiError;

/// Largest request body either server accepts.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

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

/// Middleware (`actix_web::middleware::from_fn(check)`): checks every header line and the
/// request target, then runs the request under [`REQUEST_DEADLINE`].
pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(err) = head_error(&req, &[]) {
        return Err(err.into());
    }
    within_deadline(next.call(req)).await
}

/// Runs a request under [`REQUEST_DEADLINE`]; past it, 408 `invalid_request`.
pub async fn within_deadline<T>(
    request: impl Future<Output = Result<T, actix_web::Error>>,
) -> Result<T, actix_web::Error> {
    match tokio::time::timeout(REQUEST_DEADLINE, request).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::invalid_request("the request took too long")
            .with_status(StatusCode::REQUEST_TIMEOUT)
            .into()),
    }
}

/// 414 when the request target is over [`MAX_URI_BYTES`]; 431 when a header line other than
/// those in `exempt` is over [`MAX_HEADER_BYTES`].
pub fn head_error(req: &ServiceRequest, exempt: &[HeaderName]) -> Option<ApiError> {
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
    let too_long = req.headers().iter().any(|(name, value)| {
        name.as_str().len() + value.len() > MAX_HEADER_BYTES && !exempt.contains(name)
    });
    too_long.then(|| {
        ApiError::invalid_request(format!("a header line is longer than {MAX_HEADER_BYTES} bytes"))
            .with_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::AUTHORIZATION;
    use actix_web::test::TestRequest;

    #[test]
    fn long_header_lines_and_targets_are_refused_unless_exempt() {
        let long = "a".repeat(MAX_HEADER_BYTES);
        let req = TestRequest::default().insert_header(("x-big", long.as_str())).to_srv_request();
        let err = head_error(&req, &[]).map(|e| e.code());
        assert_eq!(err, Some(access_token::ErrorCode::InvalidRequest));

        let req =
            TestRequest::default().insert_header((AUTHORIZATION, long.as_str())).to_srv_request();
        assert!(head_error(&req, &[AUTHORIZATION]).is_none());
        assert!(head_error(&req, &[]).is_some());

        let fine = "a".repeat(MAX_HEADER_BYTES - 10);
        let req = TestRequest::default().insert_header(("x-ok", fine.as_str())).to_srv_request();
        assert!(head_error(&req, &[]).is_none());

        let uri = format!("/x?{}", "q".repeat(MAX_URI_BYTES));
        let req = TestRequest::default().uri(&uri).to_srv_request();
        assert!(head_error(&req, &[]).is_some());
    }
}
