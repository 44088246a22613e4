//! Cookie mode (`AUTH_REFRESH_COOKIE=true`): the refresh token as an `HttpOnly` cookie, and
//! the cross-site check on the routes that read it.
//!
//! - The name is `__Host-refresh_token` when the issuer is https (the prefix makes browsers
//!   insist on `Secure`, `Path=/` and no `Domain`, so a sibling subdomain cannot plant or
//!   shadow it), else `refresh_token`. Only that name is read.
//! - `SameSite` is `AUTH_REFRESH_COOKIE_SAMESITE`; `Max-Age` is the session's idle expiry
//!   (`refresh_expires_in` of the token response); logout sends it again empty with
//!   `Max-Age=0`.
//! - A request to `/token` or `/logout` that carries the cookie and an `Origin` that is neither
//!   the issuer's nor one of `AUTH_CORS_ORIGINS` is refused (403 `forbidden`) before anything
//!   is read or spent: a cookie is sent by the browser whoever asks, so the origin is what
//!   tells a page of ours from another site's (CSRF). A request without `Origin` (curl, a
//!   server) is not a browser's cross-site request and passes.
//!
//! Cookies are parsed and built by actix-web (the `cookie` crate).

use access_token::{ApiError, ErrorCode};
use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite as CookieSameSite, time};
use actix_web::http::header;
use service_kit::config::Origins;

use crate::config::{SameSite, Settings};

/// The cookie's name with a plain-http issuer.
pub const PLAIN_NAME: &str = "refresh_token";
/// The cookie's name with an https issuer.
pub const HOST_NAME: &str = "__Host-refresh_token";

/// How the refresh cookie is named, flagged and guarded; built once from the settings.
#[derive(Debug, Clone)]
pub struct RefreshCookie {
    enabled: bool,
    name: &'static str,
    secure: bool,
    same_site: CookieSameSite,
    /// The issuer's origin (`scheme://host[:port]`), as browsers send it in `Origin`.
    issuer_origin: String,
    /// `AUTH_CORS_ORIGINS`.
    allowed: Origins,
}

impl RefreshCookie {
    /// The cookie of `settings`.
    pub fn new(settings: &Settings) -> Self {
        let secure = settings.issuer.starts_with("https://");
        Self {
            enabled: settings.refresh_cookie,
            name: if secure { HOST_NAME } else { PLAIN_NAME },
            secure,
            same_site: match settings.refresh_cookie_samesite {
                SameSite::Strict => CookieSameSite::Strict,
                SameSite::Lax => CookieSameSite::Lax,
                SameSite::None => CookieSameSite::None,
            },
            issuer_origin: origin_of(&settings.issuer),
            allowed: settings.cors_origins.clone(),
        }
    }

    /// `AUTH_REFRESH_COOKIE`: the token response sets the cookie instead of carrying the token.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `refresh_token` or `__Host-refresh_token`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The cookie carrying `token`, for `max_age_secs` (the session's idle expiry).
    pub fn set(&self, token: String, max_age_secs: u64) -> Cookie<'static> {
        let max_age = time::Duration::seconds(i64::try_from(max_age_secs).unwrap_or(i64::MAX));
        self.cookie(token, max_age)
    }

    /// The cookie that removes it (empty, `Max-Age=0`, same name, path and flags).
    pub fn removal(&self) -> Cookie<'static> {
        self.cookie(String::new(), time::Duration::ZERO)
    }

    fn cookie(&self, value: String, max_age: time::Duration) -> Cookie<'static> {
        Cookie::build(self.name, value)
            .http_only(true)
            .secure(self.secure)
            .path("/")
            .same_site(self.same_site)
            .max_age(max_age)
            .finish()
    }

    /// The token in the request's cookie, if it carries one (not empty). Every `Cookie` header
    /// is read; a malformed cookie of someone else's (browsers send every cookie of the host,
    /// whatever the port) is skipped rather than hiding ours.
    pub fn presented(&self, req: &HttpRequest) -> Option<String> {
        req.headers()
            .get_all(header::COOKIE)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| Cookie::parse_encoded(pair.trim()).ok())
            .find(|c| c.name() == self.name)
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// 403 `forbidden` when the request carries the cookie and an `Origin` that is neither the
    /// issuer's nor listed in `AUTH_CORS_ORIGINS`.
    pub fn refuse_cross_site(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        if self.presented(req).is_none() {
            return Ok(());
        }
        let origin = origin.to_str().unwrap_or_default();
        if origin == self.issuer_origin || self.allowed.contains(origin) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "the refresh cookie was sent from an origin that is not allowed",
        ))
    }
}

/// The origin (`scheme://host[:port]`, as browsers serialize it) of the issuer URL; the
/// issuer was validated as an http(s) URL, so a parse failure only leaves an origin no browser
/// sends.
fn origin_of(issuer: &str) -> String {
    let authority_end = issuer
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| issuer[start..].find(['/', '?', '#']).map(|end| start + end))
        .unwrap_or(issuer.len());
    issuer[..authority_end]
        .parse::<Origins>()
        .ok()
        .and_then(|o| o.as_slice().first().cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuers_origin_is_serialized_as_browsers_do() {
        assert_eq!(origin_of("https://Auth.Example:443/base"), "https://auth.example");
        assert_eq!(origin_of("http://localhost:5000"), "http://localhost:5000");
        assert_eq!(origin_of("http://127.0.0.1:80"), "http://127.0.0.1");
    }

    #[test]
    fn https_issuers_get_the_host_prefixed_secure_cookie() {
        let mut settings = Settings {
            refresh_cookie: true,
            issuer: "https://auth.example".into(),
            refresh_cookie_samesite: SameSite::Lax,
            ..Settings::default()
        };
        let cookie = RefreshCookie::new(&settings).set("t".into(), 60).to_string();
        for part in ["__Host-refresh_token=t", "HttpOnly", "Secure", "Path=/", "SameSite=Lax"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        assert!(cookie.contains("Max-Age=60"), "{cookie}");
        settings.issuer = "http://localhost:5000".into();
        let cookie = RefreshCookie::new(&settings).removal().to_string();
        assert!(cookie.starts_with("refresh_token=;"), "{cookie}");
        assert!(cookie.contains("Max-Age=0") && !cookie.contains("Secure"), "{cookie}");
    }
}
