//! Typed settings: built-in defaults → a TOML file → `API_*` environment variables.
//!
//! Each setting is declared once, as a field below: its name is the TOML key, `API_` + the name
//! in capitals the environment variable, its type (and `deserialize_with`) the validation, and
//! `Default` holds every built-in value. The key source (`API_KEYS_DIR` or `API_JWKS_URL`) is
//! read together into [`KeysFrom`]. The layering and the shared validators are
//! `service_kit::config`; a bad value is one line naming the variable.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
pub use service_kit::config::ConfigError;
use service_kit::config::{
    AtLeastOneSecond, BindAddr, DurationBounds, Layered, Layers, Origins, bounded_duration,
    http_url, keys_of, non_empty, non_empty_path, optional, optional_duration, optional_http_url,
    parse_text,
};

/// The prefix of every environment variable of this server.
pub const ENV_PREFIX: &str = "API";

/// Where the public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysFrom {
    /// `API_KEYS_DIR`: a folder of `<kid>.pem` SPKI public keys (the default).
    Dir(PathBuf),
    /// `API_JWKS_URL`: the auth server's JWK Set (takes precedence over the folder).
    Jwks(String),
}

impl Default for KeysFrom {
    fn default() -> Self {
        KeySourceKeys::default().resolve()
    }
}

/// The api-server's settings, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `API_BIND`: address to listen on (`host:port`; port 0 picks a free one).
    pub bind: BindAddr,
    /// `API_KEYS_DIR` or `API_JWKS_URL`: see [`KeySourceKeys`].
    #[serde(skip)]
    pub keys: KeysFrom,
    /// `API_ISSUER`: the only accepted `iss` (a trailing `/` is dropped, as the auth server does).
    #[serde(deserialize_with = "issuer")]
    pub issuer: String,
    /// `API_AUDIENCE`: the only accepted `aud`.
    #[serde(deserialize_with = "non_empty")]
    pub audience: String,
    /// `API_LEEWAY`: clock-skew allowance for `exp` and `nbf` (whole seconds, at most 5m: it
    /// extends every token's life).
    #[serde(deserialize_with = "bounded_duration::<_, Leeway>")]
    pub leeway: Duration,
    /// `API_ARTICLES_FILE`: a JSON array of articles; `None` serves the bundled sample.
    #[serde(deserialize_with = "optional")]
    pub articles_file: Option<PathBuf>,
    /// `API_SHUTDOWN_TIMEOUT`: on SIGTERM/SIGINT, how long in-flight requests may take to finish
    /// (whole seconds).
    #[serde(deserialize_with = "bounded_duration::<_, ShutdownTimeout>")]
    pub shutdown_timeout: Duration,
    /// `API_TOKEN_CACHE`: how many verified access tokens to remember, so a token presented
    /// again skips the RSA verification (0 turns the cache off; see `access_token::verify`).
    #[serde(deserialize_with = "token_cache")]
    pub token_cache: usize,
    /// `API_REVOCATIONS_URL`: the auth server's `GET /revocations`, followed by long poll;
    /// `None` (the default): no revocation list (see `access_token::follow`).
    #[serde(deserialize_with = "optional_http_url")]
    pub revocations_url: Option<String>,
    /// `API_REVOCATIONS_MAX_STALENESS`: past this age of the revocation list, authenticated
    /// routes answer 503; `None` (the default): serve on a stale list. Needs
    /// `API_REVOCATIONS_URL`. The list is polled with a `wait` of at most a third of it.
    #[serde(deserialize_with = "optional_duration::<_, AtLeastOneSecond>")]
    pub revocations_max_staleness: Option<Duration>,
    /// `API_CORS_ORIGINS`: browser origins allowed cross-origin (exact origins); empty: no CORS
    /// headers (`service_kit::cors`).
    pub cors_origins: Origins,
    /// `API_METRICS_BIND`: serve `GET /metrics` on this address only; `None` (the default): on
    /// [`Self::bind`] with the API.
    #[serde(deserialize_with = "optional")]
    pub metrics_bind: Option<BindAddr>,
}

impl Default for Settings {
    /// The built-in values: the one list of defaults.
    fn default() -> Self {
        Self {
            bind: BindAddr::from_static("0.0.0.0:4000"),
            keys: KeysFrom::default(),
            issuer: "http://localhost:5000".into(),
            audience: "articles-api".into(),
            leeway: Duration::from_secs(30),
            articles_file: None,
            shutdown_timeout: Duration::from_secs(10),
            token_cache: 4096,
            revocations_url: None,
            revocations_max_staleness: None,
            cors_origins: Origins::default(),
            metrics_bind: None,
        }
    }
}

/// `load` and `from_sources` (the `API_*` variables over the TOML file over the defaults).
impl Layered for Settings {
    const ENV_PREFIX: &'static str = ENV_PREFIX;

