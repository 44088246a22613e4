//! HTTP handlers of the session inventory (`/sessions`), the password change, RFC 7009
//! revocation, RFC 7662 introspection and the session revocation list (`/revocations`): parse,
//! call the domain, shape the answer. Errors become the contract's envelope in `crate::error`.

use std::time::Duration;

use access_token::{ApiError, Authenticated, ErrorBody, Verifier};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use service_kit::json::Json;
use service_kit::openapi::{BearerRefusals, RateLimited, Unavailable};
use utoipa::{IntoParams, ToSchema};

use crate::error::invalid_client;
use crate::introspection::Active;
use crate::passwords::Password;
use crate::revocations::{Answer, parse_wait};
use crate::routes::{AppState, client_addr};
use crate::sessions::SessionItem;
use crate::store::revocations::Revoked;
use crate::tokens::SessionId;

type Result<T> = std::result::Result<T, actix_web::Error>;

/// The longest a long poll is held: every request of this server ends within
/// [`service_kit::limits::REQUEST_DEADLINE`] (30 s), so `wait=30` answers a little earlier.
const LONGEST_HOLD: Duration = Duration::from_millis(29_500);

/// The bearer's session, if it is still live: else 401 `invalid_token` "the session has ended".
async fn live_session(state: &AppState, auth: &Authenticated) -> Result<SessionId> {
    Ok(state.sessions.inventory().check_live(auth.claims()).await.map_err(ApiError::from)?)
}

fn no_store_json(body: &impl Serialize) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

fn no_content() -> HttpResponse {
    HttpResponse::NoContent().insert_header((header::CACHE_CONTROL, "no-store")).finish()
}

#[utoipa::path(
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's live sessions, newest first", body = [SessionItem]),
        BearerRefusals,
        Unavailable,
    )
)]
#[get("/sessions")]
pub(crate) async fn list_sessions(
    state: web::Data<AppState>,
    auth: Authenticated,
) -> Result<HttpResponse> {
    let current = live_session(&state, &auth).await?;
    let views =
        state.sessions.inventory().list(&auth.sub, Some(&current)).await.map_err(ApiError::from)?;
    let items: Vec<SessionItem> = views.iter().map(SessionItem::from).collect();
    Ok(no_store_json(&items))
}

#[utoipa::path(
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session of the caller but the current one ended (and published on the revocation list)"),
        BearerRefusals,
        Unavailable,
    )
)]
#[delete("/sessions/others")]
pub(crate) async fn end_other_sessions(
    state: web::Data<AppState>,
    auth: Authenticated,
) -> Result<HttpResponse> {
    let current = live_session(&state, &auth).await?;
    state
        .sessions
        .inventory()
        .end_all(&auth.sub, Some(&current), "others")
        .await
        .map_err(ApiError::from)?;
    Ok(no_content())
}

#[utoipa::path(
    tag = "sessions",
    security(("bearer" = [])),
    params(("sid" = String, Path, description = "A session id of the caller (from GET /sessions)")),
    responses(
        (status = 204, description = "The session ended (and was published on the revocation list)"),
        (status = 404, description = "Not a live session of the caller (`not_found`): another user's looks the same", body = ErrorBody),
        BearerRefusals,
        Unavailable,
    )
)]
#[delete("/sessions/{sid}")]
pub(crate) async fn end_session(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    live_session(&state, &auth).await?;
    let Some(sid) = SessionId::parse(&path) else {
        return Err(ApiError::not_found().into());
    };
    let ended = state
        .sessions
        .inventory()
        .end_one(&auth.sub, &sid, "session_delete")
        .await
        .map_err(ApiError::from)?;
    if !ended {
        return Err(ApiError::not_found().into());
    }
    Ok(no_content())
}

/// `POST /password` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordBody {
    /// The password now.
    pub current_password: String,
    /// The new one: 8–128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

