//! Browser clients over HTTP: CORS (`AUTH_CORS_ORIGINS`), the refresh cookie's name and flags,
//! and the cross-site check on `/token` and `/logout`.

use std::time::Duration;

use auth_server::config::SameSite;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Reply, TestApp, read, spawn_app, spawn_app_with, unique_user};

const APP: &str = "https://app.example";
const EVIL: &str = "https://evil.example";

fn cors_headers(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> Reply {
    let res = app
        .client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "content-type,authorization")
        .send()
        .await
        .unwrap();
    read(res).await
}

/// The `name=value` part of a `Set-Cookie`.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn cookie_app(customize: impl FnOnce(&mut auth_server::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.refresh_cookie = true;
        s.cors_origins = APP.parse().unwrap();
        customize(s);
    })
    .await
}

/// Logs a new user in; the `name=value` of the refresh cookie and the whole `Set-Cookie`.
async fn cookie_login(app: &TestApp) -> (String, String) {
    let username = unique_user("browser");
    assert_eq!(app.register(&username).await.status, 201);
    let login = app.login(&username).await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert!(login.body.get("refresh_token").is_none(), "{}", login.text);
    let set_cookie = login.header("set-cookie").unwrap().to_owned();
    (pair(&set_cookie), set_cookie)
}