    fn keys() -> Vec<&'static [&'static str]> {
        vec![keys_of::<Settings>(), keys_of::<KeySourceKeys>()]
    }

    fn from_layers(layers: &Layers) -> Result<Self, ConfigError> {
        let mut settings: Settings = layers.get()?;
        settings.keys = layers.get::<KeySourceKeys>()?.resolve();
        if settings.revocations_max_staleness.is_some() && settings.revocations_url.is_none() {
            return Err(layers.invalid("revocations_max_staleness", "needs API_REVOCATIONS_URL"));
        }
        Ok(settings)
    }
}

impl Settings {
    /// Settings for tests: the defaults, bound to `127.0.0.1:0`, keys from `keys_dir`.
    pub fn for_tests(keys_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind: BindAddr::from_static("127.0.0.1:0"),
            keys: KeysFrom::Dir(keys_dir.into()),
            ..Self::default()
        }
    }

    /// The port of `bind` (for the `healthcheck` subcommand).
    pub fn port(&self) -> Option<u16> {
        self.bind.port()
    }
}

/// `API_KEYS_DIR` and `API_JWKS_URL` as given; a JWKS URL wins over the folder.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct KeySourceKeys {
    #[serde(deserialize_with = "non_empty_path")]
    keys_dir: PathBuf,
    #[serde(deserialize_with = "optional_http_url")]
    jwks_url: Option<String>,
}

impl Default for KeySourceKeys {
    fn default() -> Self {
        Self { keys_dir: "keys/public".into(), jwks_url: None }
    }
}

impl KeySourceKeys {
    fn resolve(self) -> KeysFrom {
        match self.jwks_url {
            Some(url) => KeysFrom::Jwks(url),
            None => KeysFrom::Dir(self.keys_dir),
        }
    }
}

/// `API_LEEWAY`: whole seconds, at most 5m.
#[derive(Debug)]
pub enum Leeway {}
impl DurationBounds for Leeway {
    const MAX: Duration = Duration::from_secs(300);
    const WHOLE_SECONDS: bool = true;
}

/// `API_SHUTDOWN_TIMEOUT`: whole seconds, at most 1h.
#[derive(Debug)]
pub enum ShutdownTimeout {}
impl DurationBounds for ShutdownTimeout {
    const MAX: Duration = Duration::from_secs(3600);
    const WHOLE_SECONDS: bool = true;
}

fn issuer<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parse_text(d, |t| http_url(t).map(|url| url.trim_end_matches('/').to_owned()))
}

fn token_cache<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    parse_text(d, |t| match t.parse::<usize>() {
        Ok(n) if n <= 1_000_000 => Ok(n),
        Ok(_) => Err("must be at most 1000000 (each token held costs about 1.5 KiB)".to_owned()),
        Err(_) => Err(format!("`{t}` is not a number of tokens (0 turns it off)")),
    })
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
        assert_eq!(s.bind.as_str(), "0.0.0.0:4000");
        assert_eq!(s.keys, KeysFrom::Dir(PathBuf::from("keys/public")));
        assert_eq!(s.issuer, "http://localhost:5000");
        assert_eq!(s.audience, "articles-api");
        assert_eq!(s.leeway, Duration::from_secs(30));
        assert_eq!(s.articles_file, None);
        assert_eq!(s.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(s.port(), Some(4000));
        assert_eq!(s.token_cache, 4096);
        assert_eq!((s.revocations_url.as_deref(), s.revocations_max_staleness), (None, None));
        assert!(s.cors_origins.is_empty());
        assert_eq!(s.metrics_bind, None);
    }

    #[test]
    fn test_settings_are_the_defaults_plus_overrides() {
        let s = Settings::for_tests("/k");
        assert_eq!(s.bind.as_str(), "127.0.0.1:0");
        assert_eq!(s.keys, KeysFrom::Dir(PathBuf::from("/k")));
        assert_eq!(s.leeway, Settings::default().leeway);
    }

    #[test]
    fn the_settings_of_features_to_come_are_validated_now() {
        let s = Settings::from_sources(
            None,
            env(&[
                ("API_REVOCATIONS_URL", "http://auth:5000/revocations"),
                ("API_REVOCATIONS_MAX_STALENESS", "2m"),
                ("API_CORS_ORIGINS", "https://app.example"),
                ("API_METRICS_BIND", "127.0.0.1:9101"),
            ]),
        )
        .unwrap();
        assert_eq!(s.revocations_url.as_deref(), Some("http://auth:5000/revocations"));
        assert_eq!(s.revocations_max_staleness, Some(Duration::from_secs(120)));
        assert!(s.cors_origins.contains("https://app.example"));
        assert_eq!(s.metrics_bind.as_ref().map(BindAddr::as_str), Some("127.0.0.1:9101"));
        let err = Settings::from_sources(None, env(&[("API_REVOCATIONS_MAX_STALENESS", "2m")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("API_REVOCATIONS_MAX_STALENESS"), "{err}");
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
            ("API_REVOCATIONS_URL", "auth:5000/revocations"),
            ("API_REVOCATIONS_MAX_STALENESS", "0"),
            ("API_CORS_ORIGINS", "*"),
            ("API_CORS_ORIGINS", "https://app.example/"),
            ("API_METRICS_BIND", "nowhere"),
            ("API_TOKEN_CACHE", "lots"),
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