#[utoipa::path(
    tag = "accounts",
    security(("bearer" = [])),
    request_body = PasswordBody,
    responses(
        (status = 204, description = "Changed; every other session of the user ended (and was published)"),
        (status = 400, description = "Bad JSON, a new password outside the rules, or a malformed Authorization header (`invalid_request`)", body = ErrorBody),
        (status = 401, description = "Wrong current password (`invalid_credentials`), or no, an invalid or an ended session's access token (`invalid_token`, with `WWW-Authenticate`)", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB (`payload_too_large`)", body = ErrorBody),
        RateLimited,
        Unavailable,
    )
)]
#[post("/password")]
pub(crate) async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    auth: Authenticated,
    body: Json<PasswordBody>,
) -> Result<HttpResponse> {
    let current = live_session(&state, &auth).await?;
    let body = body.into_inner();
    let client = client_addr(&req, &state.settings.trusted_proxies);
    let changed_ms = state
        .accounts
        .change_password(
            &auth.preferred_username,
            &auth.sub,
            Password::new(body.current_password),
            Password::new(body.new_password),
            client,
        )
        .await
        .map_err(ApiError::from)?;
    state
        .sessions
        .inventory()
        .end_others_after_password(&auth.sub, &current, changed_ms)
        .await
        .map_err(ApiError::from)?;
    Ok(no_content())
}

/// `POST /revoke` and `POST /introspect` body (JSON or form).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenParam {
    /// The token: a refresh token or an access token.
    #[serde(default)]
    pub token: Option<String>,
    /// `refresh_token` or `access_token` (a hint only; every kind is tried).
    #[serde(default)]
    pub token_type_hint: Option<String>,
}

/// The `token` of a `/revoke` or `/introspect` body of type `content_type`, if any. Pure, so it
/// can be fuzzed: never panics, whatever the bytes.
pub fn token_from_body(
    content_type: Option<&str>,
    body: &[u8],
) -> std::result::Result<Option<String>, ApiError> {
    let mime = content_type.map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if body.is_empty() {
        return Ok(None);
    }
    let param: TokenParam = match mime.as_deref() {
        Some("application/json") => service_kit::json::parse(body)?,
        Some("application/x-www-form-urlencoded") => serde_urlencoded::from_bytes(body)
            .map_err(|_| ApiError::invalid_request("invalid form body"))?,
        _ => {
            return Err(ApiError::invalid_request(
                "Content-Type must be application/x-www-form-urlencoded or application/json",
            ));
        }
    };
    Ok(param.token.filter(|t| !t.is_empty()))
}

async fn token_param(req: &HttpRequest, payload: web::Payload) -> Result<String> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body = service_kit::json::read_body(payload.into_inner()).await?;
    token_from_body(content_type, &body)?
        .ok_or_else(|| ApiError::invalid_request("no token given").into())
}

#[utoipa::path(
    tag = "sessions",
    description = "RFC 7009. A refresh token, or a valid access token of ours, ends its session (published on the revocation list). Any other token is answered the same 200 (no oracle). No client authentication: holding the token is enough.",
    request_body(content(
        (TokenParam = "application/x-www-form-urlencoded"),
        (TokenParam = "application/json"),
    )),
    responses(
        (status = 200, description = "Revoked, or not a token of a live session (empty body)"),
        (status = 400, description = "No `token` (`invalid_request`)", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB (`payload_too_large`)", body = ErrorBody),
        Unavailable,
    )
)]
#[post("/revoke")]
pub(crate) async fn revoke(
    state: web::Data<AppState>,
    verifier: web::Data<Verifier>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let token = token_param(&req, payload).await?;
    state.sessions.revoke(&token, &verifier).await.map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).finish())
}

/// `POST /introspect` answer for anything but an active token.
#[derive(Debug, Serialize, ToSchema)]
pub struct Inactive {
    /// Always `false`.
    pub active: bool,
}

