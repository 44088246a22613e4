//! The pinned RS256 access-token verifier.
//!
//! What it enforces, in order (each step returns its own [`VerifyError`]):
//! 1. size: a token over [`MAX_TOKEN_BYTES`] is refused before any parsing;
//! 2. shape: three base64url segments, a JSON header without `crit`;
//! 3. header: `alg` must be `RS256` and `typ` must be `at+jwt` (checked by hand, RFC 9068 §4);
//!    the header is otherwise read only for `kid`, a map key into the loaded [`KeySet`] (never a
//!    path). `jku`, `x5u` and `jwk` are ignored: keys come only from our own source. The
//!    outcome of this step depends on the header segment's bytes alone, so the segments of a
//!    few tokens that verified are remembered and skip it (`KnownHeaders`);
//! 4. signature and claims: `jsonwebtoken::decode` with a [`Validation`] pinned to RS256 (the
//!    algorithm is never taken from the token) does all the JWT parsing: it checks
//!    RSASSA-PKCS1-v1_5 with SHA-256 over `header.payload` with the key named by `kid`,
//!    deserializes the payload into [`AccessClaims`] (`exp`, `iat`, `iss`, `aud`, `sub`
//!    required), checks `exp` and `nbf` with the leeway and `iss` and `aud` exactly; its errors
//!    map onto [`VerifyError`];
//! 5. `iat`: not later than now + leeway (RFC 7519 leaves it unchecked; a token from the
//!    future means a broken or hostile issuer clock); `jsonwebtoken` has no such check, so it
//!    is one integer comparison on the verified claims;
//! 6. scope: the configured scope must be one of the space-separated `scope` words.
//!
//! Nothing here parses a JWS or checks a signature or claim by hand (steps 1 to 3 are policy
//! checks on the header, before the library). The one per-call cost `decode` had that matters,
//! aws-lc re-parsing the RSA key's DER for every token, is removed by our crypto provider
//! ([`crate::jwt_provider`], installed by [`Verifier::new`]): it hands `decode` the aws-lc key
//! parsed once when the key was loaded. The crypto is still aws-lc's, through `jsonwebtoken`.
//!
//! An unknown `kid` triggers one rate-limited re-read of the keys ([`TrustedKeys::refresh_for_unknown_kid`])
//! before the token is refused, so a token signed right after a key rotation is accepted.
//!
//! Tokens that verified are remembered in a bounded cache (keyed by the whole token, used
//! only until `exp`, emptied when the key set changes; see `token_cache`), so a client
//! presenting the same token again (every request for its lifetime) costs a map lookup rather
//! than an RSA verification. [`VerifierConfig::token_cache`] sizes it; 0 turns it off.
//!
//! Why one file (~460 lines of code): the checks above are one ordered pipeline; the order (size,
//! shape, header, signature and claims, policy) is the security argument, and it reads top to
//! bottom here. The token cache, the key sets and the provider are already modules of their own.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::claims::{ACCESS_TOKEN_TYP, AccessClaims};
use crate::keyset::{KeySet, TrustedKeys};
use crate::public_key::PublicKey;
use crate::revocation::RevocationList;
use crate::token_cache::TokenCache;

/// Longest token accepted. Ours are about 1 KiB; anything past 8 KiB is refused before it is
/// decoded, so a huge header cannot cost parsing time or memory.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest encoded JOSE header accepted (ours is about 130 bytes); decoded on the stack.
const MAX_HEADER_B64: usize = 1024;

/// Default clock-skew allowance (`API_LEEWAY`).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// What a [`Verifier`] accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// The one accepted `iss` (the auth server's `AUTH_ISSUER`).
    pub issuer: String,
    /// The one accepted `aud` (`AUTH_AUDIENCE`).
    pub audience: String,
    /// Clock-skew allowance for `exp` and `nbf`, whole seconds.
    pub leeway: Duration,
    /// A scope every token must carry (`articles:read` for the articles API), or none (the auth
    /// server's `/logout/all` only needs a valid token).
    pub required_scope: Option<String>,
    /// The `realm` of the `WWW-Authenticate` challenges answered on failure; none by default
    /// (RFC 6750 §3 makes it optional), each service names its own.
    pub realm: Option<String>,
    /// How many verified tokens to remember (0: none); see the module doc.
    pub token_cache: usize,
}

impl VerifierConfig {
    /// A config for `issuer` and `audience` with the default leeway, no realm, no scope.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            required_scope: None,
            realm: None,
            token_cache: crate::token_cache::DEFAULT_CAPACITY,
        }
    }

    /// Remembers up to `tokens` verified tokens (0 turns the cache off).
    pub fn token_cache(mut self, tokens: usize) -> Self {
        self.token_cache = tokens;
        self
    }

    /// Sets the leeway.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Requires `scope` in every token.
    pub fn required_scope(mut self, scope: impl Into<String>) -> Self {
        self.required_scope = Some(scope.into());
        self
    }

    /// Sets the realm of the challenges.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }
}

