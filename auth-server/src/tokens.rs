//! Tokens: signing access tokens, and the refresh-token newtypes.
//!
//! A refresh token is `sid (16 random bytes) || secret (32 random bytes)`, sent as base64url
//! without padding (64 characters). The plain token exists only in the response; Redis sees its
//! SHA-256 ([`TokenHash`]) and, for the reuse grace, the successor encrypted under a key derived
//! from its predecessor ([`seal_successor`]).

use std::fmt;

use access_token::claims::{ACCESS_TOKEN_TYP, AccessClaims};
use access_token::jwt_provider::RsaSigningKey;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};

const SID_LEN: usize = 16;
const SECRET_LEN: usize = 32;
const RAW_LEN: usize = SID_LEN + SECRET_LEN;
/// Length of a refresh token as sent (base64url of 48 bytes, no padding).
pub const REFRESH_TOKEN_CHARS: usize = 64;
/// Length of a session id as sent (base64url of 16 bytes, no padding).
pub const SID_CHARS: usize = 22;

/// The `scope` of every access token: what the articles API requires (the contract's value).
pub const ISSUED_SCOPE: &str = "articles:read";

/// The random generator or a cipher failed; nothing sensible can be issued.
#[derive(Debug, thiserror::Error)]
#[error("a cryptographic primitive (random generator or cipher) failed")]
pub struct CryptoError;

/// A plain refresh token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    raw: [u8; RAW_LEN],
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

/// The presented text is not a refresh token of ours (wrong length or alphabet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a refresh token")]
pub struct MalformedToken;

impl RefreshToken {
    /// A token for a new session (fresh sid and secret).
    pub fn generate() -> Result<Self, CryptoError> {
        let mut raw = [0u8; RAW_LEN];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| CryptoError)?;
        Ok(Self { raw })
    }

    /// The next token of the same session: same sid, fresh secret.
    pub fn successor(&self) -> Result<Self, CryptoError> {
        let mut raw = self.raw;
        aws_lc_rs::rand::fill(&mut raw[SID_LEN..]).map_err(|_| CryptoError)?;
        Ok(Self { raw })
    }

    /// Parses the text a client sent. Cheap: no Redis call for obvious garbage.
    pub fn parse(text: &str) -> Result<Self, MalformedToken> {
        if text.len() != REFRESH_TOKEN_CHARS {
            return Err(MalformedToken);
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| MalformedToken)?;
        let raw: [u8; RAW_LEN] = bytes.try_into().map_err(|_| MalformedToken)?;
        Ok(Self { raw })
    }

    /// The session id this token belongs to (base64url, 22 characters; the `sid` claim).
    pub fn sid(&self) -> SessionId {
        SessionId(URL_SAFE_NO_PAD.encode(&self.raw[..SID_LEN]))
    }

    /// What Redis stores instead of the token.
    pub fn hash(&self) -> TokenHash {
        TokenHash(URL_SAFE_NO_PAD.encode(digest(&SHA256, &self.raw)))
    }

    /// The text sent to the client. The only place the plain token leaves this type.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.raw)
    }

    /// The `jti` of the access token issued together with this refresh token: derived from it,
    /// so that re-issuing the same pair (reuse grace) gives the byte-identical access token.
    pub fn paired_jti(&self) -> String {
        let mut input = Vec::with_capacity(3 + RAW_LEN);
        input.extend_from_slice(b"jti");
        input.extend_from_slice(&self.raw);
        let mut jti = URL_SAFE_NO_PAD.encode(digest(&SHA256, &input));
        jti.truncate(22);
        jti
    }

    fn successor_key(&self) -> Result<LessSafeKey, CryptoError> {
        let prk = Salt::new(HKDF_SHA256, &[]).extract(&self.raw);
        let okm = prk.expand(&[b"refresh-successor"], &AES_256_GCM).map_err(|_| CryptoError)?;
        Ok(LessSafeKey::new(UnboundKey::from(okm)))
    }
}

/// A session id: base64url of the first 16 bytes of every refresh token of the session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// Accepts a sid from an access token (22 base64url characters) or from storage.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == SID_CHARS && URL_SAFE_NO_PAD.decode(text).is_ok_and(|b| b.len() == SID_LEN))
            .then(|| Self(text.to_owned()))
    }

    /// The sid text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of a refresh token, base64url. Safe to store and to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(String);

impl TokenHash {
    /// The text stored in Redis.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Encrypts `successor` under a key derived from `presented` (HKDF-SHA256 → AES-256-GCM, random
/// nonce, the sid as associated data): what is stored can only be opened by someone who holds
/// the presented token, which Redis never sees.
pub fn seal_successor(
    presented: &RefreshToken,
    successor: &RefreshToken,
) -> Result<String, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| CryptoError)?;
    let sid = presented.sid();
    let mut in_out = successor.raw.to_vec();
    presented
        .successor_key()?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(sid.as_str().as_bytes()),
            &mut in_out,
        )
        .map_err(|_| CryptoError)?;
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&in_out);
    Ok(URL_SAFE_NO_PAD.encode(blob))
}

/// Decrypts what [`seal_successor`] stored, with the token that was presented then.
pub fn open_successor(presented: &RefreshToken, blob: &str) -> Option<RefreshToken> {
    let bytes = URL_SAFE_NO_PAD.decode(blob).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let sid = presented.sid();
    let mut in_out = sealed.to_vec();
    let plain = presented
        .successor_key()
        .ok()?
        .open_in_place(nonce, Aad::from(sid.as_str().as_bytes()), &mut in_out)
        .ok()?;
    let raw: [u8; RAW_LEN] = plain.try_into().ok()?;
    let token = RefreshToken { raw };
    (token.sid() == sid).then_some(token)
}

