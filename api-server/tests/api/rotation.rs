//! Key rotation with the real binaries: the auth server, its `keys` CLI on the same keys
//! folder, the api-server on that folder or on the JWKS, and a real Redis. Needs
//! `cargo build --workspace --bins` first (scripts/test does it).
//!
//! Timing: access tokens live [`ACCESS_TTL`] and `keys prune` runs with [`PRUNE_LEEWAY`], so a
//! key may be pruned about 5 s after it was retired. The api-server gets a large
//! [`API_LEEWAY`], so the token signed before the first rotation is still acceptable by its
//! `exp` when its key is pruned: its refusal can only be the prune's doing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::{ChildGuard, RedisServer, binary, free_port, wait_for_port};

use crate::e2e::{PASSWORD, articles, post, start, wait_ready};
use crate::helpers::assert_invalid_token;
use crate::insecure_test_keys::{TestKey, claims_for};

/// `AUTH_ACCESS_TOKEN_TTL` of the auth server and of the `keys` CLI.
const ACCESS_TTL: &str = "3s";
/// `keys prune --leeway`.
const PRUNE_LEEWAY: &str = "1s";
/// The api-server's `API_LEEWAY`: longer than the whole test, so no token expires in it.
const API_LEEWAY: &str = "60s";
/// `keys rotate` runs this many times, [`PAUSE`] apart.
const ROTATIONS: usize = 5;
const PAUSE: Duration = Duration::from_secs(2);
/// Concurrent clients of the load, each doing at most [`MAX_ROUNDS`] rounds.
const CLIENTS: usize = 4;
const MAX_ROUNDS: usize = 300;
/// What the api-server says about a token whose key it does not have.
const UNKNOWN_KEY: &str = "signing key is unknown";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeysVia {
    Folder,
    Jwks,
}

/// Redis, the auth server and an api-server, on a fresh keys folder.
struct Stack {
    _dir: tempfile::TempDir,
    _redis: RedisServer,
    keys: PathBuf,
    auth: String,
    api: String,
    api_log: PathBuf,
    client: reqwest::Client,
    auth_server: ChildGuard,
    api_server: ChildGuard,
}

impl Stack {
    async fn start(via: KeysVia) -> Self {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let (auth_port, api_port) = (free_port(), free_port());
        let auth = format!("http://127.0.0.1:{auth_port}");
        let api = format!("http://127.0.0.1:{api_port}");
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

        let auth_server = start(
            "auth-server",
            &[
                ("AUTH_BIND", format!("127.0.0.1:{auth_port}")),
                ("AUTH_REDIS_URL", redis.url()),
                ("AUTH_KEYS_DIR", keys.display().to_string()),
                ("AUTH_ACCESS_TOKEN_TTL", ACCESS_TTL.into()),
                ("RUST_LOG", "info".into()),
            ],
            &dir.path().join("auth.log"),
        );
        wait_for_port(auth_port, Duration::from_secs(30));
        wait_ready(&client, &auth).await;

        let keys_from = match via {
            KeysVia::Folder => ("API_KEYS_DIR", keys.join("public").display().to_string()),
            KeysVia::Jwks => ("API_JWKS_URL", format!("{auth}/.well-known/jwks.json")),
        };
        let api_log = dir.path().join("api.log");
        let api_server = start(
            "api-server",
            &[
                ("API_BIND", format!("127.0.0.1:{api_port}")),
                keys_from,
                ("API_LEEWAY", API_LEEWAY.into()),
                ("RUST_LOG", "info".into()),
            ],
            &api_log,
        );
        wait_for_port(api_port, Duration::from_secs(30));
        wait_ready(&client, &api).await;
        Self { _dir: dir, _redis: redis, keys, auth, api, api_log, client, auth_server, api_server }
    }

