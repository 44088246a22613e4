use std::time::Duration;

use crate::helpers::{read, spawn_app, spawn_app_with, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_get_a_json_404() {
    let app = spawn_app().await;
    let reply = app.get("/nope").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error(), "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_gets_a_json_405_with_allow() {
    let app = spawn_app().await;
    let reply = app.get("/token").await;
    assert_eq!(reply.status, 405, "{}", reply.text);
    assert_eq!(reply.header("allow"), Some("POST"));
    assert!(reply.body["error"].is_string());
    let reply = read(app.client.post(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(reply.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer_200_when_all_is_well() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get("/readyz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cookie_mode_the_refresh_token_travels_only_in_an_httponly_cookie() {
    let app = spawn_app_with(|s| {
        s.refresh_cookie = true;
        s.issuer = "https://auth.example".into();
    })
    .await;
    let username = unique_user("cookie");
    assert_eq!(app.register(&username).await.status, 201);
    let login = app.login(&username).await;
    assert_eq!(login.status, 200, "{}", login.text);
    assert!(login.body.get("refresh_token").is_none(), "{}", login.text);
    let cookie = login.header("set-cookie").unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure", "Max-Age=604800"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let value = cookie.split(';').next().unwrap().to_owned(); // __Host-refresh_token=...
    let name = "__Host-refresh_token=";
    assert!(value.starts_with(name) && value.len() == name.len() + 64, "{value}");

    let res = app.client.post(app.url("/token")).header("cookie", &value).send().await.unwrap();
    let rotated = read(res).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let next = rotated.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    assert_ne!(next, value);

    let res = app.client.post(app.url("/logout")).header("cookie", &next).send().await.unwrap();
    let reply = read(res).await;
    assert_eq!(reply.status, 204);
    let cleared = reply.header("set-cookie").unwrap();
    assert!(cleared.starts_with(name) && cleared.contains("Max-Age=0"), "{cleared}");
    let res = app.client.post(app.url("/token")).header("cookie", &next).send().await.unwrap();
    assert_eq!(read(res).await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_not_secure_on_a_plain_http_issuer() {
    let app = spawn_app_with(|s| {
        s.refresh_cookie = true;
        s.access_token_ttl = Duration::from_secs(60);
    })
    .await;
    let username = unique_user("plain");
    assert_eq!(app.register(&username).await.status, 201);
    let login = app.login(&username).await;
    assert_eq!(login.tokens().expires_in, 60);
    assert!(!login.header("set-cookie").unwrap().contains("Secure"));
}
