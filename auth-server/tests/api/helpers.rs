//! `spawn_app`: the auth server on port 0 with a temp keys dir and its own Redis, of the
//! deployment `TEST_REDIS_MODE` names (`standalone` by default, `cluster`, `sentinel`): the same
//! test functions run against each (the subset that runs on Cluster and Sentinel is in
//! `scale.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use access_token::TokenResponse;
use auth_server::{Application, Settings};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use test_support::{RedisMode, RedisServer, TestRedis};

pub const PASSWORD: &str = "correct horse battery";

/// The introspection client of [`with_introspection`].
pub const INTROSPECTION_ID: &str = "articles-api";
/// Its secret (the contract's 32 characters and more).
pub const INTROSPECTION_SECRET: &str = "Zm9vYmFyLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm";

/// Settings with one introspection client.
pub fn with_introspection(s: &mut Settings) {
    s.introspection_clients = auth_server::config::IntrospectionClients::parse(&format!(
        "{INTROSPECTION_ID}:{INTROSPECTION_SECRET}"
    ))
    .unwrap();
}

/// base64url (no padding) of SHA-256 of `sid`: how the revocation list names a session,
/// computed here independently of the server's code.
pub fn sid_digest(sid: &str) -> String {
    use base64::Engine as _;
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, sid.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash.as_ref())
}

/// The `(sid_sha256, until)` entries of a `/revocations` answer.
pub fn listed(reply: &Reply) -> Vec<(String, u64)> {
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.body["revoked"]
        .as_array()
        .unwrap_or_else(|| panic!("no revoked array in {}", reply.text))
        .iter()
        .map(|e| (e["sid_sha256"].as_str().unwrap().to_owned(), e["until"].as_u64().unwrap()))
        .collect()
}

/// A second auth server on the same Redis and keys as `app`, with `customize` applied.
pub async fn second_instance(app: &TestApp, customize: impl FnOnce(&mut Settings)) -> String {
    let mut settings = settings_for(&app.redis, app.keys_dir.path());
    customize(&mut settings);
    let second = Application::build(settings).await.unwrap();
    let address = format!("http://127.0.0.1:{}", second.port());
    tokio::spawn(second.run_until_stopped());
    address
}

pub struct TestApp {
    pub address: String,
    pub redis: TestRedis,
    pub keys_dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

/// A reply, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_else(|| panic!("no error code in {}", self.text))
    }

    pub fn tokens(&self) -> TokenResponse {
        assert_eq!(self.status, 200, "{}", self.text);
        serde_json::from_value(self.body.clone()).unwrap()
    }

    pub fn refresh_token(&self) -> String {
        self.tokens().refresh_token.expect("refresh token in the body")
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The app on a deployment of the mode `TEST_REDIS_MODE` names (standalone by default).
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let mode = RedisMode::from_env();
    let redis = tokio::task::spawn_blocking(move || TestRedis::start(mode)).await.unwrap();
    spawn_app_on_deployment(redis, customize).await
}

/// Starts the app against the standalone `redis` (running or not), whatever the mode.
pub async fn spawn_app_on(redis: RedisServer, customize: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_on_deployment(TestRedis::Standalone(redis), customize).await
}

/// Settings for tests on `redis`, whatever its mode.
pub fn settings_for(redis: &TestRedis, keys_dir: &std::path::Path) -> Settings {
    let mut settings = Settings::for_tests("redis://127.0.0.1:1", keys_dir);
    let env: Vec<(String, String)> = redis.env();
    let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let list = |text: String| -> Vec<secrecy::SecretString> {
        text.split(',').map(|u| secrecy::SecretString::from(u.to_owned())).collect()
    };
    settings.redis = match redis.mode() {
        RedisMode::Standalone => auth_server::config::RedisSettings::Standalone {
            url: var("AUTH_REDIS_URL").unwrap().into(),
        },
        RedisMode::Cluster => auth_server::config::RedisSettings::Cluster {
            urls: list(var("AUTH_REDIS_CLUSTER_URLS").unwrap()),
        },
        RedisMode::Sentinel => auth_server::config::RedisSettings::Sentinel {
            urls: list(var("AUTH_REDIS_SENTINEL_URLS").unwrap()),
            master: var("AUTH_REDIS_SENTINEL_MASTER").unwrap(),
            login: auth_server::config::SentinelLogin {
                username: None,
                password: var("AUTH_REDIS_SENTINEL_PASSWORD").map(Into::into),
            },
        },
    };
    settings
}

