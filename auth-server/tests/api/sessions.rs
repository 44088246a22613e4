//! The session inventory (`GET /sessions`, `DELETE /sessions/...`), `POST /password`, and the
//! bearer routes' refusal of an ended session's token.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, Reply, TestApp, claims_of, listed, read, sid_digest, spawn_app, spawn_app_with,
    unique_user,
};

/// Logs `username` in with `user_agent` and, when given, `X-Forwarded-For`.
async fn login_with(
    app: &TestApp,
    username: &str,
    user_agent: &str,
    forwarded_for: Option<&str>,
) -> Reply {
    let mut req = app
        .client
        .post(app.url("/login"))
        .header("user-agent", user_agent)
        .json(&json!({ "username": username, "password": PASSWORD }));
    if let Some(addr) = forwarded_for {
        req = req.header("x-forwarded-for", addr);
    }
    read(req.send().await.unwrap()).await
}

fn sid_of(access_token: &str) -> String {
    claims_of(access_token)["sid"].as_str().unwrap().to_owned()
}

/// Seconds since the epoch of an RFC 3339 UTC time as the server writes it.
fn secs(text: &Value) -> u64 {
    let text = text.as_str().unwrap_or_else(|| panic!("not a time: {text}"));
    assert!(text.ends_with('Z'), "{text}");
    let at = humantime::parse_rfc3339(text).unwrap();
    at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn is_listed(reply: &Reply, sid: &str) -> bool {
    listed(reply).iter().any(|(digest, _)| *digest == sid_digest(sid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_lists_the_callers_live_sessions_newest_first_with_their_fields() {
    let app = spawn_app_with(|s| {
        s.trusted_proxies = auth_server::throttle::TrustedProxies::parse("127.0.0.1").unwrap();
    })
    .await;
    let username = unique_user("inventory");
    assert_eq!(app.register(&username).await.status, 201);
    let long_ua = format!("Mozilla/5.0 {}", "x".repeat(400));
    let old = login_with(&app, &username, "curl/8.5.0", Some("203.0.113.77")).await.tokens();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let new = login_with(&app, &username, &long_ua, Some("2001:db8:1:2::5")).await.tokens();
    app.signed_up(&unique_user("someone-else")).await;

    let reply = app.sessions(&new.access_token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let sessions = reply.body.as_array().unwrap();
    assert_eq!(sessions.len(), 2, "only the caller's: {}", reply.text);
    let (first, second) = (&sessions[0], &sessions[1]);
    assert_eq!(first["sid"], sid_of(&new.access_token), "newest first");
    assert_eq!(second["sid"], sid_of(&old.access_token));
    let mut keys: Vec<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "address",
            "created_at",
            "current",
            "ends_at",
            "expires_at",
            "last_used_at",
            "sid",
            "user_agent"
        ]
    );
    assert_eq!(first["current"], true);
    assert_eq!(second["current"], false);
    assert_eq!(first["user_agent"].as_str().unwrap().chars().count(), 256, "cut to 256");
    assert!(long_ua.starts_with(first["user_agent"].as_str().unwrap()));
    assert_eq!(second["user_agent"], "curl/8.5.0");
    assert_eq!(first["address"], "2001:db8:1::/48");
    assert_eq!(second["address"], "203.0.113.0/24");
    // Times: created = the first token's iat; ends = created + max age (30 d); expires = the
    // last use + the refresh TTL (7 d).
    let iat = claims_of(&new.access_token)["iat"].as_u64().unwrap();
    assert_eq!(secs(&first["created_at"]), iat);
    assert_eq!(secs(&first["last_used_at"]), iat);
    assert_eq!(secs(&first["ends_at"]), iat + 30 * 86_400);
    assert!(secs(&first["expires_at"]).abs_diff(iat + 7 * 86_400) <= 2, "{}", first["expires_at"]);

    // A rotation moves last_used_at (not created_at).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let rotated = app.refresh(old.refresh_token.as_deref().unwrap()).await.tokens();
    let reply = app.sessions(&rotated.access_token).await;
    let old_entry = &reply.body.as_array().unwrap()[1];
    assert_eq!(old_entry["current"], true, "the rotated token's session is the same");
    let rotated_iat = claims_of(&rotated.access_token)["iat"].as_u64().unwrap();
    assert_eq!(secs(&old_entry["last_used_at"]), rotated_iat);
    assert!(secs(&old_entry["last_used_at"]) > secs(&old_entry["created_at"]));

    // The full address is never stored.
    let dump: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut app.redis.connection()).unwrap();
    for key in dump {
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut app.redis.connection()).unwrap();
        if kind == "hash" {
            let fields: Vec<String> =
                redis::cmd("HGETALL").arg(&key).query(&mut app.redis.connection()).unwrap();
            for value in fields {
                assert!(!value.contains("203.0.113.77") && !value.contains("2001:db8:1:2::5"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_session_ends_and_publishes_it_and_another_users_sid_is_not_found() {
    let app = spawn_app().await;
    let username = unique_user("delete-one");
    let keep = app.signed_up(&username).await.tokens();
    let target = app.login(&username).await.tokens();
    let stranger = app.signed_up(&unique_user("stranger")).await.tokens();
    let target_sid = sid_of(&target.access_token);

    // Another user's sid, an unknown sid and garbage all get the same 404.
    let theirs = app
        .bearer(Method::DELETE, &format!("/sessions/{target_sid}"), &stranger.access_token)
        .await;
    let unknown = app
        .bearer(Method::DELETE, "/sessions/AAAAAAAAAAAAAAAAAAAAAA", &stranger.access_token)
        .await;
    let garbage = app.bearer(Method::DELETE, "/sessions/..%2F..", &stranger.access_token).await;
    for reply in [&theirs, &unknown, &garbage] {
        assert_eq!(reply.status, 404, "{}", reply.text);
        assert_eq!(reply.error(), "not_found");
    }
    assert_eq!(theirs.text, unknown.text, "no oracle");
    assert_eq!(app.refresh(target.refresh_token.as_deref().unwrap()).await.status, 200);
    assert!(!is_listed(&app.revocations("").await, &target_sid), "nothing published");

    let reply =
        app.bearer(Method::DELETE, &format!("/sessions/{target_sid}"), &keep.access_token).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(
        app.refresh(target.refresh_token.as_deref().unwrap()).await.error(),
        "invalid_grant"
    );
    assert!(is_listed(&app.revocations("").await, &target_sid));
    let again =
        app.bearer(Method::DELETE, &format!("/sessions/{target_sid}"), &keep.access_token).await;
    assert_eq!(again.status, 404, "ended already");
    let left = app.sessions(&keep.access_token).await;
    assert_eq!(left.body.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_others_keeps_the_current_session() {
    let app = spawn_app().await;
    let username = unique_user("others");
    let current = app.signed_up(&username).await.tokens();
    let a = app.login(&username).await.tokens();
    let b = app.login(&username).await.tokens();
    let bystander = app.signed_up(&unique_user("bystander")).await.tokens();

    let reply = app.bearer(Method::DELETE, "/sessions/others", &current.access_token).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    for ended in [&a, &b] {
        assert_eq!(
            app.refresh(ended.refresh_token.as_deref().unwrap()).await.error(),
            "invalid_grant"
        );
        assert!(is_listed(&app.revocations("").await, &sid_of(&ended.access_token)));
        assert_eq!(app.sessions(&ended.access_token).await.status, 401);
    }
    let list = app.sessions(&current.access_token).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(list.body[0]["current"], true);
    assert_eq!(app.refresh(current.refresh_token.as_deref().unwrap()).await.status, 200);
    assert_eq!(app.refresh(bystander.refresh_token.as_deref().unwrap()).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_sessions_access_token_gets_401_on_every_bearer_route() {
    let app = spawn_app().await;
    let username = unique_user("ended-bearer");
    let tokens = app.signed_up(&username).await.tokens();
    let live = app.login(&username).await.tokens();
    assert_eq!(app.logout(tokens.refresh_token.as_deref().unwrap()).await.status, 204);

    let access = &tokens.access_token;
    let sid = sid_of(&live.access_token);
    let password = json!({ "current_password": PASSWORD, "new_password": "another password" });
    let replies = [
        app.sessions(access).await,
        app.bearer(Method::DELETE, "/sessions/others", access).await,
        app.bearer(Method::DELETE, &format!("/sessions/{sid}"), access).await,
        app.logout_all(access).await,
        read(
            app.client
                .post(app.url("/password"))
                .bearer_auth(access)
                .json(&password)
                .send()
                .await
                .unwrap(),
        )
        .await,
    ];
    for reply in &replies {
        assert_eq!(reply.status, 401, "{}", reply.text);
        assert_eq!(reply.error(), "invalid_token");
        assert!(reply.body["error_description"].as_str().unwrap().contains("ended"));
        let challenge = reply.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer realm=\"auth\""), "{challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
    // Nothing happened to the live session.
    assert_eq!(app.refresh(live.refresh_token.as_deref().unwrap()).await.status, 200);
    assert_eq!(app.sessions(&live.access_token).await.status, 200);
}

async fn change_password(app: &TestApp, access: &str, current: &str, new: &str) -> Reply {
    let body = json!({ "current_password": current, "new_password": new });
    read(
        app.client.post(app.url("/password")).bearer_auth(access).json(&body).send().await.unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_every_other_session_and_keeps_the_current_one() {
    let app = spawn_app().await;
    let username = unique_user("password");
    let current = app.signed_up(&username).await.tokens();
    let other = app.login(&username).await.tokens();
    let new_password = "a brand new passphrase";

    let short = change_password(&app, &current.access_token, PASSWORD, "short").await;
    assert_eq!(short.status, 400, "{}", short.text);
    assert_eq!(short.error(), "invalid_request");
    assert!(short.body["error_description"].as_str().unwrap().contains("password"));

    let reply = change_password(&app, &current.access_token, PASSWORD, new_password).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(app.refresh(other.refresh_token.as_deref().unwrap()).await.error(), "invalid_grant");
    assert!(is_listed(&app.revocations("").await, &sid_of(&other.access_token)));
    assert!(!is_listed(&app.revocations("").await, &sid_of(&current.access_token)));
    assert_eq!(app.sessions(&current.access_token).await.status, 200, "the current one lives");
    assert_eq!(app.refresh(current.refresh_token.as_deref().unwrap()).await.status, 200);

    let old = app.login(&username).await;
    assert_eq!(old.status, 401, "the old password is gone");
    let body = json!({ "username": username, "password": new_password });
    assert_eq!(app.post_json("/login", &body).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_current_password_is_401_and_throttled_like_a_login() {
    let app = spawn_app().await;
    let username = unique_user("password-guess");
    let tokens = app.signed_up(&username).await.tokens();
    let other = app.login(&username).await.tokens();
    // The per-(username, address) limit is 5 in the test settings, as in production.
    for i in 0..5 {
        let reply =
            change_password(&app, &tokens.access_token, "not my password", "whatever new").await;
        assert_eq!(reply.status, 401, "guess {i}: {}", reply.text);
        assert_eq!(reply.error(), "invalid_credentials");
    }
    let locked = change_password(&app, &tokens.access_token, PASSWORD, "whatever new").await;
    assert_eq!(locked.status, 429, "{}", locked.text);
    assert!(locked.header("retry-after").is_some());
    // The lockout is the login's: logging in from here is refused too, and nothing changed.
    assert_eq!(app.login(&username).await.status, 429);
    assert_eq!(app.refresh(other.refresh_token.as_deref().unwrap()).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_publishes_every_session_of_the_user() {
    let app = spawn_app().await;
    let username = unique_user("everywhere");
    let one = app.signed_up(&username).await.tokens();
    let two = app.login(&username).await.tokens();
    let bystander = app.signed_up(&unique_user("bystander")).await.tokens();
    assert_eq!(app.logout_all(&one.access_token).await.status, 204);
    let list = app.revocations("").await;
    for ended in [&one, &two] {
        assert!(is_listed(&list, &sid_of(&ended.access_token)));
    }
    assert!(!is_listed(&list, &sid_of(&bystander.access_token)));
    assert_eq!(app.logout_all(&one.access_token).await.status, 401, "its session has ended");
}
