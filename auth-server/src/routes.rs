//! HTTP handlers: parse the request, call the domain, shape the answer.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use access_token::{ApiError, Authenticated, ErrorBody, ErrorCode, TokenResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, Resource, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::Settings;
use crate::openapi::{Health, Jwks, Metadata, Ready, TokenResponseSchema};
use crate::passwords::Password;
use crate::sessions::{Issued, Sessions};
use crate::signing_keys::LiveSigningKeys;
use crate::store::Store;
use crate::throttle::TrustedProxies;
use crate::users::{Accounts, NewUser};

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
    /// Registration and password checks (throttled, bounded hashing).
    pub accounts: Accounts,
    /// Signing and published keys; swapped whole on reload.
    pub keys: Arc<LiveSigningKeys>,
    /// RFC 8414 metadata, serialized once.
    pub metadata: String,
    /// The OpenAPI document, serialized once.
    pub openapi: String,
}

type Result<T> = std::result::Result<T, actix_web::Error>;

/// Every route and its methods: the one list. [`configure`] mounts exactly these, and the
/// OpenAPI document must list exactly these (a test compares them). A new route goes here,
/// in `mount`, and in `openapi::ApiDoc`.
pub const ROUTES: &[(&str, &[Method])] = &[
    ("/register", &[Method::POST]),
    ("/login", &[Method::POST]),
    ("/token", &[Method::POST]),
    ("/logout", &[Method::POST, Method::DELETE]),
    ("/logout/all", &[Method::POST]),
    ("/.well-known/jwks.json", &[Method::GET]),
    ("/.well-known/oauth-authorization-server", &[Method::GET]),
    ("/healthz", &[Method::GET]),
    ("/readyz", &[Method::GET]),
    ("/metrics", &[Method::GET]),
    ("/openapi.json", &[Method::GET]),
];

/// Mounts every route of [`ROUTES`]; unknown paths get a JSON 404, known paths a JSON 405 for
/// other methods.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for &(path, methods) in ROUTES {
        cfg.service(mount(path, methods));
    }
    cfg.default_service(web::to(not_found));
}

fn mount(path: &'static str, methods: &'static [Method]) -> Resource {
    let r = resource(path, methods);
    match path {
        "/register" => r.route(web::post().to(register)),
        "/login" => r.route(web::post().to(login)),
        "/token" => r.route(web::post().to(token)),
        "/logout" => r.route(web::post().to(logout)).route(web::delete().to(logout)),
        "/logout/all" => r.route(web::post().to(logout_all)),
        "/.well-known/jwks.json" => r.route(web::get().to(jwks)),
        "/.well-known/oauth-authorization-server" => r.route(web::get().to(metadata)),
        "/healthz" => r.route(web::get().to(healthz)),
        "/readyz" => r.route(web::get().to(readyz)),
        "/metrics" => r.route(web::get().to(metrics)),
        "/openapi.json" => r.route(web::get().to(openapi_json)),
        // Every path of ROUTES has an arm; a test checks each answers its methods.
        _ => r,
    }
}

fn resource(path: &str, allowed: &'static [Method]) -> Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        service_kit::rejections::method_not_allowed(req.method(), allowed)
    }))
}

async fn not_found() -> std::result::Result<HttpResponse, ApiError> {
    Err(ApiError::not_found())
}

/// `POST /register` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterBody {
    /// 3–64 of `a-z 0-9 . _ @ + -`, case-insensitive.
    #[schema(min_length = 3, max_length = 64, pattern = "^[A-Za-z0-9._@+-]{3,64}$")]
    pub username: String,
    /// 8–128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// Optional display name, at most 128 characters, no control characters.
    #[serde(default)]
    #[schema(max_length = 128)]
    pub name: Option<String>,
}

/// `POST /register` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    /// Stable user id.
    pub id: String,
    /// Lowercased username.
    pub username: String,
    /// Display name.
    pub name: Option<String>,
}

#[utoipa::path(
    post,
    path = "/register",
    tag = "accounts",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, description = "Bad JSON or a bad field (`invalid_request`)", body = ErrorBody),
        (status = 409, description = "The username is taken (`username_taken`)", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address (`rate_limited`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "Redis down or hashing saturated (`unavailable`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub(crate) async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let new = NewUser {
        username: body.username,
        password: Password::new(body.password),
        name: body.name,
    };
    let client = client_addr(&req, &state.settings.trusted_proxies);
    let user =
        state.accounts.register(new, client).await.map_err(ApiError::from).inspect_err(|e| {
            if e.code() == ErrorCode::RateLimited {
                crate::metrics::throttled("register");
            }
        })?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Registered { id: user.id, username: user.username, name: user.name }))
}

