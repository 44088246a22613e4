//! The running server picks up key changes without a restart: file watch / poll, SIGHUP, and a
//! broken folder that keeps the last good keys.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use auth_server::key_folder::KeyFolder;
use base64::Engine as _;
use serde_json::{Value, json};
use test_support::{ChildGuard, RedisServer, free_port, wait_for_port};

use crate::helpers::{PASSWORD, TestApp, read, spawn_app, unique_user};
use crate::keys_cli::{add, ok, refused, rotate};

const BIN: &str = env!("CARGO_BIN_EXE_auth-server");

/// The `kid` in a JWT's header.
fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap();
    let header: Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn jwks_kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

/// Verifies `jwt` with the key of its `kid` taken from `jwks`, as a JWKS client would.
fn verifies_against(jwt: &str, jwks: &Value) -> Result<(), String> {
    let kid = kid_of(jwt);
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} not in the JWKS"))?;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["articles-api"]);
    validation.set_issuer(&["http://localhost:5000"]);
    jsonwebtoken::decode::<Value>(jwt, &key, &validation).map(|_| ()).map_err(|e| e.to_string())
}

async fn jwks(app: &TestApp) -> Value {
    let reply = app.get("/.well-known/jwks.json").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cache-control"), Some("public, max-age=60"));
    reply.body
}

