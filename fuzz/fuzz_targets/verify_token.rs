//! The access-token verifier (`access_token::verify::Verifier`) on arbitrary input.
//!
//! Input byte 0 chooses the mode: `0` signs the rest (when it is JSON) as the claims of a
//! correctly signed RS256 token, so the claim checks get exercised; anything else verifies the
//! whole input as a token. INSECURE, TEST-ONLY key: generated at start, never stored.
#![no_main]

use std::sync::{Arc, OnceLock};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use access_token::public_key::PublicKey;
use access_token::{FolderSource, KeySet, TrustedKeys, Verifier, VerifierConfig};

struct Fixture {
    verifier: Verifier,
    set: KeySet,
    signing: EncodingKey,
    kid: String,
}

fn pem(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let private: Pkcs8V1Der<'static> = pair.as_der().unwrap();
        let public: PublicKeyX509Der<'static> = pair.public_key().as_der().unwrap();
        let public = PublicKey::from_pem(pem("PUBLIC KEY", public.as_ref()).as_bytes()).unwrap();
        let kid = public.kid().to_owned();
        let set = KeySet::from_keys([public]);
        let keys = Arc::new(TrustedKeys::new(FolderSource::new("/nonexistent-fuzz-keys"), set.clone()));
        let config = VerifierConfig::new("http://localhost:5000", "articles-api")
            .required_scope("articles:read");
        let signing =
            EncodingKey::from_rsa_pem(pem("PRIVATE KEY", private.as_ref()).as_bytes()).unwrap();
        Fixture { verifier: Verifier::new(config, keys), set, signing, kid }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    match data.split_first() {
        Some((0, claims)) => {
            let Ok(claims) = serde_json::from_slice::<serde_json::Value>(claims) else { return };
            let mut header = Header::new(Algorithm::RS256);
            header.typ = Some("at+jwt".into());
            header.kid = Some(f.kid.clone());
            let Ok(token) = jsonwebtoken::encode(&header, &claims, &f.signing) else { return };
            if let Ok(verified) = f.verifier.verify_with(&token, &f.set) {
                // Whatever passed has the claims the contract requires.
                assert!(!verified.sub.is_empty() || claims["sub"] == "");
                assert!(verified.has_scope("articles:read"));
            }
        }
        _ => {
            if let Ok(token) = std::str::from_utf8(data) {
                // Unsigned junk must never verify.
                assert!(f.verifier.verify_with(token, &f.set).is_err());
            }
        }
    }
});
