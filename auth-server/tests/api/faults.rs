//! Redis faults: quick 503s during an outage (with the throttle script in the path), recovery
//! without restart, and no session lost across an append-only Redis restart.

use std::time::{Duration, Instant};

use serde_json::json;
use test_support::RedisServer;

use crate::helpers::{PASSWORD, TestApp, spawn_app_on, unique_user};

async fn wait_until_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.get("/readyz").await.status != 200 {
        assert!(Instant::now() < deadline, "not ready again after Redis came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_login_token_register_and_readyz_answer_503_within_about_a_second() {
    let mut app = spawn_app_on(RedisServer::start(), |_| {}).await;
    let username = unique_user("fault");
    let token = app.signed_up(&username).await.refresh_token();
    app.standalone().stop();
    let login = json!({ "username": username, "password": PASSWORD });
    let register = json!({ "username": unique_user("fault-new"), "password": PASSWORD });
    let token_body = json!({ "refresh_token": token });
    for (path, body) in [("/login", &login), ("/token", &token_body), ("/register", &register)] {
        let start = Instant::now();
        let reply = app.post_json(path, body).await;
        let took = start.elapsed();
        assert_eq!(reply.status, 503, "{path}: {}", reply.text);
        assert_eq!(reply.error(), "unavailable");
        assert!(reply.header("retry-after").is_some(), "{path}");
        assert!(took < Duration::from_millis(1500), "{path} took {took:?}");
    }
    let start = Instant::now();
    assert_eq!(app.get("/readyz").await.status, 503);
    assert!(start.elapsed() < Duration::from_millis(1500));

    app.standalone().restart();
    wait_until_ready(&app).await;
    // No persistence: the data is gone, but the server works again without a restart.
    app.signed_up(&unique_user("fault-after")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_with_append_only_persistence_loses_no_session() {
    let mut app = spawn_app_on(RedisServer::start_with_aof(), |_| {}).await;
    let username = unique_user("aof");
    let first = app.signed_up(&username).await.refresh_token();
    let rotated = app.refresh(&first).await.refresh_token();
    app.standalone().restart();
    wait_until_ready(&app).await;
    let reply = app.refresh(&rotated).await;
    assert_eq!(reply.status, 200, "the session survived the restart: {}", reply.text);
    // The rotation history survived too: the spent token is still detected as reuse.
    let reuse = app.refresh(&first).await;
    assert_eq!(reuse.status, 400);
    assert_eq!(reuse.error(), "invalid_grant");
    // And the user.
    assert_eq!(app.login(&username).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_answers_503_never_500_or_invalid_grant_and_keeps_the_tokens() {
    let app = spawn_app_on(RedisServer::start(), |_| {}).await;
    let username = unique_user("full");
    let token = app.signed_up(&username).await.refresh_token();
    let mut conn = app.redis.connection();
    let set = |conn: &mut test_support::TestConnection, name: &str, value: &str| {
        redis::cmd("CONFIG").arg("SET").arg(name).arg(value).query::<()>(conn).unwrap();
    };
    set(&mut conn, "maxmemory-policy", "noeviction");
    set(&mut conn, "maxmemory", "1");

    let login = json!({ "username": username, "password": PASSWORD });
    let wrong = json!({ "username": username, "password": "a wrong password" });
    let register = json!({ "username": unique_user("full-new"), "password": PASSWORD });
    let refresh = json!({ "refresh_token": token });
    for (path, body) in
        [("/login", &login), ("/login", &wrong), ("/token", &refresh), ("/register", &register)]
    {
        let reply = app.post_json(path, body).await;
        assert_eq!(reply.status, 503, "{path}: {}", reply.text);
        assert_eq!(reply.error(), "unavailable");
        assert!(reply.header("retry-after").is_some(), "{path}");
        assert!(!reply.text.to_lowercase().contains("memory"), "{path}: {}", reply.text);
    }

    set(&mut conn, "maxmemory", "0");
    let reply = app.refresh(&token).await;
    assert_eq!(reply.status, 200, "the refused rotation kept the token: {}", reply.text);
    assert_eq!(app.login(&username).await.status, 200);
}
