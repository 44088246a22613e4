//! The process-wide `jsonwebtoken` [`CryptoProvider`]: aws-lc-rs, exactly as
//! [`aws_lc::DEFAULT_PROVIDER`], except that RS256 with a key we loaded uses the aws-lc key
//! parsed when it was loaded instead of parsing its DER again on every call, for verifying
//! (`decode`) and for signing (`encode`) alike.
//!
//! Why it exists: `jsonwebtoken` does all the JWT work, parsing, claim validation and building
//! the JWS (the team rule: never hand-roll crypto or JWT), but its aws-lc backend builds the
//! aws-lc key from the key's DER for every token, so aws-lc re-parses an RSA key each time
//! (for a private key that is the costlier part of a signature after the RSA operation). This
//! provider keeps `jsonwebtoken` in charge and only swaps where the parsed key comes from:
//! - [`parse_and_register`] (called when a [`PublicKey`](crate::public_key::PublicKey) is built)
//!   parses a public key once and records it under its DER bytes; [`RsaSigningKey::from_pem`]
//!   does the same for a private key, recorded under the SHA-256 of its DER (so the registry
//!   holds no second copy of the key material). A key with the same DER built again (a reload)
//!   shares that parse. The registries hold only a `Weak`: an entry lives as long as some
//!   holder of the key does, so reloads and rotations cannot grow them;
//! - `verifier_factory` and `signer_factory`, for [`Algorithm::RS256`] with an RSA key found
//!   in a registry, answer a verifier or signer over that parsed key (the same aws-lc
//!   algorithm as the default: PKCS#1 v1.5, SHA-256, 2048–8192 bits). Anything else (another
//!   algorithm, another key kind, a key not registered) goes to the default provider: a
//!   registry miss is only slower, never a failure, and is counted ([`slow_parses`]);
//! - the JWK utilities are the default provider's.
//!
//! [`install`] puts it in place once per process. If another provider was installed first
//! (or `jsonwebtoken` already fell back to its default because it was used before), that one
//! stays: signing and verification are then just as correct, only without the saved parse.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use arc_swap::ArcSwap;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
};
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::Result;
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};

/// Ours: the default provider with registry-backed RS256 verifier and signer.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory,
    verifier_factory,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: DEFAULT_PROVIDER
            .key_utils
            .rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key: DEFAULT_PROVIDER
            .key_utils
            .rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key: DEFAULT_PROVIDER
            .key_utils
            .ec_pub_components_from_private_key,
        ed_pub_components_from_private_key: DEFAULT_PROVIDER
            .key_utils
            .ed_pub_components_from_private_key,
        compute_digest: DEFAULT_PROVIDER.key_utils.compute_digest,
    },
};

/// A registry's content: weak parsed keys by their byte key.
type Entries<T> = HashMap<Box<[u8]>, Weak<T>>;

/// Parsed keys by a byte key (a public key's DER, a private key's DER digest); `Weak`, so a
/// key no longer held anywhere drops out. Readers never wait; writers (key loads, rare) take
/// turns.
struct Registry<T> {
    map: OnceLock<ArcSwap<Entries<T>>>,
    writer: Mutex<()>,
}

impl<T> Registry<T> {
    const fn new() -> Self {
        Self { map: OnceLock::new(), writer: Mutex::new(()) }
    }

    fn map(&self) -> &ArcSwap<Entries<T>> {
        self.map.get_or_init(|| ArcSwap::from_pointee(HashMap::new()))
    }

    fn lookup(&self, id: &[u8]) -> Option<Arc<T>> {
        self.map().load().get(id).and_then(Weak::upgrade)
    }