/// `POST /login` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    /// The username (any case).
    #[schema(max_length = 64)]
    pub username: String,
    /// The password.
    #[schema(max_length = 128)]
    pub password: String,
}

#[utoipa::path(
    post,
    path = "/login",
    tag = "accounts",
    request_body = LoginBody,
    responses(
        (status = 200, description = "A token pair", body = TokenResponseSchema),
        (status = 400, description = "Bad JSON or an over-long field (`invalid_request`)", body = ErrorBody),
        (status = 401, description = "Unknown user or wrong password (`invalid_credentials`)", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 429, description = "Too many failures for this username or address (`rate_limited`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "Redis down or hashing saturated (`unavailable`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub(crate) async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let client = client_addr(&req, &state.settings.trusted_proxies);
    let result = async {
        let user = state
            .accounts
            .authenticate(&body.username, Password::new(body.password), client)
            .await
            .map_err(ApiError::from)?;
        state.sessions.login(&user).await.map_err(ApiError::from)
    }
    .await;
    crate::metrics::login(result.as_ref().map_or_else(|e| e.code().as_str(), |_| "success"));
    if matches!(&result, Err(e) if e.code() == ErrorCode::RateLimited) {
        crate::metrics::throttled("login");
    }
    Ok(token_response(&state.settings, result?))
}

#[utoipa::path(
    post,
    path = "/token",
    tag = "sessions",
    description = "Rotates a refresh token, given in the JSON body, the form body (RFC 6749 §6) or the `refresh_token` cookie.",
    request_body(content(
        (TokenJson = "application/json"),
        (TokenForm = "application/x-www-form-urlencoded"),
    )),
    params(("refresh_token" = Option<String>, Cookie, description = "The refresh token (cookie mode)")),
    responses(
        (status = 200, description = "A new token pair", body = TokenResponseSchema),
        (status = 400, description = "No token (`invalid_request`), or unknown, expired, revoked or spent (`invalid_grant`)", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 429, description = "The session rotated `AUTH_REFRESH_MAX_ROTATIONS` times in its window (`rate_limited`); the token is kept", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "Redis down or full (`unavailable`); the token is kept", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub(crate) async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let presented = presented_refresh_token(&req, payload).await?;
    let issued = state.sessions.refresh(&presented).await.map_err(ApiError::from)?;
    Ok(token_response(&state.settings, issued))
}

#[utoipa::path(
    method(post, delete),
    path = "/logout",
    tag = "sessions",
    description = "Ends the session of a refresh token (given as for `/token`); 204 also for an unknown token.",
    request_body(content(
        (TokenJson = "application/json"),
        (TokenForm = "application/x-www-form-urlencoded"),
    )),
    params(("refresh_token" = Option<String>, Cookie, description = "The refresh token (cookie mode)")),
    responses(
        (status = 204, description = "Logged out"),
        (status = 400, description = "No token given (`invalid_request`)", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 503, description = "Redis down (`unavailable`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub(crate) async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let presented = presented_refresh_token(&req, payload).await?;
    state.sessions.logout(&presented).await.map_err(ApiError::from)?;
    Ok(logged_out(&state.settings))
}

#[utoipa::path(
    post,
    path = "/logout/all",
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session of the user ended"),
        (status = 400, description = "Malformed Authorization header (`invalid_request`)", body = ErrorBody),
        (status = 401, description = "No or an invalid access token (`invalid_token`), with `WWW-Authenticate`", body = ErrorBody),
        (status = 403, description = "The token lacks the scope (`insufficient_scope`)", body = ErrorBody),
        (status = 503, description = "Redis down (`unavailable`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub(crate) async fn logout_all(
    state: web::Data<AppState>,
    auth: Authenticated,
) -> Result<HttpResponse> {
    state.sessions.logout_all(&auth.sub).await.map_err(ApiError::from)?;
    Ok(logged_out(&state.settings))
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "discovery",
    responses((status = 200, description = "RFC 7517 JWK Set of every published key", body = Jwks))
)]
pub(crate) async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let body = state.keys.load().jwks_json().to_owned();
    // Short, so a cached JWKS sees a key published by `keys add` before `keys activate`.
    let cache = format!("public, max-age={}", crate::key_folder::JWKS_MAX_AGE_SECS);
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, cache))
        .body(body)
}

#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "discovery",
    responses((status = 200, description = "RFC 8414 metadata", body = Metadata))
)]
pub(crate) async fn metadata(state: web::Data<AppState>) -> HttpResponse {
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
        "scopes_supported": [crate::tokens::ISSUED_SCOPE],
    })
    .to_string()
}

