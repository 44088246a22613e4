use std::time::{Duration, Instant};

use serde_json::json;
use test_support::RedisServer;

use crate::helpers::{PASSWORD, Reply, TestApp, spawn_app, spawn_app_on, unique_user};

fn assert_unavailable(reply: &Reply, elapsed: Duration, what: &str) {
    assert_eq!(reply.status, 503, "{what}: {}", reply.text);
    assert_eq!(reply.error(), "unavailable", "{what}");
    assert!(reply.header("retry-after").is_some(), "{what}: no Retry-After");
    assert!(elapsed < Duration::from_secs(2), "{what} took {elapsed:?}");
    assert!(!reply.text.to_lowercase().contains("redis"), "{what}: {}", reply.text);
}

async fn timed<F: Future<Output = Reply>>(f: F) -> (Reply, Duration) {
    let start = Instant::now();
    let reply = f.await;
    (reply, start.elapsed())
}

async fn wait_until_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if app.get("/readyz").await.status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "not ready again after Redis came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_requests_get_a_quick_503_and_then_work_again() {
    let mut app = spawn_app().await;
    let username = unique_user("outage");
    let token = app.signed_up(&username).await.refresh_token();
    assert_eq!(app.get("/readyz").await.status, 200);

    app.standalone().stop();
    let (reply, t) = timed(app.login(&username)).await;
    assert_unavailable(&reply, t, "login");
    let (reply, t) = timed(app.refresh(&token)).await;
    assert_unavailable(&reply, t, "refresh");
    let (reply, t) = timed(app.register(&unique_user("outage-new"))).await;
    assert_unavailable(&reply, t, "register");
    let (reply, t) = timed(app.logout(&token)).await;
    assert_unavailable(&reply, t, "logout");
    let (reply, t) = timed(app.get("/readyz")).await;
    assert_unavailable(&reply, t, "readyz");
    assert_eq!(app.get("/healthz").await.status, 200, "alive while Redis is down");
    assert_eq!(app.get("/.well-known/jwks.json").await.status, 200);

    app.standalone().restart();
    wait_until_ready(&app).await;
    // Without persistence the restarted Redis is empty: start over.
    let again = unique_user("outage-after");
    let token = app.signed_up(&again).await.refresh_token();
    assert_eq!(app.refresh(&token).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_starts_while_redis_is_down_and_recovers_when_it_comes_up() {
    let mut redis = RedisServer::start();
    redis.stop();
    let mut app = spawn_app_on(redis, |_| {}).await;
    assert_eq!(app.get("/healthz").await.status, 200);
    let (reply, t) = timed(app.get("/readyz")).await;
    assert_unavailable(&reply, t, "readyz");
    let (reply, t) =
        timed(app.post_json("/login", &json!({ "username": "nobody", "password": PASSWORD })))
            .await;
    assert_unavailable(&reply, t, "login");

    app.standalone().restart();
    wait_until_ready(&app).await;
    app.signed_up(&unique_user("late-redis")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_during_rotation_keeps_the_refresh_token_valid() {
    let redis = RedisServer::start_with_aof();
    let mut app = spawn_app_on(redis, |_| {}).await;
    let token = app.signed_up(&unique_user("keep")).await.refresh_token();
    app.standalone().stop();
    let (reply, t) = timed(app.refresh(&token)).await;
    assert_unavailable(&reply, t, "refresh");
    app.standalone().restart();
    wait_until_ready(&app).await;
    assert_eq!(app.refresh(&token).await.status, 200, "the token survived the outage");
}
