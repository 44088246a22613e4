//! Typed settings: built-in defaults → a TOML file → `API_*` environment variables.
//!
//! Every setting is read as text and parsed here, so that a bad value produces one line that
//! names the environment variable (and the TOML key) and says what is wrong.

use std::collections::HashMap;
use std::fmt;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysFrom {
    /// `API_KEYS_DIR`: a folder of `<kid>.pem` SPKI public keys (the default).
    Dir(PathBuf),
    /// `API_JWKS_URL`: the auth server's JWK Set (takes precedence over the folder).
    Jwks(String),
}

/// The api-server's settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `API_BIND`: address to listen on (`host:port`; port 0 picks a free one).
    pub bind: String,
    /// `API_KEYS_DIR` or `API_JWKS_URL`.
    pub keys: KeysFrom,
    /// `API_ISSUER`: the only accepted `iss`.
    pub issuer: String,
    /// `API_AUDIENCE`: the only accepted `aud`.
    pub audience: String,
    /// `API_LEEWAY`: clock-skew allowance for `exp` and `nbf` (whole seconds).
    pub leeway: Duration,
    /// `API_ARTICLES_FILE`: a JSON array of articles; `None` serves the bundled sample.
    pub articles_file: Option<PathBuf>,
    /// `API_SHUTDOWN_TIMEOUT`: on SIGTERM/SIGINT, how long in-flight requests may take to finish
    /// (whole seconds).
    pub shutdown_timeout: Duration,
    /// `API_TOKEN_CACHE`: how many verified access tokens to remember, so a token presented
    /// again skips the RSA verification (0 turns the cache off; see `shared::verify`).
    pub token_cache: usize,
}

/// One setting: its TOML key, its environment variable and its default (`None`: unset).
struct Def {
    key: &'static str,
    env: &'static str,
    default: Option<&'static str>,
}

const DEFS: &[Def] = &[
    Def { key: "bind", env: "API_BIND", default: Some("0.0.0.0:4000") },
    Def { key: "keys_dir", env: "API_KEYS_DIR", default: Some("keys/public") },
    Def { key: "jwks_url", env: "API_JWKS_URL", default: None },
    Def { key: "issuer", env: "API_ISSUER", default: Some("http://localhost:5000") },
    Def { key: "audience", env: "API_AUDIENCE", default: Some("articles-api") },
    Def { key: "leeway", env: "API_LEEWAY", default: Some("30s") },
    Def { key: "articles_file", env: "API_ARTICLES_FILE", default: None },
    Def { key: "shutdown_timeout", env: "API_SHUTDOWN_TIMEOUT", default: Some("10s") },
    Def { key: "token_cache", env: "API_TOKEN_CACHE", default: Some("4096") },
];