    /// The live entry for `id`, or `parse()` registered under it (`None`: it did not parse).
    fn get_or_register(&self, id: &[u8], parse: impl FnOnce() -> Option<T>) -> Option<Arc<T>> {
        if let Some(parsed) = self.lookup(id) {
            return Some(parsed);
        }
        let parsed = Arc::new(parse()?);
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.map().load();
        if let Some(other) = current.get(id).and_then(Weak::upgrade) {
            return Some(other);
        }
        // Dead entries (keys no longer held anywhere) are dropped on the way.
        let mut next: Entries<T> = current
            .iter()
            .filter(|(_, key)| key.strong_count() > 0)
            .map(|(d, key)| (d.clone(), key.clone()))
            .collect();
        next.insert(id.into(), Arc::downgrade(&parsed));
        self.map().store(Arc::new(next));
        Some(parsed)
    }
}

/// Parsed RS256 public keys by DER.
static PUBLIC: Registry<ParsedPublicKey> = Registry::new();

/// Parsed RSA private keys by SHA-256 of their PKCS#1 DER.
static PRIVATE: Registry<RsaKeyPair> = Registry::new();

/// Whether [`install`] put our provider in place (false: another one was there first).
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Installs the provider as `jsonwebtoken`'s process default, once; later calls are free.
/// Answers whether ours is the one in use.
pub fn install() -> bool {
    *INSTALLED.get_or_init(|| match PROVIDER.install_default() {
        Ok(()) => true,
        Err(other) if std::ptr::eq(other, &PROVIDER) => true,
        Err(_) => {
            log::warn!(
                "another jsonwebtoken crypto provider is already installed; RS256 keys will be \
                 re-parsed on every signature and verification (correct, only slower)"
            );
            false
        }
    })
}

/// aws-lc's RS256 form (PKCS#1 v1.5, SHA-256, 2048–8192 bits) of the RSA public key whose
/// DER is `der`, registered for the verifier factory: parsed here only if no live key with
/// the same DER is registered, else shared (so a reload of unchanged keys parses nothing and
/// an entry stays live while any [`PublicKey`](crate::public_key::PublicKey) holds it). `None`: not
/// a usable RSA key.
pub(crate) fn parse_and_register(der: &[u8]) -> Option<Arc<ParsedPublicKey>> {
    PUBLIC.get_or_register(der, || ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der).ok())
}

/// An RSA private key for `jsonwebtoken::encode` with RS256, parsed once: while it lives,
/// `encode` with [`Self::encoding_key`] signs with this parse (through the provider) instead
/// of parsing the key for every token. `Debug` shows no key material.
pub struct RsaSigningKey {
    encoding: EncodingKey,
    parsed: Arc<RsaKeyPair>,
}

impl std::fmt::Debug for RsaSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaSigningKey").finish_non_exhaustive()
    }
}

/// The text is not a usable RSA private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a usable RSA private key in PEM form")]
pub struct NotAnRsaPrivateKey;

impl RsaSigningKey {
    /// Parses a PEM RSA private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`, 2048
    /// to 8192 bits) and registers its parse.
    pub fn from_pem(pem: &[u8]) -> std::result::Result<Self, NotAnRsaPrivateKey> {
        install();
        let encoding = EncodingKey::from_rsa_pem(pem).map_err(|_| NotAnRsaPrivateKey)?;
        let id = digest(&SHA256, encoding.as_bytes());
        let parsed = PRIVATE
            .get_or_register(id.as_ref(), || RsaKeyPair::from_der(encoding.as_bytes()).ok())
            .ok_or(NotAnRsaPrivateKey)?;
        Ok(Self { encoding, parsed })
    }

    /// The key to hand `jsonwebtoken::encode`.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The parsed key pair (for its public half).
    pub fn key_pair(&self) -> &RsaKeyPair {
        &self.parsed
    }
}

thread_local! {
    /// RS256 keys used on this thread without a registry entry (parsed per call).
    static SLOW: Cell<SlowParses> = const { Cell::new(SlowParses { verify: 0, sign: 0 }) };
}

