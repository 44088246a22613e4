//! CORS for browser clients, the same on both servers (`AUTH_CORS_ORIGINS`, `API_CORS_ORIGINS`).
//!
//! Two layers, wrapped in this order (the second outside the first):
//!
//! ```ignore
//! App::new()
//!     .wrap(service_kit::cors::cors(&settings.cors_origins, Credentials::Allowed))
//!     .wrap(actix_web::middleware::from_fn(service_kit::cors::finish))
//! ```
//!
//! - [`cors`] is `actix-cors`, configured from the listed origins: exact origins only (never a
//!   wildcard), the methods and request headers the two APIs use, the headers a client must
//!   read exposed ([`EXPOSED_HEADERS`]), preflights cached for [`PREFLIGHT_MAX_AGE_SECS`], and
//!   `Access-Control-Allow-Credentials` when asked for (the auth server's refresh cookie).
//!   Requests from an unlisted origin are not refused by it: they reach the routes, which
//!   answer as for any client (the browser then refuses the page the answer). With no origin
//!   listed it is not in the chain at all: no CORS header on any answer.
//! - [`finish`] makes the answers what the contract says: a preflight that passed is 204 (not
//!   `actix-cors`'s 200); a refused preflight (unlisted origin, method or header) is the
//!   contract's envelope, 403 `forbidden`, instead of a plain-text 400; and an answer to an
//!   unlisted origin carries no `Access-Control-*` header at all (`actix-cors` would still add
//!   `Expose-Headers` and `Allow-Credentials`).
//!
//! Every answer of a server with origins listed carries `Vary: Origin` (with the preflight
//! request headers), whether or not the origin was listed, so a shared cache never serves one
//! origin's answer to another.

use access_token::{ApiError, ErrorCode};
use actix_cors::{Cors, CorsError};
use actix_web::ResponseError as _;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{Condition, Next};

use crate::config::Origins;

/// How long a browser may cache a preflight's answer (`Access-Control-Max-Age`), in seconds:
/// one preflight per route and origin every 10 minutes, and a change of the listed origins
/// reaches every browser within that time. (Chromium caps it at 2 hours, Firefox at 24.)
pub const PREFLIGHT_MAX_AGE_SECS: usize = 600;

/// The response headers a cross-origin script may read, besides the CORS-safelisted ones:
/// the bearer challenge, how long to wait after a 429/503, the request id to quote.
pub const EXPOSED_HEADERS: [HeaderName; 3] =
    [header::WWW_AUTHENTICATE, header::RETRY_AFTER, crate::request_id::REQUEST_ID_HEADER];

/// The methods the APIs take cross-origin.
pub const ALLOWED_METHODS: [Method; 3] = [Method::GET, Method::POST, Method::DELETE];

/// The request headers a cross-origin script may send (beyond the safelisted ones).
pub const ALLOWED_HEADERS: [HeaderName; 3] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, crate::request_id::REQUEST_ID_HEADER];

/// Whether cross-origin requests may carry cookies (`Access-Control-Allow-Credentials`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// The auth server: the refresh cookie.
    Allowed,
    /// A resource server: bearer tokens only.
    Omitted,
}

/// The CORS middleware for `origins`; disabled (no header at all) when none is listed. Wrap
/// [`finish`] outside it.
pub fn cors(origins: &Origins, credentials: Credentials) -> Condition<Cors> {
    let mut cors = origins
        .as_slice()
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods(ALLOWED_METHODS)
        .allowed_headers(ALLOWED_HEADERS)
        .expose_headers(EXPOSED_HEADERS)
        .max_age(PREFLIGHT_MAX_AGE_SECS)
        // An unlisted origin is not refused here: its request reaches the routes (a refusal
        // would only be a different answer the browser does not show the page either).
        .block_on_origin_mismatch(false);
    if credentials == Credentials::Allowed {
        cors = cors.supports_credentials();
    }
    Condition::new(!origins.is_empty(), cors)
}

