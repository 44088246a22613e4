//! HTTP handlers: parse the request, call the domain, shape the answer.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest as _, HttpRequest, HttpResponse, Resource, web};
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use shared::{ApiError, Authenticated, TokenResponse};

use crate::config::Settings;
use crate::keys::KeyRing;
use crate::passwords::Password;
use crate::sessions::{Issued, Sessions};
use crate::store::Store;
use crate::users::{self, NewUser};

/// Name of the refresh-token cookie.
pub const REFRESH_COOKIE: &str = "refresh_token";

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Settings as loaded.
    pub settings: Arc<Settings>,
    /// Redis.
    pub store: Store,
    /// Sessions.
    pub sessions: Sessions,
    /// Signing and published keys; swapped whole on reload.
    pub keys: Arc<ArcSwap<KeyRing>>,
    /// PHC string unknown users are verified against.
    pub dummy_phc: Arc<str>,
    /// RFC 8414 metadata, serialized once.
    pub metadata: String,
}

type Result<T> = std::result::Result<T, actix_web::Error>;

/// Mounts every route; unknown paths get a JSON 404, known paths a JSON 405 for other methods.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/register", &[Method::POST]).route(web::post().to(register)))
        .service(resource("/login", &[Method::POST]).route(web::post().to(login)))
        .service(resource("/token", &[Method::POST]).route(web::post().to(token)))
        .service(
            resource("/logout", &[Method::POST, Method::DELETE])
                .route(web::post().to(logout))
                .route(web::delete().to(logout)),
        )
        .service(resource("/logout/all", &[Method::POST]).route(web::post().to(logout_all)))
        .service(resource("/.well-known/jwks.json", &[Method::GET]).route(web::get().to(jwks)))
        .service(
            resource("/.well-known/oauth-authorization-server", &[Method::GET])
                .route(web::get().to(metadata)),
        )
        .service(resource("/healthz", &[Method::GET]).route(web::get().to(healthz)))
        .service(resource("/readyz", &[Method::GET]).route(web::get().to(readyz)))
        .default_service(web::to(not_found));
}

fn resource(path: &str, allowed: &'static [Method]) -> Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        method_not_allowed(&req, allowed)
    }))
}

fn method_not_allowed(req: &HttpRequest, allowed: &[Method]) -> HttpResponse {
    let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    let err = ApiError::invalid_request(format!(
        "method {} is not allowed here; use {allow}",
        req.method()
    ))
    .with_status(StatusCode::METHOD_NOT_ALLOWED);
    let mut res = actix_web::ResponseError::error_response(&err);
    if let Ok(value) = HeaderValue::from_str(&allow) {
        res.headers_mut().insert(header::ALLOW, value);
    }
    res
}

async fn not_found() -> std::result::Result<HttpResponse, ApiError> {
    Err(ApiError::not_found())
}

#[derive(Deserialize)]
struct RegisterBody {
    username: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize)]
struct Registered {
    id: String,
    username: String,
    name: Option<String>,
}

async fn register(
    state: web::Data<AppState>,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let new = NewUser {
        username: body.username,
        password: Password::new(body.password),
        name: body.name,
    };
    let user = users::register(&state.store, new).await.map_err(ApiError::from)?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Registered { id: user.id, username: user.username, name: user.name }))
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(state: web::Data<AppState>, body: web::Json<LoginBody>) -> Result<HttpResponse> {
    let body = body.into_inner();
    let user = users::authenticate(
        &state.store,
        &state.dummy_phc,
        &body.username,
        Password::new(body.password),
    )
    .await
    .map_err(ApiError::from)?;
    let issued = state.sessions.login(&user).await.map_err(ApiError::from)?;
    Ok(token_response(&state.settings, issued))
}

async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let presented = presented_refresh_token(&req, payload).await?;
    let issued = state.sessions.refresh(&presented).await.map_err(ApiError::from)?;
    Ok(token_response(&state.settings, issued))
}

async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let presented = presented_refresh_token(&req, payload).await?;
    state.sessions.logout(&presented).await.map_err(ApiError::from)?;
    Ok(logged_out(&state.settings))
}

