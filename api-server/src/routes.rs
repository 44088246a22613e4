//! HTTP routes. Handlers are short: the `Authenticated` extractor has already verified the
//! token; they look up articles and answer.
//!
//! Each route is declared once, on its handler (the auth server's recipe): the actix attribute
//! gives the path and method that are mounted, `#[utoipa::path]` above it every status it
//! answers and the body of each; [`configure`] registers the handlers through
//! `utoipa_actix_web`, which builds the OpenAPI document from the same registrations. A new route
//! is a handler with both attributes and one `cfg.service(handler)` line in [`configure`].

use access_token::keyset::TrustedKeys;
use access_token::{ApiError, Authenticated, ErrorBody, Verifier};
use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use service_kit::openapi::{BearerRefusals, Unavailable};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::articles::{Article, Articles};
use crate::openapi::OpenApiJson;

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// The API, with `GET /metrics` (no `API_METRICS_BIND`).
    ApiAndMetrics,
    /// The API alone (`/metrics` is on the metrics listener).
    Api,
}

/// Registers every route of the API listener; `serve` says whether `/metrics` is one of them.
///
/// actix-web tries routes in this order, and a pattern with a parameter is a regex match while
/// a plain path is a string compare: `/articles/{id}` comes last so that no other route's
/// requests (`/healthz` above all) pay for its regex. (The OpenAPI document lists the paths in
/// this order too.)
pub fn configure(cfg: &mut ServiceConfig, serve: Serve) {
    cfg.service(list_articles).service(me).service(healthz).service(readyz).service(openapi_json);
    if serve == Serve::ApiAndMetrics {
        cfg.service(metrics);
    }
    cfg.service(get_article);
}

/// Registers the routes of the metrics listener (`API_METRICS_BIND`): `GET /metrics` alone.
pub fn configure_metrics(cfg: &mut ServiceConfig) {
    cfg.service(metrics);
}

// The bearer routes answer 503 `unavailable` too, with `API_REVOCATIONS_MAX_STALENESS`, while the
// revocation list is older than that (the extractor's `VerifyError::RevocationListStale`).

/// `GET /articles`: the caller's articles (all of them for `admin`).
#[utoipa::path(
    tag = "articles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's articles (every article for the `admin` role)", body = Vec<Article>),
        BearerRefusals,
        Unavailable,
    )
)]
#[get("/articles")]
pub(crate) async fn list_articles(
    auth: Authenticated,
    articles: web::Data<Articles>,
) -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::json()).body(articles.list_json(&auth))
}

/// `GET /articles/{id}`: 404 when absent, not the caller's, or not a number.
#[utoipa::path(
    tag = "articles",
    security(("bearer" = [])),
    params(("id" = u64, Path, description = "The article's id (anything else is 404)")),
    responses(
        (status = 200, description = "The article", body = Article),
        BearerRefusals,
        Unavailable,
        (status = 404, description = "No such article, or not the caller's (`not_found`)", body = ErrorBody),
    )
)]
#[get("/articles/{id}")]
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
    tag = "articles",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Who the token says the caller is", body = Me),
        BearerRefusals,
        Unavailable,
    )
)]
#[get("/me")]
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

/// The body of every `GET /healthz` answer: [`Health`] serialised once (a test holds them equal).
const HEALTHZ_BODY: &str = r#"{"status":"ok"}"#;

/// `GET /healthz`: 200 while the process runs.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The process runs", body = Health))
)]
#[get("/healthz")]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::json()).body(HEALTHZ_BODY)
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

/// `GET /readyz`: 200 when at least one public key is loaded and, with `API_REVOCATIONS_URL`,
/// the first full revocation list has arrived (and, with `API_REVOCATIONS_MAX_STALENESS`, the
/// list is not older than that); else 503 `unavailable`.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "At least one public key is loaded (and the revocation list, when followed, has arrived and is fresh)", body = Ready),
        Unavailable,
    )
)]
#[get("/readyz")]
pub(crate) async fn readyz(
    keys: web::Data<std::sync::Arc<TrustedKeys>>,
    verifier: web::Data<Verifier>,
) -> Result<web::Json<Ready>, ApiError> {
    let unavailable = |why: &'static str| {
        ApiError::new(access_token::ErrorCode::Unavailable, why).with_retry_after(1)
    };
    let loaded = keys.current().len();
    if loaded == 0 {
        return Err(unavailable("no public key is loaded yet"));
    }
    if let Some(list) = verifier.revocations() {
        if !list.is_ready() {
            return Err(unavailable("the revocation list has not arrived yet"));
        }
        if list.is_stale() {
            return Err(unavailable("the revocation list is out of date"));
        }
    }
    Ok(web::Json(Ready { status: "ready", keys: loaded }))
}

/// `GET /metrics`: Prometheus metrics.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4", body = String))
)]
#[get("/metrics")]
pub(crate) async fn metrics() -> HttpResponse {
    service_kit::metrics::metrics_response()
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
#[get("/openapi.json")]
pub(crate) async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::json()).body(doc.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_healthz_body_is_the_health_schema() {
        let health = serde_json::to_string(&Health { status: "ok" }).unwrap();
        assert_eq!(HEALTHZ_BODY, health);
    }
}
