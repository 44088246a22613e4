//! The `auth-server` binary: settings from the environment, the access log, the admin CLI.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use test_support::{ChildGuard, RedisServer, free_port, wait_for_port};

use crate::helpers::{PASSWORD, claims_of, read, spawn_app, unique_user};

const BIN: &str = env!("CARGO_BIN_EXE_auth-server");

fn auth_server(redis: &RedisServer, keys: &std::path::Path, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTH_BIND", format!("127.0.0.1:{port}"))
        .env("AUTH_REDIS_URL", redis.url())
        .env("AUTH_KEYS_DIR", keys)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null());
    cmd
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let out = Command::new(BIN)
        .env("AUTH_ACCESS_TOKEN_TTL", "fifteen")
        .env("AUTH_KEYS_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("AUTH_ACCESS_TOKEN_TTL"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_from_env_settings_and_its_log_holds_no_secret() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("auth.log");
    let port = free_port();
    let mut child = ChildGuard(
        auth_server(&redis, keys.path(), port)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, Duration::from_secs(20));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    // healthcheck answers 0 once Redis is reachable.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = Command::new(BIN)
            .arg("healthcheck")
            .env("AUTH_BIND", format!("0.0.0.0:{port}"))
            .status()
            .unwrap();
        if status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "healthcheck never succeeded");
        std::thread::sleep(Duration::from_millis(100));
    }

    let username = unique_user("binary");
    let res = client
        .post(format!("{base}/register"))
        .json(&json!({ "username": username, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let login = read(
        client
            .post(format!("{base}/login"))
            .json(&json!({ "username": username, "password": PASSWORD }))
            .send()
            .await
            .unwrap(),
    )
    .await
    .tokens();
    let first = login.refresh_token.clone().unwrap();
    // A client that puts the token in the query string must not get it logged either.
    let rotated = read(
        client
            .post(format!("{base}/token?refresh_token={first}"))
            .header("cookie", format!("refresh_token={first}"))
            .send()
            .await
            .unwrap(),
    )
    .await
    .refresh_token();
    let res = client
        .post(format!("{base}/logout/all"))
        .bearer_auth(&login.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = client
        .post(format!("{base}/login"))
        .json(&json!({ "username": username, "password": "a wrong password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let status = child.terminate(Duration::from_secs(10));
    assert!(status.is_some(), "the server stops on SIGTERM");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("\"POST /login\" 200"), "{log}");
    assert!(log.contains("\"POST /token\" 200"), "{log}");
    for secret in [PASSWORD, "a wrong password", &first, &rotated, &login.access_token] {
        assert!(!log.contains(secret), "the log holds a secret: {secret}\n{log}");
    }
    let signature = login.access_token.rsplit('.').next().unwrap();
    assert!(!log.contains(signature));
    assert!(!log.contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_roles_makes_an_admin_from_the_next_login() {
    let app = spawn_app().await;
    let username = unique_user("Boss");
    let before = app.signed_up(&username).await.tokens();
    assert_eq!(claims_of(&before.access_token)["roles"], json!(["user"]));

    let out = Command::new(BIN)
        .args(["users", "set-roles", &username, "admin", "user"])
        .envs(app.redis.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert!(String::from_utf8_lossy(&out.stdout).contains("1 session(s) ended"));

    let after = app.login(&username).await.tokens();
    assert_eq!(claims_of(&after.access_token)["roles"], json!(["admin", "user"]));
    // The sessions of the old roles ended (a demoted admin must not keep refreshing).
    let refreshed = app.refresh(before.refresh_token.as_deref().unwrap()).await;
    assert_eq!(refreshed.error(), "invalid_grant");

    let out = Command::new(BIN)
        .args(["users", "set-roles", "nobody-at-all", "admin"])
        .envs(app.redis.env())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user"));
}
