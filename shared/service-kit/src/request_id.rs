//! A request id on every request: the client's `X-Request-Id` when it is sane (at most
//! [`MAX_REQUEST_ID_LEN`] characters of `[A-Za-z0-9._-]`), else a fresh one. It is echoed in
//! the `X-Request-Id` response header, so the access log shows it with `%{x-request-id}o`,
//! and handlers can read it with the [`RequestId`] extractor.
//!
//! The middleware is [`RequestIds`] (`App::wrap(RequestIds)`). It costs at most one allocation
//! per request: a kept client id shares the request's buffer; a generated one is built on the
//! stack (no formatting) and copied once into a header value, which the request and the
//! response then share.
//!
//! A client's id that is not sane is replaced, not rejected: it is only a correlation aid, and
//! refusing requests over it would break clients for nothing. Replacing it keeps log lines
//! free of whatever a client puts in the header (no log injection, bounded size).

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpRequest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The header read and written.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id kept.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The id of the current request (an extractor; the middleware also leaves it in the
/// request's own `X-Request-Id` header).
#[derive(Clone)]
pub struct RequestId(HeaderValue);

/// Longest generated id: the 12-character prefix, `-`, 16 hex digits.
const GENERATED_MAX: usize = 32;

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from sane (ASCII) text.
        self.0.to_str().unwrap_or_default()
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for RequestId {}

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

/// A random per-process prefix, so ids from two processes (or two restarts) never collide:
/// 9 random bytes, 12 base64url characters.
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
    let mut text = [0u8; GENERATED_MAX];
    let prefix = PREFIX.as_bytes();
    let digits = ((u64::BITS - n.leading_zeros()).div_ceil(4) as usize).max(1);
    let len = prefix.len() + 1 + digits;
    if len > GENERATED_MAX {
        // Unreachable (12 + 1 + 16); a constant id is still a valid one.
        return RequestId(HeaderValue::from_static("0"));
    }
    text[..prefix.len()].copy_from_slice(prefix);
    text[prefix.len()] = b'-';
    for (i, byte) in text[prefix.len() + 1..len].iter_mut().rev().enumerate() {
        *byte = b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize];
    }
    // Base64url and hex only: always a valid header value. The one allocation of the id.
    RequestId(HeaderValue::from_bytes(&text[..len]).unwrap_or(HeaderValue::from_static("0")))
}

/// The request's `X-Request-Id` if sane and alone (two ids is no id: which one would the log
/// mean?). The clone shares the request's buffer: no copy.
fn kept(headers: &HeaderMap) -> Option<RequestId> {
    let mut values = headers.get_all(REQUEST_ID_HEADER);
    let first = values.next()?;
    (values.next().is_none() && is_sane(first.as_bytes())).then(|| RequestId(first.clone()))
}

/// `id` on the outcome of a request, error responses included.
fn stamp<B>(
    result: Result<ServiceResponse<B>, actix_web::Error>,
    id: &RequestId,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    match result {
        Ok(mut res) => {
            res.headers_mut().insert(REQUEST_ID_HEADER, id.0.clone());
            Ok(res)
        }
        Err(e) => {
            // Turned into a response here so the id is on it too.
            let mut res = e.error_response();
            res.headers_mut().insert(REQUEST_ID_HEADER, id.0.clone());
            Err(actix_web::error::InternalError::from_response(e, res).into())
        }
    }
}

/// Middleware assigning the [`RequestId`] and echoing it in the response, error responses
/// included. Wrap it inside the access log (`.wrap(RequestIds).wrap(logger)`) so the log sees
/// the header.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIds;

impl<S, B> Transform<S, ServiceRequest> for RequestIds
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = RequestIdService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestIdService { service }))
    }
}

/// The service of [`RequestIds`].
#[derive(Debug)]
pub struct RequestIdService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for RequestIdService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = RequestIdFuture<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        // The request's own header, rather than an extensions entry (a box per request), is
        // where the extractor finds the id. A kept client id is already there, alone.
        let id = kept(req.headers()).unwrap_or_else(|| {
            let id = generate();
            req.headers_mut().insert(REQUEST_ID_HEADER, id.0.clone());
            id
        });
        RequestIdFuture { inner: self.service.call(req), id }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RequestIdService`]: the inner service's, then the id on the response.
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        id: RequestId,
    }
}

impl<F> fmt::Debug for RequestIdFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestIdFuture").field("id", &self.id).finish_non_exhaustive()
    }
}

impl<F, B> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        this.inner.poll(cx).map(|result| stamp(result, this.id))
    }
}

impl FromRequest for RequestId {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    /// The id the middleware assigned; where it is not installed, the client's if sane and
    /// alone, else a fresh one.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(kept(req.headers()).unwrap_or_else(generate)))
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
        // The prefix, `-`, the counter in lowercase hex without leading zeros.
        let (prefix, n) = b.as_str().rsplit_once('-').unwrap();
        assert_eq!(prefix, PREFIX.as_str());
        assert_eq!(prefix.len(), 12);
        let n = u64::from_str_radix(n, 16).unwrap();
        assert_eq!(b.as_str(), format!("{}-{n:x}", *PREFIX));
        assert_eq!(b.0, b.as_str());
    }

    #[actix_web::test]
    async fn an_error_from_inner_middleware_carries_the_id() {
        let refuse =
            |_: ServiceRequest, _: actix_web::middleware::Next<actix_web::body::BoxBody>| async {
                Err::<ServiceResponse, _>(actix_web::error::ErrorForbidden("no"))
            };
        let app = init_service(App::new().wrap(from_fn(refuse)).wrap(RequestIds)).await;
        let req = TestRequest::get().uri("/").insert_header(("x-request-id", "e-1")).to_request();
        let err = app.call(req).await.err().unwrap();
        let res = err.error_response();
        assert_eq!(res.status(), 403);
        assert_eq!(res.headers().get("x-request-id").unwrap(), "e-1");
    }

    #[actix_web::test]
    async fn a_sane_id_is_echoed_and_an_insane_one_replaced() {
        let app = init_service(App::new().wrap(RequestIds).route(
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
        // The handler saw the id the response carries, not the client's.
        assert_eq!(read_body(res).await, id);

        // Two ids: a fresh one, the same for the handler and the response.
        let req = TestRequest::get()
            .uri("/")
            .append_header(("x-request-id", "one"))
            .append_header(("x-request-id", "two"))
            .to_request();
        let res = call_service(&app, req).await;
        let id = res.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
        assert!(id != "one" && id != "two" && is_sane(id.as_bytes()), "{id}");
        assert_eq!(read_body(res).await, id);

        let req = TestRequest::get().uri("/").to_request();
        let res = call_service(&app, req).await;
        assert!(is_sane(res.headers().get("x-request-id").unwrap().as_bytes()));
    }

    #[actix_web::test]
    async fn unmatched_paths_get_an_id_too() {
        let app = init_service(App::new().wrap(RequestIds)).await;
        let req = TestRequest::get().uri("/nope").to_request();
        let res = call_service(&app, req).await;
        assert_eq!(res.status(), 404);
        assert!(res.headers().contains_key("x-request-id"));
    }
}
