//! HTTP handlers: parse the request, call the domain, shape the answer.
//!
//! Each route is declared once, on its handler: the actix attribute (`#[post("/login")]`) gives
//! the path and methods that are mounted, `#[utoipa::path]` above it what is documented (every
//! status and body); [`configure`] registers the handlers through `utoipa_actix_web`, which
//! builds the OpenAPI document from the same registrations. A new route is a handler with both
//! attributes and one `cfg.service(handler)` line in [`configure`]. Other methods on a known
//! path get the contract's 405 with `Allow` (`service_kit::rejections::envelope_405`), unknown
//! paths a 404 (`service_kit::rejections::not_found`).
//!
//! Why one file (~540 lines of code): each handler is a few lines, and most of the file is the
//! declaration of the routes themselves (the `#[utoipa::path]` of every status and body, the
//! request and response types); the session routes are already apart ([`crate::session_routes`]).
//! Split further, [`configure`] would register handlers from files that each hold two of them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use access_token::{ApiError, Authenticated, ErrorBody, ErrorCode, TokenResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpRequest, HttpResponse, Responder, get, post, route, web};
use serde::{Deserialize, Serialize};
use service_kit::json::Json;
use service_kit::openapi::{BearerRefusals, RateLimited, Unavailable};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::config::Settings;
use crate::passwords::Password;
use crate::session_routes;
use crate::sessions::{ClientInfo, Issued, Sessions};
use crate::signing_keys::LiveSigningKeys;
use crate::store::Store;
use crate::throttle::TrustedProxies;
use crate::users::{Accounts, NewUser};

pub use crate::refresh_cookie::RefreshCookie;

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
    /// `GET /revocations` long polls.
    pub revocations: Arc<crate::revocations::Hub>,
    /// The clients allowed to call `POST /introspect`.
    pub introspection: crate::introspection::Clients,
    /// Cookie mode: the refresh cookie's name and flags, and the cross-site check.
    pub refresh_cookie: RefreshCookie,
}

type Result<T> = std::result::Result<T, actix_web::Error>;

/// Which routes a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// The API, with `GET /metrics` (no `AUTH_METRICS_BIND`).
    ApiAndMetrics,
    /// The API alone (`/metrics` is on the metrics listener).
    Api,
}

/// Registers every route of the API listener; `serve` says whether `/metrics` is one of them.
pub fn configure(cfg: &mut ServiceConfig, serve: Serve) {
    cfg.service(register)
        .service(login)
        .service(token)
        .service(logout)
        .service(logout_all)
        .service(session_routes::list_sessions)
        // Before `/sessions/{sid}`, which would take `others` as a sid.
        .service(session_routes::end_other_sessions)
        .service(session_routes::end_session)
        .service(session_routes::change_password)
        .service(session_routes::revoke)
        .service(session_routes::introspect)
        .service(session_routes::revocations)
        .service(jwks)
        .service(metadata)
        .service(healthz)
        .service(readyz)
        .service(openapi_json);
    if serve == Serve::ApiAndMetrics {
        cfg.service(metrics);
    }
}

/// Registers the routes of the metrics listener (`AUTH_METRICS_BIND`): `GET /metrics` alone.
pub fn configure_metrics(cfg: &mut ServiceConfig) {
    cfg.service(metrics);
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
    tag = "accounts",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered", body = Registered),
        (status = 400, description = "Bad JSON, or a field missing, of the wrong type or breaking the rules (`invalid_request`, naming the field)", body = ErrorBody),
        (status = 409, description = "The username is taken (`username_taken`)", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB (`payload_too_large`)", body = ErrorBody),
        RateLimited,
        Unavailable,
    )
)]
#[post("/register")]
pub(crate) async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<RegisterBody>,
) -> Result<impl Responder> {
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
    Ok(web::Json(Registered { id: user.id, username: user.username, name: user.name })
        .customize()
        .with_status(StatusCode::CREATED)
        .insert_header((header::CACHE_CONTROL, "no-store")))
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
    tag = "accounts",
    request_body = LoginBody,
    responses(
        (status = 200, description = "A token pair", body = TokenResponse),
        (status = 400, description = "Bad JSON, or a field missing, of the wrong type or over-long (`invalid_request`, naming the field)", body = ErrorBody),
        (status = 401, description = "Unknown user or wrong password (`invalid_credentials`)", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB (`payload_too_large`)", body = ErrorBody),
        RateLimited,
        Unavailable,
    )
)]
#[post("/login")]
pub(crate) async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<LoginBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let client = client_addr(&req, &state.settings.trusted_proxies);
    let result = async {
        let user = state
            .accounts
            .authenticate(&body.username, Password::new(body.password), client)
            .await
            .map_err(ApiError::from)?;
        state.sessions.login(&user, &client_info(&req, client)).await.map_err(ApiError::from)
    }
    .await;
    crate::metrics::login(result.as_ref().map_or_else(|e| e.code().as_str(), |_| "success"));
    if matches!(&result, Err(e) if e.code() == ErrorCode::RateLimited) {
        crate::metrics::throttled("login");
    }
    Ok(token_response(&state.refresh_cookie, result?))
}