/// Signs access tokens with one RSA key: `jsonwebtoken::encode` builds the JWS, and our crypto
/// provider ([`access_token::jwt_provider`]) hands it the key parsed when it was loaded, so a
/// signature costs the RSA operation and no key parse.
pub struct Signer {
    kid: String,
    header: Header,
    key: RsaSigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// Signing failed (the key pair refused; should not happen with a loaded key).
#[derive(Debug, thiserror::Error)]
#[error("signing the access token failed")]
pub struct SignError;

impl Signer {
    /// A signer for `key`, whose public key has the RFC 7638 thumbprint `kid`.
    pub fn new(kid: String, key: RsaSigningKey) -> Self {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(kid.clone());
        Self { kid, header, key }
    }

    /// The `kid` in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The compact JWS of `claims` (`{"typ":"at+jwt","alg":"RS256","kid":...}` header). RS256
    /// (PKCS#1 v1.5) is deterministic: the same claims give the same token, byte for byte.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, SignError> {
        jsonwebtoken::encode(&self.header, claims, self.key.encoding_key()).map_err(|_| SignError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_through_its_text() {
        let token = RefreshToken::generate().unwrap();
        let text = token.expose();
        assert_eq!(text.len(), REFRESH_TOKEN_CHARS);
        assert_eq!(RefreshToken::parse(&text).unwrap(), token);
        assert_eq!(token.sid().as_str().len(), SID_CHARS);
        assert!(text.starts_with(&token.sid().as_str()[..21]));
    }

    #[test]
    fn garbage_is_not_a_token() {
        for text in ["", "abc", &"A".repeat(63), &"A".repeat(65), &"*".repeat(64), &"=".repeat(64)]
        {
            assert_eq!(RefreshToken::parse(text), Err(MalformedToken), "{text}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = RefreshToken::generate().unwrap();
        let debug = format!("{token:?}");
        assert!(!debug.contains(&token.expose()));
        assert!(!debug.contains(token.sid().as_str()));
    }

    #[test]
    fn successors_keep_the_sid_and_change_the_secret() {
        let token = RefreshToken::generate().unwrap();
        let next = token.successor().unwrap();
        assert_eq!(token.sid(), next.sid());
        assert_ne!(token, next);
        assert_ne!(token.hash(), next.hash());
        assert_ne!(token.paired_jti(), next.paired_jti());
        assert_eq!(next.paired_jti().len(), 22);
    }

    #[test]
    fn the_successor_opens_only_with_the_presented_token() {
        let presented = RefreshToken::generate().unwrap();
        let successor = presented.successor().unwrap();
        let blob = seal_successor(&presented, &successor).unwrap();
        assert!(!blob.contains(&successor.expose()));
        assert_eq!(open_successor(&presented, &blob), Some(successor.clone()));

        let stranger = presented.successor().unwrap();
        assert_eq!(open_successor(&stranger, &blob), None);
        assert_eq!(open_successor(&presented, "not base64!"), None);
        assert_eq!(open_successor(&presented, ""), None);
        let mut tampered = URL_SAFE_NO_PAD.decode(&blob).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(open_successor(&presented, &URL_SAFE_NO_PAD.encode(tampered)), None);
    }

    #[test]
    fn session_ids_are_checked() {
        let token = RefreshToken::generate().unwrap();
        assert_eq!(SessionId::parse(token.sid().as_str()), Some(token.sid()));
        assert_eq!(SessionId::parse("short"), None);
        assert_eq!(SessionId::parse("../../../../etc/passwd0"), None);
    }

    fn test_signer() -> (Signer, access_token::public_key::PublicKey) {
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::KeyPair as _;
        // INSECURE, TEST-ONLY key.
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let private = pem::encode(&pem::Pem::new("PRIVATE KEY", pair.as_der().unwrap().as_ref()));
        let public_der = pair.public_key().as_der().unwrap();
        let public = pem::encode(&pem::Pem::new("PUBLIC KEY", public_der.as_ref()));
        let public = access_token::public_key::PublicKey::from_pem(public.as_bytes()).unwrap();
        let key = RsaSigningKey::from_pem(private.as_bytes()).unwrap();
        (Signer::new(public.kid().to_owned(), key), public)
    }

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "http://localhost:5000".into(),
            aud: "articles-api".into(),
            sub: "u".into(),
            preferred_username: "alice".into(),
            name: None,
            roles: vec!["user".into()],
            scope: ISSUED_SCOPE.into(),
            iat: 1,
            nbf: 1,
            exp: 4_000_000_000,
            jti: "j".into(),
            sid: "s".into(),
        }
    }

    #[test]
    fn a_signed_token_is_byte_identical_for_the_same_claims_and_parses_no_key_per_signature() {
        let (signer, public) = test_signer();
        let before = access_token::jwt_provider::slow_parses();
        let first = signer.sign(&claims()).unwrap();
        for _ in 0..10 {
            assert_eq!(signer.sign(&claims()).unwrap(), first, "the grace replay relies on it");
        }
        assert_eq!(access_token::jwt_provider::slow_parses(), before, "a key parse per sign");

        // Any JWT library verifies it with the public key alone; the header is RFC 9068's.
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.set_audience(&["articles-api"]);
        let data = jsonwebtoken::decode::<AccessClaims>(&first, public.decoding_key(), &validation)
            .unwrap();
        assert_eq!(data.claims, claims());
        assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(data.header.kid.as_deref(), Some(public.kid()));
        assert_eq!(data.header.alg, Algorithm::RS256);
    }
}