/// `GET /metrics`: Prometheus text format; the active kid is read at each scrape.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4", body = String))
)]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    crate::metrics::signing_key(state.keys.load().signer().kid());
    service_kit::metrics::metrics_response()
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process runs", body = Health))
)]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Redis answers, and the signing key is the one the key state names", body = Ready),
        (status = 503, description = "Not ready (`unavailable`)", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub(crate) async fn readyz(
    state: web::Data<AppState>,
) -> std::result::Result<HttpResponse, ApiError> {
    // The live keys always hold a signer once the server runs; but it may not be the one the
    // key state names, when reloads keep failing.
    if let Err(reason) = state.keys.readiness() {
        log::warn!("not ready: {reason}");
        return Err(ApiError::new(ErrorCode::Unavailable, reason)
            .with_retry_after(crate::error::RETRY_AFTER_SECS));
    }
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

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object))
)]
pub(crate) async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .body(state.openapi.clone())
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

/// `POST /token` and `/logout` JSON body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenJson {
    /// The refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// The field older clients send.
    #[serde(default)]
    pub token: Option<String>,
}

/// `POST /token` and `/logout` form body (RFC 6749 §6).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenForm {
    /// Must be `refresh_token` when given.
    #[serde(default)]
    pub grant_type: Option<String>,
    /// The refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// The refresh token from the JSON body (`refresh_token` or `token`), the form body
/// (RFC 6749 §6) or the `refresh_token` cookie, in that order; 400 when there is none.
async fn presented_refresh_token(req: &HttpRequest, payload: web::Payload) -> Result<String> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body = read_body(payload).await?;
    let from_body = refresh_token_from_body(content_type, &body)?;
    from_body
        .or_else(|| cookie(req, REFRESH_COOKIE))
        .ok_or_else(|| ApiError::invalid_request("no refresh token given").into())
}

/// Reads a body of at most [`service_kit::limits::MAX_BODY_BYTES`] (413 past it).
async fn read_body(mut payload: web::Payload) -> std::result::Result<web::Bytes, ApiError> {
    use futures_util::StreamExt as _;
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {} bytes", service_kit::limits::MAX_BODY_BYTES),
        )
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::invalid_request("could not read the request body"))?;
        if body.len() + chunk.len() > service_kit::limits::MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The refresh token in a `/token` or `/logout` body of type `content_type`, if any. Pure, so
/// it can be fuzzed: never panics, whatever the bytes.
pub fn refresh_token_from_body(
    content_type: Option<&str>,
    body: &[u8],
) -> std::result::Result<Option<String>, ApiError> {
    let mime = content_type.map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if body.is_empty() {
        return Ok(None);
    }
    match mime.as_deref() {
        None => Ok(None),
        Some("application/json") => {
            let body: TokenJson = serde_json::from_slice(body).map_err(|e| {
                ApiError::invalid_request(format!("invalid JSON body: {}", short(&e.to_string())))
            })?;
            match (non_empty(body.refresh_token), non_empty(body.token)) {
                (Some(a), Some(b)) if a != b => Err(ApiError::invalid_request(
                    "`refresh_token` and `token` are both given and differ",
                )),
                (a, b) => Ok(a.or(b)),
            }
        }
        Some("application/x-www-form-urlencoded") => {
            let form: TokenForm = serde_urlencoded::from_bytes(body)
                .map_err(|_| ApiError::invalid_request("invalid form body"))?;
            if let Some(grant) = form.grant_type.as_deref()
                && grant != "refresh_token"
            {
                return Err(ApiError::invalid_request("grant_type must be refresh_token"));
            }
            Ok(non_empty(form.refresh_token))
        }
        Some(_) => Err(ApiError::invalid_request(
            "Content-Type must be application/json or application/x-www-form-urlencoded",
        )),
    }
}

/// At most 200 characters of a parser message (they name the position, not the input).
fn short(text: &str) -> String {
    text.chars().take(200).collect()
}

/// The client's address: the peer, or behind a trusted proxy the right-most untrusted address
/// of `X-Forwarded-For` (see [`TrustedProxies::client_addr`]).
pub fn client_addr(req: &HttpRequest, trusted: &TrustedProxies) -> IpAddr {
    let peer = req.peer_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let forwarded: Vec<&str> = req
        .headers()
        .get_all(HeaderName::from_static("x-forwarded-for"))
        .filter_map(|v| v.to_str().ok())
        .collect();
    trusted.client_addr(peer, forwarded.into_iter())
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
