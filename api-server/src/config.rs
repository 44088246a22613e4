//! Typed settings: built-in defaults → a TOML file → `API_*` environment variables.
//!
//! Every setting is read as text (the layering is `service_kit::config`) and parsed here, so that a
//! bad value produces one line that names the environment variable (and the TOML key) and says
//! what is wrong.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use service_kit::config::ConfigError;
use service_kit::config::{Layered, Setting, invalid};

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
    /// again skips the RSA verification (0 turns the cache off; see `access_token::verify`).
    pub token_cache: usize,
}

/// Every setting: its TOML key, its environment variable and its default.
const DEFS: &[Setting] = &[
    Setting::new("bind", "API_BIND", "0.0.0.0:4000"),
    Setting::new("keys_dir", "API_KEYS_DIR", "keys/public"),
    Setting::optional("jwks_url", "API_JWKS_URL"),
    Setting::new("issuer", "API_ISSUER", "http://localhost:5000"),
    Setting::new("audience", "API_AUDIENCE", "articles-api"),
    Setting::new("leeway", "API_LEEWAY", "30s"),
    Setting::optional("articles_file", "API_ARTICLES_FILE"),
    Setting::new("shutdown_timeout", "API_SHUTDOWN_TIMEOUT", "10s"),
    Setting::new("token_cache", "API_TOKEN_CACHE", "4096"),
];

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
        Self::from_config(&Layered::load(DEFS, file, env)?)
    }

    fn from_config(cfg: &Layered) -> Result<Self, ConfigError> {
        let (bind, d) = cfg.text("bind")?;
        if !bind.to_socket_addrs().is_ok_and(|mut addrs| addrs.next().is_some()) {
            return Err(invalid(d, format!("`{bind}` is not a host:port address")));
        }

        let keys = match cfg.optional("jwks_url")? {
            Some(url) => {
                if !is_http_url(&url) {
                    return Err(invalid(
                        cfg.setting("jwks_url"),
                        format!("`{url}` is not an http(s) URL"),
                    ));
                }
                KeysFrom::Jwks(url)
            }
            None => {
                let (dir, d) = cfg.text("keys_dir")?;
                if dir.is_empty() {
                    return Err(invalid(d, "must not be empty"));
                }
                KeysFrom::Dir(PathBuf::from(dir))
            }
        };

        let (issuer, d) = cfg.text("issuer")?;
        if !is_http_url(&issuer) {
            return Err(invalid(d, format!("`{issuer}` is not an http(s) URL")));
        }

        let (audience, d) = cfg.text("audience")?;
        if audience.is_empty() {
            return Err(invalid(d, "must not be empty"));
        }

        let d = cfg.setting("leeway");
        let leeway = cfg.duration("leeway")?;
        if leeway.subsec_nanos() != 0 {
            return Err(invalid(d, "must be a whole number of seconds"));
        }
        if leeway > Duration::from_secs(300) {
            return Err(invalid(d, "must be at most 5m (it extends every token's life)"));
        }

        let articles_file = cfg.optional("articles_file")?.map(PathBuf::from);

        let d = cfg.setting("shutdown_timeout");
        let shutdown_timeout = cfg.duration("shutdown_timeout")?;
        if shutdown_timeout.subsec_nanos() != 0 {
            return Err(invalid(d, "must be a whole number of seconds"));
        }
        if shutdown_timeout > Duration::from_secs(3600) {
            return Err(invalid(d, "must be at most 1h"));
        }

        let (raw, d) = cfg.text("token_cache")?;
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
