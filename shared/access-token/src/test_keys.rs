//! INSECURE, TEST-ONLY key helpers for this crate's unit tests: throwaway RSA keys generated
//! per test, and tokens signed with them. Compiled only under `cfg(test)`.

use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::public_key::PublicKey;

/// A throwaway RSA-2048 key pair.
pub struct TestKey {
    pub kid: String,
    /// PKCS#8 PEM (what the auth server writes to `keys/private`).
    pub private_pem: String,
    pub public_pem: String,
}

impl TestKey {
    pub fn generate() -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let private: Pkcs8V1Der<'static> = pair.as_der().unwrap();
        let public: PublicKeyX509Der<'static> = pair.public_key().as_der().unwrap();
        let public_pem = to_pem("PUBLIC KEY", public.as_ref());
        let kid = PublicKey::from_pem(public_pem.as_bytes()).unwrap().kid().to_owned();
        Self { kid, private_pem: to_pem("PRIVATE KEY", private.as_ref()), public_pem }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::from_pem(self.public_pem.as_bytes()).unwrap()
    }

    /// Writes `<dir>/<kid>.pem` and returns its path.
    pub fn write_public(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.pem", self.kid));
        std::fs::write(&path, &self.public_pem).unwrap();
        path
    }

    /// An RS256 `at+jwt` header naming this key.
    pub fn header(&self) -> Header {
        let mut h = Header::new(Algorithm::RS256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(self.kid.clone());
        h
    }

    pub fn sign(&self, header: &Header, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            header,
            claims,
            &EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