/// Why the settings could not be loaded. `Display` is the one line printed at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file is missing or unreadable or not TOML.
    #[error("config file {path}: {reason}")]
    File {
        /// The file given with `--config` / `API_CONFIG`.
        path: PathBuf,
        /// What went wrong, on one line.
        reason: String,
    },
    /// A key in the TOML file that is not a setting (likely a typo).
    #[error("config file {path}: unknown setting `{key}`")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A setting with a bad value.
    #[error("{env} (`{key}`): {reason}")]
    Invalid {
        /// The environment variable naming the setting.
        env: &'static str,
        /// Its TOML key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Settings {
    /// Loads the settings from the optional TOML file and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_sources(file, std::env::vars())
    }

    /// Loads the settings from the optional TOML file and the given environment (only the
    /// `API_*` names of the contract are read from it).
    pub fn from_sources(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = env.into_iter().collect();
        let mut builder = config::Config::builder();
        for def in DEFS {
            if let Some(default) = def.default {
                builder = builder.set_default(def.key, default).map_err(|e| invalid(def, e))?;
            }
        }
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::File {
                    path: path.to_owned(),
                    reason: "not found or not a file".into(),
                });
            }
            let source = config::File::from(path.to_owned()).format(config::FileFormat::Toml);
            let table = config::Config::builder()
                .add_source(source.clone())
                .build()
                .and_then(|c| c.try_deserialize::<HashMap<String, config::Value>>())
                .map_err(|e| file_error(path, &e))?;
            if let Some(key) = table.keys().find(|k| !DEFS.iter().any(|d| d.key == k.as_str())) {
                return Err(ConfigError::UnknownKey { path: path.to_owned(), key: key.clone() });
            }
            builder = builder.add_source(source);
        }
        for def in DEFS {
            if let Some(value) = env.get(def.env) {
                builder =
                    builder.set_override(def.key, value.as_str()).map_err(|e| invalid(def, e))?;
            }
        }
        let merged = builder.build().map_err(|e| match file {
            Some(path) => file_error(path, &e),
            None => ConfigError::File { path: PathBuf::new(), reason: one_line(&e.to_string()) },
        })?;
        Self::from_config(&merged)
    }

    fn from_config(cfg: &config::Config) -> Result<Self, ConfigError> {
        // An unset optional setting, or one set to the empty string, is `None`.
        let optional = |key: &'static str| -> Result<Option<String>, ConfigError> {
            match cfg.get_string(key) {
                Ok(v) if v.trim().is_empty() => Ok(None),
                Ok(v) => Ok(Some(v.trim().to_owned())),
                Err(config::ConfigError::NotFound(_)) => Ok(None),
                Err(e) => Err(invalid(def(key), e)),
            }
        };
        let text = |key: &'static str| -> Result<(String, &'static Def), ConfigError> {
            let def = def(key);
            let value = cfg.get_string(key).map_err(|e| invalid(def, e))?;
            Ok((value.trim().to_owned(), def))
        };

        let (bind, d) = text("bind")?;
        if !bind.to_socket_addrs().is_ok_and(|mut addrs| addrs.next().is_some()) {
            return Err(invalid(d, format!("`{bind}` is not a host:port address")));
        }

        let keys = match optional("jwks_url")? {
            Some(url) => {
                if !is_http_url(&url) {
                    return Err(invalid(def("jwks_url"), format!("`{url}` is not an http(s) URL")));
                }
                KeysFrom::Jwks(url)
            }
            None => {
                let (dir, d) = text("keys_dir")?;
                if dir.is_empty() {
                    return Err(invalid(d, "must not be empty"));
                }
                KeysFrom::Dir(PathBuf::from(dir))
            }
        };

        let (issuer, d) = text("issuer")?;
        if !is_http_url(&issuer) {
            return Err(invalid(d, format!("`{issuer}` is not an http(s) URL")));
        }

        let (audience, d) = text("audience")?;
        if audience.is_empty() {
            return Err(invalid(d, "must not be empty"));
        }

        let d = def("leeway");
        let (raw, _) = text("leeway")?;
        let leeway = shared::duration::parse(&raw)
            .map_err(|e| invalid(d, format!("invalid duration `{raw}`: {e}")))?;
        if leeway.subsec_nanos() != 0 {
            return Err(invalid(d, "must be a whole number of seconds"));
        }
        if leeway > Duration::from_secs(300) {
            return Err(invalid(d, "must be at most 5m (it extends every token's life)"));
        }

        let articles_file = optional("articles_file")?.map(PathBuf::from);

        let d = def("shutdown_timeout");
        let (raw, _) = text("shutdown_timeout")?;
        let shutdown_timeout = shared::duration::parse(&raw)
            .map_err(|e| invalid(d, format!("invalid duration `{raw}`: {e}")))?;
        if shutdown_timeout.subsec_nanos() != 0 {
            return Err(invalid(d, "must be a whole number of seconds"));
        }
        if shutdown_timeout > Duration::from_secs(3600) {
            return Err(invalid(d, "must be at most 1h"));
        }

        let (raw, d) = text("token_cache")?;
        let token_cache: usize = raw.parse().map_err(|_| {
            invalid(d, format!("`{raw}` is not a number of tokens (0 turns it off)"))
        })?;
        if token_cache > 1_000_000 {
            return Err(invalid(
                d,
                "must be at most 1000000 (each token held costs about 1.5 KiB)",
            ));
        }

        Ok(Self {
            bind,
            keys,
            // The auth server trims a trailing slash from its issuer; do the same so both match.
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience,
            leeway,
            articles_file,
            shutdown_timeout,
            token_cache,
        })
    }

    /// Settings for tests: the defaults, bound to `127.0.0.1:0`, keys from `keys_dir`.
    pub fn for_tests(keys_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind: "127.0.0.1:0".into(),
            keys: KeysFrom::Dir(keys_dir.into()),
            issuer: "http://localhost:5000".into(),
            audience: "articles-api".into(),
            leeway: Duration::from_secs(30),
            articles_file: None,
            shutdown_timeout: Duration::from_secs(10),
            token_cache: 4096,
        }
    }

    /// The port of `bind` (for the `healthcheck` subcommand).
    pub fn port(&self) -> Option<u16> {
        self.bind.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
    }
}

