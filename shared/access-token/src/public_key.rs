//! Public signing keys: parsing, RFC 7638 `kid`, and their JWK form.
//!
//! A [`PublicKey`] is parsed once, when it is loaded, including aws-lc's own parsed form of
//! the RSA key, which is registered with our `jsonwebtoken` crypto provider
//! ([`crate::jwt_provider`]) so `jsonwebtoken::decode` verifies with it instead of parsing the
//! DER again; verification then only looks the key up by `kid` (a map key, never a path).

use std::sync::Arc;

use aws_lc_rs::signature::ParsedPublicKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not a PEM SPKI/PKCS#1 RSA public key.
    #[error("not an RSA public key in PEM form")]
    NotRsaPem,
    /// A JWK that is not an RSA signing key for RS256.
    #[error("JWK is not an RSA key usable for RS256")]
    UnusableJwk,
    /// Modulus below [`MIN_RSA_BITS`].
    #[error("RSA key of {0} bits is too small (at least {MIN_RSA_BITS})")]
    TooSmall(usize),
    /// The thumbprint could not be computed.
    #[error("cannot compute the key thumbprint")]
    Thumbprint,
}

/// An RS256 public key with its `kid` and JWK, ready for verification.
#[derive(Clone)]
pub struct PublicKey {
    kid: String,
    bits: usize,
    decoding: DecodingKey,
    /// The same key parsed by aws-lc for RS256 (PKCS#1 v1.5, SHA-256, 2048–8192 bits), shared
    /// with every key of the same DER. The provider's registry refers to it weakly: it is
    /// used by `jsonwebtoken::decode` while this key (or one with the same DER) lives.
    #[allow(dead_code)] // Held for the registry's `Weak`.
    parsed: Arc<ParsedPublicKey>,
    jwk: Jwk,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).field("bits", &self.bits).finish()
    }
}

impl PublicKey {
    /// Parses a PEM RSA public key (SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        crate::jwt_provider::install();
        let decoding = DecodingKey::from_rsa_pem(pem).map_err(|_| KeyError::NotRsaPem)?;
        Self::from_decoding_key(decoding)
    }

    /// Builds a key from a JWK (as fetched from a JWKS). The JWK's own `kid` is ignored:
    /// the `kid` is always recomputed as the RFC 7638 thumbprint, so a JWKS cannot alias keys.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        crate::jwt_provider::install();
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            return Err(KeyError::UnusableJwk);
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature)
            || matches!(jwk.common.key_algorithm, Some(alg) if alg != KeyAlgorithm::RS256)
        {
            return Err(KeyError::UnusableJwk);
        }
        let decoding =
            DecodingKey::from_rsa_components(&rsa.n, &rsa.e).map_err(|_| KeyError::UnusableJwk)?;
        Self::from_decoding_key(decoding)
    }

    fn from_decoding_key(decoding: DecodingKey) -> Result<Self, KeyError> {
        let bare = Jwk::from_decoding_key(&decoding, Some(Algorithm::RS256))
            .map_err(|_| KeyError::NotRsaPem)?;
        let AlgorithmParameters::RSA(rsa) = &bare.algorithm else {
            return Err(KeyError::NotRsaPem);
        };
        let bits = modulus_bits(&rsa.n).ok_or(KeyError::NotRsaPem)?;
        if bits < MIN_RSA_BITS {
            return Err(KeyError::TooSmall(bits));
        }
        let kid = bare.thumbprint(ThumbprintHash::SHA256).map_err(|_| KeyError::Thumbprint)?;
        // One form for every key, the DER `jsonwebtoken` verifies with, so the provider finds
        // keys from a JWK (n, e) as well as from a PEM.
        let decoding = match decoding.kind() {
            DecodingKeyKind::SecretOrDer(_) => decoding,
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                DecodingKey::from_rsa_der(&rsa_public_key_der(n, e))
            }
        };
        let DecodingKeyKind::SecretOrDer(der) = decoding.kind() else {
            return Err(KeyError::NotRsaPem);
        };
        let parsed = crate::jwt_provider::parse_and_register(der).ok_or(KeyError::NotRsaPem)?;
        let jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::RS256),
                key_id: Some(kid.clone()),
                ..Default::default()
            },
            algorithm: bare.algorithm,
        };
        Ok(Self { kid, bits, decoding, parsed, jwk })
    }

    /// The RFC 7638 JWK SHA-256 thumbprint, base64url.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The key for `jsonwebtoken::decode`.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The JWK (`kty`, `kid`, `use: "sig"`, `alg: "RS256"`, `n`, `e`).
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }
}