/// Why a token was refused. The `Display` text is what clients see in `error_description`
/// and what the debug log records; it never contains the token or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is too long")]
    TooLong,
    /// Not a compact JWS, or a header or claim of the wrong shape.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// `alg` is not `RS256` (e.g. `none`, `HS256`).
    #[error("the token's alg must be RS256")]
    WrongAlg,
    /// `typ` is not `at+jwt`.
    #[error("the token's typ must be at+jwt")]
    WrongTyp,
    /// The header names no key.
    #[error("the token has no kid")]
    MissingKid,
    /// The `kid` names no loaded key, even after a re-read.
    #[error("the token's signing key is unknown")]
    UnknownKid,
    /// The signature does not verify with the named key.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` is past, beyond the leeway.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future, beyond the leeway.
    #[error("the token is issued in the future")]
    IssuedInFuture,
    /// `iss` is not the configured issuer.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// `aud` is not the configured audience.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// A required claim is absent.
    #[error("the token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// The token is valid but lacks the required scope (a 403, not a 401).
    #[error("the token lacks the scope {0}")]
    InsufficientScope(String),
    /// The token is valid but its session is on the revocation list (a 401).
    #[error("the session has ended")]
    SessionEnded,
    /// The token is valid but the revocation list is older than its staleness limit, so it
    /// cannot tell whether the session has ended: not the token's fault (a 503, not a 401).
    #[error("the revocation list is out of date")]
    RevocationListStale,
}

impl VerifyError {
    /// A stable label for metrics (`outcome="expired"`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::Malformed(_) => "malformed",
            Self::WrongAlg => "wrong_alg",
            Self::WrongTyp => "wrong_typ",
            Self::MissingKid => "missing_kid",
            Self::UnknownKid => "unknown_kid",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::SessionEnded => "session_ended",
            Self::RevocationListStale => "revocation_list_stale",
        }
    }
}

/// The only header fields we read. Borrowed, so a normal header costs no allocation.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    /// RFC 7515 §4.1.11: extensions we do not understand must make the token invalid.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Verifies access tokens against a live [`TrustedKeys`] set. Build one per service and share it
/// (`web::Data<Verifier>`); it holds no per-request state (only the header segments of a few
/// verified tokens, see [`KnownHeaders`]).
#[derive(Debug)]
pub struct Verifier {
    keys: Arc<TrustedKeys>,
    leeway: u64,
    required_scope: Option<String>,
    realm: Option<String>,
    cache: Option<TokenCache>,
    /// Consulted after every verification and cache hit ([`Self::with_revocations`]).
    revocations: Option<Arc<RevocationList>>,
    /// What `jsonwebtoken::decode` checks: RS256 only, the required claims, `iss`, `aud`,
    /// `exp` and `nbf` with the leeway.
    validation: Validation,
    /// The header segments of tokens that verified, so the next token with one skips
    /// decoding it.
    known_headers: KnownHeaders,
}

/// How many header segments [`KnownHeaders`] holds.
const KNOWN_HEADERS: usize = 8;

/// Header segments of tokens that verified, each with the `kid` it names. A token whose header
/// segment is one of them skips decoding it (base64, JSON, the `alg`/`typ`/`crit` checks):
/// the outcome is a function of those bytes alone, so it would be the same. Every token a key
/// signs carries the same header, so this holds about one entry per signing key; only a token
/// that verified adds one, so a client cannot fill it; past [`KNOWN_HEADERS`] the oldest goes
/// (keys rotate). Lock-free to read, copied on the rare write.
#[derive(Debug, Default)]
struct KnownHeaders(ArcSwap<Vec<(Box<str>, Box<str>)>>);

impl KnownHeaders {
    /// For a remembered `header_b64`, the key of its `kid` in `set` (unknown if `set` no longer
    /// has it); `None` when the segment is not remembered. The key is borrowed from `set`, so
    /// the read guard is dropped before the caller checks the signature.
    fn key<'s>(
        &self,
        header_b64: &str,
        set: &'s KeySet,
    ) -> Option<Result<&'s PublicKey, VerifyError>> {
        self.0.load().iter().find_map(|(known, kid)| {
            (**known == *header_b64).then(|| set.get(kid).ok_or(VerifyError::UnknownKid))
        })
    }

    fn remember(&self, header_b64: &str, kid: Box<str>) {
        self.0.rcu(|known| {
            let mut known = Vec::clone(known);
            if !known.iter().any(|(header, _)| **header == *header_b64) {
                if known.len() >= KNOWN_HEADERS {
                    known.remove(0);
                }
                known.push((header_b64.into(), kid.clone()));
            }
            known
        });
    }
}

impl Verifier {
    /// A verifier accepting what `config` describes, with keys from `keys`.
    pub fn new(config: VerifierConfig, keys: Arc<TrustedKeys>) -> Self {
        crate::jwt_provider::install();
        let validation = {
            // Pinned: the algorithm is ours, never the token's.
            let mut validation = Validation::new(Algorithm::RS256);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.set_issuer(&[config.issuer.as_str()]);
            validation.set_audience(&[config.audience.as_str()]);
            validation.leeway = config.leeway.as_secs();
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation.reject_tokens_expiring_in_less_than = 0;
            validation
        };
        Self {
            keys,
            leeway: config.leeway.as_secs(),
            required_scope: config.required_scope,
            realm: config.realm,
            cache: (config.token_cache > 0).then(|| TokenCache::new(config.token_cache)),
            revocations: None,
            validation,
            known_headers: KnownHeaders::default(),
        }
    }

    /// Refuses tokens whose session is on `list` ([`VerifyError::SessionEnded`]), and valid
    /// tokens while `list` is older than its staleness limit
    /// ([`VerifyError::RevocationListStale`]). Checked after the signature and after the cache
    /// of verified tokens, so a token verified before its session ended is refused too.
    pub fn with_revocations(mut self, list: Arc<RevocationList>) -> Self {
        self.revocations = Some(list);
        self
    }