#[utoipa::path(
    tag = "sessions",
    description = "RFC 7662, for resource servers that want a live check: HTTP Basic with a client of `AUTH_INTROSPECTION_CLIENTS`. Active only for a valid access token whose session is live; reflects an ended session at once.",
    security(("basic" = [])),
    request_body(content(
        (TokenParam = "application/x-www-form-urlencoded"),
        (TokenParam = "application/json"),
    )),
    responses(
        (status = 200, description = "`{\"active\": true, ...}` for a valid access token of a live session, else `{\"active\": false}`", body = Active),
        (status = 400, description = "No `token` (`invalid_request`)", body = ErrorBody),
        (status = 401, description = "No or wrong client credentials (`invalid_client`), with `WWW-Authenticate: Basic`", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB (`payload_too_large`)", body = ErrorBody),
        Unavailable,
    )
)]
#[post("/introspect")]
pub(crate) async fn introspect(
    state: web::Data<AppState>,
    verifier: web::Data<Verifier>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let authorization = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let Some(client) = state.introspection.authenticate(authorization) else {
        return Err(invalid_client().into());
    };
    let token = token_param(&req, payload).await?;
    let claims = match verifier.verify(&token).await {
        // The verifier allows a clock-skew leeway; introspection says what is true now.
        Ok(claims) if claims.exp > crate::clock::now_secs() => claims,
        Ok(_) | Err(_) => return Ok(no_store_json(&Inactive { active: false })),
    };
    match state.sessions.inventory().check_live(&claims).await {
        Ok(_) => {
            log::debug!("introspection by {client}: active");
            Ok(no_store_json(&Active::of(&claims)))
        }
        Err(crate::error::SessionError::Ended) => Ok(no_store_json(&Inactive { active: false })),
        Err(e) => Err(ApiError::from(e).into()),
    }
}

/// `GET /revocations` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevocationsQuery {
    /// The cursor of the previous answer (opaque); none, unknown or too old: a `reset`.
    pub after: Option<String>,
    /// Long poll: hold the answer up to this many seconds (0–30) until something is published
    /// after `after`.
    pub wait: Option<String>,
}

/// `GET /revocations` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevocationList {
    /// Where to continue (`after=`).
    pub cursor: String,
    /// `revoked` is the whole list (replace what you hold); otherwise only what is new.
    pub reset: bool,
    /// The ended sessions.
    pub revoked: Vec<RevokedItem>,
}

/// One ended session on the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedItem {
    /// base64url (no padding) of SHA-256 of the sid's UTF-8 text.
    pub sid_sha256: String,
    /// Unix seconds: the last moment an access token of the session may still be accepted
    /// (its latest `exp` + 5 min); refuse the session's tokens until then.
    pub until: u64,
}

impl From<Answer> for RevocationList {
    fn from(answer: Answer) -> Self {
        Self {
            cursor: answer.cursor,
            reset: answer.reset,
            revoked: answer
                .revoked
                .into_iter()
                .map(|Revoked { sid_sha256, until }| RevokedItem { sid_sha256, until })
                .collect(),
        }
    }
}

#[utoipa::path(
    tag = "sessions",
    description = "The session revocation list, public like a CRL: ended sessions by digest, with cursors and long polling. Every instance serves the same list and cursors.",
    params(RevocationsQuery),
    responses(
        (status = 200, description = "The list, or what was published after the cursor", body = RevocationList),
        (status = 400, description = "`wait` is not 0–30 (`invalid_request`)", body = ErrorBody),
        Unavailable,
    )
)]
#[get("/revocations")]
pub(crate) async fn revocations(
    state: web::Data<AppState>,
    query: web::Query<RevocationsQuery>,
) -> Result<HttpResponse> {
    let query = query.into_inner();
    let wait = match query.wait.as_deref() {
        None => 0,
        Some(text) => parse_wait(text).ok_or_else(|| {
            ApiError::invalid_request("wait must be a whole number of seconds from 0 to 30")
        })?,
    };
    let hold = Duration::from_secs(wait).min(LONGEST_HOLD);
    let answer =
        state.revocations.poll(query.after.as_deref(), hold).await.map_err(ApiError::from)?;
    Ok(no_store_json(&RevocationList::from(answer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_a_form_or_json_body() {
        let form = Some("application/x-www-form-urlencoded");
        let json = Some("application/json; charset=utf-8");
        assert_eq!(
            token_from_body(form, b"token=abc&token_type_hint=refresh_token").unwrap().as_deref(),
            Some("abc")
        );
        assert_eq!(token_from_body(json, br#"{"token":"abc"}"#).unwrap().as_deref(), Some("abc"));
        assert_eq!(token_from_body(form, b"token=").unwrap(), None);
        assert_eq!(token_from_body(form, b"").unwrap(), None);
        assert_eq!(token_from_body(json, br#"{"other":1}"#).unwrap(), None);
        assert!(token_from_body(json, b"{").is_err());
        assert!(token_from_body(Some("text/plain"), b"token=abc").is_err());
        assert!(token_from_body(None, b"token=abc").is_err());
        assert!(token_from_body(json, br#"{"token": 5}"#).is_err());
    }
}
