//! CORS (`API_CORS_ORIGINS`) over HTTP: what a page on a listed origin may read, and that an
//! unlisted one gets nothing.

use reqwest::{Method, StatusCode};

use crate::insecure_test_keys::{TestKey, claims_for};

const APP: &str = "http://127.0.0.1:8080";

/// The api-server trusting [`TestKey::trusted`], with `origins` listed; its base URL.
async fn spawn_with_origins(origins: &str) -> (String, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let keys_dir = root.path().join("public");
    std::fs::create_dir_all(&keys_dir).unwrap();
    TestKey::trusted().write_public(&keys_dir);
    let mut settings = api_server::Settings::for_tests(&keys_dir);
    settings.cors_origins = origins.parse().unwrap();
    let app = api_server::Application::build(settings).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    (base, root)
}

fn cors_headers(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

async fn preflight(base: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("{base}/articles"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_listed_origins_preflight_gets_204_without_credentials() {
    let (base, _root) = spawn_with_origins(&format!("{APP}, http://localhost:8080")).await;
    let res = preflight(&base, APP).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], APP);
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("GET"));
    assert!(h.get("access-control-allow-credentials").is_none(), "bearer tokens only");
    assert!(h["vary"].to_str().unwrap().contains("Origin"));
}

#[tokio::test]
async fn a_listed_origin_reads_articles_and_the_challenge_of_a_401() {
    let (base, _root) = spawn_with_origins(APP).await;
    let client = reqwest::Client::new();
    let token = TestKey::trusted().sign(&claims_for("alice"));
    let res = client
        .get(format!("{base}/articles"))
        .header("origin", APP)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["access-control-allow-origin"], APP);
    assert!(res.headers()["vary"].to_str().unwrap().contains("Origin"));

    let res = client.get(format!("{base}/me")).header("origin", APP).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().contains_key("www-authenticate"));
    assert_eq!(res.headers()["access-control-allow-origin"], APP);
    let exposed = res.headers()["access-control-expose-headers"].to_str().unwrap().to_lowercase();
    for name in ["www-authenticate", "retry-after", "x-request-id"] {
        assert!(exposed.contains(name), "{exposed}");
    }
}

#[tokio::test]
async fn an_unlisted_origin_gets_no_cors_header() {
    let (base, _root) = spawn_with_origins(APP).await;
    let res = preflight(&base, "http://127.0.0.1:8081").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(cors_headers(&res).is_empty(), "{:?}", res.headers());
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");

    let res = reqwest::Client::new()
        .get(format!("{base}/me"))
        .header("origin", "http://localhost:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(cors_headers(&res).is_empty(), "{:?}", res.headers());
    assert!(res.headers()["vary"].to_str().unwrap().contains("Origin"));
}

#[tokio::test]
async fn with_no_origin_listed_there_is_no_cors_header_at_all() {
    let (base, _root) = spawn_with_origins("").await;
    let res = preflight(&base, APP).await;
    assert_ne!(res.status(), StatusCode::NO_CONTENT);
    assert!(cors_headers(&res).is_empty(), "{:?}", res.headers());
    let res = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(cors_headers(&res).is_empty(), "{:?}", res.headers());
}
