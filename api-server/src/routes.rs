//! HTTP routes. Handlers are short: the `Authenticated` extractor has already verified the
//! token; they look up articles and answer.
//!
//! Each handler's `#[utoipa::path]` documents its path, every status it answers and the body
//! of each; [`ROUTES`] is the one list of routes, mounted by [`configure`] and compared with the
//! OpenAPI document by a test.

use access_token::keyset::TrustedKeys;
use access_token::{ApiError, Authenticated, ErrorBody};
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::articles::{Article, Articles};
use crate::openapi::OpenApiJson;

/// Every route (all `GET`): the one list. [`configure`] mounts exactly these, and the OpenAPI
/// document must list exactly these (a test compares them). A new route goes here, in `mount`,
/// and in `openapi::ApiDoc`.
pub const ROUTES: &[&str] =
    &["/articles", "/articles/{id}", "/me", "/healthz", "/readyz", "/metrics", "/openapi.json"];

/// Registers every route of [`ROUTES`], plus JSON 404/405 answers for the rest.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for &path in ROUTES {
        cfg.service(mount(path));
    }
}

fn mount(path: &'static str) -> actix_web::Resource {
    let r = web::resource(path).default_service(web::to(method_not_allowed));
    match path {
        "/articles" => r.route(web::get().to(list_articles)),
        "/articles/{id}" => r.route(web::get().to(get_article)),
        "/me" => r.route(web::get().to(me)),
        "/healthz" => r.route(web::get().to(healthz)),
        "/readyz" => r.route(web::get().to(readyz)),
        "/metrics" => r.route(web::get().to(service_kit::metrics::metrics_handler)),
        "/openapi.json" => r.route(web::get().to(openapi_json)),
        // Every path of ROUTES has an arm; a test checks each answers GET.
        _ => r,
    }
}

/// `GET /articles`: the caller's articles (all of them for `admin`).
#[utoipa::path(
    get,
    path = "/articles",
    tag = "articles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's articles (every article for the `admin` role)", body = Vec<Article>),
        (status = 400, description = "Malformed `Authorization` header (`invalid_request`)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"articles\", error=\"invalid_request\"`"))),
        (status = 401, description = "No token, or an invalid one (`invalid_token`)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"articles\"`, with `error` and `error_description` when a token was given"))),
        (status = 403, description = "The token lacks the `articles:read` scope (`insufficient_scope`)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"articles\", error=\"insufficient_scope\", scope=\"articles:read\"`"))),
    )
)]
pub(crate) async fn list_articles(
    auth: Authenticated,
    articles: web::Data<Articles>,
) -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::json()).body(articles.list_json(&auth))
}

/// `GET /articles/{id}`: 404 when absent, not the caller's, or not a number.
#[utoipa::path(
    get,
    path = "/articles/{id}",
    tag = "articles",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The article's id (anything else is 404)")),
    responses(
        (status = 200, description = "The article", body = Article),
        (status = 400, description = "Malformed `Authorization` header (`invalid_request`)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"articles\", error=\"invalid_request\"`"))),
        (status = 401, description = "No token, or an invalid one (`invalid_token`)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"articles\"`, with `error` and `error_description` when a token was given"))),
        (status = 403, description = "The token lacks the `articles:read` scope (`insufficient_scope`)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"articles\", error=\"insufficient_scope\", scope=\"articles:read\"`"))),
        (status = 404, description = "No such article, or not the caller's (`not_found`)", body = ErrorBody),
    )
)]
pub(crate) async fn get_article(
    auth: Authenticated,
    id: web::Path<String>,
    articles: web::Data<Articles>,
) -> Result<HttpResponse, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::not_found())?;
    let article = articles.get(id, &auth).ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(article))
}

/// The body of `GET /me`: claims of the verified token.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Me<'a> {
    /// The user id.
    sub: &'a str,
    /// The username.
    preferred_username: &'a str,
    /// The display name; `null` when the user has none.
    name: Option<&'a str>,
    /// E.g. `["user"]`.
    roles: &'a [String],
    /// Space-separated scopes, e.g. `articles:read`.
    scope: &'a str,
    /// Expiry, seconds since the Unix epoch.
    exp: u64,
}

/// `GET /me`: who the verified token says the caller is.
#[utoipa::path(
    get,
    path = "/me",
    tag = "articles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Who the token says the caller is", body = Me),
        (status = 400, description = "Malformed `Authorization` header (`invalid_request`)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"articles\", error=\"invalid_request\"`"))),
        (status = 401, description = "No token, or an invalid one (`invalid_token`)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"articles\"`, with `error` and `error_description` when a token was given"))),
        (status = 403, description = "The token lacks the `articles:read` scope (`insufficient_scope`)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"articles\", error=\"insufficient_scope\", scope=\"articles:read\"`"))),
    )
)]
pub(crate) async fn me(auth: Authenticated) -> HttpResponse {
    let c = auth.claims();
    HttpResponse::Ok().json(Me {
        sub: &c.sub,
        preferred_username: &c.preferred_username,
        name: c.name.as_deref(),
        roles: &c.roles,
        scope: &c.scope,
        exp: c.exp,
    })
}

/// The body of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`.
    #[schema(pattern = "^ok$")]
    status: &'static str,
}

/// `GET /healthz`: 200 while the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process runs", body = Health))
)]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// The body of `GET /readyz` when ready.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Ready {
    /// `ready`.
    #[schema(pattern = "^ready$")]
    status: &'static str,
    /// How many public keys are loaded (at least one).
    #[schema(minimum = 1)]
    keys: usize,
}

/// `GET /readyz`: 200 when at least one public key is loaded, else 503 `unavailable`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "At least one public key is loaded", body = Ready),
        (status = 503, description = "No public key loaded yet (`unavailable`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub(crate) async fn readyz(
    keys: web::Data<std::sync::Arc<TrustedKeys>>,
) -> Result<HttpResponse, ApiError> {
    let loaded = keys.current().len();
    if loaded == 0 {
        return Err(ApiError::new(
            access_token::ErrorCode::Unavailable,
            "no public key is loaded yet",
        )
        .with_retry_after(1));
    }
    Ok(HttpResponse::Ok().json(Ready { status: "ready", keys: loaded }))
}

/// `GET /metrics`: Prometheus metrics.
// Documentation only: the route is served by `service_kit::metrics::metrics_handler`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4", body = String))
)]
#[allow(dead_code)]
pub(crate) async fn metrics() {}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::json()).body(doc.0.clone())
}

/// Any path we do not serve: 404 `not_found` in the contract's envelope.
pub async fn not_found(_req: HttpRequest) -> HttpResponse {
    ApiError::not_found().error_response()
}

/// A known path with another method: 405 in the contract's envelope.
async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    service_kit::rejections::method_not_allowed(req.method(), &[actix_web::http::Method::GET])
}
