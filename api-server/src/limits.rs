//! Limits on every input of the api-server: the shared ones ([`service_kit::limits`]) plus what a
//! GET-only resource server needs.
//!
//! | what | limit | answer |
//! |---|---|---|
//! | request head (line + headers) | 128 KiB, 96 headers (actix-http) | connection closed / 431 |
//! | one header line other than `Authorization` | 8 KiB | 431 `invalid_request` |
//! | the bearer token | 8 KiB, checked before any parsing (the verifier) | 401 `invalid_token` |
//! | request target (path + query) | 8 KiB | 414 `invalid_request` |
//! | request body | never read; one declared over 16 KiB is refused | 413 `payload_too_large` |
//! | head arrival | 5 s after connecting | 408, connection closed |
//! | whole request | 30 s | 408 `invalid_request` |
//! | idle keep-alive | 15 s | connection closed |
//!
//! `Authorization` is exempt from the header-line limit so that an over-long token gets the
//! contract's 401 with its `WWW-Authenticate` challenge (the verifier refuses it for its size
//! before parsing), not a bare 431; the 128 KiB head limit still bounds it.
//!
//! No route takes a body. One that comes anyway is not read: the response closes the
//! connection, so the server neither drains a body nor waits for it to end. (Left alone,
//! actix-http drains an unread chunked body after the response, with no time limit: a client
//! trickling chunks would hold the connection for ever. It closes instead when the request's
//! payload is still held when the response ends, so the response body holds it.)

use std::pin::Pin;
use std::task::{Context, Poll};

use access_token::{ApiError, ErrorCode};
use actix_web::HttpMessage as _;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::http::header::{AUTHORIZATION, CONTENT_LENGTH, TRANSFER_ENCODING};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use service_kit::limits::{MAX_BODY_BYTES, head_error, within_deadline};

pub use service_kit::limits::{
    CLIENT_DISCONNECT_TIMEOUT, CLIENT_REQUEST_TIMEOUT, KEEP_ALIVE, MAX_HEADER_BYTES, MAX_URI_BYTES,
    REQUEST_DEADLINE,
};

/// Middleware (`actix_web::middleware::from_fn(check)`): the head and body limits above, then
/// the request under [`REQUEST_DEADLINE`].
pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if let Some(err) = head_error(&req, &[AUTHORIZATION]).or_else(|| body_error(&req)) {
        return Err(err.into());
    }
    if !has_body(&req) {
        return within_deadline(next.call(req)).await.map(ServiceResponse::map_into_boxed_body);
    }
    let mut req = req;
    let payload = req.take_payload();
    let mut res = within_deadline(next.call(req)).await?;
    res.response_mut().head_mut().set_connection_type(ConnectionType::Close);
    Ok(res.map_body(|_, body| HoldingPayload { body: body.boxed(), _payload: payload }.boxed()))
}

/// A response body that keeps the request's unread payload alive until the response ends, so
/// that actix-http closes the connection instead of draining the payload.
struct HoldingPayload {
    body: BoxBody,
    _payload: Payload,
}

impl MessageBody for HoldingPayload {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

/// 413 for a body declared larger than [`MAX_BODY_BYTES`].
fn body_error(req: &ServiceRequest) -> Option<ApiError> {
    let declared = req.headers().get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    (declared > MAX_BODY_BYTES as u64).then(|| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {MAX_BODY_BYTES} bytes (no route takes a body)"),
        )
    })
}

fn has_body(req: &ServiceRequest) -> bool {
    req.headers().contains_key(TRANSFER_ENCODING)
        || req
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().map_or(true, |v| v.trim() != "0"))
}