    async fn register(&self, username: &str) {
        let (status, body) = post(
            &self.client,
            format!("{}/register", self.auth),
            json!({"username": username, "password": PASSWORD}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn login(&self, username: &str) -> Value {
        let (status, body) = post(
            &self.client,
            format!("{}/login", self.auth),
            json!({"username": username, "password": PASSWORD}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    fn api_log(&self) -> String {
        std::fs::read_to_string(&self.api_log).unwrap_or_default()
    }

    fn stop(mut self) {
        assert!(self.api_server.terminate(Duration::from_secs(10)).is_some());
        assert!(self.auth_server.terminate(Duration::from_secs(10)).is_some());
    }
}

/// Runs `auth-server keys --keys-dir <keys> <args>` with the auth server's token lifetime
/// (async, so the load goes on meanwhile).
async fn keys_cli(keys: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(binary("auth-server"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTH_ACCESS_TOKEN_TTL", ACCESS_TTL)
        .arg("keys")
        .arg("--keys-dir")
        .arg(keys)
        .args(args)
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `keys list --json`: the active kid and the state of every kid.
async fn key_states(keys: &Path) -> (String, Vec<(String, String)>) {
    let out = keys_cli(keys, &["list", "--json"]).await;
    assert!(out.status.success(), "keys list: {}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let states = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kid"].as_str().unwrap().to_owned(), k["state"].as_str().unwrap().to_owned()))
        .collect();
    (doc["active"].as_str().unwrap().to_owned(), states)
}

/// A JWT segment, decoded.
fn segment(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn kid_of(token: &str) -> String {
    segment(token, 0)["kid"].as_str().unwrap().to_owned()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// One client of the load: logs in, then refreshes its session and reads its articles in a
/// loop (logging in again every fourth round), until `stop` or [`MAX_ROUNDS`]. Every answer
/// that is not a 200 is recorded in `failures`.
async fn client_loop(
    client: reqwest::Client,
    auth: String,
    api: String,
    username: String,
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicUsize>,
) {
    let fail = |what: &str, status: StatusCode, body: &Value| {
        failures.lock().unwrap().push(format!("{username} {what}: {status} {body}"));
    };
    let mut refresh: Option<String> = None;
    for round in 0..MAX_ROUNDS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if round % 4 == 0 || refresh.is_none() {
            let (status, body) = post(
                &client,
                format!("{auth}/login"),
                json!({"username": username, "password": PASSWORD}),
            )
            .await;
            requests.fetch_add(1, Ordering::Relaxed);
            if status != StatusCode::OK {
                fail("login", status, &body);
                refresh = None;
                continue;
            }
            let (status, list) =
                articles(&client, &api, body["access_token"].as_str().unwrap()).await;
            requests.fetch_add(1, Ordering::Relaxed);
            if status != StatusCode::OK {
                fail("read after login", status, &list);
            }
            refresh = body["refresh_token"].as_str().map(str::to_owned);
        }
        let Some(token) = refresh.take() else { continue };
        let (status, body) =
            post(&client, format!("{auth}/token"), json!({"refresh_token": token})).await;
        requests.fetch_add(1, Ordering::Relaxed);
        if status != StatusCode::OK {
            fail("refresh", status, &body);
            continue;
        }
        refresh = body["refresh_token"].as_str().map(str::to_owned);
        let (status, list) = articles(&client, &api, body["access_token"].as_str().unwrap()).await;
        requests.fetch_add(1, Ordering::Relaxed);
        if status != StatusCode::OK {
            fail("read after refresh", status, &list);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// GET /articles with `token` until it is refused, within `within`: every answer before is a
/// 200, the refusal is a 401 `invalid_token` for an unknown key.
async fn wait_refused_as_unknown_key(stack: &Stack, token: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let resp =
            stack.client.get(format!("{}/articles", stack.api)).bearer_auth(token).send().await;
        let resp = resp.unwrap();
        if resp.status() == StatusCode::UNAUTHORIZED {
            let refusal = assert_invalid_token(resp).await;
            assert!(refusal.description.contains(UNKNOWN_KEY), "{refusal:?}");
            return started.elapsed();
        }
        assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
        assert!(started.elapsed() < within, "still accepted {within:?} after its key was pruned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The rotation scenario of issue 4, with the api-server's keys coming `via` the folder or
/// the JWKS.
async fn rotate_five_times_under_load(via: KeysVia) {
    let stack = Stack::start(via).await;
    let users: Vec<String> = (0..CLIENTS).map(|i| format!("load{i}")).collect();
    for user in &users {
        stack.register(user).await;
    }
    stack.register("early").await;

    // A token signed before any rotation, with the first key.
    let early = stack.login("early").await["access_token"].as_str().unwrap().to_owned();
    let first_kid = kid_of(&early);
    let early_exp = segment(&early, 1)["exp"].as_u64().unwrap();
    let (active, states) = key_states(&stack.keys).await;
    assert_eq!(active, first_kid);
    assert_eq!(states.len(), 1, "{states:?}");
    let (status, body) = articles(&stack.client, &stack.api, &early).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The load.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = users
        .iter()
        .map(|user| {
            tokio::spawn(client_loop(
                stack.client.clone(),
                stack.auth.clone(),
                stack.api.clone(),
                user.clone(),
                Arc::clone(&stop),
                Arc::clone(&failures),
                Arc::clone(&requests),
            ))
        })
        .collect();

    let mut kids = vec![first_kid.clone()];
    let mut pruned: Vec<String> = Vec::new();
    let mut first_pruned_in_round = None;
    let mut early_accepted_past_its_exp = false;
    for round in 1..=ROTATIONS {
        let before = requests.load(Ordering::Relaxed);
        tokio::time::sleep(PAUSE).await;

        let out = keys_cli(&stack.keys, &["rotate"]).await;
        assert!(out.status.success(), "keys rotate: {}", text(&out.stderr));
        let (active, states) = key_states(&stack.keys).await;
        let previous = kids.last().unwrap().clone();
        assert_ne!(active, previous, "rotate did not change the active key");
        // Activation retires the previous signer.
        assert!(states.contains(&(previous.clone(), "retired".into())), "{states:?}");
        kids.push(active);

        // Prune whatever may be pruned; nothing due yet is success too.
        let out = keys_cli(&stack.keys, &["prune", "--leeway", PRUNE_LEEWAY]).await;
        if out.status.success() {
            for line in text(&out.stdout).lines() {
                if let Some(rest) = line.strip_prefix("removed ") {
                    let kid = rest.split_whitespace().next().unwrap().to_owned();
                    assert!(!stack.keys.join("public").join(format!("{kid}.pem")).exists());
                    pruned.push(kid);
                }
            }
        } else {
            panic!("keys prune: {}", text(&out.stderr));
        }

        if !pruned.contains(&first_kid) {
            // Until its key is pruned, the early token keeps working, past its own exp too
            // (the api-server's leeway covers that).
            let (status, body) = articles(&stack.client, &stack.api, &early).await;
            assert_eq!(status, StatusCode::OK, "round {round}: {body}");
            early_accepted_past_its_exp |= unix_now() > early_exp;
        } else if first_pruned_in_round.is_none() {
            first_pruned_in_round = Some(round);
            if via == KeysVia::Folder {
                // The folder watch drops the key at once; the first request after may wait
                // up to a second for the unknown-kid re-read before it is refused.
                let took =
                    wait_refused_as_unknown_key(&stack, &early, Duration::from_millis(2500)).await;
                eprintln!("early token refused {took:?} after its key was pruned");
            }
        }
        // The load kept going through the rotation.
        assert!(
            requests.load(Ordering::Relaxed) > before,
            "no request between rotations (round {round})"
        );
    }
    // Let the load use the last key for a while, then stop it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    let failures = failures.lock().unwrap().clone();
    let requests = requests.load(Ordering::Relaxed);
    eprintln!("{requests} requests, {} failed; pruned {pruned:?}", failures.len());
    assert!(failures.is_empty(), "{} of {requests} requests failed: {failures:#?}", failures.len());
    assert!(requests >= CLIENTS * 20, "only {requests} requests");

    // The early token worked until its key was pruned, then was refused for that reason. With
    // the JWKS, the api-server drops a pruned key at its next refresh: here the next rotation's
    // unknown kid (else the JWKS max-age).
    assert!(early_accepted_past_its_exp, "the early token was never used past its exp");
    let round = first_pruned_in_round.expect("the first key was never pruned");
    assert!(round < ROTATIONS, "the first key was pruned only in the last round");
    wait_refused_as_unknown_key(&stack, &early, Duration::from_secs(5)).await;

    // The final state: the last key signs, the one before is retired (or pruned), the first
    // is gone from the folder the api-server reads.
    let (active, states) = key_states(&stack.keys).await;
    assert_eq!(&active, kids.last().unwrap());
    assert!(states.iter().all(|(kid, state)| kid == &active || state == "retired"), "{states:?}");
    assert!(!stack.keys.join("public").join(format!("{first_kid}.pem")).exists());

    // Every new key appears in a reload line of the api-server log, which holds no key.
    let log = stack.api_log();
    for kid in &kids[1..] {
        assert!(
            log.lines().any(|l| l.contains("key reload (") && l.contains(kid.as_str())),
            "no reload logged for {kid}:\n{log}"
        );
    }
    assert!(!log.contains("BEGIN"), "key material in the api-server log");
    stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_keys_five_times_under_load_fails_no_request_with_the_keys_folder() {
    rotate_five_times_under_load(KeysVia::Folder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_keys_five_times_under_load_fails_no_request_with_the_jwks() {
    rotate_five_times_under_load(KeysVia::Jwks).await;
}

/// An api-server binary on a fresh `public` folder holding the trusted test key.
async fn api_on_folder() -> (tempfile::TempDir, PathBuf, String, PathBuf, ChildGuard) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("public");
    std::fs::create_dir_all(&keys).unwrap();
    TestKey::trusted().write_public(&keys);
    let port = free_port();
    let log = dir.path().join("api.log");
    let server = start(
        "api-server",
        &[
            ("API_BIND", format!("127.0.0.1:{port}")),
            ("API_KEYS_DIR", keys.display().to_string()),
            ("RUST_LOG", "info".into()),
        ],
        &log,
    );
    wait_for_port(port, Duration::from_secs(30));
    let api = format!("http://127.0.0.1:{port}");
    wait_ready(&reqwest::Client::new(), &api).await;
    (dir, keys, api, log, server)
}

/// Waits until a line of the log at `path` satisfies `pred`.
async fn wait_for_log_line(path: &Path, within: Duration, pred: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| pred(l)) {
            return line.to_owned();
        }
        assert!(started.elapsed() < within, "no such line within {within:?}:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn keys_loaded(client: &reqwest::Client, api: &str) -> u64 {
    let resp = client.get(format!("{api}/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json::<Value>().await.unwrap()["keys"].as_u64().unwrap()
}

#[tokio::test]
async fn a_garbage_pem_in_the_watched_folder_leaves_verification_working_and_is_named_in_a_warning()
{
    let (_dir, keys, api, log, mut server) = api_on_folder().await;
    let client = reqwest::Client::new();
    let token = TestKey::trusted().sign(&claims_for("alice"));
    let (status, _) = articles(&client, &api, &token).await;
    assert_eq!(status, StatusCode::OK);

    // A stray file that is no key.
    std::fs::write(keys.join("garbage.pem"), b"-----BEGIN PUBLIC KEY-----\nnot a key\n").unwrap();
    let line = wait_for_log_line(&log, Duration::from_secs(2), |l| {
        l.contains("WARN") && l.contains("garbage.pem")
    })
    .await;
    assert!(!line.contains("not a key"), "file content in the log: {line}");
    let (status, body) = articles(&client, &api, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys_loaded(&client, &api).await, 1);

    // The only key's file, rewritten in place and caught half-written: its key stays.
    let file = keys.join(format!("{}.pem", TestKey::trusted().kid));
    let pem = std::fs::read(&file).unwrap();
    std::fs::write(&file, &pem[..pem.len() / 2]).unwrap();
    let name = format!("{}.pem", TestKey::trusted().kid);
    wait_for_log_line(&log, Duration::from_secs(2), |l| {
        l.contains("WARN") && l.contains(&name) && l.contains("skipping")
    })
    .await;
    let (status, body) = articles(&client, &api, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys_loaded(&client, &api).await, 1);

    // The key file removed (the garbage left): its key is no longer trusted within seconds,
    // and with no usable key left the server trusts none (the contract, "Keys and rotation").
    std::fs::remove_file(&file).unwrap();
    let removed = std::time::Instant::now();
    loop {
        let (status, body) = articles(&client, &api, &token).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(removed.elapsed() < Duration::from_secs(2), "still trusted 2 s after removal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = client.get(format!("{api}/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Written whole again, and the garbage gone: clean.
    std::fs::write(&file, &pem).unwrap();
    std::fs::remove_file(keys.join("garbage.pem")).unwrap();
    wait_for_log_line(&log, Duration::from_secs(2), |l| l.contains("read cleanly again")).await;
    let (status, _) = articles(&client, &api, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!std::fs::read_to_string(&log).unwrap().contains("BEGIN PUBLIC KEY"));
    assert!(server.terminate(Duration::from_secs(10)).is_some());
}

#[tokio::test]
async fn a_new_key_file_is_loaded_within_a_second_without_a_request_and_its_tokens_are_accepted() {
    let (_dir, keys, api, log, mut server) = api_on_folder().await;
    let client = reqwest::Client::new();
    assert_eq!(keys_loaded(&client, &api).await, 1);

    // No request names the new key: the watch (or the 1 s poll) alone loads it.
    let new = TestKey::generate();
    let written = Instant::now();
    new.write_public(&keys);
    while keys_loaded(&client, &api).await < 2 {
        assert!(written.elapsed() < Duration::from_secs(1), "not loaded within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("loaded {:?} after the file appeared", written.elapsed());
    let line = wait_for_log_line(&log, Duration::from_secs(1), |l| {
        l.contains("key reload (") && l.contains(&new.kid)
    })
    .await;
    assert!(line.contains("added ["), "{line}");
    let (status, body) = articles(&client, &api, &new.sign(&claims_for("alice"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A token whose key was written a moment ago is accepted on its first request.
    let newer = TestKey::generate();
    newer.write_public(&keys);
    let (status, body) = articles(&client, &api, &newer.sign(&claims_for("bob"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // SIGHUP re-reads too, and says so.
    let pid = server.0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for_log_line(&log, Duration::from_secs(2), |l| l.contains("key reload (SIGHUP) ok")).await;
    assert!(server.terminate(Duration::from_secs(10)).is_some());
}