    /// The revocation list this verifier consults, if any.
    pub fn revocations(&self) -> Option<&Arc<RevocationList>> {
        self.revocations.as_ref()
    }

    /// The live keys (for readiness checks, listings and reload triggers).
    pub fn keys(&self) -> &Arc<TrustedKeys> {
        &self.keys
    }

    /// The realm for `WWW-Authenticate`, if the service names one.
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    /// The scope every token must carry, if any.
    pub fn required_scope(&self) -> Option<&str> {
        self.required_scope.as_deref()
    }

    /// Verifies `token`; on an unknown `kid`, re-reads the keys (rate-limited, shared with
    /// concurrent callers) once before refusing.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        match self.verify_now(token) {
            Err(VerifyError::UnknownKid) => {
                // Slow path only: the kid is copied so no buffer is held across the wait.
                let kid = inspect(token, str::to_owned)?;
                if self.keys.refresh_for_unknown_kid(&kid).await {
                    self.verify_now(token)
                } else {
                    Err(VerifyError::UnknownKid)
                }
            }
            other => other,
        }
    }

    /// Verifies `token` against the keys loaded right now, without any re-read: an unknown
    /// `kid` is [`VerifyError::UnknownKid`]. No I/O; the request hot path.
    pub fn verify_now(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        self.verify_now_shared(token).map(Arc::unwrap_or_clone)
    }

    /// [`Self::verify_now`], answering shared claims: a token seen before (in the cache)
    /// costs no copy of its claims.
    pub fn verify_now_shared(&self, token: &str) -> Result<Arc<AccessClaims>, VerifyError> {
        let claims = self.verify_signed(token)?;
        if let Some(list) = &self.revocations {
            list.check(&claims)?;
        }
        Ok(claims)
    }

    /// Signature, claims and scope, through the cache; no revocation check.
    fn verify_signed(&self, token: &str) -> Result<Arc<AccessClaims>, VerifyError> {
        let set = self.keys.current();
        let Some(cache) = &self.cache else {
            return self.verify_with(token, &set).map(Arc::new);
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::TooLong);
        }
        let now = now_secs();
        if let Some(claims) = cache.get(token, &set, now, self.leeway) {
            return Ok(claims);
        }
        let claims = Arc::new(self.verify_with(token, &set)?);
        cache.insert(token, &set, Arc::clone(&claims));
        Ok(claims)
    }

    /// Verifies `token` asynchronously like [`Self::verify`], answering shared claims.
    pub async fn verify_shared(&self, token: &str) -> Result<Arc<AccessClaims>, VerifyError> {
        match self.verify_now_shared(token) {
            Err(VerifyError::UnknownKid) => {
                let kid = inspect(token, str::to_owned)?;
                if self.keys.refresh_for_unknown_kid(&kid).await {
                    self.verify_now_shared(token)
                } else {
                    Err(VerifyError::UnknownKid)
                }
            }
            other => other,
        }
    }

    /// Verifies `token` against `set` (no re-read): signature, claims and scope only, neither
    /// the cache nor the revocation list (use [`Self::verify_now`] on a request path).
    pub fn verify_with(&self, token: &str, set: &KeySet) -> Result<AccessClaims, VerifyError> {
        let header_b64 = shape(token)?;
        if let Some(key) = self.known_headers.key(header_b64, set) {
            return self.verify_with_key(token, key?);
        }
        let (key, kid) =
            inspect_header(header_b64, |kid| set.get(kid).map(|key| (key, kid.into())))?
                .ok_or(VerifyError::UnknownKid)?;
        let claims = self.verify_with_key(token, key)?;
        self.known_headers.remember(header_b64, kid);
        Ok(claims)
    }

    /// Steps 4 and 5 for a token whose shape and header [`inspect`] has accepted.
    fn verify_with_key(&self, token: &str, key: &PublicKey) -> Result<AccessClaims, VerifyError> {
        let claims =
            jsonwebtoken::decode::<AccessClaims>(token, key.decoding_key(), &self.validation)
                .map_err(map_jwt_error)?
                .claims;
        self.check_decoded(claims)
    }

    /// The checks `jsonwebtoken` does not make, on claims it has verified: `iat` not later
    /// than now + leeway (a token from the future was not issued by a sane issuer clock), and
    /// the required scope.
    fn check_decoded(&self, claims: AccessClaims) -> Result<AccessClaims, VerifyError> {
        if claims.iat > now_secs().saturating_add(self.leeway) {
            return Err(VerifyError::IssuedInFuture);
        }
        if let Some(scope) = &self.required_scope
            && !claims.has_scope(scope)
        {
            return Err(VerifyError::InsufficientScope(scope.clone()));
        }
        Ok(claims)
    }
}

/// Now, whole seconds since the Unix epoch (what `jsonwebtoken` compares `exp`/`nbf` with).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The three dot-separated segments of a JWS compact token, or `None` for any other count.
/// `memchr` finds the dots with SIMD: the scan of the ~1 KiB token is on every request.
fn segments(token: &str) -> Option<(&str, &str, &str)> {
    let mut dots = memchr::memchr_iter(b'.', token.as_bytes());
    let (first, second) = (dots.next()?, dots.next()?);
    if dots.next().is_some() {
        return None;
    }
    // The dots are ASCII, so every index is a char boundary.
    Some((token.get(..first)?, token.get(first + 1..second)?, token.get(second + 1..)?))
}