#[utoipa::path(
    tag = "sessions",
    description = "Rotates a refresh token, given in the JSON body, the form body (RFC 6749 §6) or the refresh cookie (`refresh_token`, or `__Host-refresh_token` with an https issuer). A request carrying the cookie from an `Origin` that is neither the issuer's nor listed in `AUTH_CORS_ORIGINS` is refused (403 `forbidden`) and spends nothing.",
    request_body(content(
        (TokenJson = "application/json"),
        (TokenForm = "application/x-www-form-urlencoded"),
    )),
    params(("refresh_token" = Option<String>, Cookie, description = "The refresh token (cookie mode)")),
    responses(
        (status = 200, description = "A new token pair", body = TokenResponse),
        (status = 400, description = "No token (`invalid_request`), or unknown, expired, revoked or spent (`invalid_grant`)", body = ErrorBody),
        (status = 403, description = "The refresh cookie sent from an origin that is not allowed (`forbidden`); nothing spent", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB (`payload_too_large`)", body = ErrorBody),
        (status = 429, description = "The session rotated `AUTH_REFRESH_MAX_ROTATIONS` times in its window (`rate_limited`); the token is kept", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "Redis down or full (`unavailable`); the token is kept", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
#[post("/token")]
pub(crate) async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    // Before the body is read: a refused request spends nothing.
    state.refresh_cookie.refuse_cross_site(&req)?;
    let presented = presented_refresh_token(&req, payload, &state.refresh_cookie).await?;
    let issued = state.sessions.refresh(&presented).await.map_err(ApiError::from)?;
    Ok(token_response(&state.refresh_cookie, issued))
}

#[utoipa::path(
    tag = "sessions",
    description = "Ends the session of a refresh token (given as for `/token`, with the same cross-site check); 204 also for an unknown token. In cookie mode the answer removes the cookie.",
    request_body(content(
        (TokenJson = "application/json"),
        (TokenForm = "application/x-www-form-urlencoded"),
    )),
    params(("refresh_token" = Option<String>, Cookie, description = "The refresh token (cookie mode)")),
    responses(
        (status = 204, description = "Logged out"),
        (status = 400, description = "No token given (`invalid_request`)", body = ErrorBody),
        (status = 403, description = "The refresh cookie sent from an origin that is not allowed (`forbidden`); nothing ended", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB (`payload_too_large`)", body = ErrorBody),
        Unavailable,
    )
)]
#[route("/logout", method = "POST", method = "DELETE")]
pub(crate) async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    state.refresh_cookie.refuse_cross_site(&req)?;
    let presented = presented_refresh_token(&req, payload, &state.refresh_cookie).await?;
    state.sessions.logout(&presented, "logout").await.map_err(ApiError::from)?;
    Ok(logged_out(&state.refresh_cookie))
}

#[utoipa::path(
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session of the user ended"),
        BearerRefusals,
        Unavailable,
    )
)]
#[post("/logout/all")]
pub(crate) async fn logout_all(
    state: web::Data<AppState>,
    auth: Authenticated,
) -> Result<HttpResponse> {
    // An ended session's token (a logout elsewhere, a revocation) gets 401 here too.
    state.sessions.inventory().check_live(auth.claims()).await.map_err(ApiError::from)?;
    state.sessions.inventory().logout_all(&auth.sub).await.map_err(ApiError::from)?;
    Ok(logged_out(&state.refresh_cookie))
}

#[utoipa::path(
    tag = "discovery",
    responses((status = 200, description = "RFC 7517 JWK Set of every published key", body = crate::openapi::Jwks))
)]
#[get("/.well-known/jwks.json")]
pub(crate) async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    // The key ring serialized the set (jsonwebtoken's `JwkSet`) once, when it was loaded.
    let body = state.keys.load().jwks_json().to_owned();
    // Short, so a cached JWKS sees a key published by `keys add` before `keys activate`.
    let cache = format!("public, max-age={}", crate::key_folder::JWKS_MAX_AGE_SECS);
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, cache))
        .body(body)
}

