use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::helpers::{claims_of, read, spawn_app, spawn_app_with, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshing_returns_a_new_pair_and_keeps_the_sid_across_rotations() {
    let app = spawn_app().await;
    let login = app.signed_up(&unique_user("rotate")).await.tokens();
    let sid = claims_of(&login.access_token)["sid"].clone();
    assert!(sid.is_string());

    let mut current = login.refresh_token.unwrap();
    let mut seen = vec![current.clone()];
    for _ in 0..3 {
        let reply = app.refresh(&current).await;
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let tokens = reply.tokens();
        let next = tokens.refresh_token.unwrap();
        assert!(!seen.contains(&next), "a rotation returned an old refresh token");
        assert_eq!(claims_of(&tokens.access_token)["sid"], sid);
        seen.push(next.clone());
        current = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_the_grace_the_token_just_rotated_returns_the_identical_pair() {
    let app = spawn_app().await;
    let first = app.signed_up(&unique_user("grace")).await.refresh_token();
    let rotated = app.refresh(&first).await;
    let again = app.refresh(&first).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.text, rotated.text, "the replay must return the same body");

    // The replay created no branch: the successor still rotates normally.
    let successor = rotated.refresh_token();
    assert_eq!(app.refresh(&successor).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_the_old_token_is_refused_and_the_current_token_dies_too() {
    let app = spawn_app_with(|s| s.refresh_reuse_grace = Duration::from_millis(300)).await;
    let first = app.signed_up(&unique_user("late")).await.refresh_token();
    let current = app.refresh(&first).await.refresh_token();
    tokio::time::sleep(Duration::from_millis(600)).await;

    let reuse = app.refresh(&first).await;
    assert_eq!(reuse.status, 400, "{}", reuse.text);
    assert_eq!(reuse.error(), "invalid_grant");
    let after = app.refresh(&current).await;
    assert_eq!(after.status, 400, "the session must be revoked: {}", after.text);
    assert_eq!(after.error(), "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_spent_token_is_reuse_even_within_the_grace() {
    let app = spawn_app().await;
    let a = app.signed_up(&unique_user("older")).await.refresh_token();
    let b = app.refresh(&a).await.refresh_token();
    let c = app.refresh(&b).await.refresh_token();

    let reuse = app.refresh(&a).await;
    assert_eq!(reuse.status, 400, "{}", reuse.text);
    assert_eq!(reuse.error(), "invalid_grant");
    assert_eq!(app.refresh(&c).await.status, 400, "the whole session is revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_grace_zero_50_concurrent_refreshes_of_one_token_give_exactly_one_200() {
    let app = spawn_app_with(|s| s.refresh_reuse_grace = Duration::ZERO).await;
    let token = app.signed_up(&unique_user("zero")).await.refresh_token();
    let replies = futures_util::future::join_all((0..50).map(|_| app.refresh(&token))).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(replies.iter().filter(|r| r.status != 200).all(|r| r.error() == "invalid_grant"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_grace_50_concurrent_refreshes_all_return_one_identical_pair() {
    let app = spawn_app().await;
    let token = app.signed_up(&unique_user("herd")).await.refresh_token();
    let replies = futures_util::future::join_all((0..50).map(|_| app.refresh(&token))).await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    assert!(replies.iter().all(|r| r.text == replies[0].text), "every reply must be the same pair");
    assert_eq!(app.refresh(&replies[0].refresh_token()).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_unknown_refresh_tokens_are_invalid_grant_and_a_known_sid_cannot_revoke() {
    let app = spawn_app().await;
    let token = app.signed_up(&unique_user("garbage")).await.refresh_token();
    let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
    let mut forged = raw.clone();
    forged[16..].fill(7); // the session's sid with a made-up secret
    let mut random = raw;
    random[..16].fill(9); // a well-formed token of no session

    for bad in [
        "garbage".to_owned(),
        "x".repeat(64),
        "!".repeat(64),
        URL_SAFE_NO_PAD.encode(&forged),
        URL_SAFE_NO_PAD.encode(&random),
    ] {
        let reply = app.refresh(&bad).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text);
        assert_eq!(reply.error(), "invalid_grant");
        assert!(!reply.text.contains(&bad));
        assert_eq!(app.logout(&bad).await.status, 204, "logout gives no oracle");
    }
    assert_eq!(app.refresh(&token).await.status, 200, "forged tokens must not end the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_without_a_token_is_400_invalid_request() {
    let app = spawn_app().await;
    for body in [json!({}), json!({ "refresh_token": "" }), json!({ "refresh_token": null })] {
        let reply = app.post_json("/token", &body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert_eq!(reply.error(), "invalid_request");
    }
    let reply = read(app.client.post(app.url("/token")).send().await.unwrap()).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_token_is_accepted_from_the_token_field_a_form_and_a_cookie() {
    let app = spawn_app().await;
    let first = app.signed_up(&unique_user("sources")).await.refresh_token();

    let second = app.post_json("/token", &json!({ "token": first })).await.refresh_token();
    let form = format!("grant_type=refresh_token&refresh_token={second}");
    let res = app
        .client
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let third = read(res).await.refresh_token();
    let res = app
        .client
        .post(app.url("/token"))
        .header("cookie", format!("theme=dark; refresh_token={third}"))
        .send()
        .await
        .unwrap();
    let fourth = read(res).await.refresh_token();
    assert_eq!(app.refresh(&fourth).await.status, 200);

    let res = app
        .client
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=password&refresh_token=x")
        .send()
        .await
        .unwrap();
    let reply = read(res).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error(), "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_ends_at_its_max_age_even_when_refreshed() {
    let app = spawn_app_with(|s| s.session_max_age = Duration::from_secs(2)).await;
    let login = app.signed_up(&unique_user("maxage")).await.tokens();
    assert!(login.refresh_expires_in <= 2, "capped by the max age: {}", login.refresh_expires_in);
    let mut token = login.refresh_token.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token = app.refresh(&token).await.refresh_token();
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let reply = app.refresh(&token).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends_after_the_refresh_token_ttl() {
    let app = spawn_app_with(|s| s.refresh_token_ttl = Duration::from_secs(1)).await;
    let token = app.signed_up(&unique_user("idle")).await.refresh_token();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let reply = app.refresh(&token).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_rotation_limit_refresh_answers_429_and_a_grace_replay_is_not_counted() {
    let app = spawn_app_with(|s| {
        s.refresh_max_rotations = 2;
        s.refresh_rotation_window = Duration::from_secs(2);
    })
    .await;
    let a = app.signed_up(&unique_user("limit")).await.refresh_token();
    let b_reply = app.refresh(&a).await;
    let b = b_reply.refresh_token();
    // Replays within the grace (a client that lost the response, several tabs) are free.
    for _ in 0..5 {
        let again = app.refresh(&a).await;
        assert_eq!(again.text, b_reply.text);
    }
    let c = app.refresh(&b).await.refresh_token();
    let limited = app.refresh(&c).await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert_eq!(limited.error(), "rate_limited");
    let retry: u64 = limited.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // The refused token is kept, not spent: after the window it rotates.
    tokio::time::sleep(Duration::from_millis(retry * 1000 + 100)).await;
    let d = app.refresh(&c).await;
    assert_eq!(d.status, 200, "{}", d.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_rotations_of_one_session_leave_its_redis_footprint_bounded() {
    let app = spawn_app_with(|s| s.refresh_max_rotations = 1_000_000).await;
    let login = app.signed_up(&unique_user("churn")).await.tokens();
    let sid = claims_of(&login.access_token)["sid"].as_str().unwrap().to_owned();
    let mut token = login.refresh_token.unwrap();
    for i in 0..10_000 {
        let reply = app.refresh(&token).await;
        assert_eq!(reply.status, 200, "rotation {i}: {}", reply.text);
        token = reply.refresh_token();
    }
    let mut conn = app.redis.connection();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("*{{{sid}}}*")).query(&mut conn).unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let mut bytes = 0;
    for key in &keys {
        let usage: u64 = redis::cmd("MEMORY").arg("USAGE").arg(key).query(&mut conn).unwrap();
        bytes += usage;
    }
    // Every spent digest kept, 10 000 of them, would be over 500 KB.
    assert!(bytes <= 8 * 1024, "one session holds {bytes} bytes after 10 000 rotations: {keys:?}");
    assert_eq!(app.refresh(&token).await.status, 200);
}
