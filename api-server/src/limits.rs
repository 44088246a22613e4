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
//! connection, so the server neither drains a body nor waits for it to end
//! ([`service_kit::limits::Bodies::Refused`]).

use actix_web::http::header::{AUTHORIZATION, HeaderName};
use service_kit::limits::{Bodies, Limits};

pub use service_kit::limits::{
    CLIENT_DISCONNECT_TIMEOUT, CLIENT_REQUEST_TIMEOUT, KEEP_ALIVE, MAX_HEADER_BYTES, MAX_URI_BYTES,
    REQUEST_DEADLINE,
};

/// Headers free of the header-line limit: the token's (the verifier bounds it).
const EXEMPT: &[HeaderName] = &[AUTHORIZATION];

/// The middleware (`App::wrap(limits::LIMITS)`): the head and body limits above, then the
/// request under [`REQUEST_DEADLINE`].
pub const LIMITS: Limits = Limits::new().exempt(EXEMPT).bodies(Bodies::Refused);
