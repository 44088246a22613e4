//! The api-server following the session revocation list (`API_REVOCATIONS_URL`): the real
//! `auth-server` binary and a real Redis (AOF) as processes, the api-server in process or as
//! its binary. Needs `cargo build --workspace --bins` first.
//!
//! Every "refused" below is the contract's 401 `invalid_token` "the session has ended", within
//! [`BOUND`] of the moment the auth server answered the end.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use api_server::{Application, KeysFrom, Settings};
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::{ChildGuard, RedisServer, binary, free_port, wait_for_port};

use crate::e2e::{PASSWORD, start, wait_ready};
use crate::helpers::assert_invalid_token;

/// The contract's promise: a logout reaches the api-server in under 2 s.
pub(crate) const BOUND: Duration = Duration::from_secs(2);

/// A real auth-server process on a real Redis with AOF, restartable on the same port.
pub(crate) struct Auth {
    pub redis: RedisServer,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub base: String,
    process: Option<ChildGuard>,
    extra: Vec<(&'static str, String)>,
    starts: usize,
}

impl Auth {
    /// Starts Redis (AOF) and the auth server; waits until it is ready.
    pub async fn start(client: &reqwest::Client) -> Self {
        Self::start_with(client, &[]).await
    }

    pub async fn start_with(client: &reqwest::Client, extra: &[(&'static str, &str)]) -> Self {
        let mut auth = Self::unstarted(free_port(), extra);
        auth.spawn(client).await;
        auth
    }

    /// Prepared on `port` but not running (for tests that start it later).
    pub fn unstarted(port: u16, extra: &[(&'static str, &str)]) -> Self {
        Self {
            redis: RedisServer::start_with_aof(),
            dir: tempfile::tempdir().unwrap(),
            port,
            base: format!("http://127.0.0.1:{port}"),
            process: None,
            extra: extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            starts: 0,
        }
    }

    pub fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    pub fn public_keys(&self) -> PathBuf {
        self.keys().join("public")
    }

    pub fn revocations_url(&self) -> String {
        format!("{}/revocations", self.base)
    }

    /// Starts (or restarts) the process and waits until it is ready.
    pub async fn spawn(&mut self, client: &reqwest::Client) {
        self.starts += 1;
        let mut env = vec![
            ("AUTH_BIND", format!("127.0.0.1:{}", self.port)),
            ("AUTH_REDIS_URL", self.redis.url()),
            ("AUTH_KEYS_DIR", self.keys().display().to_string()),
            ("RUST_LOG", "info".into()),
        ];
        env.extend(self.extra.iter().cloned());
        let log = self.dir.path().join(format!("auth-{}.log", self.starts));
        self.process = Some(start("auth-server", &env, &log));
        wait_for_port(self.port, Duration::from_secs(30));
        wait_ready(client, &self.base).await;
    }

    /// SIGTERM, waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            assert!(process.terminate(Duration::from_secs(15)).is_some(), "auth-server hung");
        }
    }

    /// SIGKILL: connections drop without an answer.
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// `auth-server users <args>` against this Redis and keys.
    pub fn users(&self, args: &[&str]) {
        let out = Command::new(binary("auth-server"))
            .arg("users")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AUTH_REDIS_URL", self.redis.url())
            .env("AUTH_KEYS_DIR", self.keys())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// One login: its tokens.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub access: String,
    pub refresh: String,
}

impl Session {
    pub fn sid(&self) -> String {
        let payload = self.access.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
        )
        .unwrap();
        claims["sid"].as_str().unwrap().to_owned()
    }
}

/// A fresh user with a unique name.
pub(crate) async fn register(client: &reqwest::Client, auth: &str, prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{prefix}{n}-{}", std::process::id());
    let resp = client
        .post(format!("{auth}/register"))
        .json(&json!({"username": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    name
}

pub(crate) async fn login(client: &reqwest::Client, auth: &str, user: &str) -> Session {
    let resp = client
        .post(format!("{auth}/login"))
        .json(&json!({"username": user, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    Session {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

pub(crate) async fn logout(client: &reqwest::Client, auth: &str, session: &Session) {
    let resp = client
        .post(format!("{auth}/logout"))
        .json(&json!({"refresh_token": session.refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

pub(crate) async fn status(client: &reqwest::Client, api: &str, token: &str) -> StatusCode {
    client.get(format!("{api}/articles")).bearer_auth(token).send().await.unwrap().status()
}

/// Polls `GET /articles` with `token` until it is refused as an ended session; asserts that
/// happens within `bound` and answers the time it took.
pub(crate) async fn refused_within(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    bound: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let resp = client.get(format!("{api}/articles")).bearer_auth(token).send().await.unwrap();
        if resp.status() == StatusCode::UNAUTHORIZED {
            let took = started.elapsed();
            let refusal = assert_invalid_token(resp).await;
            assert_eq!(refusal.description, "the session has ended");
            assert!(took < bound, "refused after {took:?}, over {bound:?}");
            return took;
        }
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(started.elapsed() < bound, "still accepted after {bound:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The api-server in process following `auth`'s list, its keys from the folder.
pub(crate) async fn spawn_api(auth: &Auth, max_staleness: Option<Duration>) -> String {
    let mut settings = Settings::for_tests(auth.public_keys());
    settings.revocations_url = Some(auth.revocations_url());
    settings.revocations_max_staleness = max_staleness;
    spawn_api_with(settings).await
}

pub(crate) async fn spawn_api_with(settings: Settings) -> String {
    let _ = env_logger::builder().is_test(true).try_init();
    let app = Application::build(settings).await.unwrap();
    let api = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    api
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// The body of `GET /readyz`.
async fn readyz(client: &reqwest::Client, api: &str) -> (StatusCode, Value) {
    let resp = client.get(format!("{api}/readyz")).send().await.unwrap();
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_session_is_refused_within_2s_even_cached_and_other_sessions_keep_working() {
    let client = client();
    let auth = Auth::start(&client).await;
    let api = spawn_api(&auth, None).await;
    wait_ready(&client, &api).await;
    let alice = register(&client, &auth.base, "alice").await;
    let bob = register(&client, &auth.base, "bob").await;
    let (phone, laptop) =
        (login(&client, &auth.base, &alice).await, login(&client, &auth.base, &alice).await);
    let other = login(&client, &auth.base, &bob).await;
    // Verified once: the token is in the verified-token cache from here on.
    for s in [&phone, &laptop, &other] {
        assert_eq!(status(&client, &api, &s.access).await, StatusCode::OK);
    }

    logout(&client, &auth.base, &phone).await;
    refused_within(&client, &api, &phone.access, BOUND).await;
    // The same user's other session and another user's are untouched.
    assert_eq!(status(&client, &api, &laptop.access).await, StatusCode::OK);
    assert_eq!(status(&client, &api, &other.access).await, StatusCode::OK);
    // Every authenticated route refuses it, not only the one polled.
    let me = client.get(format!("{api}/me")).bearer_auth(&phone.access).send().await.unwrap();
    assert_eq!(assert_invalid_token(me).await.description, "the session has ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_a_session_ends_reaches_the_api_server_within_2s() {
    let client = client();
    // Grace 0: presenting a token just rotated is reuse at once.
    let auth = Auth::start_with(&client, &[("AUTH_REFRESH_REUSE_GRACE", "0")]).await;
    let api = spawn_api(&auth, None).await;
    wait_ready(&client, &api).await;

    // POST /logout/all: every session of the user.
    let user = register(&client, &auth.base, "all").await;
    let (a, b) = (login(&client, &auth.base, &user).await, login(&client, &auth.base, &user).await);
    let resp = client
        .post(format!("{}/logout/all", auth.base))
        .bearer_auth(&a.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    refused_within(&client, &api, &a.access, BOUND).await;
    refused_within(&client, &api, &b.access, BOUND).await;

    // DELETE /sessions/{sid}: one session, by another of the same user.
    let user = register(&client, &auth.base, "one").await;
    let (keep, end) =
        (login(&client, &auth.base, &user).await, login(&client, &auth.base, &user).await);
    let resp = client
        .delete(format!("{}/sessions/{}", auth.base, end.sid()))
        .bearer_auth(&keep.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    refused_within(&client, &api, &end.access, BOUND).await;
    assert_eq!(status(&client, &api, &keep.access).await, StatusCode::OK);

    // Reuse detection: the spent refresh token comes back; the session's tokens of before
    // and after the rotation are refused.
    let user = register(&client, &auth.base, "reuse").await;
    let first = login(&client, &auth.base, &user).await;
    let resp = client
        .post(format!("{}/token", auth.base))
        .json(&json!({"refresh_token": first.refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let rotated: Value = resp.json().await.unwrap();
    let resp = client
        .post(format!("{}/token", auth.base))
        .json(&json!({"refresh_token": first.refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "reuse");
    refused_within(&client, &api, &first.access, BOUND).await;
    refused_within(&client, &api, rotated["access_token"].as_str().unwrap(), BOUND).await;

    // POST /password: every other session of the user; the caller's stays.
    let user = register(&client, &auth.base, "pw").await;
    let (caller, other) =
        (login(&client, &auth.base, &user).await, login(&client, &auth.base, &user).await);
    let resp = client
        .post(format!("{}/password", auth.base))
        .bearer_auth(&caller.access)
        .json(&json!({"current_password": PASSWORD, "new_password": "another long passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    refused_within(&client, &api, &other.access, BOUND).await;
    assert_eq!(status(&client, &api, &caller.access).await, StatusCode::OK);

    // `auth-server users disable`: an operator's command, from another process.
    let user = register(&client, &auth.base, "disabled").await;
    let session = login(&client, &auth.base, &user).await;
    assert_eq!(status(&client, &api, &session.access).await, StatusCode::OK);
    auth.users(&["disable", &user]);
    refused_within(&client, &api, &session.access, BOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_api_server_refuses_a_revoked_token_on_its_first_request() {
    let client = client();
    let auth = Auth::start(&client).await;
    let user = register(&client, &auth.base, "restart").await;
    let (ended, kept) =
        (login(&client, &auth.base, &user).await, login(&client, &auth.base, &user).await);
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let env = [
        ("API_BIND", format!("127.0.0.1:{port}")),
        ("API_KEYS_DIR", auth.public_keys().display().to_string()),
        ("API_REVOCATIONS_URL", auth.revocations_url()),
    ];
    let mut first = start("api-server", &env, &auth.dir.path().join("api-1.log"));
    wait_for_port(port, Duration::from_secs(30));
    wait_ready(&client, &api).await;
    assert_eq!(status(&client, &api, &ended.access).await, StatusCode::OK);
    assert!(first.terminate(Duration::from_secs(15)).is_some());

    logout(&client, &auth.base, &ended).await;
    let _second = start("api-server", &env, &auth.dir.path().join("api-2.log"));
    wait_for_port(port, Duration::from_secs(30));
    wait_ready(&client, &api).await;
    let resp = client.get(format!("{api}/articles")).bearer_auth(&ended.access).send().await;
    assert_eq!(assert_invalid_token(resp.unwrap()).await.description, "the session has ended");
    assert_eq!(status(&client, &api, &kept.access).await, StatusCode::OK);
}

/// A sample of the api-server's `/metrics`: the value of `name` (no labels).
async fn metric(client: &reqwest::Client, api: &str, name: &str) -> f64 {
    let text = client.get(format!("{api}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_auth_server_down_valid_tokens_pass_revoked_stay_refused_and_metrics_tell() {
    let client = client();
    let mut auth = Auth::start(&client).await;
    let user = register(&client, &auth.base, "outage").await;
    let (ended, kept) =
        (login(&client, &auth.base, &user).await, login(&client, &auth.base, &user).await);
    // The binary: its /metrics are its own (the test process shares one registry).
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let _api_server = start(
        "api-server",
        &[
            ("API_BIND", format!("127.0.0.1:{port}")),
            ("API_KEYS_DIR", auth.public_keys().display().to_string()),
            ("API_REVOCATIONS_URL", auth.revocations_url()),
        ],
        &auth.dir.path().join("api.log"),
    );
    wait_for_port(port, Duration::from_secs(30));
    wait_ready(&client, &api).await;
    logout(&client, &auth.base, &ended).await;
    refused_within(&client, &api, &ended.access, BOUND).await;
    assert_eq!(metric(&client, &api, "revocation_list_entries").await, 1.0);
    assert_eq!(metric(&client, &api, "revocation_list_ready").await, 1.0);
    assert_eq!(metric(&client, &api, "revocation_list_fetch_errors_total").await, 0.0);
    assert!(metric(&client, &api, "revocation_list_age_seconds").await < 2.0);

    auth.stop();
    // The follower notices (its long poll drops) and keeps retrying; the list held stays.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&client, &api, "revocation_list_fetch_errors_total").await < 2.0 {
        assert!(Instant::now() < deadline, "no fetch error counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = client.get(format!("{api}/articles")).bearer_auth(&ended.access).send().await;
    assert_eq!(assert_invalid_token(resp.unwrap()).await.description, "the session has ended");
    assert_eq!(status(&client, &api, &kept.access).await, StatusCode::OK);
    // No staleness limit: still ready, the list's age grows.
    assert_eq!(readyz(&client, &api).await.0, StatusCode::OK);
    let age = metric(&client, &api, "revocation_list_age_seconds").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(metric(&client, &api, "revocation_list_age_seconds").await >= age + 1.0);
    let log = std::fs::read_to_string(auth.dir.path().join("api.log")).unwrap();
    assert!(log.contains("revocation list: cannot fetch it"), "{log}");
    assert!(!log.contains(&ended.access) && !log.contains(&kept.access));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_staleness_limit_authenticated_routes_answer_503_and_recover() {
    let client = client();
    let mut auth = Auth::start(&client).await;
    let limit = Duration::from_secs(3);
    let api = spawn_api(&auth, Some(limit)).await;
    wait_ready(&client, &api).await;
    let user = register(&client, &auth.base, "stale").await;
    let session = login(&client, &auth.base, &user).await;

    // A healthy list never looks stale: two limits' worth of requests all pass.
    let healthy = Instant::now();
    while healthy.elapsed() < limit * 2 {
        assert_eq!(status(&client, &api, &session.access).await, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The last answer came at most `wait` (1 s) before the stop began; the stop itself (a
    // graceful shutdown) may take a while on a loaded machine, so the lower bound counts from
    // its start and the upper one from its end.
    let stopping = Instant::now();
    auth.stop();
    let stopped = Instant::now();
    let resp = loop {
        let resp = client.get(format!("{api}/articles")).bearer_auth(&session.access).send().await;
        let resp = resp.unwrap();
        if resp.status() != StatusCode::OK {
            break resp;
        }
        assert!(stopped.elapsed() < limit + Duration::from_secs(3), "never went stale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after = stopping.elapsed();
    assert!(after >= limit - Duration::from_millis(1500), "stale {after:?} after the stop began");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    let (code, body) = readyz(&client, &api).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error_description"], "the revocation list is out of date");
    // Unauthenticated routes still answer; a bad token is still a 401, not a 503.
    let health = client.get(format!("{api}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let bad = client.get(format!("{api}/articles")).bearer_auth("a.b.c").send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);

    auth.spawn(&client).await;
    wait_ready(&client, &api).await;
    assert_eq!(status(&client, &api, &session.access).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_first_full_list() {
    let client = client();
    let mut auth = Auth::unstarted(free_port(), &[]);
    // A key of its own, so that only the list is missing.
    let keys = tempfile::tempdir().unwrap();
    crate::insecure_test_keys::TestKey::trusted().write_public(keys.path());
    let mut settings = Settings::for_tests(keys.path());
    settings.revocations_url = Some(auth.revocations_url());
    let api = spawn_api_with(settings).await;
    for _ in 0..5 {
        let (code, body) = readyz(&client, &api).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error_description"], "the revocation list has not arrived yet");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    auth.spawn(&client).await;
    let started = Instant::now();
    wait_ready(&client, &api).await;
    // The follower's backoff is at most 5 s (+50 % jitter).
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_jwks_mode_a_logout_is_refused_within_2s_too() {
    let client = client();
    let auth = Auth::start(&client).await;
    let mut settings = Settings::for_tests(auth.public_keys());
    settings.keys = KeysFrom::Jwks(format!("{}/.well-known/jwks.json", auth.base));
    settings.revocations_url = Some(auth.revocations_url());
    let api = spawn_api_with(settings).await;
    wait_ready(&client, &api).await;
    let user = register(&client, &auth.base, "jwks").await;
    let (ended, kept) =
        (login(&client, &auth.base, &user).await, login(&client, &auth.base, &user).await);
    assert_eq!(status(&client, &api, &ended.access).await, StatusCode::OK);
    logout(&client, &auth.base, &ended).await;
    refused_within(&client, &api, &ended.access, BOUND).await;
    assert_eq!(status(&client, &api, &kept.access).await, StatusCode::OK);
}