/// Middleware (`actix_web::middleware::from_fn(finish)`), outside [`cors`]: 204 for a
/// preflight that passed, 403 `forbidden` (the envelope) for one refused, and no
/// `Access-Control-*` header on an answer to an origin that is not listed.
pub async fn finish(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(mut err) => {
            // An error answered further out: its response is built later, from the error.
            err.add_response_mapper(|mut res| {
                strip_unless_allowed(res.headers_mut());
                res
            });
            return Err(err);
        }
    };
    if res.response().error().is_some_and(|e| e.as_error::<CorsError>().is_some()) {
        let refused = ApiError::new(
            ErrorCode::Forbidden,
            "cross-origin request refused: origin, method or headers not allowed",
        )
        .error_response();
        let vary = res.headers().get(header::VARY).cloned();
        res = res.into_response(refused);
        if let Some(vary) = vary {
            res.headers_mut().insert(header::VARY, vary);
        }
        return Ok(res);
    }
    if preflight
        && res.status() == StatusCode::OK
        && res.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    {
        *res.response_mut().status_mut() = StatusCode::NO_CONTENT;
    }
    strip_unless_allowed(res.headers_mut());
    Ok(res)
}

/// Removes every `Access-Control-*` header unless the origin was allowed (the answer has
/// `Access-Control-Allow-Origin`).
fn strip_unless_allowed(headers: &mut HeaderMap) {
    if headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return;
    }
    let cors_headers: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in cors_headers {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;
    use actix_web::{App, HttpResponse, test, web};

    use super::*;

    /// A test app with one route behind both layers.
    macro_rules! app {
        ($origins:expr, $credentials:expr) => {{
            let origins: Origins = $origins.parse().unwrap();
            test::init_service(
                App::new()
                    .wrap(cors(&origins, $credentials))
                    .wrap(actix_web::middleware::from_fn(finish))
                    .route("/x", web::get().to(|| async { HttpResponse::Ok().body("x") })),
            )
            .await
        }};
    }

    fn preflight(origin: &str) -> test::TestRequest {
        test::TestRequest::default()
            .method(Method::OPTIONS)
            .uri("/x")
            .insert_header((header::ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "GET"))
            .insert_header((header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization"))
    }

    #[actix_web::test]
    async fn a_listed_origins_preflight_is_204_with_its_headers() {
        let app = app!("https://app.example", Credentials::Allowed);
        let res = test::call_service(&app, preflight("https://app.example").to_request()).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let h = res.headers();
        assert_eq!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(), "https://app.example");
        assert_eq!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).unwrap(), "true");
        assert_eq!(h.get(header::ACCESS_CONTROL_MAX_AGE).unwrap(), "600");
        assert!(h.get(header::VARY).unwrap().to_str().unwrap().contains("Origin"));
    }

    #[actix_web::test]
    async fn an_unlisted_origins_preflight_is_refused_with_the_envelope_and_no_cors_header() {
        let app = app!("https://app.example", Credentials::Allowed);
        let res = test::call_service(&app, preflight("https://evil.example").to_request()).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(res.headers().keys().all(|k| !k.as_str().starts_with("access-control-")));
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"], "forbidden");
    }

    #[actix_web::test]
    async fn an_unlisted_origins_request_is_served_without_cors_headers_but_with_vary() {
        let app = app!("https://app.example", Credentials::Allowed);
        let req = test::TestRequest::get()
            .uri("/x")
            .insert_header((header::ORIGIN, "https://evil.example"))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().keys().all(|k| !k.as_str().starts_with("access-control-")));
        assert!(res.headers().get(header::VARY).unwrap().to_str().unwrap().contains("Origin"));
    }

    #[actix_web::test]
    async fn no_origin_listed_means_no_cors_header_at_all() {
        let app = app!("", Credentials::Allowed);
        let req = test::TestRequest::get()
            .uri("/x")
            .insert_header((header::ORIGIN, "https://app.example"))
            .to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().keys().all(|k| !k.as_str().starts_with("access-control-")));
        assert!(res.headers().get(header::VARY).is_none());
    }

    #[actix_web::test]
    async fn a_resource_server_exposes_the_headers_without_credentials() {
        let app = app!("https://app.example", Credentials::Omitted);
        let req = test::TestRequest::get()
            .uri("/x")
            .insert_header((header::ORIGIN, HeaderValue::from_static("https://app.example")))
            .to_request();
        let res = test::call_service(&app, req).await;
        let h = res.headers();
        assert_eq!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(), "https://app.example");
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        let exposed = h.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).unwrap().to_str().unwrap();
        for name in ["www-authenticate", "retry-after", "x-request-id"] {
            assert!(exposed.to_ascii_lowercase().contains(name), "{exposed}");
        }
    }
}
