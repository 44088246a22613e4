//! The OpenAPI document at /openapi.json is exactly what the server mounts (every documented GET
//! answers, every other method on a documented path is a JSON 405 with `Allow: GET`, any other
//! path a JSON 404), and what each route answers is in it.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};
use crate::insecure_test_keys::{TestKey, claims_for, with};

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch", "head", "options", "trace"];

async fn document(app: &TestApp) -> Value {
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    res.json().await.unwrap()
}

/// `/articles/{id}` with the `{id}` filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
}

/// The documented paths (each documented for GET only, asserted here).
fn routes(doc: &Value) -> Vec<String> {
    let mut paths = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let methods: Vec<&String> =
            item.as_object().unwrap().keys().filter(|m| METHODS.contains(&m.as_str())).collect();
        assert_eq!(methods, ["get"], "{path}");
        paths.push(path.clone());
    }
    paths
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_the_server_serves() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let documented: BTreeSet<String> = routes(&doc).into_iter().collect();
    let want: BTreeSet<String> =
        ["/articles", "/articles/{id}", "/me", "/healthz", "/readyz", "/metrics", "/openapi.json"]
            .map(String::from)
            .into();
    assert_eq!(documented, want);

    // And the document is what the server mounts: each route answers GET (not 404/405) and
    // refuses other methods with a JSON 405 and `Allow: GET`.
    for path in &documented {
        let res = app.get(&concrete(path), None).await;
        assert!(![404, 405].contains(&res.status().as_u16()), "GET {path}: {}", res.status());
        for method in [reqwest::Method::PUT, reqwest::Method::POST, reqwest::Method::DELETE] {
            let url = format!("{}{}", app.address, concrete(path));
            let res = app.client.request(method.clone(), url).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(res.headers()["allow"], "GET", "{method} {path}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"], "invalid_request", "{method} {path}");
        }
    }
    let res = app.get("/nowhere", None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "not_found");
}

#[tokio::test]
async fn the_bearer_scheme_guards_exactly_the_article_routes() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    for (path, item) in doc["paths"].as_object().unwrap() {
        let secured = item["get"]["security"] == serde_json::json!([{"bearer": []}]);
        let needs_token = ["/articles", "/articles/{id}", "/me"].contains(&path.as_str());
        assert_eq!(secured, needs_token, "{path}");
        // And the server agrees: without a token, exactly these answer 401.
        let status = app.get(&concrete(path), None).await.status();
        assert_eq!(status == StatusCode::UNAUTHORIZED, needs_token, "{path}: {status}");
    }
}

#[tokio::test]
async fn every_error_status_in_the_document_uses_the_error_envelope() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema.as_str(),
                        Some("#/components/schemas/ErrorBody"),
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn every_status_the_routes_answer_is_documented_for_them() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let alice = TestKey::trusted().sign(&claims_for("alice"));
    let no_scope = TestKey::trusted().sign(&with(claims_for("alice"), "scope", "other".into()));
    let forged = TestKey::attacker().sign(&claims_for("alice"));
    let auths: [Option<String>; 5] = [
        None,
        Some(format!("Bearer {alice}")),
        Some(format!("Bearer {no_scope}")),
        Some(format!("Bearer {forged}")),
        Some("Basic YWxpY2U6cHc=".to_owned()),
    ];
    for path in routes(&doc) {
        let responses = &doc["paths"][&path]["get"]["responses"];
        for url in [concrete(&path), path.replace("{id}", "999999"), path.replace("{id}", "x")] {
            for auth in &auths {
                let status = app.get(&url, auth.as_deref()).await.status();
                assert!(
                    responses[status.as_str()].is_object(),
                    "GET {url} answered {status}, not in the document"
                );
            }
        }
    }
}