async fn logout_all(state: web::Data<AppState>, auth: Authenticated) -> Result<HttpResponse> {
    state.sessions.logout_all(&auth.sub).await.map_err(ApiError::from)?;
    Ok(logged_out(&state.settings))
}

async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let body = state.keys.load().jwks_json().to_owned();
    // Short, so a cached JWKS sees a key published by `keys add` before `keys activate`.
    let cache = format!("public, max-age={}", crate::keys::JWKS_MAX_AGE_SECS);
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, cache))
        .body(body)
}

async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .body(state.metadata.clone())
}

/// RFC 8414 authorization server metadata for `issuer`.
pub fn metadata_json(issuer: &str) -> String {
    serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/token"),
        "grant_types_supported": ["refresh_token"],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": [],
        "scopes_supported": [shared::claims::ARTICLES_READ_SCOPE],
    })
    .to_string()
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> std::result::Result<HttpResponse, ApiError> {
    // A key ring always holds a signer once the server runs; Redis is what can be missing.
    if let Err(e) = state.store.ping().await {
        log::warn!("not ready: {e}");
        return Err(ApiError::unavailable(crate::error::RETRY_AFTER_SECS));
    }
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(
        serde_json::json!({
            "status": "ready",
            "kid": state.keys.load().signer().kid(),
        }),
    ))
}

fn token_response(settings: &Settings, issued: Issued) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    let refresh = issued.refresh_token.expose();
    let refresh_token = if settings.refresh_cookie {
        let cookie = refresh_cookie(settings, &refresh, issued.refresh_expires_in);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            res.insert_header((header::SET_COOKIE, value));
        }
        None
    } else {
        Some(refresh)
    };
    res.json(TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer".into(),
        expires_in: issued.expires_in,
        refresh_token,
        refresh_expires_in: issued.refresh_expires_in,
    })
}

fn logged_out(settings: &Settings) -> HttpResponse {
    let mut res = HttpResponse::NoContent();
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    if settings.refresh_cookie
        && let Ok(value) = HeaderValue::from_str(&refresh_cookie(settings, "", 0))
    {
        res.insert_header((header::SET_COOKIE, value));
    }
    res.finish()
}

fn refresh_cookie(settings: &Settings, value: &str, max_age: u64) -> String {
    let secure = if settings.issuer.starts_with("https://") { "; Secure" } else { "" };
    format!(
        "{REFRESH_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    )
}

#[derive(Deserialize)]
struct TokenJson {
    #[serde(default)]
    refresh_token: Option<String>,
    /// The field older clients send.
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    grant_type: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The refresh token from the JSON body (`refresh_token` or `token`), the form body
/// (RFC 6749 §6) or the `refresh_token` cookie, in that order; 400 when there is none.
async fn presented_refresh_token(req: &HttpRequest, payload: web::Payload) -> Result<String> {
    let mut payload = payload.into_inner();
    let empty_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0");
    let mime = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());

    let from_body = match mime.as_deref() {
        _ if empty_body => None,
        None => None,
        Some("application/json") => {
            let body = web::Json::<TokenJson>::from_request(req, &mut payload).await?.into_inner();
            match (non_empty(body.refresh_token), non_empty(body.token)) {
                (Some(a), Some(b)) if a != b => {
                    return Err(ApiError::invalid_request(
                        "`refresh_token` and `token` are both given and differ",
                    )
                    .into());
                }
                (a, b) => a.or(b),
            }
        }
        Some("application/x-www-form-urlencoded") => {
            let form = web::Form::<TokenForm>::from_request(req, &mut payload).await?.into_inner();
            if let Some(grant) = form.grant_type.as_deref()
                && grant != "refresh_token"
            {
                return Err(ApiError::invalid_request("grant_type must be refresh_token").into());
            }
            non_empty(form.refresh_token)
        }
        Some(_) => {
            return Err(ApiError::invalid_request(
                "Content-Type must be application/json or application/x-www-form-urlencoded",
            )
            .into());
        }
    };
    from_body
        .or_else(|| cookie(req, REFRESH_COOKIE))
        .ok_or_else(|| ApiError::invalid_request("no refresh token given").into())
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// The value of cookie `name`, read from the `Cookie` headers.
fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}
