//! Access-token claims (RFC 9068 profile) and the token response (RFC 6749 §5.1).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The `typ` header of every access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The claims of an access token, exactly as the contract lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer (`AUTH_ISSUER`).
    pub iss: String,
    /// Audience (`AUTH_AUDIENCE`): one, or several (RFC 7519 §4.1.3).
    pub aud: Audience,
    /// The user id.
    pub sub: String,
    /// The username.
    pub preferred_username: String,
    /// Display name, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Roles, e.g. `["user"]`; `admin` reads every article.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Not before (seconds since the epoch). Optional on input (0 when absent): the contract
    /// requires only `exp`, `iat`, `iss`, `aud`, `sub`, and checks `nbf` when present.
    #[serde(default)]
    pub nbf: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// Unique per token. Empty when absent (not a required claim for verification).
    #[serde(default)]
    pub jti: String,
    /// The session (login) the token comes from; the same across refresh rotations. Empty
    /// when absent (not a required claim for verification).
    #[serde(default)]
    pub sid: String,
}

impl AccessClaims {
    /// Whether the space-separated `scope` contains `wanted` as a whole word.
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scope.split(' ').any(|s| s == wanted)
    }

    /// Whether the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// The `aud` claim: a string, or an array of strings (RFC 7519 §4.1.3). One audience is
/// written as a plain string, as the auth server issues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience(Vec<String>);

impl Audience {
    /// Whether `audience` is one of them.
    pub fn contains(&self, audience: &str) -> bool {
        self.0.iter().any(|a| a == audience)
    }

    /// Every audience, in the token's order.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl From<String> for Audience {
    fn from(audience: String) -> Self {
        Self(vec![audience])
    }
}

impl From<&str> for Audience {
    fn from(audience: &str) -> Self {
        Self(vec![audience.to_owned()])
    }
}

/// Equal to a string when it is exactly that one audience.
impl PartialEq<&str> for Audience {
    fn eq(&self, other: &&str) -> bool {
        matches!(self.0.as_slice(), [one] if one == other)
    }
}

impl fmt::Display for Audience {
    /// The audiences, space-separated (as a `scope`): for logs and listings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(Self(match Raw::deserialize(deserializer)? {
            Raw::One(one) => vec![one],
            Raw::Many(many) => many,
        }))
    }
}

/// The body of a successful `/login` or `/token` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The RS256 access token (RFC 9068).
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(pattern = "^Bearer$")]
    pub token_type: String,
    /// Access-token lifetime in seconds.
    pub expires_in: u64,
    /// The opaque refresh token; absent when it is sent as a cookie instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Refresh-token lifetime in seconds.
    pub refresh_expires_in: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(scope: &str) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "s".into(),
            preferred_username: "u".into(),
            name: None,
            roles: vec!["user".into()],
            scope: scope.into(),
            iat: 1,
            nbf: 1,
            exp: 2,
            jti: "j".into(),
            sid: "x".into(),
        }
    }

    #[test]
    fn scope_matches_whole_words_only() {
        assert!(claims("openid articles:read").has_scope("articles:read"));
        assert!(!claims("articles:readwrite").has_scope("articles:read"));
        assert!(!claims("").has_scope("articles:read"));
    }

    #[test]
    fn one_audience_is_a_string_several_an_array() {
        let json = serde_json::to_value(claims("x")).unwrap();
        assert_eq!(json["aud"], "a");
        let mut many = claims("x");
        many.aud = serde_json::from_value(serde_json::json!(["a", "b"])).unwrap();
        assert!(many.aud.contains("b") && !many.aud.contains("c"));
        assert_eq!(serde_json::to_value(&many).unwrap()["aud"], serde_json::json!(["a", "b"]));
        assert!(serde_json::from_value::<Audience>(serde_json::json!([1])).is_err());
    }

    #[test]
    fn absent_name_is_left_out_of_the_token() {
        let json = serde_json::to_value(claims("x")).unwrap();
        assert!(json.get("name").is_none());
    }
}
