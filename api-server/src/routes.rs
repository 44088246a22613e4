//! HTTP routes. Handlers are short: the `Authenticated` extractor has already verified the
//! token; they look up articles and answer.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use serde::Serialize;
use shared::keyset::Keys;
use shared::{ApiError, Authenticated};

use crate::articles::Articles;

/// Registers every route, plus JSON 404/405 answers for the rest.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_only("/articles", web::get().to(list_articles)))
        .service(get_only("/articles/{id}", web::get().to(get_article)))
        .service(get_only("/me", web::get().to(me)))
        .service(get_only("/healthz", web::get().to(healthz)))
        .service(get_only("/readyz", web::get().to(readyz)));
}

fn get_only(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path).route(route).default_service(web::to(method_not_allowed))
}

/// `GET /articles`: the caller's articles (all of them for `admin`).
async fn list_articles(auth: Authenticated, articles: web::Data<Articles>) -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::json()).body(articles.list_json(&auth))
}

/// `GET /articles/{id}`: 404 when absent, not the caller's, or not a number.
async fn get_article(
    auth: Authenticated,
    id: web::Path<String>,
    articles: web::Data<Articles>,
) -> Result<HttpResponse, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::not_found())?;
    let article = articles.get(id, &auth).ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok().json(article))
}

/// The body of `GET /me`.
#[derive(Debug, Serialize)]
struct Me<'a> {
    sub: &'a str,
    preferred_username: &'a str,
    /// `null` when the user has no display name.
    name: Option<&'a str>,
    roles: &'a [String],
    scope: &'a str,
    exp: u64,
}

/// `GET /me`: who the verified token says the caller is.
async fn me(auth: Authenticated) -> HttpResponse {
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

/// `GET /healthz`: 200 while the process runs.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when at least one public key is loaded, else 503 `unavailable`.
async fn readyz(keys: web::Data<std::sync::Arc<Keys>>) -> Result<HttpResponse, ApiError> {
    let loaded = keys.current().len();
    if loaded == 0 {
        return Err(ApiError::new(shared::ErrorCode::Unavailable, "no public key is loaded yet")
            .with_retry_after(1));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready", "keys": loaded})))
}

/// Any path we do not serve: 404 `not_found` in the contract's envelope.
pub async fn not_found(_req: HttpRequest) -> HttpResponse {
    ApiError::not_found().error_response()
}

/// A known path with another method: 405 in the contract's envelope.
async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let mut res =
        ApiError::invalid_request(format!("method {} is not allowed here; use GET", req.method()))
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
            .error_response();
    res.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET"));
    res
}