/// Checks size, shape, `alg`, `typ` and `crit`, then hands the `kid` to `with_kid`. The
/// header is decoded into a stack buffer and the `kid` borrowed from it, so this allocates
/// nothing for a well-formed token.
fn inspect<R>(token: &str, with_kid: impl FnOnce(&str) -> R) -> Result<R, VerifyError> {
    inspect_header(shape(token)?, with_kid)
}

/// Checks size and shape; answers the header segment.
fn shape(token: &str) -> Result<&str, VerifyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::TooLong);
    }
    let Some((header_b64, payload, signature)) = segments(token) else {
        return Err(VerifyError::Malformed("expected three dot-separated segments"));
    };
    if payload.is_empty() {
        return Err(VerifyError::Malformed("empty payload"));
    }
    if signature.is_empty() {
        return Err(VerifyError::Malformed("missing signature"));
    }
    Ok(header_b64)
}

/// [`inspect`]'s checks of the header segment alone: a function of its bytes only.
fn inspect_header<R>(header_b64: &str, with_kid: impl FnOnce(&str) -> R) -> Result<R, VerifyError> {
    if header_b64.len() > MAX_HEADER_B64 {
        return Err(VerifyError::Malformed("header too long"));
    }
    let mut buf = [0u8; MAX_HEADER_B64];
    let len = URL_SAFE_NO_PAD
        .decode_slice(header_b64, &mut buf)
        .map_err(|_| VerifyError::Malformed("header is not base64url"))?;
    let header: RawHeader<'_> = serde_json::from_slice(&buf[..len])
        .map_err(|_| VerifyError::Malformed("header is not a JSON object with alg"))?;
    if header.alg != "RS256" {
        return Err(VerifyError::WrongAlg);
    }
    match header.typ.as_deref() {
        // RFC 9068 §4: "at+jwt", or the full media type; media types are case-insensitive.
        Some(typ)
            if typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP)
                || typ.eq_ignore_ascii_case("application/at+jwt") => {}
        _ => return Err(VerifyError::WrongTyp),
    }
    if header.crit.is_some() {
        return Err(VerifyError::Malformed("unsupported crit header"));
    }
    match header.kid.as_deref() {
        None => Err(VerifyError::MissingKid),
        Some(kid) => Ok(with_kid(kid)),
    }
}

/// `jsonwebtoken`'s errors as ours (static texts only: nothing from the token is echoed).
fn map_jwt_error(err: jsonwebtoken::errors::Error) -> VerifyError {
    match err.kind() {
        ErrorKind::InvalidSignature => VerifyError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => VerifyError::WrongAlg,
        ErrorKind::ExpiredSignature => VerifyError::Expired,
        ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
        ErrorKind::InvalidIssuer => VerifyError::WrongIssuer,
        ErrorKind::InvalidAudience => VerifyError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => VerifyError::MissingClaim(claim_name(claim)),
        ErrorKind::InvalidClaimFormat(_) => VerifyError::Malformed("a time claim is not a number"),
        ErrorKind::Json(e) => match missing_field(&e.to_string()) {
            Some(claim) => VerifyError::MissingClaim(claim),
            None => VerifyError::Malformed("claims do not match the access-token profile"),
        },
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            VerifyError::Malformed("not a valid compact JWS")
        }
        // A signature of the wrong length and the like end up here.
        _ => VerifyError::BadSignature,
    }
}

/// The claims the access-token profile names, as static strings (so an error never echoes
/// text from the token).
const KNOWN_CLAIMS: &[&str] =
    &["iss", "aud", "sub", "exp", "iat", "nbf", "preferred_username", "jti", "sid"];

fn claim_name(name: &str) -> &'static str {
    KNOWN_CLAIMS.iter().copied().find(|c| *c == name).unwrap_or("required")
}