/// Polls `check` every 50 ms until it holds or `within` has passed.
async fn eventually<F: AsyncFn() -> bool>(within: Duration, check: F) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_by_the_cli_reaches_new_logins_and_the_jwks_within_two_seconds() {
    let app = spawn_app().await;
    let user = unique_user("rotate");
    let before = app.signed_up(&user).await.tokens().access_token;
    let old_kid = kid_of(&before);
    assert_eq!(jwks_kids(&jwks(&app).await), vec![old_kid.clone()]);

    let new_kid = rotate(app.keys_dir.path());
    assert_ne!(new_kid, old_kid);
    let rotated_at = Instant::now();
    let mut both = vec![old_kid.clone(), new_kid.clone()];
    both.sort();
    assert!(
        eventually(Duration::from_secs(2), async || jwks_kids(&jwks(&app).await) == both).await,
        "the JWKS did not list both keys within 2 s"
    );
    let after = app.login(&user).await.tokens().access_token;
    assert_eq!(kid_of(&after), new_kid, "a login {:?} after the rotation", rotated_at.elapsed());

    // Both tokens verify against the JWKS; the server's own verifier knows both keys too.
    let set = jwks(&app).await;
    verifies_against(&before, &set).unwrap();
    verifies_against(&after, &set).unwrap();
    assert_eq!(app.sessions(&before).await.status, 200);
    assert_eq!(app.sessions(&after).await.status, 200);

    // Pruned (once allowed): gone from the JWKS, so a token it signed stops verifying.
    let store = KeyFolder::new(app.keys_dir.path());
    let mut state = store.read_state().unwrap();
    *state.keys.get_mut(&old_kid).unwrap().retired.as_mut().unwrap() -= 3600;
    store.write_state(&state).unwrap();
    ok(app.keys_dir.path(), &["prune"]);
    assert!(
        eventually(Duration::from_secs(2), async || jwks_kids(&jwks(&app).await)
            == vec![new_kid.clone()])
        .await
    );
    assert!(verifies_against(&before, &jwks(&app).await).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_state_or_a_missing_active_key_keeps_the_last_good_keys() {
    let app = spawn_app().await;
    let user = unique_user("broken");
    let kid = kid_of(&app.signed_up(&user).await.tokens().access_token);
    let store = KeyFolder::new(app.keys_dir.path());
    let good_state = std::fs::read(store.state_path()).unwrap();

    // A state naming an active key whose files do not exist.
    let mut state = store.read_state().unwrap();
    let ghost = "G".repeat(43);
    state.keys.insert(ghost.clone(), state.keys[&kid].clone());
    state.active = Some(ghost);
    store.write_state(&state).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(jwks_kids(&jwks(&app).await), vec![kid.clone()]);
    assert_eq!(kid_of(&app.login(&user).await.tokens().access_token), kid);

    // A half-written state.json (as a non-atomic writer would leave it).
    std::fs::write(store.state_path(), &good_state[..good_state.len() / 2]).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(jwks_kids(&jwks(&app).await), vec![kid.clone()]);
    assert_eq!(kid_of(&app.login(&user).await.tokens().access_token), kid);

    // Repaired: the next change is picked up.
    std::fs::write(store.state_path(), &good_state).unwrap();
    let new_kid = rotate(app.keys_dir.path());
    assert!(
        eventually(Duration::from_secs(2), async || {
            jwks_kids(&jwks(&app).await).contains(&new_kid)
        })
        .await
    );
    assert_eq!(kid_of(&app.login(&user).await.tokens().access_token), new_kid);
}

/// The signer statuses running servers left in `keys/private` (`.signer-<instance>.json`).
fn signer_statuses(keys: &Path) -> Vec<Value> {
    std::fs::read_dir(keys.join("private"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            (name.starts_with(".signer-") && name.ends_with(".json")).then(|| {
                let text = std::fs::read_to_string(keys.join("private").join(&name)).unwrap();
                serde_json::from_str(&text).unwrap()
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_keeps_failing_shows_in_readyz_and_metrics_and_stops_prune() {
    let app = spawn_app().await;
    let user = unique_user("failing");
    let old = kid_of(&app.signed_up(&user).await.tokens().access_token);
    let dir = app.keys_dir.path();
    let store = KeyFolder::new(dir);
    let good_state = std::fs::read(store.state_path()).unwrap();
    let failed_reloads = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("auth_key_reloads_total{outcome=\"failed\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let failed_before = failed_reloads(&app.get("/metrics").await.text);
    assert!(
        eventually(Duration::from_secs(3), async || signer_statuses(dir)
            .iter()
            .any(|s| s["kid"] == old.as_str()))
        .await,
        "no signer status naming {old}"
    );

    // A new key becomes the active one in the state, but its private key cannot be read
    // (here: garbage), and the old key's retirement is long past: the server must go on
    // signing with the old key, say so, and stop `keys prune` from removing it.
    let new = add(dir);
    std::fs::write(store.private_path(&new), b"-----BEGIN PRIVATE KEY-----\ngarbage\n").unwrap();
    let mut state = store.read_state().unwrap();
    state.active = Some(new.clone());
    state.keys.get_mut(&old).unwrap().retired = Some(1);
    store.write_state(&state).unwrap();

    // Not at once (a write in progress is no failure), but within seconds: 503 with the reason.
    let started = Instant::now();
    let reply = loop {
        let reply = app.get("/readyz").await;
        if reply.status == 503 {
            break reply;
        }
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert!(started.elapsed() < Duration::from_secs(8), "/readyz still 200");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(started.elapsed() >= Duration::from_secs(2), "503 before the failure persisted");
    assert_eq!(reply.error(), "unavailable");
    let description = reply.body["error_description"].as_str().unwrap();
    assert!(description.contains(&format!("{new}.pem")), "{description}");
    assert!(description.contains(&format!("still signing with {old}")), "{description}");
    let path = dir.to_str().unwrap();
    assert!(!description.contains(path) && !description.contains('/'), "a path: {description}");
    assert!(reply.header("retry-after").is_some());
    assert_eq!(kid_of(&app.login(&user).await.tokens().access_token), old);
    assert!(failed_reloads(&app.get("/metrics").await.text) >= failed_before + 1.0);
    assert!(
        signer_statuses(dir).iter().any(|s| s["kid"] == old.as_str()
            && s["reload_failing"].as_str().is_some_and(|r| r.contains(&new))),
        "{:?}",
        signer_statuses(dir)
    );

    let err = refused(dir, &["prune"], &[]);
    assert!(err.contains("refusing to prune") && err.contains(&old), "{err}");
    assert!(store.public_path(&old).is_file() && store.private_path(&old).is_file());

    // Repaired: ready again, and the status follows.
    std::fs::write(store.state_path(), &good_state).unwrap();
    assert!(
        eventually(Duration::from_secs(3), async || app.get("/readyz").await.status == 200).await,
        "not ready again after the repair"
    );
    // The status file is rewritten by the same reload, just after readiness flips.
    assert!(
        eventually(Duration::from_secs(3), async || signer_statuses(dir)
            .iter()
            .all(|s| s["reload_failing"].is_null()))
        .await,
        "{:?}",
        signer_statuses(dir)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_key_whose_file_breaks_leaves_the_jwks_after_a_grace_and_a_removed_one_at_once()
{
    let app = spawn_app().await;
    let dir = app.keys_dir.path();
    let store = KeyFolder::new(dir);
    let active = store.read_state().unwrap().active.unwrap();
    let new = add(dir);
    assert!(
        eventually(Duration::from_secs(2), async || jwks_kids(&jwks(&app).await).contains(&new))
            .await
    );
    let pem = std::fs::read(store.public_path(&new)).unwrap();

    // Rewritten in place and caught half-written: still published for the grace, then not.
    std::fs::write(store.public_path(&new), &pem[..pem.len() / 2]).unwrap();
    let broken = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(jwks_kids(&jwks(&app).await).contains(&new), "dropped within the grace");
    assert!(
        eventually(Duration::from_secs(5), async || !jwks_kids(&jwks(&app).await).contains(&new))
            .await,
        "still published {:?} after its file broke",
        broken.elapsed()
    );
    assert!(broken.elapsed() >= Duration::from_secs(3), "{:?}", broken.elapsed());

    // Whole again: back. Removed: gone at the next read, with no grace.
    std::fs::write(store.public_path(&new), &pem).unwrap();
    assert!(
        eventually(Duration::from_secs(2), async || jwks_kids(&jwks(&app).await).contains(&new))
            .await
    );
    std::fs::remove_file(store.public_path(&new)).unwrap();
    assert!(
        eventually(Duration::from_secs(2), async || jwks_kids(&jwks(&app).await)
            == vec![active.clone()])
        .await
    );
}

/// The real binary on a free port, logging to a file.
struct Server {
    child: ChildGuard,
    base: String,
    log: std::path::PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Server {
    fn start(redis: &RedisServer, keys: &Path) -> Self {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("auth.log");
        let port = free_port();
        let child = ChildGuard(
            Command::new(BIN)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("AUTH_BIND", format!("127.0.0.1:{port}"))
                .env("AUTH_REDIS_URL", redis.url())
                .env("AUTH_KEYS_DIR", keys)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_for_port(port, Duration::from_secs(20));
        let server =
            Self { child, base: format!("http://127.0.0.1:{port}"), log, _log_dir: log_dir };
        // SIGHUP before the handler is installed would end the process.
        assert!(server.wait_for_log("watching", Duration::from_secs(10)), "{}", server.log_text());
        server
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.0.id().to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    }

    async fn jwks_kids(&self, client: &reqwest::Client) -> Vec<String> {
        let res = client.get(format!("{}/.well-known/jwks.json", self.base)).send().await.unwrap();
        jwks_kids(&read(res).await.body)
    }

    async fn login_kid(&self, client: &reqwest::Client, user: &str) -> String {
        let body = json!({ "username": user, "password": PASSWORD });
        let res = client.post(format!("{}/login", self.base)).json(&body).send().await.unwrap();
        kid_of(&read(res).await.tokens().access_token)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_makes_the_running_binary_reload_its_keys() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let mut server = Server::start(&redis, keys.path());
    let client = reqwest::Client::new();
    let user = unique_user("hup");
    let res = client
        .post(format!("{}/register", server.base))
        .json(&json!({ "username": user, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let old_kid = server.login_kid(&client, &user).await;
    assert!(server.log_text().contains(&format!("signing with key {old_kid}")));

    server.signal("-HUP");
    assert!(
        server.wait_for_log("key reload (SIGHUP) ok: active", Duration::from_secs(5)),
        "{}",
        server.log_text()
    );
    assert!(server.child.0.try_wait().unwrap().is_none(), "SIGHUP ended the server");

    let new_kid = rotate(keys.path());
    server.signal("-HUP");
    assert!(server.wait_for_log(&format!("now {new_kid}, was {old_kid}"), Duration::from_secs(5)));
    assert_eq!(server.login_kid(&client, &user).await, new_kid);
    let kids = server.jwks_kids(&client).await;
    assert!(kids.contains(&old_kid) && kids.contains(&new_kid), "{kids:?}");

    // Logs name kids, never key material.
    let log = server.log_text();
    assert!(!log.contains("BEGIN"), "{log}");
    let pem = std::fs::read_to_string(KeyFolder::new(keys.path()).public_path(&new_kid)).unwrap();
    let body_line = pem.lines().nth(1).unwrap();
    assert!(!log.contains(body_line));
    assert_eq!(signer_statuses(keys.path()).len(), 1, "the running server's signer status");
    server.child.terminate(Duration::from_secs(10));
    // A graceful stop takes its signer status away.
    assert!(signer_statuses(keys.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_pem_in_public_is_logged_and_signing_and_the_jwks_keep_working() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let mut server = Server::start(&redis, keys.path());
    let client = reqwest::Client::new();
    let user = unique_user("garbage");
    let res = client
        .post(format!("{}/register", server.base))
        .json(&json!({ "username": user, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let kid = server.login_kid(&client, &user).await;

    let public = KeyFolder::new(keys.path()).public_dir();
    std::fs::write(public.join("garbage.pem"), b"-----BEGIN PUBLIC KEY-----\nnot a key\n").unwrap();
    assert!(
        server.wait_for_log("garbage.pem: not a usable public key", Duration::from_secs(3)),
        "{}",
        server.log_text()
    );
    assert_eq!(server.jwks_kids(&client).await, vec![kid.clone()]);
    assert_eq!(server.login_kid(&client, &user).await, kid);

    // A rotation still goes through with the garbage file there.
    let new_kid = rotate(keys.path());
    let deadline = Instant::now() + Duration::from_secs(2);
    while !server.jwks_kids(&client).await.contains(&new_kid) {
        assert!(Instant::now() < deadline, "{}", server.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.login_kid(&client, &user).await, new_kid);
    server.child.terminate(Duration::from_secs(10));
}
