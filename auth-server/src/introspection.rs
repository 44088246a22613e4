//! `POST /introspect` (RFC 7662): who may call it ([`Clients`], HTTP Basic) and what an active
//! token's answer holds ([`Active`]).
//!
//! Client credentials are compared in constant time (`subtle`) on SHA-256 digests of fixed
//! length, against every client in turn, so neither the time nor the work tells which part was
//! wrong, how long the secret is, or whether the id exists. Secrets never reach a log or a
//! `Debug` output.

use std::fmt;

use access_token::AccessClaims;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::Serialize;
use subtle::{Choice, ConditionallySelectable as _, ConstantTimeEq as _};

/// The longest `Authorization: Basic` credential text decoded (an id of 64 and a generous
/// secret); anything longer is refused before decoding.
const MAX_CREDENTIALS_CHARS: usize = 1024;

/// The resource servers allowed to introspect (`AUTH_INTROSPECTION_CLIENTS`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Clients(Vec<Client>);

#[derive(Clone, PartialEq, Eq)]
struct Client {
    id: String,
    id_digest: [u8; 32],
    secret_digest: [u8; 32],
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|c| &c.id)).finish()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

impl From<&crate::config::IntrospectionClients> for Clients {
    /// The clients of `AUTH_INTROSPECTION_CLIENTS` (validated there); only digests are kept.
    fn from(clients: &crate::config::IntrospectionClients) -> Self {
        use secrecy::ExposeSecret as _;
        Self::new(clients.iter().map(|c| (c.id.as_str(), c.secret.expose_secret())))
    }
}

impl Clients {
    /// The clients `(id, secret)`; only digests of the secrets are kept.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(id, secret)| Client {
                    id: id.to_owned(),
                    id_digest: sha256(id.as_bytes()),
                    secret_digest: sha256(secret.as_bytes()),
                })
                .collect(),
        )
    }

    /// No client: every call is refused.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client id an `Authorization` header value authenticates (HTTP Basic, RFC 7617:
    /// `Basic base64(id:secret)`, the scheme in any case), or `None`. The id and secret are
    /// compared as sent (no form-decoding: choose secrets without `%` and `+`).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Option<&str> {
        let (id, secret) = basic_credentials(authorization?)?;
        let (id_digest, secret_digest) = (sha256(id.as_bytes()), sha256(secret.as_bytes()));
        // Every client is compared, and the match is selected without a branch.
        let mut found = u32::MAX;
        for (i, client) in self.0.iter().enumerate() {
            let ok: Choice =
                client.id_digest.ct_eq(&id_digest) & client.secret_digest.ct_eq(&secret_digest);
            found.conditional_assign(&u32::try_from(i).unwrap_or(u32::MAX), ok);
        }
        self.0.get(usize::try_from(found).ok()?).map(|c| c.id.as_str())
    }
}

/// `(id, secret)` of a `Basic` header value; `None` when it is not one.
fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let encoded = encoded.trim();
    if encoded.is_empty() || encoded.len() > MAX_CREDENTIALS_CHARS {
        return None;
    }
    let raw = STANDARD.decode(encoded).or_else(|_| STANDARD_NO_PAD.decode(encoded)).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    if id.is_empty() || secret.is_empty() {
        return None;
    }
    Some((id.to_owned(), secret.to_owned()))
}

/// The answer for an active token: the contract's fields, nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Active {
    /// Always `true`.
    pub active: bool,
    /// The user id.
    pub sub: String,
    /// The username.
    pub preferred_username: String,
    /// Space-separated scopes.
    pub scope: String,
    /// The session.
    pub sid: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Issuer.
    pub iss: String,
    /// Audience.
    #[schema(value_type = String)]
    pub aud: serde_json::Value,
    /// The token's id.
    pub jti: String,
    /// `Bearer`.
    pub token_type: &'static str,
}

impl Active {
    /// The answer for verified `claims` of a live session.
    pub fn of(claims: &AccessClaims) -> Self {
        Self {
            active: true,
            sub: claims.sub.clone(),
            preferred_username: claims.preferred_username.clone(),
            scope: claims.scope.clone(),
            sid: claims.sid.clone(),
            exp: claims.exp,
            iat: claims.iat,
            iss: claims.iss.clone(),
            aud: serde_json::to_value(&claims.aud).unwrap_or(serde_json::Value::Null),
            jti: claims.jti.clone(),
            token_type: "Bearer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn basic(text: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(text)).into_bytes()
    }

    #[test]
    fn only_a_listed_id_with_its_own_secret_authenticates() {
        let other = "fedcba9876543210fedcba9876543210";
        let clients = Clients::new([("api", SECRET), ("reports", other)]);
        assert_eq!(clients.authenticate(Some(&basic(&format!("api:{SECRET}")))), Some("api"));
        assert_eq!(
            clients.authenticate(Some(&basic(&format!("reports:{other}")))),
            Some("reports")
        );
        let same_length_wrong = format!("api:{}X", &SECRET[..SECRET.len() - 1]);
        for bad in [
            basic(&same_length_wrong),
            basic(&format!("api:{other}")), // another client's secret
            basic(&format!("nobody:{SECRET}")),
            basic(&format!("API:{SECRET}")),
            basic("api:"),
            basic(&format!(":{SECRET}")),
            basic(SECRET),
            b"Basic !!!not-base64!!!".to_vec(),
            b"Basic ".to_vec(),
            b"Bearer abc".to_vec(),
            format!("Basic {}", "A".repeat(2000)).into_bytes(),
            vec![0xff, 0xfe],
        ] {
            assert_eq!(clients.authenticate(Some(&bad)), None, "{}", String::from_utf8_lossy(&bad));
        }
        assert_eq!(clients.authenticate(None), None);
        let lower = format!("basic {}", STANDARD.encode(format!("api:{SECRET}")));
        assert_eq!(clients.authenticate(Some(lower.as_bytes())), Some("api"), "scheme in any case");
        assert_eq!(Clients::default().authenticate(Some(&basic(&format!("api:{SECRET}")))), None);
    }

    #[test]
    fn the_settings_clients_are_the_ones_authenticated() {
        let parsed = crate::config::IntrospectionClients::parse(&format!("api:{SECRET}")).unwrap();
        let clients = Clients::from(&parsed);
        assert_eq!(clients.authenticate(Some(&basic(&format!("api:{SECRET}")))), Some("api"));
        assert_eq!(clients.authenticate(Some(&basic(&format!("api:{SECRET}x")))), None);
    }

    #[test]
    fn a_secret_may_hold_a_colon_and_debug_shows_no_secret() {
        let secret = "abc:def0123456789abcdef0123456789";
        let clients = Clients::new([("api", secret)]);
        assert_eq!(clients.authenticate(Some(&basic(&format!("api:{secret}")))), Some("api"));
        let debug = format!("{clients:?}");
        assert!(debug.contains("api") && !debug.contains("abc:def"), "{debug}");
    }
}