fn is_http_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() > "https://".len()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn def(key: &str) -> &'static Def {
    // Every caller passes a key of `DEFS`; fall back to the first entry rather than panic.
    DEFS.iter().find(|d| d.key == key).unwrap_or(&DEFS[0])
}

fn invalid(def: &'static Def, reason: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid { env: def.env, key: def.key, reason: one_line(&reason.to_string()) }
}

fn file_error(path: &Path, e: &config::ConfigError) -> ConfigError {
    ConfigError::File { path: path.to_owned(), reason: one_line(&e.to_string()) }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::from_sources(None, env(&[])).unwrap();
        assert_eq!(s.bind, "0.0.0.0:4000");
        assert_eq!(s.keys, KeysFrom::Dir(PathBuf::from("keys/public")));
        assert_eq!(s.issuer, "http://localhost:5000");
        assert_eq!(s.audience, "articles-api");
        assert_eq!(s.leeway, Duration::from_secs(30));
        assert_eq!(s.articles_file, None);
        assert_eq!(s.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(s.port(), Some(4000));
    }

    #[test]
    fn the_token_cache_is_sized_by_api_token_cache() {
        assert_eq!(Settings::from_sources(None, env(&[])).unwrap().token_cache, 4096);
        let off = Settings::from_sources(None, env(&[("API_TOKEN_CACHE", "0")])).unwrap();
        assert_eq!(off.token_cache, 0);
        for bad in ["-1", "lots", "2000000"] {
            let err = Settings::from_sources(None, env(&[("API_TOKEN_CACHE", bad)])).unwrap_err();
            assert!(err.to_string().starts_with("API_TOKEN_CACHE"), "{err}");
        }
    }

    #[test]
    fn environment_overrides_the_file_which_overrides_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.toml");
        std::fs::write(&path, "leeway = 10\naudience = \"from-file\"\nkeys_dir = \"/k\"\n")
            .unwrap();
        let s = Settings::from_sources(Some(&path), env(&[("API_AUDIENCE", "from-env")])).unwrap();
        assert_eq!(s.leeway, Duration::from_secs(10));
        assert_eq!(s.audience, "from-env");
        assert_eq!(s.keys, KeysFrom::Dir(PathBuf::from("/k")));
    }

    #[test]
    fn a_jwks_url_replaces_the_keys_folder() {
        let s = Settings::from_sources(
            None,
            env(&[("API_JWKS_URL", "http://auth:5000/.well-known/jwks.json")]),
        )
        .unwrap();
        assert_eq!(s.keys, KeysFrom::Jwks("http://auth:5000/.well-known/jwks.json".into()));
        let s = Settings::from_sources(None, env(&[("API_JWKS_URL", "")])).unwrap();
        assert!(matches!(s.keys, KeysFrom::Dir(_)));
    }

    #[test]
    fn bad_values_are_one_line_naming_the_setting() {
        for (name, value) in [
            ("API_BIND", "nowhere"),
            ("API_LEEWAY", "soon"),
            ("API_LEEWAY", "1500ms"),
            ("API_LEEWAY", "1h"),
            ("API_ISSUER", "localhost:5000"),
            ("API_AUDIENCE", " "),
            ("API_JWKS_URL", "ftp://x"),
            ("API_KEYS_DIR", ""),
            ("API_SHUTDOWN_TIMEOUT", "later"),
            ("API_SHUTDOWN_TIMEOUT", "500ms"),
            ("API_SHUTDOWN_TIMEOUT", "2h"),
        ] {
            let err = Settings::from_sources(None, env(&[(name, value)])).unwrap_err().to_string();
            assert!(err.starts_with(name), "{name}={value}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.toml");
        std::fs::write(&path, "leway = \"30s\"\n").unwrap();
        let err = Settings::from_sources(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown setting `leway`"), "{err}");
    }
}