async fn with_cookie(app: &TestApp, path: &str, cookie: &str, origin: Option<&str>) -> Reply {
    let mut req = app.client.post(app.url(path)).header("cookie", cookie);
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    read(req.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_origins_preflight_gets_204_with_credentials_and_a_cached_answer() {
    let app = spawn_app_with(|s| {
        s.cors_origins = format!("{APP}, http://localhost:8080").parse().unwrap()
    })
    .await;
    let reply = preflight(&app, "/token", APP, "POST").await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(reply.header("access-control-allow-origin"), Some(APP));
    assert_eq!(reply.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(reply.header("access-control-max-age"), Some("600"));
    let methods = reply.header("access-control-allow-methods").unwrap();
    for m in ["GET", "POST", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = reply.header("access-control-allow-headers").unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    assert!(reply.header("vary").unwrap().contains("Origin"));
    // The second origin of the list is as good as the first.
    let reply = preflight(&app, "/sessions", "http://localhost:8080", "DELETE").await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("access-control-allow-origin"), Some("http://localhost:8080"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_origin_can_read_the_contract_headers_of_an_error() {
    let app = spawn_app_with(|s| s.cors_origins = APP.parse().unwrap()).await;
    let res = app
        .client
        .post(app.url("/login"))
        .header("origin", APP)
        .json(&json!({"username": unique_user("nobody"), "password": "wrong password"}))
        .send()
        .await
        .unwrap();
    let reply = read(res).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("access-control-allow-origin"), Some(APP));
    assert_eq!(reply.header("access-control-allow-credentials"), Some("true"));
    let exposed = reply.header("access-control-expose-headers").unwrap().to_ascii_lowercase();
    for name in ["www-authenticate", "retry-after", "x-request-id"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    assert!(reply.header("vary").unwrap().contains("Origin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlisted_origin_gets_no_cors_header_and_its_preflight_is_refused() {
    let app = spawn_app_with(|s| s.cors_origins = APP.parse().unwrap()).await;
    let reply = preflight(&app, "/token", EVIL, "POST").await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(reply.error(), "forbidden");
    assert!(cors_headers(&reply).is_empty(), "{:?}", reply.headers);

    // Its simple requests are answered (the browser hides the answer), without CORS headers,
    // and with `Vary: Origin` so no cache hands them to a listed origin.
    let res = app.client.get(app.url("/healthz")).header("origin", EVIL).send().await.unwrap();
    let reply = read(res).await;
    assert_eq!(reply.status, 200);
    assert!(cors_headers(&reply).is_empty(), "{:?}", reply.headers);
    assert!(reply.header("vary").unwrap().contains("Origin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_origin_listed_there_is_no_cors_header_at_all() {
    let app = spawn_app().await;
    let reply = preflight(&app, "/token", APP, "POST").await;
    assert_ne!(reply.status, 204);
    assert!(cors_headers(&reply).is_empty(), "{:?}", reply.headers);
    let res = app.client.get(app.url("/healthz")).header("origin", APP).send().await.unwrap();
    let reply = read(res).await;
    assert_eq!(reply.status, 200);
    assert!(cors_headers(&reply).is_empty(), "{:?}", reply.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_issuer_gets_the_host_prefixed_cookie_with_the_configured_samesite() {
    let app = cookie_app(|s| {
        s.issuer = "https://auth.example".into();
        s.refresh_cookie_samesite = SameSite::Lax;
        s.refresh_token_ttl = Duration::from_secs(3600);
    })
    .await;
    let (value, set_cookie) = cookie_login(&app).await;
    assert!(value.starts_with("__Host-refresh_token="), "{set_cookie}");
    assert_eq!(value.len(), "__Host-refresh_token=".len() + 64);
    for part in ["HttpOnly", "Secure", "Path=/", "SameSite=Lax", "Max-Age=3600"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Domain"), "{set_cookie}");

    // It is read under that name only: a plain `refresh_token` cookie is no token.
    let plain = value.replacen("__Host-", "", 1);
    assert_eq!(with_cookie(&app, "/token", &plain, None).await.status, 400);

    let rotated = with_cookie(&app, "/token", &value, Some("https://auth.example")).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let next = pair(rotated.header("set-cookie").unwrap());
    assert!(next.starts_with("__Host-refresh_token=") && next != value);

    let out = with_cookie(&app, "/logout", &next, Some(APP)).await;
    assert_eq!(out.status, 204, "{}", out.text);
    let cleared = out.header("set-cookie").unwrap();
    assert!(cleared.starts_with("__Host-refresh_token=;"), "{cleared}");
    for part in ["Max-Age=0", "Secure", "Path=/", "HttpOnly"] {
        assert!(cleared.contains(part), "{cleared}");
    }
    assert_eq!(with_cookie(&app, "/token", &next, None).await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookies_max_age_is_the_sessions_idle_expiry_capped_by_its_max_age() {
    let app = cookie_app(|s| {
        s.refresh_token_ttl = Duration::from_secs(7200);
        s.session_max_age = Duration::from_secs(1800);
        s.refresh_cookie_samesite = SameSite::Strict;
    })
    .await;
    let (value, set_cookie) = cookie_login(&app).await;
    assert!(value.starts_with("refresh_token="), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict") && !set_cookie.contains("Secure"));
    let max_age: u64 = set_cookie
        .split(';')
        .find_map(|p| p.trim().strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((1795..=1800).contains(&max_age), "{set_cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_sent_from_an_unlisted_origin_is_refused_and_spends_nothing() {
    // Grace 0: had the refused request spent the token, presenting it again would be reuse.
    let app = cookie_app(|s| s.refresh_reuse_grace = Duration::ZERO).await;
    let (value, _) = cookie_login(&app).await;

    for path in ["/token", "/logout"] {
        for origin in [EVIL, "null", "http://127.0.0.1:1"] {
            let reply = with_cookie(&app, path, &value, Some(origin)).await;
            assert_eq!(reply.status, 403, "{path} from {origin}: {}", reply.text);
            assert_eq!(reply.error(), "forbidden");
            assert!(reply.header("set-cookie").is_none());
        }
    }
    // The token is untouched: a listed origin rotates it (not a grace replay, not reuse).
    let rotated = with_cookie(&app, "/token", &value, Some(APP)).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let next = pair(rotated.header("set-cookie").unwrap());
    // The issuer's own origin, and a client that sends no `Origin`, pass too.
    let again = with_cookie(&app, "/token", &next, Some("http://localhost:5000")).await;
    assert_eq!(again.status, 200, "{}", again.text);
    let last = pair(again.header("set-cookie").unwrap());
    assert_eq!(with_cookie(&app, "/logout", &last, None).await.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_token_without_the_cookie_is_not_subject_to_the_origin_check() {
    // Body mode: a client that keeps its token itself (a native app) names no cookie.
    let app = spawn_app().await;
    let username = unique_user("body");
    let login = app.signed_up(&username).await;
    let res = app
        .client
        .post(app.url("/token"))
        .header("origin", EVIL)
        .json(&json!({"refresh_token": login.refresh_token()}))
        .send()
        .await
        .unwrap();
    assert_eq!(read(res).await.status, 200);
}
