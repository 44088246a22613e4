//! The introspection clients: inline `id:secret` pairs or a file of them.

use std::path::PathBuf;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer};
use service_kit::config::{Layers, optional};

use super::ConfigError;

/// The resource servers allowed to call `POST /introspect` (HTTP Basic, RFC 7662 §2.1).
#[derive(Debug, Clone, Default)]
pub struct IntrospectionClients(Vec<IntrospectionClient>);

/// One introspection client: an id and its secret (at least [`MIN_CLIENT_SECRET_CHARS`]).
#[derive(Debug, Clone)]
pub struct IntrospectionClient {
    /// The client id (the Basic user-id): 1–64 of `A-Z a-z 0-9 . _ -`.
    pub id: String,
    /// The secret (the Basic password).
    pub secret: SecretString,
}

/// The shortest introspection client secret accepted.
pub const MIN_CLIENT_SECRET_CHARS: usize = 32;

impl IntrospectionClients {
    /// The client named `id`.
    pub fn get(&self, id: &str) -> Option<&IntrospectionClient> {
        self.0.iter().find(|c| c.id == id)
    }

    /// Every client.
    pub fn iter(&self) -> impl Iterator<Item = &IntrospectionClient> {
        self.0.iter()
    }

    /// No client: `POST /introspect` refuses everyone.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `id:secret` entries separated by commas or line breaks; in a file, blank lines
    /// and lines starting with `#` are skipped. Messages name the entry by number and id, never
    /// the secret.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut clients: Vec<IntrospectionClient> = Vec::new();
        let entries =
            text.split([',', '\n']).map(str::trim).filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (i, entry) in entries.enumerate() {
            let n = i + 1;
            let (id, secret) =
                entry.split_once(':').ok_or_else(|| format!("entry {n} is not `id:secret`"))?;
            let (id, secret) = (id.trim(), secret.trim());
            let id_ok = !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !id_ok {
                return Err(format!("entry {n}: the client id must be 1-64 of A-Z a-z 0-9 . _ -"));
            }
            if secret.chars().count() < MIN_CLIENT_SECRET_CHARS {
                return Err(format!(
                    "client `{id}`: the secret must be at least {MIN_CLIENT_SECRET_CHARS} characters"
                ));
            }
            if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("client `{id}`: the secret must not contain spaces"));
            }
            if clients.iter().any(|c| c.id == id) {
                return Err(format!("client `{id}` is listed twice"));
            }
            clients.push(IntrospectionClient {
                id: id.to_owned(),
                secret: SecretString::from(secret),
            });
        }
        Ok(Self(clients))
    }
}

/// The introspection clients as given: inline, or a file of one `id:secret` per line.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IntrospectionKeys {
    #[serde(deserialize_with = "secret_text")]
    introspection_clients: Option<SecretString>,
    #[serde(deserialize_with = "optional")]
    introspection_clients_file: Option<PathBuf>,
}

/// Text that may be a secret: unset or blank is `None`.
fn secret_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    let text: Option<String> = optional(d)?;
    Ok(text.map(SecretString::from))
}

impl IntrospectionKeys {
    pub(super) fn resolve(self, layers: &Layers) -> Result<IntrospectionClients, ConfigError> {
        match (self.introspection_clients, self.introspection_clients_file) {
            (None, None) => Ok(IntrospectionClients::default()),
            (Some(inline), None) => IntrospectionClients::parse(inline.expose_secret())
                .map_err(|e| layers.invalid("introspection_clients", e)),
            (None, Some(path)) => {
                let key = "introspection_clients_file";
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    layers.invalid(key, format!("cannot read {}: {e}", path.display()))
                })?;
                IntrospectionClients::parse(&text)
                    .map_err(|e| layers.invalid(key, format!("{}: {e}", path.display())))
            }
            (Some(_), Some(_)) => Err(layers.invalid(
                "introspection_clients_file",
                "set AUTH_INTROSPECTION_CLIENTS or AUTH_INTROSPECTION_CLIENTS_FILE, not both",
            )),
        }
    }
}