/// serde's "missing field `x`" message → `x`, when `x` is one of ours.
fn missing_field(message: &str) -> Option<&'static str> {
    let rest = message.strip_prefix("missing field `")?;
    let name = rest.split('`').next()?;
    KNOWN_CLAIMS.iter().copied().find(|c| *c == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyset::{KeyLoad, KeySource, LoadFuture};
    use crate::test_keys::TestKey;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    const ISS: &str = "http://localhost:5000";
    const AUD: &str = "articles-api";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn a_token_has_exactly_three_segments() {
        assert_eq!(segments("a.b.c"), Some(("a", "b", "c")));
        assert_eq!(segments("..x"), Some(("", "", "x")));
        assert_eq!(segments("a.b.c."), None);
        assert_eq!(segments("a.b.c.d"), None);
        assert_eq!(segments("a.b"), None);
        assert_eq!(segments("abc"), None);
        assert_eq!(segments(""), None);
    }

    fn claims() -> Value {
        let now = now();
        json!({
            "iss": ISS, "aud": AUD, "sub": "u1", "preferred_username": "alice",
            "roles": ["user"], "scope": "articles:read", "iat": now, "nbf": now,
            "exp": now + 900, "jti": "j1", "sid": "s1"
        })
    }

    /// A source that never finds anything (the re-read path of these tests).
    #[derive(Debug)]
    struct Nothing;
    impl KeySource for Nothing {
        fn load(&self) -> LoadFuture<'_> {
            Box::pin(async { Ok(KeyLoad::default()) })
        }
        fn describe(&self) -> String {
            "nothing".into()
        }
    }

    fn verifier(key: &TestKey) -> Verifier {
        let keys = TrustedKeys::new(Nothing, KeySet::from_keys([key.public()]));
        Verifier::new(VerifierConfig::new(ISS, AUD).required_scope("articles:read"), Arc::new(keys))
    }

    fn with(mut base: Value, field: &str, value: Value) -> Value {
        base[field] = value;
        base
    }

    fn without(mut base: Value, field: &str) -> Value {
        base.as_object_mut().unwrap().remove(field);
        base
    }

    #[test]
    fn a_cached_token_is_refused_once_its_session_is_listed() {
        use crate::revocation::{Page, RevocationList, SidDigest};
        let key = TestKey::generate();
        let list = Arc::new(RevocationList::new(None));
        let v = verifier(&key).with_revocations(Arc::clone(&list));
        let token = key.sign(&key.header(), &claims());
        let other = key.sign(&key.header(), &with(claims(), "sid", json!("s2")));
        assert!(v.verify_now(&token).is_ok());
        assert!(v.verify_now(&token).is_ok(), "now served from the cache");
        let page = Page {
            cursor: "c".into(),
            reset: true,
            revoked: vec![(SidDigest::of("s1"), now() + 900)],
        };
        list.apply(&page, now());
        assert_eq!(v.verify_now(&token).unwrap_err(), VerifyError::SessionEnded);
        assert!(v.verify_now(&other).is_ok(), "another session passes");
        // A bad token is still refused for what is wrong with it, listed or not.
        let expired = key.sign(&key.header(), &with(claims(), "exp", json!(now() - 3600)));
        assert_eq!(v.verify_now(&expired).unwrap_err(), VerifyError::Expired);
    }

    #[test]
    fn a_stale_list_refuses_valid_tokens_with_its_own_error() {
        use crate::revocation::RevocationList;
        let key = TestKey::generate();
        let list = Arc::new(RevocationList::new(Some(Duration::from_secs(60))));
        let v = verifier(&key).with_revocations(list);
        let token = key.sign(&key.header(), &claims());
        // No full list yet: as good as infinitely old.
        assert_eq!(v.verify_now(&token).unwrap_err(), VerifyError::RevocationListStale);
        let scope = key.sign(&key.header(), &with(claims(), "scope", json!("other")));
        assert!(matches!(v.verify_now(&scope), Err(VerifyError::InsufficientScope(_))));
    }

    #[test]
    fn a_good_token_verifies() {
        let key = TestKey::generate();
        let v = verifier(&key);
        let c = v.verify_now(&key.sign(&key.header(), &claims())).unwrap();
        assert_eq!(c.preferred_username, "alice");
    }

    #[test]
    fn each_hole_is_refused_with_its_reason() {
        let key = TestKey::generate();
        let other = TestKey::generate();
        let v = verifier(&key);
        let now = now();
        let sign = |c: &Value| key.sign(&key.header(), c);

        let mut hs = Header::new(Algorithm::HS256);
        hs.typ = Some("at+jwt".into());
        hs.kid = Some(key.kid.clone());
        let confused = jsonwebtoken::encode(
            &hs,
            &claims(),
            &EncodingKey::from_secret(key.public_pem.as_bytes()),
        )
        .unwrap();
        let mut jwt_typ = key.header();
        jwt_typ.typ = Some("JWT".into());
        let mut known_kid = other.header();
        known_kid.kid = Some(key.kid.clone());
        let mut no_kid = key.header();
        no_kid.kid = None;

        let cases: Vec<(&str, String, VerifyError)> = vec![
            ("alg confusion", confused, VerifyError::WrongAlg),
            ("typ JWT", key.sign(&jwt_typ, &claims()), VerifyError::WrongTyp),
            (
                "foreign key, known kid",
                other.sign(&known_kid, &claims()),
                VerifyError::BadSignature,
            ),
            ("unknown kid", other.sign(&other.header(), &claims()), VerifyError::UnknownKid),
            ("no kid", key.sign(&no_kid, &claims()), VerifyError::MissingKid),
            ("expired", sign(&with(claims(), "exp", json!(now - 120))), VerifyError::Expired),
            (
                "future nbf",
                sign(&with(claims(), "nbf", json!(now + 120))),
                VerifyError::NotYetValid,
            ),
            ("wrong iss", sign(&with(claims(), "iss", json!("evil"))), VerifyError::WrongIssuer),
            ("wrong aud", sign(&with(claims(), "aud", json!("other"))), VerifyError::WrongAudience),
            (
                "aud array without ours",
                sign(&with(claims(), "aud", json!(["other", "more"]))),
                VerifyError::WrongAudience,
            ),
            (
                "aud empty array",
                sign(&with(claims(), "aud", json!([]))),
                VerifyError::WrongAudience,
            ),
            (
                "iat in the future",
                sign(&with(claims(), "iat", json!(now + 120))),
                VerifyError::IssuedInFuture,
            ),
            ("no sub", sign(&without(claims(), "sub")), VerifyError::MissingClaim("sub")),
            ("no iat", sign(&without(claims(), "iat")), VerifyError::MissingClaim("iat")),
            ("no exp", sign(&without(claims(), "exp")), VerifyError::MissingClaim("exp")),
            (
                "no scope",
                sign(&without(claims(), "scope")),
                VerifyError::InsufficientScope("articles:read".into()),
            ),
            ("huge", "a".repeat(MAX_TOKEN_BYTES + 1), VerifyError::TooLong),
            (
                "two parts",
                "abc.def".into(),
                VerifyError::Malformed("expected three dot-separated segments"),
            ),
        ];
        for (name, token, want) in &cases {
            assert_eq!(v.verify_now(token).as_ref(), Err(want), "{name}");
        }
        // The same once a good token's header is remembered (most holes share that header).
        assert!(v.verify_now(&sign(&claims())).is_ok());
        assert_eq!(v.known_headers.0.load().len(), 1);
        for (name, token, want) in &cases {
            assert_eq!(v.verify_now(token).as_ref(), Err(want), "{name}, header remembered");
        }
        assert_eq!(v.known_headers.0.load().len(), 1, "no refused token is remembered");
    }

    #[test]
    fn a_remembered_header_still_needs_its_key_and_a_good_signature() {
        let key = TestKey::generate();
        let v = verifier(&key);
        let good = key.sign(&key.header(), &claims());
        assert!(v.verify_now(&good).is_ok());
        let header = good.split('.').next().unwrap();
        let other = TestKey::generate();
        let mut known_kid = other.header();
        known_kid.kid = Some(key.kid.clone());
        let forged = other.sign(&known_kid, &claims());
        assert!(forged.starts_with(&format!("{header}.")), "the remembered header");
        assert_eq!(v.verify_now(&forged), Err(VerifyError::BadSignature));
        // The key gone from the set: unknown, remembered header or not.
        assert_eq!(v.verify_with(&good, &KeySet::empty()), Err(VerifyError::UnknownKid));
    }

    #[test]
    fn the_remembered_headers_are_bounded_and_the_oldest_goes() {
        let key = TestKey::generate();
        let v = verifier(&key);
        let tokens: Vec<String> = (0..KNOWN_HEADERS + 2)
            .map(|i| {
                let mut header = key.header();
                header.cty = Some(format!("variant-{i}"));
                key.sign(&header, &claims())
            })
            .collect();
        for token in &tokens {
            assert!(v.verify_now(token).is_ok());
        }
        let known = v.known_headers.0.load();
        assert_eq!(known.len(), KNOWN_HEADERS);
        let header = |token: &String| token.split('.').next().unwrap().to_owned();
        assert!(!known.iter().any(|(h, _)| **h == header(&tokens[0])), "the oldest went");
        assert!(known.iter().any(|(h, _)| **h == header(&tokens[KNOWN_HEADERS + 1])));
        assert!(known.iter().all(|(_, kid)| **kid == key.kid));
    }

    /// Signs `header.payload` as given (any bytes), RS256, with `key`.
    fn sign_raw(key: &TestKey, header: &str, payload: &str) -> String {
        let message = format!("{header}.{payload}");
        let sig = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).unwrap(),
            Algorithm::RS256,
        )
        .unwrap();
        format!("{message}.{sig}")
    }

    /// The reference: `jsonwebtoken::decode` with the same key in (n, e) form, which our
    /// provider hands to the stock aws-lc provider (no registry), then the same scope check.
    fn verify_reference(v: &Verifier, token: &str) -> Result<AccessClaims, VerifyError> {
        let set = v.keys.current();
        let key = inspect(token, |kid| set.get(kid))?.ok_or(VerifyError::UnknownKid)?;
        let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = &key.jwk().algorithm else {
            unreachable!("RSA keys only");
        };
        let stock = jsonwebtoken::DecodingKey::from_rsa_components(&rsa.n, &rsa.e).unwrap();
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &stock, &v.validation)
            .map_err(map_jwt_error)?
            .claims;
        v.check_decoded(claims)
    }

    #[test]
    fn the_registered_key_answers_exactly_like_the_stock_aws_lc_provider() {
        assert!(crate::jwt_provider::install(), "our provider is the process default");
        let key = TestKey::generate();
        let other = TestKey::generate();
        let v = verifier(&key);
        let now = now();
        let sign = |c: &Value| key.sign(&key.header(), c);
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s.as_bytes());
        let header = b64(&serde_json::to_string(&key.header()).unwrap());
        let good = sign(&claims());
        let (good_message, good_sig) = good.rsplit_once('.').unwrap();
        let mut known_kid = other.header();
        known_kid.kid = Some(key.kid.clone());
        let claims_text = claims().to_string();

        let mut tokens: Vec<(&str, String)> = vec![
            ("good", good.clone()),
            ("extra claims", sign(&with(claims(), "extra", json!({"a": [1, 2]})))),
            ("foreign key", other.sign(&known_kid, &claims())),
            ("unknown kid", other.sign(&other.header(), &claims())),
            ("aud array", sign(&with(claims(), "aud", json!([AUD])))),
            ("iss array", sign(&with(claims(), "iss", json!([ISS])))),
            ("empty iss", sign(&with(claims(), "iss", json!("")))),
            ("exp float", sign(&with(claims(), "exp", json!(now as f64 + 100.5)))),
            ("exp string", sign(&with(claims(), "exp", json!("soon")))),
            ("exp negative", sign(&with(claims(), "exp", json!(-5)))),
            ("exp zero", sign(&with(claims(), "exp", json!(0)))),
            ("exp max", sign(&with(claims(), "exp", json!(u64::MAX)))),
            ("exp at the leeway edge", sign(&with(claims(), "exp", json!(now - 29)))),
            ("exp past the leeway edge", sign(&with(claims(), "exp", json!(now - 32)))),
            ("nbf at the leeway edge", sign(&with(claims(), "nbf", json!(now + 29)))),
            ("nbf past the leeway edge", sign(&with(claims(), "nbf", json!(now + 32)))),
            ("nbf null", sign(&with(claims(), "nbf", json!(null)))),
            ("nbf max", sign(&with(claims(), "nbf", json!(u64::MAX)))),
            (
                "expired and wrong iss",
                sign(&with(with(claims(), "exp", json!(1)), "iss", json!("x"))),
            ),
            (
                "wrong iss and aud",
                sign(&with(with(claims(), "aud", json!("x")), "iss", json!("x"))),
            ),
            ("sub number", sign(&with(claims(), "sub", json!(5)))),
            ("no sub", sign(&without(claims(), "sub"))),
            ("no aud", sign(&without(claims(), "aud"))),
            ("no iss", sign(&without(claims(), "iss"))),
            ("no preferred_username", sign(&without(claims(), "preferred_username"))),
            ("scope not a string", sign(&with(claims(), "scope", json!(["articles:read"])))),
            ("scope without the word", sign(&with(claims(), "scope", json!("articles:readx")))),
            ("claims an array", sign(&json!([1, 2]))),
            ("padded signature", format!("{good}==")),
            ("signature not base64url", format!("{good_message}.{}*", &good_sig[1..])),
            ("signature shortened", format!("{good_message}.{}", &good_sig[4..])),
            ("signature of 2000 bytes", format!("{good_message}.{}", "A".repeat(2667))),
            ("signature empty", format!("{good_message}.")),
            (
                "payload swapped",
                format!("{header}.{}.{good_sig}", b64(&claims_text.replace("alice", "admin"))),
            ),
            ("signed payload not base64url", sign_raw(&key, &header, "!!not-base64!!")),
            ("signed payload not JSON", sign_raw(&key, &header, &b64("not json"))),
            (
                "signed payload with padding",
                sign_raw(&key, &header, &format!("{}=", b64(&claims_text))),
            ),
            (
                "signed duplicate exp",
                sign_raw(
                    &key,
                    &header,
                    &b64(&claims_text.replacen('{', &format!("{{\"exp\":{},", now + 99), 1)),
                ),
            ),
            ("signed good raw", sign_raw(&key, &header, &b64(&claims_text))),
        ];
        tokens.push(("two dots only", "..".into()));
        for (name, token) in &tokens {
            assert_eq!(v.verify_now(token), verify_reference(&v, token), "{name}");
        }
        assert!(v.verify_now(&good).is_ok());
    }

    fn slow_parses() -> u64 {
        crate::jwt_provider::slow_parses().verify
    }

    #[test]
    fn a_loaded_key_is_never_parsed_again() {
        assert!(crate::jwt_provider::install(), "our provider is the process default");
        let key = TestKey::generate();
        // No cache: every token goes through `jsonwebtoken::decode`.
        let keys = TrustedKeys::new(Nothing, KeySet::from_keys([key.public()]));
        let v = Verifier::new(VerifierConfig::new(ISS, AUD).token_cache(0), Arc::new(keys));
        let before = slow_parses();
        for i in 0..20 {
            let token = key.sign(&key.header(), &with(claims(), "jti", json!(format!("j{i}"))));
            v.verify_now(&token).unwrap();
        }
        let bad = key.sign(&key.header(), &with(claims(), "iss", json!("evil")));
        assert_eq!(v.verify_now(&bad), Err(VerifyError::WrongIssuer));
        assert_eq!(slow_parses(), before, "every verification used the registered key");

        // A reload builds the same key again: it shares the parse, and the entry stays live
        // after the first key is gone.
        v.keys().replace(KeySet::from_keys([key.public()]));
        let token = key.sign(&key.header(), &claims());
        v.verify_now(&token).unwrap();
        assert_eq!(slow_parses(), before);
    }

    #[test]
    fn an_unregistered_key_still_verifies_the_slow_way() {
        assert!(crate::jwt_provider::install(), "our provider is the process default");
        let key = TestKey::generate();
        let token = key.sign(&key.header(), &claims());
        // `TestKey::generate` dropped its `PublicKey`: this DER has no live registry entry.
        let pem = jsonwebtoken::DecodingKey::from_rsa_pem(key.public_pem.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[AUD]);
        let before = slow_parses();
        let data = jsonwebtoken::decode::<AccessClaims>(&token, &pem, &validation).unwrap();
        assert_eq!(data.claims.preferred_username, "alice");
        assert_eq!(slow_parses(), before + 1);
        // Once loaded, the same DER is found.
        let _loaded = key.public();
        jsonwebtoken::decode::<AccessClaims>(&token, &pem, &validation).unwrap();
        assert_eq!(slow_parses(), before + 1);
    }

    #[test]
    fn a_cached_token_is_still_refused_once_expired_and_after_a_key_change() {
        let key = TestKey::generate();
        let v = verifier(&key);
        let cache = v.cache.as_ref().unwrap();
        let token = key.sign(&key.header(), &claims());
        let first = v.verify_now_shared(&token).unwrap();
        let again = v.verify_now_shared(&token).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second verification is a cache hit");
        assert_eq!(cache.len(), 1);

        // Past exp + leeway, the entry is not used (and dropped).
        let set = v.keys().current();
        let late = first.exp + v.leeway + 1;
        assert!(cache.get(&token, &set, late, v.leeway).is_none());
        assert_eq!(cache.len(), 0);
        drop(set);

        // A new key set (here: the same key under a fresh set) empties the cache first.
        v.verify_now_shared(&token).unwrap();
        v.keys().replace(KeySet::from_keys([key.public()]));
        let after = v.verify_now_shared(&token).unwrap();
        assert!(!Arc::ptr_eq(&first, &after));

        // The key is removed: the cached token is refused at once.
        v.keys().replace(KeySet::from_keys([TestKey::generate().public()]));
        assert_eq!(v.verify_now(&token), Err(VerifyError::UnknownKid));
    }

    #[test]
    fn failures_are_never_cached_and_a_tampered_token_misses() {
        let key = TestKey::generate();
        let v = verifier(&key);
        let token = key.sign(&key.header(), &claims());
        v.verify_now(&token).unwrap();
        // A character inside the signature (the last one also carries padding bits).
        let at = token.len() - 10;
        let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
        assert_eq!(v.verify_now(&tampered), Err(VerifyError::BadSignature));
        assert_eq!(v.verify_now(&tampered), Err(VerifyError::BadSignature));
        assert_eq!(v.cache.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let key = TestKey::generate();
        let keys = TrustedKeys::new(Nothing, KeySet::from_keys([key.public()]));
        let v = Verifier::new(VerifierConfig::new(ISS, AUD).token_cache(20), Arc::new(keys));
        for i in 0..100 {
            let token = key.sign(&key.header(), &with(claims(), "jti", json!(format!("j{i}"))));
            v.verify_now(&token).unwrap();
        }
        let len = v.cache.as_ref().unwrap().len();
        assert!(len <= 32 && len > 0, "{len}");
    }

    #[test]
    fn an_aud_array_holding_ours_and_an_iat_within_the_leeway_are_accepted() {
        let key = TestKey::generate();
        let v = verifier(&key);
        let now = now();
        let sign = |c: &Value| key.sign(&key.header(), c);
        let c = v.verify_now(&sign(&with(claims(), "aud", json!(["billing", AUD])))).unwrap();
        assert!(c.aud.contains(AUD) && c.aud.contains("billing"));
        v.verify_now(&sign(&with(claims(), "aud", json!([AUD])))).unwrap();
        v.verify_now(&sign(&with(claims(), "iat", json!(now + 20)))).unwrap();
        assert_eq!(
            v.verify_now(&sign(&with(claims(), "iat", json!(now + 40)))),
            Err(VerifyError::IssuedInFuture)
        );
    }

    #[test]
    fn leeway_accepts_a_token_just_expired() {
        let key = TestKey::generate();
        let v = verifier(&key);
        let token = key.sign(&key.header(), &with(claims(), "exp", json!(now() - 10)));
        assert!(v.verify_now(&token).is_ok());
    }

    #[test]
    fn a_token_without_nbf_jti_sid_still_verifies() {
        let key = TestKey::generate();
        let v = verifier(&key);
        let c = without(without(without(claims(), "nbf"), "jti"), "sid");
        assert!(v.verify_now(&key.sign(&key.header(), &c)).is_ok());
    }

    #[test]
    fn the_full_media_type_is_accepted_as_typ() {
        let key = TestKey::generate();
        let v = verifier(&key);
        let mut h = key.header();
        h.typ = Some("application/at+jwt".into());
        assert!(v.verify_now(&key.sign(&h, &claims())).is_ok());
    }

    #[tokio::test]
    async fn an_unknown_kid_is_refused_after_a_reread() {
        let key = TestKey::generate();
        let other = TestKey::generate();
        let v = verifier(&key);
        let before = v.keys().reload_count();
        let token = other.sign(&other.header(), &claims());
        assert_eq!(v.verify(&token).await, Err(VerifyError::UnknownKid));
        assert_eq!(v.keys().reload_count(), before + 1);
    }

    #[tokio::test]
    async fn a_random_kid_flood_does_not_empty_the_token_cache() {
        let dir = tempfile::tempdir().unwrap();
        let key = TestKey::generate();
        key.write_public(dir.path());
        let keys = TrustedKeys::load(crate::keyset::FolderSource::new(dir.path()))
            .await
            .with_cooldown(Duration::from_millis(20));
        let v = Verifier::new(VerifierConfig::new(ISS, AUD), Arc::new(keys));
        let token = key.sign(&key.header(), &claims());
        let first = v.verify_shared(&token).await.unwrap();
        // An unauthenticated flood of tokens naming random kids: each waits for a re-read of
        // the (unchanged) folder and is refused.
        let stranger = TestKey::generate();
        let reloads = v.keys().reload_count();
        for i in 0..5 {
            let mut header = stranger.header();
            header.kid = Some(format!("random-{i}"));
            let forged = stranger.sign(&header, &claims());
            assert_eq!(v.verify_shared(&forged).await, Err(VerifyError::UnknownKid));
        }
        assert!(v.keys().reload_count() >= reloads + 5, "the flood re-read the folder");
        let again = v.verify_shared(&token).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the cached token is still a hit");
        assert_eq!(v.cache.as_ref().unwrap().len(), 1);
    }
}
