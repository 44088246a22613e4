//! The OpenAPI document at /openapi.json lists exactly the routes the server has.

use std::collections::BTreeSet;

use auth_server::routes::ROUTES;
use reqwest::Method;

use crate::helpers::{read, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes_the_server_serves() {
    let app = spawn_app().await;
    let doc = app.get("/openapi.json").await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));

    let mut documented = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch", "head", "options", "trace"]
                .contains(&method.as_str())
            {
                documented.insert((path.clone(), method.to_uppercase()));
            }
        }
    }
    let mounted: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(|m| ((*path).to_owned(), m.to_string())))
        .collect();
    assert_eq!(documented, mounted);

    // And the list is what the server mounts: each route answers its methods (not 404/405)
    // and refuses others with 405.
    for (path, method) in &mounted {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply =
            read(app.client.request(method.clone(), app.url(path)).send().await.unwrap()).await;
        assert!(![404, 405].contains(&reply.status), "{method} {path}: {}", reply.text);
        let reply = read(app.client.put(app.url(path)).send().await.unwrap()).await;
        assert_eq!(reply.status, 405, "PUT {path}");
    }
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
