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
//! The middleware is [`Limits`] (`App::wrap(Limits::new())`). It applies the
//! header-line limit to every header. A resource server whose `Authorization` header carries
//! the token exempts that header ([`Limits::exempt`]), so an over-long token gets the
//! contract's 401 with `WWW-Authenticate` from the verifier (which refuses tokens over
//! [`access_token::verify::MAX_TOKEN_BYTES`] before parsing) rather than a bare 431; it is
//! still bounded by the 128 KiB head limit. A service none of whose routes takes a body says
//! so ([`Bodies::Refused`]).

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage as _;
use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{CONTENT_LENGTH, HeaderName, TRANSFER_ENCODING};
use actix_web::http::{ConnectionType, StatusCode};
use actix_web::web::Bytes;

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

/// Which request bodies a service takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    /// Routes read bodies through extractors, which bound them
    /// ([`crate::rejections::json_config`], [`crate::rejections::form_config`]).
    Read,
    /// No route takes a body. One declared over [`MAX_BODY_BYTES`] is refused (413
    /// `payload_too_large`); one that comes anyway is not read: the response closes the
    /// connection, so the server neither drains a body nor waits for it to end. (Left alone,
    /// actix-http drains an unread chunked body after the response, with no time limit: a
    /// client trickling chunks would hold the connection for ever. It closes instead when the
    /// request's payload is still held when the response ends, so the response body holds it.)
    Refused,
}

/// Middleware: the header-line and target limits, the [`Bodies`] policy, then the request under
/// [`REQUEST_DEADLINE`]. Refusals are errors (`ApiError`s), so the middleware outside (request
/// id, metrics, access log) sees them like any other answer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    exempt: &'static [HeaderName],
    bodies: Bodies,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}

impl Limits {
    /// Every header line limited; bodies read by the extractors.
    pub const fn new() -> Self {
        Self { exempt: &[], bodies: Bodies::Read }
    }

    /// Header lines free of the [`MAX_HEADER_BYTES`] limit (still bounded by the head limit).
    pub const fn exempt(mut self, headers: &'static [HeaderName]) -> Self {
        self.exempt = headers;
        self
    }

    /// Which bodies the service's routes take.
    pub const fn bodies(mut self, bodies: Bodies) -> Self {
        self.bodies = bodies;
        self
    }

    /// Why `req` is refused before it runs, if it is.
    fn refusal(&self, req: &ServiceRequest) -> Option<ApiError> {
        head_error(req, self.exempt).or_else(|| match self.bodies {
            Bodies::Read => None,
            Bodies::Refused => declared_body_error(req),
        })
    }
}

impl<S, B> Transform<S, ServiceRequest> for Limits
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B, BoxBody>>;
    type Error = actix_web::Error;
    type Transform = LimitsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(LimitsService { service, limits: *self }))
    }
}

/// The service of [`Limits`].
#[derive(Debug)]
pub struct LimitsService<S> {
    service: S,
    limits: Limits,
}

impl<S, B> Service<ServiceRequest> for LimitsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B, BoxBody>>;
    type Error = actix_web::Error;
    type Future = LimitsFuture<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        if let Some(err) = self.limits.refusal(&req) {
            return LimitsFuture::Refused { error: Some(err) };
        }
        let unread =
            (self.limits.bodies == Bodies::Refused && has_body(&req)).then(|| req.take_payload());
        LimitsFuture::Run { request: within_deadline(self.service.call(req)), unread }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`LimitsService`].
    #[project = LimitsProj]
    pub enum LimitsFuture<F> {
        /// Refused before it ran.
        Refused { error: Option<ApiError> },
        /// Running under the deadline; `unread` is a body no route takes.
        Run {
            #[pin]
            request: Deadline<F>,
            unread: Option<Payload>,
        },
    }
}

impl<F> std::fmt::Debug for LimitsFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Refused { .. } => "LimitsFuture::Refused",
            Self::Run { .. } => "LimitsFuture::Run",
        })
    }
}

