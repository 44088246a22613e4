//! The process-wide `jsonwebtoken` [`CryptoProvider`]: aws-lc-rs, exactly as
//! [`aws_lc::DEFAULT_PROVIDER`], except that an RS256 verification with a key we loaded uses
//! the aws-lc key parsed when it was loaded instead of parsing its DER again on every call.
//!
//! Why it exists: `jsonwebtoken::decode` does all the JWT parsing and claim validation (the
//! team rule: never hand-roll crypto or JWT parsing), but its aws-lc backend builds an
//! `UnparsedPublicKey` from the key's DER for every token, so aws-lc re-parses the RSA key
//! each time. This provider keeps `decode` in charge and only swaps where the parsed key
//! comes from:
//! - [`parse_and_register`] (called when a [`PublicKey`](crate::keys::PublicKey) is built)
//!   parses the key once and records it under its DER bytes; a key with the same DER built
//!   again (a reload) shares that parse. The registry holds only a `Weak`: an entry lives as
//!   long as some `PublicKey` holds the key, so reloads and rotations cannot grow it;
//! - `verifier_factory`, for [`Algorithm::RS256`] with an RSA [`DecodingKeyKind::SecretOrDer`]
//!   key found in the registry, answers a verifier over that parsed key (the same aws-lc
//!   algorithm as the default: PKCS#1 v1.5, SHA-256, 2048–8192 bits). Anything else (another
//!   algorithm, another key kind, a key not registered) goes to the default provider: a
//!   registry miss is only slower, never a failure;
//! - signing and the JWK utilities are the default provider's.
//!
//! [`install`] puts it in place once per process. If another provider was installed first
//! (or `jsonwebtoken` already fell back to its default because it was used before), that one
//! stays: verification is then just as correct, only without the saved parse.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use arc_swap::ArcSwap;
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::Result;
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};

/// Ours: the default provider with a registry-backed RS256 verifier.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: DEFAULT_PROVIDER.signer_factory,
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

/// Parsed RS256 keys by DER bytes; `Weak`, so a key no longer loaded anywhere drops out.
type Registry = HashMap<Box<[u8]>, Weak<ParsedPublicKey>>;

fn registry() -> &'static ArcSwap<Registry> {
    static REGISTRY: OnceLock<ArcSwap<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| ArcSwap::from_pointee(HashMap::new()))
}

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
                 re-parsed on every verification (correct, only slower)"
            );
            false
        }
    })
}

/// aws-lc's RS256 form (PKCS#1 v1.5, SHA-256, 2048–8192 bits) of the RSA public key whose
/// DER is `der`, registered for the verifier factory: parsed here only if no live key with
/// the same DER is registered, else shared (so a reload of unchanged keys parses nothing and
/// an entry stays live while any [`PublicKey`](crate::keys::PublicKey) holds it). `None`: not
/// a usable RSA key.
pub(crate) fn parse_and_register(der: &[u8]) -> Option<Arc<ParsedPublicKey>> {
    if let Some(parsed) = lookup(der) {
        return Some(parsed);
    }
    let parsed = Arc::new(ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der).ok()?);
    // Writers take turns (key loads are rare); readers never wait.
    static WRITER: Mutex<()> = Mutex::new(());
    let _writer = WRITER.lock().unwrap_or_else(PoisonError::into_inner);
    let current = registry().load();
    if let Some(other) = current.get(der).and_then(Weak::upgrade) {
        return Some(other);
    }
    // Dead entries (keys no longer loaded anywhere) are dropped on the way.
    let mut next: Registry = current
        .iter()
        .filter(|(_, key)| key.strong_count() > 0)
        .map(|(d, key)| (d.clone(), key.clone()))
        .collect();
    next.insert(der.into(), Arc::downgrade(&parsed));
    registry().store(Arc::new(next));
    Some(parsed)
}

fn lookup(der: &[u8]) -> Option<Arc<ParsedPublicKey>> {
    registry().load().get(der).and_then(Weak::upgrade)
}

#[cfg(test)]
thread_local! {
    /// RS256 DER keys verified on this thread without a registry entry (parsed per call).
    pub(crate) static SLOW_PARSES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn verifier_factory(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if *algorithm == Algorithm::RS256
        && key.family() == AlgorithmFamily::Rsa
        && let DecodingKeyKind::SecretOrDer(der) = key.kind()
    {
        match lookup(der) {
            Some(parsed) => return Ok(Box::new(ParsedRs256(parsed))),
            None => note_slow_parse(),
        }
    }
    (DEFAULT_PROVIDER.verifier_factory)(algorithm, key)
}

/// A registry miss: the default provider will parse the DER for this one call.
fn note_slow_parse() {
    #[cfg(test)]
    SLOW_PARSES.with(|n| n.set(n.get() + 1));
}

/// RS256 with a key aws-lc has already parsed.
struct ParsedRs256(Arc<ParsedPublicKey>);

impl signature::Verifier<Vec<u8>> for ParsedRs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        self.0.verify_sig(msg, signature).map_err(signature::Error::from_source)
    }
}

impl JwtVerifier for ParsedRs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}
