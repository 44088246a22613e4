//! `API_JWKS_URL` mode, in process, against a toy JWKS server whose answer the test controls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_server::{Application, KeysFrom, Settings};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::assert_invalid_token;
use crate::insecure_test_keys::{TestKey, claims_for};

/// A JWKS endpoint on 127.0.0.1 answering `answer` (status, body) to every request, with
/// `Cache-Control: public, max-age=60`, and counting requests.
struct ToyJwks {
    url: String,
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

impl ToyJwks {
    async fn start(status: u16, body: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new((status, body.to_string())));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (Arc::clone(&answer), Arc::clone(&hits));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let answer = served.lock().unwrap().clone();
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    // Read the request head (small; one read or a few).
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let (status, body) = answer;
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Cache-Control: public, max-age=60\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { url, answer, hits }
    }

    fn set(&self, status: u16, body: Value) {
        *self.answer.lock().unwrap() = (status, body.to_string());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

struct JwksApp {
    address: String,
    client: reqwest::Client,
}

async fn spawn_jwks_app(url: &str) -> JwksApp {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut settings = Settings::for_tests("unused");
    settings.keys = KeysFrom::Jwks(url.to_owned());
    let app = Application::build(settings).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    JwksApp { address, client: reqwest::Client::new() }
}

impl JwksApp {
    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{path}", self.address));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap()
    }
}

#[tokio::test]
async fn the_api_is_not_ready_until_the_jwks_answers_and_retries_until_it_does() {
    let jwks = ToyJwks::start(503, json!({"error": "unavailable"})).await;
    let app = spawn_jwks_app(&jwks.url).await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_invalid_token(app.get("/articles", Some(&token)).await).await;

    // The auth server comes up: the retries (0.5 s, doubling) find it without any request.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let failed_fetches = jwks.hits();
    assert!(failed_fetches >= 2, "no retry: {failed_fetches} fetches");
    jwks.set(200, json!({"keys": [TestKey::trusted().jwk()]}));
    let started = Instant::now();
    while app.get("/readyz", None).await.status() != StatusCode::OK {
        assert!(started.elapsed() < Duration::from_secs(5), "not ready 5 s after the JWKS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.get("/articles", Some(&token)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_jwk_it_cannot_use_is_skipped_and_the_others_still_verify() {
    let mut renamed = serde_json::to_value(TestKey::attacker().jwk()).unwrap();
    renamed["kid"] = json!("someone-else");
    let jwks = ToyJwks::start(
        200,
        json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny"},
            renamed,
            TestKey::trusted().jwk(),
        ]}),
    )
    .await;
    let app = spawn_jwks_app(&jwks.url).await;
    let ready: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["keys"], 1, "{ready}");
    let token = TestKey::trusted().sign(&claims_for("alice"));
    assert_eq!(app.get("/articles", Some(&token)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_at_most_once_a_second() {
    let jwks = ToyJwks::start(200, json!({"keys": [TestKey::trusted().jwk()]})).await;
    let app = spawn_jwks_app(&jwks.url).await;
    let at_start = jwks.hits();
    let started = Instant::now();
    let stranger = TestKey::attacker().sign(&claims_for("alice"));
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let req =
                app.client.get(format!("{}/articles", app.address)).bearer_auth(&stranger).send();
            tokio::spawn(req)
        })
        .collect();
    for call in calls {
        let refusal = assert_invalid_token(call.await.unwrap().unwrap()).await;
        assert!(refusal.description.contains("signing key is unknown"), "{refusal:?}");
    }
    let fetched = jwks.hits() - at_start;
    let allowed = started.elapsed().as_secs() as usize + 1;
    assert!(fetched <= allowed, "{fetched} fetches in {:?}", started.elapsed());

    // A key the auth server publishes after start is fetched on its first token.
    let new = TestKey::generate();
    jwks.set(200, json!({"keys": [TestKey::trusted().jwk(), new.jwk()]}));
    let token = new.sign(&claims_for("alice"));
    assert_eq!(app.get("/articles", Some(&token)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_last_good_set_stays_while_the_jwks_fails_or_comes_back_empty() {
    let jwks = ToyJwks::start(200, json!({"keys": [TestKey::trusted().jwk()]})).await;
    let app = spawn_jwks_app(&jwks.url).await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    for (status, body) in [
        (500, json!({"error": "internal_error"})),
        (200, json!({"keys": []})),
        (200, json!({"not": "a jwks"})),
        (200, json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
    ] {
        jwks.set(status, body.clone());
        // A token naming an unknown key makes the server fetch the broken answer.
        let fetched = jwks.hits();
        let stranger = TestKey::attacker().sign(&claims_for("alice"));
        assert_invalid_token(app.get("/articles", Some(&stranger)).await).await;
        assert!(jwks.hits() > fetched, "{status} {body}: no fetch");
        assert_eq!(app.get("/articles", Some(&token)).await.status(), StatusCode::OK, "{body}");
        assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    }
}