impl<F, B> Future for LimitsFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
    B: MessageBody + 'static,
{
    type Output = Result<ServiceResponse<EitherBody<B, BoxBody>>, actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LimitsProj::Refused { error } => {
                Poll::Ready(Err(error.take().unwrap_or_else(ApiError::internal).into()))
            }
            LimitsProj::Run { request, unread } => {
                let Poll::Ready(result) = request.poll(cx) else {
                    return Poll::Pending;
                };
                Poll::Ready(result.map(|res| match unread.take() {
                    None => res.map_into_left_body(),
                    Some(payload) => {
                        let mut res = res;
                        res.response_mut().head_mut().set_connection_type(ConnectionType::Close);
                        res.map_body(|_, body| {
                            EitherBody::right(
                                HoldingPayload { body: body.boxed(), _payload: payload }.boxed(),
                            )
                        })
                    }
                }))
            }
        }
    }
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
fn declared_body_error(req: &ServiceRequest) -> Option<ApiError> {
    let declared = req.headers().get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    (declared > MAX_BODY_BYTES as u64).then(|| {
        ApiError::new(
            access_token::ErrorCode::PayloadTooLarge,
            format!("request body is larger than {MAX_BODY_BYTES} bytes (no route takes a body)"),
        )
    })
}

/// Whether a body comes with the request (chunked, or a length other than 0).
fn has_body(req: &ServiceRequest) -> bool {
    req.headers().contains_key(TRANSFER_ENCODING)
        || req
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.to_str().map_or(true, |v| v.trim() != "0"))
}

/// Runs a request under [`REQUEST_DEADLINE`]; past it, 408 `invalid_request`.
///
/// The timer is only armed when the request first has to wait: most requests (a health
/// check, a cached token) are answered in their first poll and never touch the timer wheel.
/// The request is polled as soon as it reaches the middleware, so the deadline still counts
/// from its start.
pub fn within_deadline<F, T>(request: F) -> Deadline<F>
where
    F: Future<Output = Result<T, actix_web::Error>>,
{
    within(REQUEST_DEADLINE, request)
}

fn within<F>(limit: Duration, request: F) -> Deadline<F> {
    Deadline { request, timer: None, limit }
}

pin_project_lite::pin_project! {
    /// The future of [`within_deadline`].
    pub struct Deadline<F> {
        #[pin]
        request: F,
        #[pin]
        timer: Option<tokio::time::Sleep>,
        limit: Duration,
    }
}

impl<F> std::fmt::Debug for Deadline<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline").field("armed", &self.timer.is_some()).finish_non_exhaustive()
    }
}

impl<F, T> Future for Deadline<F>
where
    F: Future<Output = Result<T, actix_web::Error>>,
{
    type Output = Result<T, actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(result) = this.request.poll(cx) {
            return Poll::Ready(result);
        }
        if this.timer.is_none() {
            this.timer.set(Some(tokio::time::sleep(*this.limit)));
        }
        match this.timer.as_pin_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Ready(())) => {
                Poll::Ready(Err(ApiError::invalid_request("the request took too long")
                    .with_status(StatusCode::REQUEST_TIMEOUT)
                    .into()))
            }
            _ => Poll::Pending,
        }
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

    #[tokio::test]
    async fn a_request_past_the_deadline_gets_408_and_a_quicker_one_its_answer() {
        let quick = within_deadline(async { Ok::<_, actix_web::Error>(7) });
        assert_eq!(quick.await.unwrap(), 7);

        let limit = Duration::from_millis(200);
        let waits = within(limit, async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, actix_web::Error>(8)
        });
        assert_eq!(waits.await.unwrap(), 8);

        let start = std::time::Instant::now();
        let stuck = within(limit, std::future::pending::<Result<(), actix_web::Error>>());
        let err = stuck.await.unwrap_err();
        assert_eq!(err.as_response_error().status_code(), StatusCode::REQUEST_TIMEOUT);
        assert!(start.elapsed() >= limit, "{:?}", start.elapsed());
    }

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
