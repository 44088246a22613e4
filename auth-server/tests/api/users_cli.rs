//! `auth-server users ...` (the real binary against the test app's Redis), and a login racing
//! the changes those commands make.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use access_token::{FolderSource, KeySet, TrustedKeys};
use auth_server::error::SessionError;
use auth_server::key_folder::KeyFolder;
use auth_server::revocations::Publisher;
use auth_server::sessions::{ClientInfo, Policy, Sessions};
use auth_server::signing_keys::LiveSigningKeys;
use auth_server::store::Store;
use serde_json::{Value, json};

use crate::helpers::{TestApp, claims_of, listed, sid_digest, spawn_app, unique_user};

const BIN: &str = env!("CARGO_BIN_EXE_auth-server");

fn users(app: &TestApp, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("users")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(app.redis.env())
        .env("AUTH_KEYS_DIR", app.keys_dir.path())
        .output()
        .unwrap()
}

fn ok(app: &TestApp, args: &[&str]) -> String {
    let out = users(app, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn sid_of(access_token: &str) -> String {
    claims_of(access_token)["sid"].as_str().unwrap().to_owned()
}

async fn is_listed(app: &TestApp, access_token: &str) -> bool {
    let digest = sid_digest(&sid_of(access_token));
    listed(&app.revocations("").await).iter().any(|(d, _)| *d == digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_every_user_with_its_state_as_a_table_or_json() {
    let app = spawn_app().await;
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    app.register(&alice).await;
    let reply = app
        .post_json(
            "/register",
            &json!({ "username": bob, "password": crate::helpers::PASSWORD, "name": "Bob B." }),
        )
        .await;
    assert_eq!(reply.status, 201);
    ok(&app, &["disable", &bob]);

    let table = ok(&app, &["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["USERNAME", "STATE", "ROLES", "CREATED", "ID", "NAME"]);
    let row = |name: &str| -> Vec<&str> {
        lines.iter().find(|l| l.starts_with(name)).unwrap().split_whitespace().collect()
    };
    assert_eq!(&row(&alice)[1..3], ["enabled", "user"]);
    assert_eq!(row(&alice)[5], "-");
    assert_eq!(&row(&bob)[1..3], ["disabled", "user"]);
    assert_eq!(row(&bob)[5..].join(" "), "Bob B.");
    assert!(row(&alice)[3].ends_with('Z'), "RFC 3339 UTC: {}", row(&alice)[3]);

    let doc: Value = serde_json::from_str(&ok(&app, &["list", "--json"])).unwrap();
    let users = doc.as_array().unwrap();
    assert_eq!(users.len(), 2);
    let by_name = |name: &str| users.iter().find(|u| u["username"] == name).unwrap();
    assert_eq!(by_name(&bob)["disabled"], true);
    assert_eq!(by_name(&bob)["name"], "Bob B.");
    assert_eq!(by_name(&alice)["disabled"], false);
    assert_eq!(by_name(&alice)["roles"], json!(["user"]));
    assert!(by_name(&alice)["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(by_name(&alice)["id"].as_str().unwrap().len(), 36);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_ends_and_publishes_every_session_and_refuses_logins_until_enable() {
    let app = spawn_app().await;
    let username = unique_user("disabled");
    let one = app.signed_up(&username).await.tokens();
    let two = app.login(&username).await.tokens();

    let out = ok(&app, &["disable", &username]);
    assert!(out.contains("disabled; 2 session(s) ended"), "{out}");
    for ended in [&one, &two] {
        let refresh = app.refresh(ended.refresh_token.as_deref().unwrap()).await;
        assert_eq!(refresh.status, 400);
        assert_eq!(refresh.error(), "invalid_grant");
        assert!(is_listed(&app, &ended.access_token).await);
        assert_eq!(app.sessions(&ended.access_token).await.status, 401);
    }
    // The right password is refused exactly like a wrong one.
    let right = app.login(&username).await;
    let wrong = app
        .post_json("/login", &json!({ "username": username, "password": "not the password" }))
        .await;
    assert_eq!(right.status, 401, "{}", right.text);
    assert_eq!(right.error(), "invalid_credentials");
    assert_eq!(right.text, wrong.text);

    let out = ok(&app, &["enable", &username]);
    assert!(out.contains("enabled; logins allowed"), "{out}");
    assert_eq!(app.login(&username).await.status, 200);
    assert_eq!(
        app.refresh(one.refresh_token.as_deref().unwrap()).await.error(),
        "invalid_grant",
        "ended sessions stay ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_lists_them_and_logout_ends_and_publishes_them() {
    let app = spawn_app().await;
    let username = unique_user("operated");
    let one = app.signed_up(&username).await.tokens();
    let two = app.login(&username).await.tokens();

    let table = ok(&app, &["sessions", &username]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("SID"), "{table}");
    assert!(lines[1].starts_with(&sid_of(&two.access_token)), "newest first: {table}");
    assert!(lines[2].starts_with(&sid_of(&one.access_token)));
    assert!(lines[1].contains("127.0.0.0/24"), "{table}");

    let doc: Value = serde_json::from_str(&ok(&app, &["sessions", &username, "--json"])).unwrap();
    let mut http = app.sessions(&one.access_token).await.body;
    for item in http.as_array_mut().unwrap() {
        item["current"] = json!(false);
    }
    assert_eq!(doc, http, "the same items as GET /sessions");

    let out = ok(&app, &["logout", &username]);
    assert!(out.contains("2 session(s) ended"), "{out}");
    for ended in [&one, &two] {
        assert!(is_listed(&app, &ended.access_token).await);
        assert_eq!(
            app.refresh(ended.refresh_token.as_deref().unwrap()).await.error(),
            "invalid_grant"
        );
    }
    assert!(ok(&app, &["sessions", &username]).contains("no live sessions"));
    assert_eq!(app.login(&username).await.status, 200, "logout does not disable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_roles_ends_and_publishes_the_sessions_and_unknown_users_are_refused() {
    let app = spawn_app().await;
    let username = unique_user("promoted");
    let before = app.signed_up(&username).await.tokens();
    let out = ok(&app, &["set-roles", &username, "admin", "user"]);
    assert!(out.contains("1 session(s) ended"), "{out}");
    assert!(is_listed(&app, &before.access_token).await, "a demoted admin's tokens are refused");
    for args in [
        &["disable", "nobody-at-all"][..],
        &["enable", "nobody-at-all"],
        &["sessions", "nobody-at-all"],
        &["logout", "nobody-at-all"],
        &["set-roles", "nobody-at-all", "admin"],
        &["disable", "Not A Name!"],
    ] {
        let out = users(&app, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("no user") || stderr.contains("username"), "{args:?}: {stderr}");
    }
}

/// The app's own `Sessions`, built as `Application::build` does, to drive a login step by step.
fn sessions_of(app: &TestApp, store: &Store) -> Sessions {
    let folder = KeyFolder::new(app.keys_dir.path());
    let ring = folder.load_or_init().unwrap();
    let trusted = Arc::new(TrustedKeys::new(
        FolderSource::new(folder.public_dir()),
        KeySet::from_keys(ring.public_keys().iter().cloned()),
    ));
    let keys = Arc::new(LiveSigningKeys::new(KeyFolder::new(app.keys_dir.path()), ring, trusted));
    let policy = Policy {
        issuer: "http://localhost:5000".into(),
        audience: "articles-api".into(),
        access_ttl: Duration::from_secs(900),
        refresh_ttl: Duration::from_secs(86_400),
        max_age: Duration::from_secs(30 * 86_400),
        grace: Duration::from_secs(10),
        max_rotations: 60,
        rotation_window: Duration::from_secs(3600),
    };
    let publisher = Publisher::new(store.clone(), policy.access_ttl);
    Sessions::new(store.clone(), keys, policy, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_racing_a_disable_or_a_role_change_does_not_survive_it() {
    let app = spawn_app().await;
    let username = unique_user("racer");
    app.register(&username).await;
    let store = app.store();
    let sessions = sessions_of(&app, &store);
    let client = ClientInfo::default();

    // The login read the user (its password checked) before the disable; it stores its
    // session after it: the session is dropped and the login refused like bad credentials.
    let stale = store.get_user(&username).await.unwrap().unwrap();
    ok(&app, &["disable", &username]);
    let raced = sessions.login(&stale, &client).await;
    assert!(matches!(raced, Err(SessionError::UserChanged { disabled: true })), "{raced:?}");
    let api: access_token::ApiError = raced.unwrap_err().into();
    assert_eq!(api.code().as_str(), "invalid_credentials");
    assert!(store.list_sessions(&stale.id).await.unwrap().is_empty(), "nothing survives");

    // A role change: dropped too, answered 503 (retry: the next login has the new roles).
    ok(&app, &["enable", &username]);
    let stale = store.get_user(&username).await.unwrap().unwrap();
    ok(&app, &["set-roles", &username, "admin"]);
    let raced = sessions.login(&stale, &client).await;
    assert!(matches!(raced, Err(SessionError::UserChanged { disabled: false })), "{raced:?}");
    let api: access_token::ApiError = raced.unwrap_err().into();
    assert_eq!(api.code().as_str(), "unavailable");
    assert!(store.list_sessions(&stale.id).await.unwrap().is_empty());

    // Read after the change, the login goes through.
    let fresh = store.get_user(&username).await.unwrap().unwrap();
    let issued = sessions.login(&fresh, &client).await.unwrap();
    assert_eq!(claims_of(&issued.access_token)["roles"], json!(["admin"]));
}
