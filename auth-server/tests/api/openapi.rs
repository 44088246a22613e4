//! The OpenAPI document at /openapi.json is exactly what the server mounts: every documented
//! operation answers (not 404/405), every other method on a documented path is a JSON 405 whose
//! `Allow` lists exactly the documented methods, and an undocumented path is a JSON 404.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;

use crate::helpers::{read, spawn_app};

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes_the_server_serves() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json").await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));

    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            if ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"]
                .contains(&method.as_str())
            {
                documented.entry(path.clone()).or_default().insert(method);
            }
        }
    }
    let want: BTreeSet<&str> = [
        "/register",
        "/login",
        "/token",
        "/logout",
        "/logout/all",
        "/sessions",
        "/sessions/others",
        "/sessions/{sid}",
        "/password",
        "/revoke",
        "/introspect",
        "/revocations",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ]
    .into();
    assert_eq!(documented.keys().map(String::as_str).collect::<BTreeSet<_>>(), want);
    assert_eq!(documented["/logout"], ["DELETE", "POST"].map(String::from).into());

    for (path, methods) in &documented {
        for method in METHODS {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let reply = read(app.client.request(m, app.url(path)).send().await.unwrap()).await;
            if methods.contains(*method) {
                assert!(![404, 405].contains(&reply.status), "{method} {path}: {}", reply.text);
            } else {
                assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text);
                assert_eq!(reply.error(), "invalid_request", "{method} {path}");
                let allow: BTreeSet<String> = reply
                    .header("allow")
                    .unwrap_or_default()
                    .split(',')
                    .map(|m| m.trim().to_owned())
                    .collect();
                assert_eq!(&allow, methods, "{method} {path}: Allow");
            }
        }
    }
    let reply = app.get("/nowhere").await;
    assert_eq!((reply.status, reply.error()), (404, "not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_status_in_the_document_uses_the_error_envelope() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json").await.body;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_bodies_have_the_fields_of_their_schemas() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json").await.body;
    let fields = |schema: &serde_json::Value| -> BTreeSet<String> {
        let name = schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
        doc["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let body_schema = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
            .clone()
    };
    let keys = |v: &serde_json::Value| -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    };
    for path in ["/healthz", "/readyz", "/.well-known/oauth-authorization-server"] {
        let reply = app.get(path).await;
        assert_eq!(keys(&reply.body), fields(&body_schema(path, "get", "200")), "{path}");
    }
    let jwks = app.get("/.well-known/jwks.json").await.body;
    let jwks_schema = body_schema("/.well-known/jwks.json", "get", "200");
    assert_eq!(keys(&jwks), fields(&jwks_schema));
    let jwk_fields: BTreeSet<String> = doc["components"]["schemas"]["Jwk"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys(&jwks["keys"][0]), jwk_fields);
    let user = crate::helpers::unique_user("schema");
    let login = app.signed_up(&user).await;
    let mut want = fields(&body_schema("/login", "post", "200"));
    assert_eq!(keys(&login.body), want);
    let reg = app.register(&crate::helpers::unique_user("schema")).await;
    want = fields(&body_schema("/register", "post", "201"));
    assert_eq!(keys(&reg.body), want);
}