/// The PKCS#1 `RSAPublicKey` DER (`SEQUENCE { INTEGER n, INTEGER e }`) of big-endian `n`, `e`.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    fn integer(value: &[u8]) -> Vec<u8> {
        let value = &value[value.iter().take_while(|b| **b == 0).count()..];
        // A positive INTEGER whose top bit is set needs a leading zero byte.
        let pad = value.first().is_none_or(|b| b & 0x80 != 0);
        let mut out = vec![0x02];
        push_len(&mut out, value.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(value);
        out
    }
    let body = [integer(n), integer(e)].concat();
    let mut out = vec![0x30];
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// Bit length of a base64url big-endian modulus, ignoring leading zero bytes.
fn modulus_bits(n_b64: &str) -> Option<usize> {
    let n = URL_SAFE_NO_PAD.decode(n_b64).ok()?;
    let first = n.iter().position(|b| *b != 0)?;
    let lead = n[first];
    Some((n.len() - first - 1) * 8 + (8 - lead.leading_zeros() as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1 example key; its thumbprint is given in the RFC.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    const RFC7638_THUMBPRINT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"
        }))
        .unwrap();
        let key = PublicKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.kid(), RFC7638_THUMBPRINT);
        assert_eq!(key.bits(), 2048);
        assert_eq!(key.jwk().common.key_id.as_deref(), Some(RFC7638_THUMBPRINT));
    }

    #[test]
    fn jwk_for_another_algorithm_is_refused() {
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "PS256"
        }))
        .unwrap();
        assert!(matches!(PublicKey::from_jwk(&jwk), Err(KeyError::UnusableJwk)));
    }

    #[test]
    fn a_key_from_its_jwk_verifies_what_its_pem_verifies() {
        let key = crate::test_keys::TestKey::generate();
        let from_pem = key.public();
        let from_jwk = PublicKey::from_jwk(from_pem.jwk()).unwrap();
        assert_eq!(from_jwk.kid(), from_pem.kid());
        let token = key.sign(&key.header(), &serde_json::json!({"sub": "x"}));
        let (message, signature) = token.rsplit_once('.').unwrap();
        let verify = |k: &PublicKey, message: &[u8]| {
            jsonwebtoken::crypto::verify(signature, message, k.decoding_key(), Algorithm::RS256)
                .unwrap()
        };
        for k in [&from_pem, &from_jwk] {
            assert!(verify(k, message.as_bytes()));
            assert!(!verify(k, b"other"));
        }
    }

    #[test]
    fn der_lengths_past_127_bytes_use_the_long_form() {
        let der = rsa_public_key_der(&[0xff; 256], &[1, 0, 1]);
        // SEQUENCE, long form on two bytes; INTEGER n with a leading zero (top bit set).
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x0a]);
        assert_eq!(&der[4..9], &[0x02, 0x82, 0x01, 0x01, 0x00]);
        assert_eq!(&der[der.len() - 5..], &[0x02, 0x03, 0x01, 0x00, 0x01]);
    }

    #[test]
    fn garbage_pem_is_refused() {
        assert!(
            PublicKey::from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
        assert!(PublicKey::from_pem(b"hello").is_err());
    }
}
