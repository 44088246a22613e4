//! Articles and /me, with valid tokens.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{refusal, spawn_app};
use crate::insecure_test_keys::{TestKey, claims_for, with, without};

async fn articles_of(app: &crate::helpers::TestApp, token: &str) -> Vec<Value> {
    let resp = app.get_with_token("/articles", token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_user_reads_only_their_own_articles() {
    let app = spawn_app().await;
    for who in ["alice", "bob", "carol"] {
        let list = articles_of(&app, &TestKey::trusted().sign(&claims_for(who))).await;
        assert!(list.len() >= 2, "{who}: {list:?}");
        for article in &list {
            assert_eq!(article["author"], who);
            for field in ["id", "author", "title", "body"] {
                assert!(article.get(field).is_some(), "{field} missing in {article}");
            }
        }
    }
}

#[tokio::test]
async fn a_user_without_articles_gets_an_empty_list() {
    let app = spawn_app().await;
    let list = articles_of(&app, &TestKey::trusted().sign(&claims_for("dave"))).await;
    assert!(list.is_empty());
}

#[tokio::test]
async fn someone_elses_article_is_not_found() {
    let app = spawn_app().await;
    let alice = TestKey::trusted().sign(&claims_for("alice"));
    let bob = TestKey::trusted().sign(&claims_for("bob"));
    let own = articles_of(&app, &alice).await;
    let id = own[0]["id"].as_u64().unwrap();

    let resp = app.get_with_token(&format!("/articles/{id}"), &alice).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let article: Value = resp.json().await.unwrap();
    assert_eq!(article, own[0]);

    for path in [format!("/articles/{id}"), "/articles/99999".into(), "/articles/abc".into()] {
        let r = refusal(app.get_with_token(&path, &bob).await).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.error, "not_found", "{path}");
    }
}

#[tokio::test]
async fn an_admin_reads_every_article() {
    let app = spawn_app().await;
    let admin = TestKey::trusted().sign(&with(claims_for("root"), "roles", json!(["admin"])));
    let all = articles_of(&app, &admin).await;
    let mut authors: Vec<&str> = all.iter().map(|a| a["author"].as_str().unwrap()).collect();
    authors.dedup();
    assert_eq!(authors, ["alice", "bob", "carol"]);
    let someone_elses = all[0]["id"].as_u64().unwrap();
    let resp = app.get_with_token(&format!("/articles/{someone_elses}"), &admin).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn me_echoes_the_verified_claims() {
    let app = spawn_app().await;
    let claims = claims_for("alice");
    let resp = app.get_with_token("/me", &TestKey::trusted().sign(&claims)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let me: Value = resp.json().await.unwrap();
    assert_eq!(
        me,
        json!({
            "sub": claims["sub"], "preferred_username": "alice", "name": claims["name"],
            "roles": ["user"], "scope": "articles:read", "exp": claims["exp"]
        })
    );

    let nameless = without(claims_for("bob"), "name");
    let resp = app.get_with_token("/me", &TestKey::trusted().sign(&nameless)).await;
    let me: Value = resp.json().await.unwrap();
    assert_eq!(me["name"], Value::Null);
}

#[tokio::test]
async fn health_is_open_and_unknown_routes_are_json_404s() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    let r = refusal(app.get("/nope", None).await).await;
    assert_eq!((r.status, r.error.as_str()), (StatusCode::NOT_FOUND, "not_found"));
    let resp = app.client.post(format!("{}/articles", app.address)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].is_string());
}
