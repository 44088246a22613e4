//! The `resource_server` example, started in-process on a free port: it accepts a token of the
//! trusted key with its scope, answers the contract's refusals with its own realm, and trusts a
//! key dropped in its folder after start. INSECURE, TEST-ONLY keys, generated per test.
//! Tests may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/resource_server.rs"]
#[allow(dead_code)] // the example's `main`
mod example;

use std::net::TcpListener;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ISS: &str = "http://localhost:5000";
const AUD: &str = "photos-api";

struct TestKey {
    kid: String,
    private_pem: String,
    public_pem: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

impl TestKey {
    fn generate() -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let private: Pkcs8V1Der<'static> = pair.as_der().unwrap();
        let public: PublicKeyX509Der<'static> = pair.public_key().as_der().unwrap();
        let public_pem = pem("PUBLIC KEY", public.as_ref());
        let kid = access_token::public_key::PublicKey::from_pem(public_pem.as_bytes())
            .unwrap()
            .kid()
            .to_owned();
        Self { kid, private_pem: pem("PRIVATE KEY", private.as_ref()), public_pem }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        let key = EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

fn claims(scope: &str) -> Value {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    json!({
        "iss": ISS, "aud": AUD, "sub": "u-1", "preferred_username": "alice",
        "scope": scope, "iat": now, "nbf": now, "exp": now + 300, "jti": "j", "sid": "s",
    })
}

#[tokio::test]
async fn the_example_service_verifies_tokens_with_a_few_lines() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = TestKey::generate();
    std::fs::write(dir.path().join(format!("{}.pem", trusted.kid)), &trusted.public_pem).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/photos", listener.local_addr().unwrap());
    let server = example::serve(listener, dir.path().to_owned(), ISS, AUD, None).await.unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    let client = reqwest::Client::new();
    let get = |token: Option<String>| {
        let mut req = client.get(&url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let challenge =
        |res: &reqwest::Response| res.headers()["www-authenticate"].to_str().unwrap().to_owned();

    let res = get(Some(trusted.sign(&claims("photos:read profile")))).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["owner"], "alice");

    let res = get(None).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(challenge(&res), "Bearer realm=\"photos\"");

    let res = get(Some(trusted.sign(&claims("articles:read")))).await.unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        challenge(&res),
        "Bearer realm=\"photos\", error=\"insufficient_scope\", scope=\"photos:read\""
    );
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "insufficient_scope");

    // Another service's audience is not ours.
    let mut other = claims("photos:read");
    other["aud"] = json!("articles-api");
    let res = get(Some(trusted.sign(&other))).await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(challenge(&res).contains("audience"), "{}", challenge(&res));

    // A key that appears in the folder after start is trusted without a restart.
    let rotated = TestKey::generate();
    let token = rotated.sign(&claims("photos:read"));
    assert_eq!(get(Some(token.clone())).await.unwrap().status(), 401);
    std::fs::write(dir.path().join(format!("{}.pem", rotated.kid)), &rotated.public_pem).unwrap();
    assert_eq!(get(Some(token)).await.unwrap().status(), 200);

    handle.stop(true).await;
}

/// A revocation list endpoint answering, as the auth server would, the whole list naming the
/// session `ended` (the contract's shape; the real auth server is tested with the api-server).
async fn revocation_feed() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/revocations", listener.local_addr().unwrap());
    let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"ended"));
    let until = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 900;
    let body = json!({"cursor": "e.1-0", "reset": true, "revoked": [
        {"sid_sha256": digest, "until": until},
    ]})
    .to_string();
    let server = actix_web::HttpServer::new(move || {
        let body = body.clone();
        actix_web::App::new().route(
                "/revocations",
                actix_web::web::get().to(move || {
                    let body = body.clone();
                    async move {
                        actix_web::HttpResponse::Ok().content_type("application/json").body(body)
                    }
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    url
}

#[tokio::test]
async fn the_example_service_refuses_tokens_of_sessions_on_the_revocation_list() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = TestKey::generate();
    std::fs::write(dir.path().join(format!("{}.pem", trusted.kid)), &trusted.public_pem).unwrap();
    let feed = revocation_feed().await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/photos", listener.local_addr().unwrap());
    let server =
        example::serve(listener, dir.path().to_owned(), ISS, AUD, Some(&feed)).await.unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    let client = reqwest::Client::new();
    let mut ended = claims("photos:read");
    ended["sid"] = json!("ended");
    let ended = trusted.sign(&ended);
    let live = trusted.sign(&claims("photos:read"));

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let res = loop {
        let res = client.get(&url).bearer_auth(&ended).send().await.unwrap();
        if res.status() != 200 || std::time::Instant::now() > deadline {
            break res;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(res.status(), 401);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert_eq!(
        challenge,
        "Bearer realm=\"photos\", error=\"invalid_token\", \
         error_description=\"the session has ended\""
    );
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_token");
    assert_eq!(client.get(&url).bearer_auth(&live).send().await.unwrap().status(), 200);
    handle.stop(true).await;
}
