//! `AUTH_KEY_ROTATION_INTERVAL`: the servers add, activate and prune keys by themselves, one
//! instance at a time (a Redis lock), with tiny intervals and waits.

use std::time::{Duration, Instant};

use auth_server::Settings;
use auth_server::key_folder::{KeyFolder, KeyState, KeyStatus};
use auth_server::rotation::{KEY_ROTATION_LOCK, Timing};
use base64::Engine as _;
use serde_json::Value;

use crate::helpers::{TestApp, read, second_instance, spawn_app, spawn_app_with, unique_user};

const PATIENCE: Duration = Duration::from_secs(20);

/// Rotation every `interval` s, an added key published for `wait` s, checks every 100 ms.
fn rotating(interval: u64, wait: u64) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.key_rotation_interval = Some(Duration::from_secs(interval));
        s.key_rotation_timing = Timing {
            check_every: Duration::from_millis(100),
            publish_wait: Duration::from_secs(wait),
            prune_leeway: Duration::ZERO,
            ..Timing::default()
        };
    }
}

fn state(app: &TestApp) -> KeyState {
    KeyFolder::new(app.keys_dir.path()).read_state().unwrap()
}

/// Polls the key state until `ready` holds for it.
async fn state_until(app: &TestApp, what: &str, ready: impl Fn(&KeyState) -> bool) -> KeyState {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = state(app);
        if ready(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} within {PATIENCE:?}; state: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap();
    let header: Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn jwks_kids(client: &reqwest::Client, base: &str) -> Vec<String> {
    let reply =
        read(client.get(format!("{base}/.well-known/jwks.json")).send().await.unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Refreshes `refresh` at `base` until the new access token is signed by `kid` (instances
/// re-read the folder within about a second); returns the last refresh token.
async fn refresh_until_signed_by(app: &TestApp, base: &str, refresh: String, kid: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut refresh = refresh;
    loop {
        let reply = read(
            app.client
                .post(format!("{base}/token"))
                .json(&serde_json::json!({ "refresh_token": refresh }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let tokens = reply.tokens();
        refresh = tokens.refresh_token.unwrap();
        if kid_of(&tokens.access_token) == kid {
            return refresh;
        }
        assert!(Instant::now() < deadline, "{base} signs with {kid} within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn published(s: &KeyState) -> Vec<String> {
    s.kids_in(KeyStatus::Published).into_iter().map(str::to_owned).collect()
}

#[tokio::test]
async fn a_key_is_added_then_activated_after_the_wait_and_the_old_one_pruned_when_due() {
    let app = spawn_app_with(|s| {
        rotating(3, 2)(s);
        s.access_token_ttl = Duration::from_secs(1);
    })
    .await;
    let first = state(&app).active.unwrap();
    let user = unique_user("rotation");
    let mut refresh = app.signed_up(&user).await.refresh_token();

    // Added: published (in the JWKS), not signing.
    let s = state_until(&app, "a key added", |s| !published(s).is_empty()).await;
    let new = published(&s).remove(0);
    assert_eq!(s.active.as_deref(), Some(first.as_str()), "{s:?}");
    let deadline = Instant::now() + PATIENCE;
    while !jwks_kids(&app.client, &app.address).await.contains(&new) {
        assert!(Instant::now() < deadline, "the added key in the JWKS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if state(&app).active.as_deref() == Some(first.as_str()) {
        let reply = app.refresh(&refresh).await;
        let tokens = reply.tokens();
        refresh = tokens.refresh_token.unwrap();
        // Unless the activation came in between (the wait is 2 s here).
        if state(&app).active.as_deref() == Some(first.as_str()) {
            assert_eq!(kid_of(&tokens.access_token), first, "the added key does not sign yet");
        }
    }

    // Activated after the wait; the old key retired but still published.
    let s =
        state_until(&app, "the added key activated", |s| s.active.as_deref() == Some(&new)).await;
    let created = s.keys[&new].created;
    assert!(s.keys[&new].activated.unwrap() >= created + 2, "activated after the wait: {s:?}");
    assert!(s.keys.get(&first).is_none_or(|m| m.retired.is_some()), "{s:?}");
    refresh_until_signed_by(&app, &app.address, refresh, &new).await;
    let login = app.login(&user).await.tokens();
    assert_eq!(kid_of(&login.access_token), new, "new logins are signed by the new key");

    // Pruned once no token it signed can be valid (1 s access tokens, no leeway here).
    state_until(&app, "the old key pruned", |s| !s.keys.contains_key(&first)).await;
    let deadline = Instant::now() + PATIENCE;
    while jwks_kids(&app.client, &app.address).await.contains(&first) {
        assert!(Instant::now() < deadline, "the pruned key leaves the JWKS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let metrics = app.get("/metrics").await.text;
    for step in ["add", "activate", "prune"] {
        let line = format!("auth_key_rotations_total{{outcome=\"ok\",step=\"{step}\"}}");
        assert!(metrics.lines().any(|l| l.starts_with(&line) && !l.ends_with(" 0")), "{step}");
    }
}

#[tokio::test]
async fn two_instances_on_one_folder_add_exactly_one_key_and_both_sign_with_it() {
    let app = spawn_app_with(rotating(3, 3)).await;
    let other = second_instance(&app, rotating(3, 3)).await;
    let first = state(&app).active.unwrap();
    let refresh = app.signed_up(&unique_user("rotation-two")).await.refresh_token();

    let s = state_until(&app, "a key added", |s| !published(s).is_empty()).await;
    let new = published(&s).remove(0);
    // Until it is activated, no second key is added by either instance.
    loop {
        let s = state(&app);
        assert_eq!(s.keys.len(), 2, "exactly one key added: {s:?}");
        if s.active.as_deref() == Some(new.as_str()) {
            break;
        }
        assert_eq!(s.active.as_deref(), Some(first.as_str()), "{s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refresh = refresh_until_signed_by(&app, &app.address, refresh, &new).await;
    refresh_until_signed_by(&app, &other, refresh, &new).await;
    // The next rotation is due 3 s after the activation: by now at most one more key.
    let s = state(&app);
    assert!(s.keys.len() <= 3, "{s:?}");
}

#[tokio::test]
async fn a_lock_left_by_a_crashed_holder_delays_the_rotation_until_it_expires() {
    let app = spawn_app_with(rotating(4, 1)).await;
    let taken = app
        .store()
        .try_lock(KEY_ROTATION_LOCK, "crashed-holder", Duration::from_secs(6))
        .await
        .unwrap();
    let locked_at = Instant::now();
    assert!(taken);
    assert_eq!(state(&app).keys.len(), 1, "no key added before the lock was taken");

    state_until(&app, "a key added once the lock expired", |s| s.keys.len() == 2).await;
    let waited = locked_at.elapsed();
    assert!(waited >= Duration::from_millis(5500), "added {waited:?} after the lock was taken");
}

#[tokio::test]
async fn the_rotation_lock_is_renewed_and_released_only_by_its_holder() {
    // No interval: the app itself never takes the lock; this test is its only user.
    let app = spawn_app().await;
    let store = app.store();
    let long = Duration::from_secs(30);
    assert!(store.try_lock(KEY_ROTATION_LOCK, "holder", long).await.unwrap());
    assert!(!store.try_lock(KEY_ROTATION_LOCK, "other", long).await.unwrap(), "taken twice");

    // renew_lock.lua: only the holder's token extends it, here to a short TTL.
    let short = Duration::from_secs(3);
    assert!(!store.renew_lock(KEY_ROTATION_LOCK, "other", short).await.unwrap());
    assert!(store.renew_lock(KEY_ROTATION_LOCK, "holder", short).await.unwrap());
    // unlock.lua: another token leaves it in place.
    assert!(!store.unlock(KEY_ROTATION_LOCK, "other").await.unwrap());
    assert!(!store.try_lock(KEY_ROTATION_LOCK, "other", long).await.unwrap(), "still held");
    // The renewal set the TTL: it is gone within seconds (the 30 s it was taken with would
    // still hold it), and then neither script finds it to be the holder's.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !store.try_lock(KEY_ROTATION_LOCK, "next", long).await.unwrap() {
        assert!(Instant::now() < deadline, "the renewed lock expires after its new TTL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!store.renew_lock(KEY_ROTATION_LOCK, "holder", long).await.unwrap());
    assert!(!store.unlock(KEY_ROTATION_LOCK, "holder").await.unwrap());

    // The holder's unlock releases it at once.
    assert!(store.unlock(KEY_ROTATION_LOCK, "next").await.unwrap());
    assert!(store.try_lock(KEY_ROTATION_LOCK, "last", long).await.unwrap(), "free after unlock");
}

#[tokio::test]
async fn without_an_interval_nothing_rotates() {
    let app = spawn_app_with(|s| {
        rotating(1, 1)(s);
        s.key_rotation_interval = None;
    })
    .await;
    let before = state(&app);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(state(&app), before);
}
