//! `GET /metrics` (Prometheus text format) and the `X-Request-Id` echo. The metrics registry
//! is per process and other tests run alongside, so counters are compared as "moved by at
//! least", never as exact values.

use reqwest::StatusCode;

use crate::helpers::{TestApp, spawn_app};
use crate::insecure_test_keys::{TestKey, claims_for};

/// The value of the first series of `name` carrying every `label="value"` of `labels`.
pub fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn scrape(app: &TestApp) -> String {
    let resp = app.get("/metrics", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    resp.text().await.unwrap()
}

fn verifications(text: &str, outcome: &str) -> f64 {
    series(text, "token_verifications_total", &[("outcome", outcome)]).unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_verifications_by_outcome() {
    let app = spawn_app().await;
    let before = scrape(&app).await;

    let good = TestKey::trusted().sign(&claims_for("alice"));
    assert_eq!(app.get_with_token("/articles", &good).await.status(), StatusCode::OK);
    let mut header = TestKey::attacker().header();
    header.kid = Some(TestKey::trusted().kid.clone());
    let forged = TestKey::attacker().sign_with(&header, &claims_for("alice"));
    assert_eq!(app.get_with_token("/articles", &forged).await.status(), StatusCode::UNAUTHORIZED);
    let unknown = TestKey::attacker().sign(&claims_for("alice"));
    assert_eq!(app.get_with_token("/articles", &unknown).await.status(), StatusCode::UNAUTHORIZED);

    let after = scrape(&app).await;
    for outcome in ["ok", "bad_signature", "unknown_kid"] {
        assert!(
            verifications(&after, outcome) >= verifications(&before, outcome) + 1.0,
            "{outcome}: {after}"
        );
    }
    assert!(series(&after, "keys_loaded", &[]).is_some(), "{after}");
    assert!(series(&after, "key_reloads_total", &[("outcome", "ok")]).unwrap_or(0.0) >= 1.0);
}

#[tokio::test]
async fn requests_are_counted_by_route_pattern_method_and_status() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    for id in ["1", "2", "999999"] {
        app.get_with_token(&format!("/articles/{id}"), &token).await;
    }
    app.get("/no/such/path/4242", None).await;
    let text = scrape(&app).await;
    let labels = [("route", "/articles/{id}"), ("method", "GET"), ("status", "200")];
    assert!(series(&text, "http_requests_total", &labels).unwrap_or(0.0) >= 2.0, "{text}");
    let labels = [("route", "/articles/{id}"), ("status", "404")];
    assert!(series(&text, "http_requests_total", &labels).unwrap_or(0.0) >= 1.0, "{text}");
    assert!(series(&text, "http_request_duration_seconds_count", &labels).is_some(), "{text}");
    assert!(
        series(&text, "http_requests_total", &[("route", "unmatched"), ("status", "404")])
            .is_some()
    );
    // Never a raw path as a label.
    assert!(!text.contains("/articles/999999") && !text.contains("/no/such/path"), "{text}");
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_one_is_made_otherwise() {
    let app = spawn_app().await;
    let url = format!("{}/healthz", app.address);
    let given = app.client.get(&url).header("X-Request-Id", "trace-42.a_b").send().await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-42.a_b");

    let made = app.get("/healthz", None).await;
    let made = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!made.is_empty() && made.len() <= 64, "{made}");

    let too_long = "a".repeat(65);
    for bad in [too_long.as_str(), "has space", "semi;colon"] {
        let resp = app.client.get(&url).header("X-Request-Id", bad).send().await.unwrap();
        let echoed = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(echoed, bad);
        assert!(echoed.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
    }

    // Refusals carry it too.
    let resp = app.client.get(format!("{}/articles", app.address)).header("X-Request-Id", "r-1");
    let resp = resp.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["x-request-id"], "r-1");
}

#[tokio::test]
async fn with_api_metrics_bind_metrics_are_served_only_on_their_own_listener() {
    let root = tempfile::tempdir().unwrap();
    let keys_dir = root.path().join("public");
    std::fs::create_dir_all(&keys_dir).unwrap();
    TestKey::trusted().write_public(&keys_dir);
    let mut settings = api_server::Settings::for_tests(&keys_dir);
    settings.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    let app = api_server::Application::build(settings).await.unwrap();
    let api = format!("http://127.0.0.1:{}", app.port());
    let metrics = format!("http://127.0.0.1:{}", app.metrics_port().unwrap());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();

    let good = TestKey::trusted().sign(&claims_for("alice"));
    let res = client.get(format!("{api}/articles")).bearer_auth(&good).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The API listener: /metrics is an unknown path, and not in its document.
    let res = client.get(format!("{api}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "not_found");
    let doc: serde_json::Value =
        client.get(format!("{api}/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"].get("/metrics").is_none(), "{}", doc["paths"]);
    assert!(doc["paths"].get("/articles").is_some());
    // The metrics listener: /metrics, counting the API's requests, and nothing else.
    let res = client.get(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    let served = series(&text, "http_requests_total", &[("route", "/articles"), ("status", "200")]);
    assert!(served.unwrap_or(0.0) >= 1.0, "{text}");
    for path in ["/articles", "/healthz", "/openapi.json"] {
        let res = client.get(format!("{metrics}{path}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path} on the metrics listener");
    }
}
