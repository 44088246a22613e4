use reqwest::Method;
use serde_json::json;

use crate::helpers::{read, spawn_app, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_by_post_or_delete_ends_the_session() {
    let app = spawn_app().await;
    let username = unique_user("bye");
    let first = app.signed_up(&username).await.refresh_token();
    let current = app.refresh(&first).await.refresh_token();
    let reply = app.logout(&current).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(app.refresh(&current).await.error(), "invalid_grant");

    let token = app.login(&username).await.refresh_token();
    let res = app
        .client
        .request(Method::DELETE, app.url("/logout"))
        .json(&json!({ "refresh_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(app.refresh(&token).await.error(), "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_an_unknown_token_is_204_and_without_one_is_400() {
    let app = spawn_app().await;
    assert_eq!(app.logout(&"A".repeat(64)).await.status, 204);
    assert_eq!(app.logout("nonsense").await.status, 204);
    let reply = read(app.client.post(app.url("/logout")).send().await.unwrap()).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_ends_every_session_of_the_user_and_no_other() {
    let app = spawn_app().await;
    let username = unique_user("all");
    let one = app.signed_up(&username).await.tokens();
    let two = app.login(&username).await.refresh_token();
    let rotated = app.refresh(&one.refresh_token.clone().unwrap()).await.refresh_token();
    let other = app.signed_up(&unique_user("bystander")).await.refresh_token();

    let reply = app.logout_all(&one.access_token).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(app.refresh(&two).await.error(), "invalid_grant");
    assert_eq!(app.refresh(&rotated).await.error(), "invalid_grant");
    assert_eq!(app.refresh(&other).await.status, 200, "another user's session survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_needs_a_valid_bearer_access_token() {
    let app = spawn_app().await;
    let login = app.signed_up(&unique_user("bearer")).await.tokens();

    let reply = read(app.client.post(app.url("/logout/all")).send().await.unwrap()).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert!(reply.header("www-authenticate").unwrap().starts_with("Bearer"));

    let reply = app.logout_all("not.a.jwt").await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_token");

    // The refresh token is not an access token.
    let reply = app.logout_all(login.refresh_token.as_deref().unwrap()).await;
    assert_eq!(reply.status, 401, "{}", reply.text);

    // A token whose signature does not match.
    let mut parts: Vec<String> = login.access_token.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let reply = app.logout_all(&parts.join(".")).await;
    assert_eq!(reply.status, 401, "{}", reply.text);

    let res = app
        .client
        .post(app.url("/logout/all"))
        .header("authorization", format!("Basic {}", login.access_token))
        .send()
        .await
        .unwrap();
    let reply = read(res).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_request");

    assert_eq!(app.refresh(login.refresh_token.as_deref().unwrap()).await.status, 200);
}
