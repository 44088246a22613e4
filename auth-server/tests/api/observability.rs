//! `GET /metrics` and the `X-Request-Id` echo. The metrics registry is per process and other
//! tests run alongside, so counters are compared as "moved by at least".

use std::time::Duration;

use crate::helpers::{TestApp, spawn_app_with, unique_user};

/// The value of the first series of `name` carrying every `label="value"` of `labels`.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(app: &TestApp) -> String {
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    reply.text
}

#[tokio::test]
async fn metrics_count_logins_rotations_reuse_and_revocations() {
    let app = spawn_app_with(|s| s.refresh_reuse_grace = Duration::ZERO).await;
    let before = scrape(&app).await;
    let user = unique_user("metrics");
    let first = app.signed_up(&user).await.refresh_token();
    let wrong = app
        .post_json("/login", &serde_json::json!({"username": user, "password": "not the one"}))
        .await;
    assert_eq!(wrong.status, 401);
    let second = app.refresh(&first).await.refresh_token();
    assert_eq!(app.refresh(&first).await.status, 400, "a spent token is reuse");
    let other = app.login(&user).await.refresh_token();
    assert_eq!(app.logout(&other).await.status, 204);
    assert_eq!(app.refresh(&second).await.status, 400, "revoked with its session");

    let after = scrape(&app).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        series(&after, name, labels) - series(&before, name, labels)
    };
    assert!(moved("auth_logins_total", &[("outcome", "success")]) >= 2.0, "{after}");
    assert!(moved("auth_logins_total", &[("outcome", "invalid_credentials")]) >= 1.0);
    assert!(moved("auth_refresh_total", &[("outcome", "rotated")]) >= 1.0);
    assert!(moved("auth_refresh_total", &[("outcome", "reuse")]) >= 1.0);
    assert!(moved("auth_refresh_reuse_detected_total", &[]) >= 1.0);
    assert!(moved("auth_sessions_revoked_total", &[("reason", "reuse")]) >= 1.0);
    assert!(moved("auth_sessions_revoked_total", &[("reason", "logout")]) >= 1.0);
    assert!(moved("http_requests_total", &[("route", "/login"), ("status", "200")]) >= 2.0);
    for name in ["auth_argon2_queue_depth", "auth_argon2_running", "auth_redis_errors_total"] {
        assert!(after.contains(&format!("\n{name} ")), "{name}: {after}");
    }
    let kid = app.get("/readyz").await.body["kid"].as_str().unwrap().to_owned();
    assert_eq!(series(&after, "auth_signing_key_info", &[("kid", &kid)]), 1.0, "{after}");
}

#[tokio::test]
async fn the_request_id_is_echoed_or_made() {
    let app = spawn_app_with(|_| {}).await;
    let given = app.client.get(app.url("/healthz")).header("X-Request-Id", "abc.123_x-y");
    let given = given.send().await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc.123_x-y");
    let made = app.get("/healthz").await;
    let made = made.header("x-request-id").unwrap();
    assert!(!made.is_empty() && made.len() <= 64, "{made}");
    let bad = app.client.get(app.url("/nope")).header("X-Request-Id", "a b").send().await.unwrap();
    assert_eq!(bad.status(), 404);
    assert_ne!(bad.headers()["x-request-id"], "a b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_metrics_bind_metrics_are_served_only_on_their_own_listener() {
    let redis = test_support::RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let mut settings = auth_server::Settings::for_tests(redis.url(), keys.path());
    settings.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    let app = auth_server::Application::build(settings).await.unwrap();
    let api = format!("http://127.0.0.1:{}", app.port());
    let metrics = format!("http://127.0.0.1:{}", app.metrics_port().unwrap());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();

    assert_eq!(client.get(format!("{api}/healthz")).send().await.unwrap().status(), 200);
    let res = client.get(format!("{api}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "not_found");
    let doc: serde_json::Value =
        client.get(format!("{api}/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"].get("/metrics").is_none(), "{}", doc["paths"]);

    let res = client.get(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(series(&text, "http_requests_total", &[("route", "/healthz")]) >= 1.0, "{text}");
    assert!(text.contains("auth_signing_key_info{"), "{text}");
    for path in ["/healthz", "/login", "/.well-known/jwks.json"] {
        let res = client.get(format!("{metrics}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path} on the metrics listener");
    }
}
