//! End-to-end: the real `auth-server` and `api-server` binaries as processes, a real Redis.
//! Needs `cargo build --workspace --bins` first (scripts/test does it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::{RedisServer, binary, free_port, wait_for_port};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// The real server binaries, started as an operator would (see [`test_support::start_server`]).
pub(crate) use test_support::start_server as start;

pub(crate) async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client.get(format!("{base}/readyz")).send().await
            && resp.status() == StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} not ready after 30s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn post(
    client: &reqwest::Client,
    url: String,
    body: Value,
) -> (StatusCode, Value) {
    let resp = client.post(url).json(&body).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(crate) async fn articles(
    client: &reqwest::Client,
    api: &str,
    token: &str,
) -> (StatusCode, Value) {
    let resp = client.get(format!("{api}/articles")).bearer_auth(token).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_real_servers_carry_a_session_from_login_to_logout_and_survive_an_auth_outage() {
    // Two api-servers: one on the keys folder, one on the JWKS URL.
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let (auth_port, api_port) = (free_port(), free_port());
    let auth = format!("http://127.0.0.1:{auth_port}");
    let api = format!("http://127.0.0.1:{api_port}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

    let mut auth_server = start(
        "auth-server",
        &[
            ("AUTH_BIND", format!("127.0.0.1:{auth_port}")),
            ("AUTH_REDIS_URL", redis.url()),
            ("AUTH_KEYS_DIR", keys.display().to_string()),
            ("RUST_LOG", "debug".into()),
        ],
        &dir.path().join("auth.log"),
    );
    wait_for_port(auth_port, Duration::from_secs(30));
    wait_ready(&client, &auth).await;

    let api_log = dir.path().join("api.log");
    let _api_server = start(
        "api-server",
        &[
            ("API_BIND", format!("127.0.0.1:{api_port}")),
            ("API_KEYS_DIR", keys.join("public").display().to_string()),
            ("RUST_LOG", "debug".into()),
        ],
        &api_log,
    );
    wait_for_port(api_port, Duration::from_secs(30));
    wait_ready(&client, &api).await;

    // A second api-server takes its keys from the auth server's JWKS instead of the folder.
    let jwks_port = free_port();
    let api_jwks = format!("http://127.0.0.1:{jwks_port}");
    let _api_jwks_server = start(
        "api-server",
        &[
            ("API_BIND", format!("127.0.0.1:{jwks_port}")),
            ("API_JWKS_URL", format!("{auth}/.well-known/jwks.json")),
        ],
        &dir.path().join("api-jwks.log"),
    );
    wait_for_port(jwks_port, Duration::from_secs(30));
    wait_ready(&client, &api_jwks).await;

    // Register and log in on the auth server.
    let (status, body) = post(
        &client,
        format!("{auth}/register"),
        json!({"username": "alice", "password": PASSWORD, "name": "Alice"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, login) =
        post(&client, format!("{auth}/login"), json!({"username": "alice", "password": PASSWORD}))
            .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let access = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();

    // Read own articles on the api-server.
    let (status, list) = articles(&client, &api, &access).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list = list.as_array().unwrap().clone();
    assert!(!list.is_empty());
    assert!(list.iter().all(|a| a["author"] == "alice"), "{list:?}");
    let me: Value = client
        .get(format!("{api}/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["preferred_username"], "alice");
    assert_eq!(me["name"], "Alice");

    // Refresh, and read again with the new access token.
    let (status, refreshed) =
        post(&client, format!("{auth}/token"), json!({"refresh_token": refresh})).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let access2 = refreshed["access_token"].as_str().unwrap().to_owned();
    let refresh2 = refreshed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    let (status, again) = articles(&client, &api, &access2).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again.as_array().unwrap(), &list);
    let (status, via_jwks) = articles(&client, &api_jwks, &access2).await;
    assert_eq!(status, StatusCode::OK, "{via_jwks}");
    assert_eq!(via_jwks.as_array().unwrap(), &list);

    // Log out: the refresh token is dead.
    let resp = client
        .post(format!("{auth}/logout"))
        .json(&json!({"refresh_token": refresh2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, body) =
        post(&client, format!("{auth}/token"), json!({"refresh_token": refresh2})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");

    // Redis and the auth server go down; the api-server still verifies with public keys alone.
    redis.stop();
    assert!(auth_server.terminate(Duration::from_secs(10)).is_some(), "auth-server did not stop");
    assert!(client.get(format!("{auth}/healthz")).send().await.is_err());
    let (status, still) = articles(&client, &api, &access2).await;
    assert_eq!(status, StatusCode::OK, "{still}");
    assert_eq!(still.as_array().unwrap(), &list);
    let resp = client.get(format!("{api}/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The JWKS-fed server keeps its last good set while the JWKS is unreachable.
    let (status, still) = articles(&client, &api_jwks, &access2).await;
    assert_eq!(status, StatusCode::OK, "{still}");

    // Even at debug level, the api-server never logged a token.
    let log = std::fs::read_to_string(&api_log).unwrap();
    for secret in [&access, &access2, &refresh, &refresh2] {
        assert!(!log.contains(secret.as_str()), "a token reached the api-server log");
    }
    // Signatures alone must not appear either (a log could cut a token into pieces).
    let signature = access2.rsplit('.').next().unwrap();
    assert!(!log.contains(signature));
}

#[test]
fn a_bad_setting_stops_the_api_server_with_one_line_naming_it() {
    let out = Command::new(binary("api-server"))
        .env_clear()
        .env("API_LEEWAY", "a while")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("API_LEEWAY"), "{stderr}");
}

#[tokio::test]
async fn healthcheck_exits_zero_only_when_the_server_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("public");
    std::fs::create_dir_all(&keys).unwrap();
    let port = free_port();
    let env =
        [("API_BIND", format!("127.0.0.1:{port}")), ("API_KEYS_DIR", keys.display().to_string())];
    let healthcheck = || {
        let mut cmd = Command::new(binary("api-server"));
        cmd.env_clear().arg("healthcheck");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap()
    };
    // Nothing listening.
    assert!(!healthcheck().success());
    // Listening but no key: not ready.
    let _server = start("api-server", &env, &dir.path().join("api.log"));
    wait_for_port(port, Duration::from_secs(30));
    assert!(!healthcheck().success());
    // A key appears: ready within the poll interval.
    crate::insecure_test_keys::TestKey::trusted().write_public(&keys);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !healthcheck().success() {
        assert!(Instant::now() < deadline, "healthcheck never passed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