/// RFC 8414 authorization server metadata: what `GET /.well-known/oauth-authorization-server`
/// answers, serialized once at start-up.
#[derive(Debug, Serialize, ToSchema)]
pub struct Metadata {
    /// `AUTH_ISSUER`.
    pub issuer: String,
    /// The JWKS URL.
    pub jwks_uri: String,
    /// The refresh endpoint.
    pub token_endpoint: String,
    /// RFC 7009 `POST /revoke`.
    pub revocation_endpoint: String,
    /// `["none"]`: holding the token is enough.
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    /// RFC 7662 `POST /introspect`.
    pub introspection_endpoint: String,
    /// `["client_secret_basic"]`: a client of `AUTH_INTROSPECTION_CLIENTS`.
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    /// `["refresh_token"]`.
    pub grant_types_supported: Vec<&'static str>,
    /// `["none"]`.
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// Empty: no authorization endpoint.
    pub response_types_supported: Vec<&'static str>,
    /// `["articles:read"]`.
    pub scopes_supported: Vec<&'static str>,
}

impl Metadata {
    /// The metadata of `issuer`.
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            jwks_uri: format!("{issuer}/.well-known/jwks.json"),
            token_endpoint: format!("{issuer}/token"),
            revocation_endpoint: format!("{issuer}/revoke"),
            revocation_endpoint_auth_methods_supported: vec!["none"],
            introspection_endpoint: format!("{issuer}/introspect"),
            introspection_endpoint_auth_methods_supported: vec!["client_secret_basic"],
            grant_types_supported: vec!["refresh_token"],
            token_endpoint_auth_methods_supported: vec!["none"],
            response_types_supported: vec![],
            scopes_supported: vec![crate::tokens::ISSUED_SCOPE],
        }
    }
}

#[utoipa::path(
    tag = "discovery",
    responses((status = 200, description = "RFC 8414 metadata", body = Metadata))
)]
#[get("/.well-known/oauth-authorization-server")]
pub(crate) async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .body(state.metadata.clone())
}

/// RFC 8414 authorization server metadata for `issuer`, as JSON.
pub fn metadata_json(issuer: &str) -> String {
    serde_json::to_string(&Metadata::new(issuer)).unwrap_or_else(|e| {
        log::error!("cannot serialize the metadata: {e}");
        "{}".to_owned()
    })
}

/// `GET /metrics`: Prometheus text format; the active kid is read at each scrape.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4", body = String))
)]
#[get("/metrics")]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    metrics_response(&state)
}

/// The `/metrics` answer, on the API listener or the metrics listener.
pub fn metrics_response(state: &AppState) -> HttpResponse {
    crate::metrics::signing_key(state.keys.load().signer().kid());
    service_kit::metrics::metrics_response()
}

/// The body of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    #[schema(pattern = "^ok$")]
    pub status: &'static str,
}

#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The process runs", body = Health))
)]
#[get("/healthz")]
pub(crate) async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

/// The body of `GET /readyz` when ready.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    #[schema(pattern = "^ready$")]
    pub status: &'static str,
    /// The signing key.
    pub kid: String,
}

#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Redis answers, and the signing key is the one the key state names", body = Ready),
        Unavailable,
    )
)]
#[get("/readyz")]
pub(crate) async fn readyz(
    state: web::Data<AppState>,
) -> std::result::Result<impl Responder, ApiError> {
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
    let kid = state.keys.load().signer().kid().to_owned();
    Ok(web::Json(Ready { status: "ready", kid })
        .customize()
        .insert_header((header::CACHE_CONTROL, "no-store")))
}

#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object))
)]
#[get("/openapi.json")]
pub(crate) async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .body(state.openapi.clone())
}

fn token_response(cookie: &RefreshCookie, issued: Issued) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    let refresh = issued.refresh_token.expose();
    let refresh_token = if cookie.enabled() {
        res.cookie(cookie.set(refresh, issued.refresh_expires_in));
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

/// 204, removing the refresh cookie in cookie mode.
fn logged_out(cookie: &RefreshCookie) -> HttpResponse {
    let mut res = HttpResponse::NoContent();
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    if cookie.enabled() {
        res.cookie(cookie.removal());
    }
    res.finish()
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
/// (RFC 6749 §6) or the refresh cookie, in that order; 400 when there is none.
async fn presented_refresh_token(
    req: &HttpRequest,
    payload: web::Payload,
    cookie: &RefreshCookie,
) -> Result<String> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body = service_kit::json::read_body(payload.into_inner()).await?;
    let from_body = refresh_token_from_body(content_type, &body)?;
    from_body
        .or_else(|| cookie.presented(req))
        .ok_or_else(|| ApiError::invalid_request("no refresh token given").into())
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
            let body: TokenJson = service_kit::json::parse(body)?;
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

/// What the session inventory shows of a login's client: its `User-Agent` (cut to 256
/// characters) and its network (never the full address).
fn client_info(req: &HttpRequest, client: IpAddr) -> ClientInfo {
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).chars().take(256).collect());
    ClientInfo::new(client, user_agent)
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}
