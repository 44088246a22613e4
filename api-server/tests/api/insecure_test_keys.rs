//! INSECURE, TEST-ONLY keys: throwaway RSA-2048 pairs generated in memory for each test run,
//! and tokens signed with them. Nothing here may be used outside tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISSUER: &str = "http://localhost:5000";
pub const AUDIENCE: &str = "articles-api";

/// A throwaway RSA key pair; `kid` is its RFC 7638 thumbprint.
pub struct TestKey {
    pub kid: String,
    pub public_pem: String,
    encoding: EncodingKey,
}

impl TestKey {
    pub fn generate() -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let private: Pkcs8V1Der<'static> = pair.as_der().unwrap();
        let public: PublicKeyX509Der<'static> = pair.public_key().as_der().unwrap();
        let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref().to_vec()));
        let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref().to_vec()));
        let kid = access_token::public_key::PublicKey::from_pem(public_pem.as_bytes())
            .unwrap()
            .kid()
            .to_owned();
        let encoding = EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
        Self { kid, public_pem, encoding }
    }

    /// The key every test app trusts (generated once per test binary).
    pub fn trusted() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(TestKey::generate)
    }

    /// A key no app trusts.
    pub fn attacker() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(TestKey::generate)
    }

    /// Writes `<dir>/<kid>.pem`.
    pub fn write_public(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.pem", self.kid));
        std::fs::write(&path, &self.public_pem).unwrap();
        path
    }

    pub fn jwk(&self) -> Jwk {
        access_token::public_key::PublicKey::from_pem(self.public_pem.as_bytes())
            .unwrap()
            .jwk()
            .clone()
    }

    /// The header the auth server uses: RS256, `at+jwt`, this key's kid.
    pub fn header(&self) -> Header {
        let mut h = Header::new(Algorithm::RS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(self.kid.clone());
        h
    }

    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).unwrap()
    }

    /// A valid token for `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.header(), claims)
    }
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Valid claims for `username` (role `user`, scope `articles:read`, 15 minutes).
pub fn claims_for(username: &str) -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": format!("id-{username}"),
        "preferred_username": username, "name": format!("{username} (test)"),
        "roles": ["user"], "scope": "articles:read",
        "iat": now, "nbf": now, "exp": now + 900,
        "jti": format!("jti-{username}-{now}"), "sid": "sid-test"
    })
}

/// `claims` with `field` set to `value`.
pub fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

/// `claims` without `field`.
pub fn without(mut claims: Value, field: &str) -> Value {
    claims.as_object_mut().unwrap().remove(field);
    claims
}

/// base64url without padding, for hand-made tokens.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
