//! A request id on every request: the client's `X-Request-Id` when it is sane (at most
//! [`MAX_REQUEST_ID_LEN`] characters of `[A-Za-z0-9._-]`), else a fresh one. It is echoed in
//! the `X-Request-Id` response header, so the access log shows it with `%{x-request-id}o`,
//! and handlers can read it with the [`RequestId`] extractor.
//!
//! A client's id that is not sane is replaced, not rejected: it is only a correlation aid, and
//! refusing requests over it would break clients for nothing. Replacing it keeps log lines
//! free of whatever a client puts in the header (no log injection, bounded size).

use std::fmt;
use std::future::{Ready, ready};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The header read and written.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id kept.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The id of the current request (in the request extensions, and an extractor).
#[derive(Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from sane (ASCII) text.
        self.0.to_str().unwrap_or_default()
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a client's id is kept: 1 to [`MAX_REQUEST_ID_LEN`] bytes of `[A-Za-z0-9._-]`.
pub fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A random per-process prefix, so ids from two processes (or two restarts) never collide.
static PREFIX: LazyLock<String> = LazyLock::new(|| {
    let mut bytes = [0u8; 9];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Not a secret: fall back on the clock and pid if the RNG fails.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes[..8].copy_from_slice(&(nanos as u64 ^ u64::from(std::process::id())).to_le_bytes());
    }
    URL_SAFE_NO_PAD.encode(bytes)
});

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh id: the process prefix and a counter (`Xk3v9QbA2mPq-1f`), unique without a
/// random draw per request.
pub fn generate() -> RequestId {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = format!("{}-{n:x}", *PREFIX);
    // Base64url and hex only: always a valid header value.
    RequestId(HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("0")))
}

/// The client's id if sane, else a fresh one.
pub fn from_header(value: Option<&HeaderValue>) -> RequestId {
    match value {
        Some(v) if is_sane(v.as_bytes()) => RequestId(v.clone()),
        _ => generate(),
    }
}

/// Middleware (`actix_web::middleware::from_fn(request_id::assign)`) assigning the
/// [`RequestId`] and echoing it in the response, error responses included. Wrap it inside the
/// access log (`.wrap(from_fn(assign)).wrap(logger)`) so the log sees the header.
pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut values = req.headers().get_all(REQUEST_ID_HEADER);
    let first = values.next();
    // Two ids is no id: which one would the log mean?
    let id = if values.next().is_some() { generate() } else { from_header(first) };
    req.extensions_mut().insert(id.clone());
    match next.call(req).await {
        Ok(mut res) => {
            res.headers_mut().insert(REQUEST_ID_HEADER, id.0);
            Ok(res)
        }
        Err(e) => {
            // Turned into a response here so the id is on it too.
            let mut res = e.error_response();
            res.headers_mut().insert(REQUEST_ID_HEADER, id.0);
            Err(actix_web::error::InternalError::from_response(e, res).into())
        }
    }
}

impl FromRequest for RequestId {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    /// The id the middleware assigned, or a fresh one where it is not installed.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(req.extensions().get::<RequestId>().cloned().unwrap_or_else(generate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::middleware::from_fn;
    use actix_web::test::{TestRequest, call_service, init_service, read_body};
    use actix_web::{App, HttpResponse, web};

    #[test]
    fn sane_ids_are_short_and_plain() {
        assert!(is_sane(b"abc-123_x.Y"));
        assert!(is_sane("a".repeat(64).as_bytes()));
        assert!(!is_sane("a".repeat(65).as_bytes()));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"a b"));
        assert!(!is_sane(b"a\"b"));
        assert!(!is_sane("é".as_bytes()));
    }

    #[test]
    fn generated_ids_are_sane_and_distinct() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(is_sane(a.as_str().as_bytes()), "{a}");
    }

    #[actix_web::test]
    async fn a_sane_id_is_echoed_and_an_insane_one_replaced() {
        let app = init_service(App::new().wrap(from_fn(assign)).route(
            "/",
            web::get().to(|id: RequestId| async move { HttpResponse::Ok().body(id.to_string()) }),
        ))
        .await;
        let req = TestRequest::get().uri("/").insert_header(("x-request-id", "abc-1")).to_request();
        let res = call_service(&app, req).await;
        assert_eq!(res.headers().get("x-request-id").unwrap(), "abc-1");
        assert_eq!(read_body(res).await, "abc-1");

        let req = TestRequest::get()
            .uri("/")
            .insert_header(("x-request-id", "bad id\twith spaces"))
            .to_request();
        let res = call_service(&app, req).await;
        let id = res.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
        assert_ne!(id, "bad id\twith spaces");
        assert!(is_sane(id.as_bytes()));

        let req = TestRequest::get().uri("/").to_request();
        let res = call_service(&app, req).await;
        assert!(is_sane(res.headers().get("x-request-id").unwrap().as_bytes()));
    }

    #[actix_web::test]
    async fn unmatched_paths_get_an_id_too() {
        let app = init_service(App::new().wrap(from_fn(assign))).await;
        let req = TestRequest::get().uri("/nope").to_request();
        let res = call_service(&app, req).await;
        assert_eq!(res.status(), 404);
        assert!(res.headers().contains_key("x-request-id"));
    }
}
