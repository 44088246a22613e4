//! The harness: the api-server built in-process on port 0 with a temp keys folder.

use std::path::{Path, PathBuf};

use api_server::{Application, Settings};
use reqwest::StatusCode;
use reqwest::header::WWW_AUTHENTICATE;
use serde_json::Value;

use crate::insecure_test_keys::TestKey;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The `keys/public` folder the app reads; tests may drop files in it.
    pub keys_dir: PathBuf,
    /// Holds `keys_dir` (and anything beside it) until the test ends.
    pub root: tempfile::TempDir,
}

/// The app trusting [`TestKey::trusted`].
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|dir| {
        TestKey::trusted().write_public(dir);
    })
    .await
}

/// The app with a keys folder prepared by `prepare`.
pub async fn spawn_app_with(prepare: impl FnOnce(&Path)) -> TestApp {
    let _ = env_logger::builder().is_test(true).try_init();
    let root = tempfile::tempdir().unwrap();
    let keys_dir = root.path().join("keys").join("public");
    std::fs::create_dir_all(&keys_dir).unwrap();
    prepare(&keys_dir);
    let app = Application::build(Settings::for_tests(&keys_dir)).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp { address, client: reqwest::Client::new(), keys_dir, root }
}

impl TestApp {
    pub async fn get(&self, path: &str, authorization: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{path}", self.address));
        if let Some(value) = authorization {
            req = req.header("Authorization", value);
        }
        req.send().await.unwrap()
    }

    /// GET `path` with `Authorization: Bearer <token>`.
    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.get(path, Some(&format!("Bearer {token}"))).await
    }
}

/// What a refusal looked like.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub error: String,
    pub description: String,
    pub www_authenticate: String,
}

pub async fn refusal(resp: reqwest::Response) -> Refusal {
    let status = resp.status();
    let www_authenticate = resp
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = resp.json().await.unwrap();
    Refusal {
        status,
        error: body["error"].as_str().unwrap_or_default().to_owned(),
        description: body["error_description"].as_str().unwrap_or_default().to_owned(),
        www_authenticate,
    }
}

/// Asserts a 401 `invalid_token` with the contract's challenge, whose `error_description`
/// is the body's.
pub async fn assert_invalid_token(resp: reqwest::Response) -> Refusal {
    let r = refusal(resp).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.error, "invalid_token", "{r:?}");
    assert!(!r.description.is_empty(), "{r:?}");
    assert_eq!(
        r.www_authenticate,
        format!(
            "Bearer realm=\"articles\", error=\"invalid_token\", error_description=\"{}\"",
            r.description
        ),
        "{r:?}"
    );
    r
}

/// Asserts a 400 `invalid_request` with the contract's challenge.
pub async fn assert_invalid_request(resp: reqwest::Response) -> Refusal {
    let r = refusal(resp).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.error, "invalid_request", "{r:?}");
    assert_eq!(r.www_authenticate, "Bearer realm=\"articles\", error=\"invalid_request\"", "{r:?}");
    r
}
