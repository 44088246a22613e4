//! The session revocation list (`GET /revocations`), RFC 7009 `POST /revoke`, RFC 7662
//! `POST /introspect`, and their metadata.

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{
    INTROSPECTION_ID, INTROSPECTION_SECRET, Reply, claims_of, listed, read, revocations_at,
    second_instance, sid_digest, spawn_app, spawn_app_with, unique_user, with_introspection,
};

const ACCESS_TTL: u64 = 900;
const LEEWAY: u64 = 300;

fn sid_of(access_token: &str) -> String {
    claims_of(access_token)["sid"].as_str().unwrap().to_owned()
}

fn iat_of(access_token: &str) -> u64 {
    claims_of(access_token)["iat"].as_u64().unwrap()
}

fn cursor(reply: &Reply) -> String {
    reply.body["cursor"].as_str().unwrap_or_else(|| panic!("no cursor: {}", reply.text)).to_owned()
}

fn until_of(reply: &Reply, sid: &str) -> Option<u64> {
    let digest = sid_digest(sid);
    listed(reply).into_iter().find(|(d, _)| *d == digest).map(|(_, until)| until)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_resets_without_a_cursor_then_serves_only_what_came_after_it() {
    let app = spawn_app().await;
    let empty = app.revocations("").await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(empty.header("cache-control"), Some("no-store"));
    assert_eq!(empty.body["reset"], true);
    assert!(listed(&empty).is_empty());
    let mut keys: Vec<&String> = empty.body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["cursor", "reset", "revoked"]);

    let username = unique_user("listed");
    let tokens = app.signed_up(&username).await.tokens();
    assert_eq!(app.logout(tokens.refresh_token.as_deref().unwrap()).await.status, 204);
    let sid = sid_of(&tokens.access_token);

    let delta = app.revocations(&format!("after={}", cursor(&empty))).await;
    assert_eq!(delta.body["reset"], true, "the first publication starts the list's epoch");
    let until = until_of(&delta, &sid).expect("the ended session is listed");
    assert_eq!(until, iat_of(&tokens.access_token) + ACCESS_TTL + LEEWAY);
    let entry = &delta.body["revoked"][0];
    let mut keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["sid_sha256", "until"]);
    assert!(!delta.text.contains(&sid), "the list names digests, never sids");

    // Now a real delta: nothing new, then exactly the next publication.
    let head = cursor(&delta);
    let nothing = app.revocations(&format!("after={head}")).await;
    assert_eq!(nothing.body["reset"], false);
    assert!(listed(&nothing).is_empty());
    assert_eq!(cursor(&nothing), head);
    let second = app.login(&username).await.tokens();
    app.logout(second.refresh_token.as_deref().unwrap()).await;
    let next = app.revocations(&format!("after={head}")).await;
    assert_eq!(next.body["reset"], false);
    assert_eq!(
        listed(&next),
        [(sid_digest(&sid_of(&second.access_token)), iat_of(&second.access_token) + 1200)]
    );
    assert_ne!(cursor(&next), head);

    // Unknown cursors (junk, another epoch, the future) reset to the whole list.
    let epoch = head.split('.').next().unwrap();
    for unknown in ["junk", "zzzz.1-0", &format!("{epoch}.99999999999999-0"), &"A".repeat(500)] {
        let reply = app.revocations(&format!("after={unknown}")).await;
        assert_eq!(reply.status, 200, "{unknown}: {}", reply.text);
        assert_eq!(reply.body["reset"], true, "{unknown}");
        assert_eq!(listed(&reply).len(), 2, "{unknown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_out_of_range_or_junk_is_400() {
    let app = spawn_app().await;
    for bad in ["31", "-1", "abc", "1.5", "", "100000000000000000000", "1e1", "%20"] {
        let reply = app.revocations(&format!("wait={bad}")).await;
        assert_eq!(reply.status, 400, "wait={bad}: {}", reply.text);
        assert_eq!(reply.error(), "invalid_request");
        assert!(reply.body["error_description"].as_str().unwrap().contains("wait"));
    }
    for good in ["0", "30"] {
        // wait=30 with no cursor answers at once (a reset never waits).
        let started = Instant::now();
        assert_eq!(app.revocations(&format!("wait={good}")).await.status, 200);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_older_than_the_trimmed_stream_gets_the_whole_list() {
    let app = spawn_app().await;
    let username = unique_user("trimmed");
    let one = app.signed_up(&username).await.tokens();
    app.logout(one.refresh_token.as_deref().unwrap()).await;
    let old = cursor(&app.revocations("").await);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let two = app.login(&username).await.tokens();
    app.logout(two.refresh_token.as_deref().unwrap()).await;
    let head = cursor(&app.revocations("").await);
    // Trim as a publication does past the retention (one access-token lifetime + 5 min):
    // everything up to and including the older cursor's entry is gone from the stream.
    let old_id = old.split_once('.').unwrap().1.to_owned();
    let mut conn = app.redis.connection();
    let newest_kept: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg("rev:stream:{revocations}")
        .arg(format!("({old_id}"))
        .arg("+")
        .query(&mut conn)
        .unwrap();
    redis::cmd("XTRIM")
        .arg("rev:stream:{revocations}")
        .arg("MINID")
        .arg(&newest_kept[0].0)
        .query::<()>(&mut conn)
        .unwrap();
    redis::cmd("HSET")
        .arg("rev:meta:{revocations}")
        .arg("trimmed")
        .arg(&old_id)
        .query::<()>(&mut conn)
        .unwrap();
    // A cursor before the trimmed point cannot be served: a reset with the whole list.
    let before_old = format!("{}.0-1", old.split('.').next().unwrap());
    let reply = app.revocations(&format!("after={before_old}")).await;
    assert_eq!(reply.body["reset"], true, "{}", reply.text);
    assert_eq!(listed(&reply).len(), 2);
    assert_eq!(cursor(&reply), head);
    // The trimmed point itself, and the head, are still served as deltas.
    let reply = app.revocations(&format!("after={old}")).await;
    assert_eq!(reply.body["reset"], false, "{}", reply.text);
    assert_eq!(
        listed(&reply),
        [(sid_digest(&sid_of(&two.access_token)), iat_of(&two.access_token) + 1200)]
    );
    assert_eq!(app.revocations(&format!("after={head}")).await.body["reset"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_detection_publishes_the_session() {
    let app = spawn_app_with(|s| s.refresh_reuse_grace = Duration::ZERO).await;
    let login = app.signed_up(&unique_user("reuse")).await.tokens();
    let first = login.refresh_token.clone().unwrap();
    let rotated = app.refresh(&first).await.tokens();
    assert_eq!(app.refresh(&first).await.error(), "invalid_grant", "reuse");
    assert_eq!(
        app.refresh(rotated.refresh_token.as_deref().unwrap()).await.error(),
        "invalid_grant"
    );
    let list = app.revocations("").await;
    let until = until_of(&list, &sid_of(&login.access_token)).expect("published on reuse");
    assert_eq!(until, iat_of(&rotated.access_token) + ACCESS_TTL + LEEWAY, "the newest iat counts");
    assert_eq!(app.sessions(&rotated.access_token).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_ends_the_session_of_a_refresh_or_access_token_and_answers_200_for_anything_else() {
    let mut app = spawn_app().await;
    let username = unique_user("revoke");
    let by_refresh = app.signed_up(&username).await.tokens();
    let by_access = app.login(&username).await.tokens();
    let by_json = app.login(&username).await.tokens();
    let untouched = app.login(&username).await.tokens();
    let forged_sid = sid_of(&untouched.access_token);

    // No token: 400.
    let empty =
        read(app.client.post(app.url("/revoke")).form(&[("x", "y")]).send().await.unwrap()).await;
    assert_eq!(empty.status, 400, "{}", empty.text);
    assert_eq!(empty.error(), "invalid_request");
    let none =
        read(app.client.post(app.url("/revoke")).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(none.status, 400);
    // Anything that is not a token of ours: 200, empty, nothing ended or published. A sid
    // followed by garbage (the sid is in every access token) is not enough either.
    let mut parts: Vec<String> = by_access.access_token.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let bad_signature = parts.join(".");
    let forged = format!("{forged_sid}{}", "A".repeat(42));
    for junk in ["junk", &"A".repeat(64), &forged, &bad_signature, "a.b.c"] {
        let reply = app.revoke(junk).await;
        assert_eq!(reply.status, 200, "{junk}: {}", reply.text);
        assert!(reply.text.is_empty());
    }
    assert!(listed(&app.revocations("").await).is_empty(), "nothing published");
    assert_eq!(app.sessions(&untouched.access_token).await.status, 200);

    // A refresh token (form), an access token (form, with the "wrong" hint), and JSON.
    assert_eq!(app.revoke(by_refresh.refresh_token.as_deref().unwrap()).await.status, 200);
    let hinted = app
        .client
        .post(app.url("/revoke"))
        .form(&[("token", by_access.access_token.as_str()), ("token_type_hint", "refresh_token")]);
    assert_eq!(read(hinted.send().await.unwrap()).await.status, 200);
    let json_body = json!({ "token": by_json.access_token, "token_type_hint": "access_token" });
    let reply =
        read(app.client.post(app.url("/revoke")).json(&json_body).send().await.unwrap()).await;
    assert_eq!(reply.status, 200);
    let list = app.revocations("").await;
    for ended in [&by_refresh, &by_access, &by_json] {
        assert!(until_of(&list, &sid_of(&ended.access_token)).is_some());
        assert_eq!(
            app.refresh(ended.refresh_token.as_deref().unwrap()).await.error(),
            "invalid_grant"
        );
    }
    assert!(until_of(&list, &forged_sid).is_none());
    assert_eq!(app.refresh(untouched.refresh_token.as_deref().unwrap()).await.status, 200);

    // The outage part stops the one server: standalone runs only (scale.rs runs the rest of
    // this test on Cluster and Sentinel).
    if let Some(redis) = app.redis.as_standalone() {
        redis.stop();
        let reply = app.revoke(untouched.refresh_token.as_deref().unwrap()).await;
        assert_eq!(reply.status, 503, "{}", reply.text);
        assert_eq!(reply.error(), "unavailable");
        assert!(reply.header("retry-after").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_refuses_every_caller_but_a_listed_client_with_its_secret() {
    let app = spawn_app_with(with_introspection).await;
    let token = app.signed_up(&unique_user("introspected")).await.tokens().access_token;
    let basic =
        |text: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(text));
    let same_length_wrong =
        format!("{}{}", &INTROSPECTION_SECRET[..INTROSPECTION_SECRET.len() - 1], "x");
    assert_eq!(same_length_wrong.len(), INTROSPECTION_SECRET.len());
    let cases = [
        None,
        Some(basic(&format!("{INTROSPECTION_ID}:{same_length_wrong}"))),
        Some(basic(&format!("someone-else:{INTROSPECTION_SECRET}"))),
        Some(basic(&format!("{INTROSPECTION_ID}:"))),
        Some(basic(INTROSPECTION_SECRET)),
        Some("Basic !!!not base64!!!".to_owned()),
        Some("Basic".to_owned()),
        Some(format!("Bearer {token}")),
    ];
    for auth in &cases {
        let mut req = app.client.post(app.url("/introspect")).form(&[("token", token.as_str())]);
        if let Some(value) = auth {
            req = req.header("authorization", value);
        }
        let reply = read(req.send().await.unwrap()).await;
        assert_eq!(reply.status, 401, "{auth:?}: {}", reply.text);
        assert_eq!(reply.error(), "invalid_client", "{auth:?}");
        assert!(reply.header("www-authenticate").unwrap().starts_with("Basic"), "{auth:?}");
        assert!(!reply.text.contains("active"), "{auth:?}");
    }
    assert_eq!(app.introspect(&token).await.status, 200);

    // With no client configured, nobody may introspect.
    let closed = spawn_app().await;
    let reply = closed.introspect(&token).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error(), "invalid_client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_is_active_only_for_a_live_sessions_access_token_and_sees_an_end_at_once() {
    let app = spawn_app_with(with_introspection).await;
    let login = app.signed_up(&unique_user("live-check")).await.tokens();
    let reply = app.introspect(&login.access_token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let claims = claims_of(&login.access_token);
    let mut keys: Vec<&String> = reply.body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "active",
            "aud",
            "exp",
            "iat",
            "iss",
            "jti",
            "preferred_username",
            "scope",
            "sid",
            "sub",
            "token_type"
        ]
    );
    assert_eq!(reply.body["active"], true);
    assert_eq!(reply.body["token_type"], "Bearer");
    for claim in ["sub", "preferred_username", "scope", "sid", "exp", "iat", "iss", "aud", "jti"] {
        assert_eq!(reply.body[claim], claims[claim], "{claim}");
    }
    // JSON bodies work too.
    let json_req = app
        .client
        .post(app.url("/introspect"))
        .basic_auth(INTROSPECTION_ID, Some(INTROSPECTION_SECRET))
        .json(&json!({ "token": login.access_token }));
    assert_eq!(read(json_req.send().await.unwrap()).await.body["active"], true);

    let inactive = json!({ "active": false });
    let mut parts: Vec<String> = login.access_token.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    for other in [login.refresh_token.clone().unwrap(), parts.join("."), "junk".to_owned()] {
        let reply = app.introspect(&other).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, inactive, "{other}");
    }
    let no_token = read(
        app.client
            .post(app.url("/introspect"))
            .basic_auth(INTROSPECTION_ID, Some(INTROSPECTION_SECRET))
            .form(&[("x", "y")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(no_token.status, 400);
    assert_eq!(no_token.error(), "invalid_request");

    // An ended session is inactive at once (no cache, no delay).
    assert_eq!(app.logout(login.refresh_token.as_deref().unwrap()).await.status, 204);
    assert_eq!(app.introspect(&login.access_token).await.body, inactive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_names_the_revocation_and_introspection_endpoints() {
    let app = spawn_app().await;
    let meta = app.get("/.well-known/oauth-authorization-server").await.body;
    assert_eq!(meta["revocation_endpoint"], "http://localhost:5000/revoke");
    assert_eq!(meta["introspection_endpoint"], "http://localhost:5000/introspect");
    assert_eq!(meta["revocation_endpoint_auth_methods_supported"], json!(["none"]));
    assert_eq!(
        meta["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_serve_the_same_list_and_a_cursor_from_one_works_on_the_other() {
    let app = spawn_app().await;
    let other = second_instance(&app, |_| {}).await;
    let username = unique_user("two-instances");
    let a = app.signed_up(&username).await.tokens();
    app.logout(a.refresh_token.as_deref().unwrap()).await;

    let here = app.revocations("").await;
    let there = revocations_at(&app.client, &other, "").await;
    assert_eq!(here.body, there.body, "the same list and the same cursor");
    assert_eq!(listed(&here).len(), 1);

    // A publication on the other instance, read here with the other's cursor and vice versa.
    let b = app.login(&username).await.tokens();
    let logout = json!({ "refresh_token": b.refresh_token });
    let res = app.client.post(format!("{other}/logout")).json(&logout).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let delta = app.revocations(&format!("after={}", cursor(&there))).await;
    assert_eq!(delta.body["reset"], false, "{}", delta.text);
    assert_eq!(
        listed(&delta),
        [(sid_digest(&sid_of(&b.access_token)), iat_of(&b.access_token) + 1200)]
    );
    let from_here = revocations_at(&app.client, &other, &format!("after={}", cursor(&delta))).await;
    assert_eq!(from_here.body["reset"], false);
    assert!(listed(&from_here).is_empty());
}

/// Starts a long poll on `base` after `cursor`; returns when it answered and the answer.
fn long_poll(
    client: &reqwest::Client,
    base: &str,
    cursor: &str,
    wait: u64,
) -> tokio::task::JoinHandle<(Instant, Reply)> {
    let client = client.clone();
    let url = format!("{base}/revocations?after={cursor}&wait={wait}");
    tokio::spawn(async move {
        let reply = read(client.get(url).send().await.unwrap()).await;
        (Instant::now(), reply)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_answers_soon_after_a_publication_on_this_or_another_instance() {
    let app = spawn_app().await;
    let other = second_instance(&app, |_| {}).await;
    let username = unique_user("long-poll");
    app.register(&username).await;
    // Start the epoch, so cursors are deltas.
    let first = app.login(&username).await.tokens();
    app.logout(first.refresh_token.as_deref().unwrap()).await;
    let mut lags = Vec::new();
    for (poller, publisher) in
        [(other.as_str(), app.address.as_str()), (app.address.as_str(), app.address.as_str())]
    {
        for _ in 0..3 {
            let head = cursor(&revocations_at(&app.client, poller, "").await);
            let session = app.login(&username).await.tokens();
            let poll = long_poll(&app.client, poller, &head, 10);
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!poll.is_finished(), "answered before anything was published");
            let body = json!({ "refresh_token": session.refresh_token });
            let res =
                app.client.post(format!("{publisher}/logout")).json(&body).send().await.unwrap();
            assert_eq!(res.status(), 204);
            let published = Instant::now();
            let (answered, reply) = poll.await.unwrap();
            let lag = answered.saturating_duration_since(published);
            assert_eq!(reply.body["reset"], false, "{}", reply.text);
            assert_eq!(
                listed(&reply),
                [(
                    sid_digest(&sid_of(&session.access_token)),
                    iat_of(&session.access_token) + 1200
                )]
            );
            assert!(
                lag < Duration::from_millis(1000),
                "{poller} answered {lag:?} after the publication"
            );
            lags.push((poller == app.address, lag));
        }
    }
    eprintln!("long-poll lag after a publication (same instance?, lag): {lags:?}");

    // Nothing published: the answer comes at the timeout, with the same cursor.
    let head = cursor(&app.revocations("").await);
    let started = Instant::now();
    let reply = app.revocations(&format!("after={head}&wait=1")).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(3), "{took:?}");
    assert_eq!(reply.body["reset"], false);
    assert!(listed(&reply).is_empty());
    assert_eq!(cursor(&reply), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_past_the_bound_get_503_with_retry_after() {
    let app = spawn_app_with(|s| s.revocations_max_waiters = 2).await;
    let username = unique_user("waiters");
    let t = app.signed_up(&username).await.tokens();
    app.logout(t.refresh_token.as_deref().unwrap()).await;
    let head = cursor(&app.revocations("").await);
    let polls = [
        long_poll(&app.client, &app.address, &head, 3),
        long_poll(&app.client, &app.address, &head, 3),
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = app.revocations(&format!("after={head}&wait=3")).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.error(), "unavailable");
    assert!(refused.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Answers that do not wait are not waiters.
    assert_eq!(app.revocations(&format!("after={head}")).await.status, 200);
    for poll in polls {
        assert_eq!(poll.await.unwrap().1.status, 200);
    }
    let reply = app.revocations(&format!("after={head}&wait=1")).await;
    assert_eq!(reply.status, 200, "the bound frees up: {}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_past_100_sessions_publishes_the_oldest() {
    use auth_server::store::NewSession;
    use auth_server::tokens::RefreshToken;
    let app = spawn_app().await;
    let username = unique_user("hundred");
    let oldest = app.signed_up(&username).await.tokens();
    // 98 more sessions written straight into Redis (an argon2 login each would only cost CPU),
    // then one more real login: 100 sessions, none evicted yet.
    let store = app.store();
    let user = store.get_user(&username).await.unwrap().unwrap();
    for _ in 0..98 {
        let token = RefreshToken::generate().unwrap();
        let (sid, hash) = (token.sid(), token.hash());
        let new = NewSession {
            sid: &sid,
            token_hash: &hash,
            uid: &user.id,
            username: &user.username,
            name: None,
            roles: &user.roles,
            scope: "articles:read",
            ttl_ms: 86_400_000,
            max_age_ms: 30 * 86_400_000,
            user_agent: None,
            network: None,
        };
        store.create_session(new).await.unwrap().unwrap();
    }
    assert_eq!(app.login(&username).await.status, 200);
    assert!(until_of(&app.revocations("").await, &sid_of(&oldest.access_token)).is_none());
    let newest = app.login(&username).await.tokens();
    let list = app.revocations("").await;
    assert!(
        until_of(&list, &sid_of(&oldest.access_token)).is_some(),
        "the evicted session is published"
    );
    assert_eq!(listed(&list).len(), 1);
    assert_eq!(
        app.refresh(oldest.refresh_token.as_deref().unwrap()).await.error(),
        "invalid_grant"
    );
    assert_eq!(app.sessions(&newest.access_token).await.body.as_array().unwrap().len(), 100);
    let metrics = app.get("/metrics").await.text;
    let evicted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("auth_sessions_revoked_total{reason=\"evicted\"} "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(evicted >= Some(1), "{evicted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_count_ends_by_reason_and_the_list_size() {
    let app = spawn_app().await;
    let username = unique_user("metrics");
    let a = app.signed_up(&username).await.tokens();
    let b = app.login(&username).await.tokens();
    app.logout(a.refresh_token.as_deref().unwrap()).await;
    app.revoke(b.refresh_token.as_deref().unwrap()).await;
    let text = app.get("/metrics").await.text;
    let value = |series: &str| -> Value {
        let line =
            text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("{series}"));
        serde_json::from_str(line.rsplit(' ').next().unwrap()).unwrap()
    };
    // Each test app has its own Redis but the metrics are the process's: at least ours.
    assert!(value("auth_sessions_revoked_total{reason=\"logout\"}").as_u64().unwrap() >= 1);
    assert!(value("auth_sessions_revoked_total{reason=\"revoke\"}").as_u64().unwrap() >= 1);
    assert!(value("auth_revocation_list_entries").as_u64().is_some());
    assert!(text.contains("auth_revocation_publish_errors_total{step=\"publish\"}"));
}

/// Whether `sid`'s session hash exists, and whether it is marked revoked.
fn stored(app: &crate::helpers::TestApp, sid: &str) -> (bool, bool) {
    let mut conn = app.redis.connection();
    let key = format!("sess:{{{sid}}}");
    let exists: bool = redis::cmd("EXISTS").arg(&key).query(&mut conn).unwrap();
    let revoked: Option<String> =
        redis::cmd("HGET").arg(&key).arg("revoked").query(&mut conn).unwrap();
    (exists, revoked.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_end_path_deletes_a_session_before_it_is_published() {
    let app = spawn_app_with(|s| s.refresh_reuse_grace = Duration::ZERO).await;
    let mut conn = app.redis.connection();
    let username = unique_user("ordered");
    let keeper = app.signed_up(&username).await.tokens();
    let login = || app.login(&username);
    let mut victims = Vec::new();
    // Break the list's slot: every publication fails (WRONGTYPE) from here on.
    redis::cmd("SET").arg("rev:stream:{revocations}").arg("broken").query::<()>(&mut conn).unwrap();

    let s = login().await.tokens();
    let r = app.logout(s.refresh_token.as_deref().unwrap()).await;
    assert_eq!(r.status, 503, "logout: {}", r.text);
    victims.push(("logout", s));

    let s = login().await.tokens();
    assert_eq!(app.revoke(s.refresh_token.as_deref().unwrap()).await.status, 503, "revoke refresh");
    victims.push(("revoke refresh", s));
    let s = login().await.tokens();
    assert_eq!(app.revoke(&s.access_token).await.status, 503, "revoke access");
    victims.push(("revoke access", s));

    let s = login().await.tokens();
    let r = app
        .bearer(
            reqwest::Method::DELETE,
            &format!("/sessions/{}", sid_of(&s.access_token)),
            &keeper.access_token,
        )
        .await;
    assert_eq!(r.status, 503, "delete one: {}", r.text);
    victims.push(("DELETE /sessions/{sid}", s));

    let s = login().await.tokens();
    let first = s.refresh_token.clone().unwrap();
    app.refresh(&first).await.tokens();
    assert_eq!(app.refresh(&first).await.error(), "invalid_grant", "reuse answers the same");
    victims.push(("reuse", s));

    for (name, s) in &victims {
        let sid = sid_of(&s.access_token);
        assert_eq!(stored(&app, &sid), (true, true), "{name}: marked, not deleted");
        assert_eq!(app.sessions(&s.access_token).await.status, 401, "{name}: refused meanwhile");
    }
    // The user-wide ends: others, password, logout everywhere; and the operator's.
    let others = login().await.tokens();
    let r = app.bearer(reqwest::Method::DELETE, "/sessions/others", &keeper.access_token).await;
    assert_eq!(r.status, 503, "others: {}", r.text);
    assert_eq!(stored(&app, &sid_of(&others.access_token)), (true, true), "others");
    let r = app.logout_all(&keeper.access_token).await;
    assert_eq!(r.status, 503, "logout/all: {}", r.text);
    assert_eq!(stored(&app, &sid_of(&keeper.access_token)), (true, true), "logout/all");
    let out = Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .args(["users", "logout", &username])
        .envs(app.redis.env())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the command fails and says so");
    let listed_now: i64 =
        redis::cmd("EXISTS").arg("rev:list:{revocations}").query(&mut conn).unwrap();
    assert_eq!(listed_now, 0, "nothing was published");

    // Repaired: the background retries publish, then delete; a token of a marked session
    // presented again is published too.
    redis::cmd("DEL").arg("rev:stream:{revocations}").query::<()>(&mut conn).unwrap();
    let everyone: Vec<&access_token::TokenResponse> =
        victims.iter().map(|(_, s)| s).chain([&others, &keeper]).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = app.revocations("").await;
        let missing: Vec<String> = everyone
            .iter()
            .map(|s| sid_of(&s.access_token))
            .filter(|sid| until_of(&list, sid).is_none() || stored(&app, sid).0)
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not published and deleted after the repair: {missing:?}"
        );
        // Presenting a token of a marked session publishes it again.
        for s in &everyone {
            if missing.contains(&sid_of(&s.access_token)) {
                app.refresh(s.refresh_token.as_deref().unwrap()).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_whose_end_step_fails_ends_the_others_in_the_background() {
    let app = spawn_app().await;
    let mut conn = app.redis.connection();
    let username = unique_user("password-retry");
    let current = app.signed_up(&username).await.tokens();
    let other = app.login(&username).await.tokens();
    redis::cmd("SET").arg("rev:stream:{revocations}").arg("broken").query::<()>(&mut conn).unwrap();
    let body = json!({ "current_password": crate::helpers::PASSWORD, "new_password": "the next passphrase" });
    let reply = read(
        app.client
            .post(app.url("/password"))
            .bearer_auth(&current.access_token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(stored(&app, &sid_of(&other.access_token)), (true, true), "marked, not deleted");
    redis::cmd("DEL").arg("rev:stream:{revocations}").query::<()>(&mut conn).unwrap();
    // A login with the new password after the change is not ended by the retry.
    let later = app
        .post_json("/login", &json!({ "username": username, "password": "the next passphrase" }))
        .await
        .tokens();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored(&app, &sid_of(&other.access_token)).0 {
        assert!(Instant::now() < deadline, "the retry never ended the other session");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(until_of(&app.revocations("").await, &sid_of(&other.access_token)).is_some());
    assert_eq!(app.sessions(&current.access_token).await.status, 200, "the current one lives");
    assert_eq!(app.sessions(&later.access_token).await.status, 200, "a later login lives");
}