/// Starts the app against `redis`, of any mode.
pub async fn spawn_app_on_deployment(
    redis: TestRedis,
    customize: impl FnOnce(&mut Settings),
) -> TestApp {
    let keys_dir = tempfile::tempdir().unwrap();
    let mut settings = settings_for(&redis, keys_dir.path());
    customize(&mut settings);
    let app = Application::build(settings).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    TestApp { address, redis, keys_dir, client }
}

/// A username no other test uses.
pub fn unique_user(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub async fn read(res: reqwest::Response) -> Reply {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, body, text }
}

impl TestApp {
    /// The standalone server (tests that stop, restart or reconfigure it run on standalone
    /// only).
    pub fn standalone(&mut self) -> &mut RedisServer {
        self.redis.as_standalone().expect("a test of the standalone mode only")
    }

    /// A store on the app's Redis, whatever its mode (for tests that look or write behind the
    /// server's back).
    pub fn store(&self) -> auth_server::store::Store {
        let settings = settings_for(&self.redis, self.keys_dir.path());
        auth_server::store::Store::connect(&settings.redis).unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn public_keys_dir(&self) -> PathBuf {
        self.keys_dir.path().join("public")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        read(self.client.post(self.url(path)).json(body).send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        read(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn register(&self, username: &str) -> Reply {
        self.post_json("/register", &json!({ "username": username, "password": PASSWORD })).await
    }

    pub async fn login(&self, username: &str) -> Reply {
        self.post_json("/login", &json!({ "username": username, "password": PASSWORD })).await
    }

    /// Registers `username` and logs in; returns the login reply.
    pub async fn signed_up(&self, username: &str) -> Reply {
        let reg = self.register(username).await;
        assert_eq!(reg.status, 201, "{}", reg.text);
        let login = self.login(username).await;
        assert_eq!(login.status, 200, "{}", login.text);
        login
    }

    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post_json("/token", &json!({ "refresh_token": refresh_token })).await
    }

    pub async fn logout(&self, refresh_token: &str) -> Reply {
        self.post_json("/logout", &json!({ "refresh_token": refresh_token })).await
    }

    /// `method path` with `Authorization: Bearer <access_token>`.
    pub async fn bearer(&self, method: reqwest::Method, path: &str, access_token: &str) -> Reply {
        let req = self.client.request(method, self.url(path)).bearer_auth(access_token);
        read(req.send().await.unwrap()).await
    }

    /// `GET /sessions` with `access_token`.
    pub async fn sessions(&self, access_token: &str) -> Reply {
        self.bearer(reqwest::Method::GET, "/sessions", access_token).await
    }

    /// `GET /revocations?{query}` on this instance.
    pub async fn revocations(&self, query: &str) -> Reply {
        revocations_at(&self.client, &self.address, query).await
    }

    /// `POST /revoke` with a form body `token=...`.
    pub async fn revoke(&self, token: &str) -> Reply {
        let req = self.client.post(self.url("/revoke")).form(&[("token", token)]);
        read(req.send().await.unwrap()).await
    }

    /// `POST /introspect` with a form body `token=...`, authenticated as the client of
    /// [`with_introspection`].
    pub async fn introspect(&self, token: &str) -> Reply {
        let req = self
            .client
            .post(self.url("/introspect"))
            .basic_auth(INTROSPECTION_ID, Some(INTROSPECTION_SECRET))
            .form(&[("token", token)]);
        read(req.send().await.unwrap()).await
    }

    pub async fn logout_all(&self, access_token: &str) -> Reply {
        read(
            self.client
                .post(self.url("/logout/all"))
                .bearer_auth(access_token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

/// `GET {base}/revocations?{query}`.
pub async fn revocations_at(client: &reqwest::Client, base: &str, query: &str) -> Reply {
    read(client.get(format!("{base}/revocations?{query}")).send().await.unwrap()).await
}

/// The claims of a JWT, decoded without verification (for comparisons only).
pub fn claims_of(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