/// How many RS256 verifications and signatures on the calling thread had to parse their key
/// because no parse of it was registered (tests assert it does not grow; a diagnostic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlowParses {
    /// Verifications (`decode`) with an unregistered public key.
    pub verify: u64,
    /// Signatures (`encode`) with an unregistered private key.
    pub sign: u64,
}

/// [`SlowParses`] of the calling thread so far.
pub fn slow_parses() -> SlowParses {
    SLOW.with(Cell::get)
}

fn count_slow(update: impl FnOnce(&mut SlowParses)) {
    SLOW.with(|cell| {
        let mut counts = cell.get();
        update(&mut counts);
        cell.set(counts);
    });
}

fn verifier_factory(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *algorithm == Algorithm::RS256
        && key.family() == AlgorithmFamily::Rsa
        && let DecodingKeyKind::SecretOrDer(der) = key.kind()
    {
        match PUBLIC.lookup(der) {
            Some(parsed) => return Ok(Box::new(ParsedRs256Verifier(parsed))),
            None => count_slow(|n| n.verify += 1),
        }
    }
    (DEFAULT_PROVIDER.verifier_factory)(algorithm, key)
}

fn signer_factory(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *algorithm == Algorithm::RS256 && key.family() == AlgorithmFamily::Rsa {
        match PRIVATE.lookup(digest(&SHA256, key.as_bytes()).as_ref()) {
            Some(parsed) => return Ok(Box::new(ParsedRs256Signer(parsed))),
            None => count_slow(|n| n.sign += 1),
        }
    }
    (DEFAULT_PROVIDER.signer_factory)(algorithm, key)
}

/// RS256 verification with a key aws-lc has already parsed.
struct ParsedRs256Verifier(Arc<ParsedPublicKey>);

impl signature::Verifier<Vec<u8>> for ParsedRs256Verifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        self.0.verify_sig(msg, signature).map_err(signature::Error::from_source)
    }
}

impl JwtVerifier for ParsedRs256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

/// RS256 signing (PKCS#1 v1.5, deterministic) with a key aws-lc has already parsed.
struct ParsedRs256Signer(Arc<RsaKeyPair>);

impl signature::Signer<Vec<u8>> for ParsedRs256Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let mut signature = vec![0; self.0.public_modulus_len()];
        self.0
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut signature)
            .map_err(signature::Error::from_source)?;
        Ok(signature)
    }
}

impl JwtSigner for ParsedRs256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::TestKey;

    #[test]
    fn encode_signs_with_the_registered_parse_and_matches_the_stock_provider() {
        assert!(install(), "our provider is the process default");
        let key = TestKey::generate();
        let signing = RsaSigningKey::from_pem(key.private_pem.as_bytes()).unwrap();
        let claims = serde_json::json!({"sub": "x", "n": 1});
        let before = slow_parses();
        let ours = jsonwebtoken::encode(&key.header(), &claims, signing.encoding_key()).unwrap();
        let again = jsonwebtoken::encode(&key.header(), &claims, signing.encoding_key()).unwrap();
        assert_eq!(slow_parses(), before, "no parse per signature");
        assert_eq!(ours, again, "RS256 is deterministic");
        // The stock provider (a key it parses itself) produces the same bytes.
        let message = ours.rsplit_once('.').unwrap().0;
        let fresh = EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).unwrap();
        let stock = (DEFAULT_PROVIDER.signer_factory)(&Algorithm::RS256, &fresh).unwrap();
        let stock_sig = signature::Signer::try_sign(stock.as_ref(), message.as_bytes()).unwrap();
        assert_eq!(
            ours.rsplit_once('.').unwrap().1,
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, stock_sig)
        );

        // Once nothing holds the parse, the same key is parsed per call again (still correct).
        drop(signing);
        jsonwebtoken::encode(&key.header(), &claims, &fresh).unwrap();
        assert_eq!(slow_parses().sign, before.sign + 1);
        assert!(RsaSigningKey::from_pem(b"not a key").is_err());
    }
}
