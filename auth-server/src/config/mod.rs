//! Typed settings: built-in defaults → a TOML file → `AUTH_*` environment variables.
//!
//! Each setting is declared once, as a field below: its name is the TOML key, `AUTH_` + the name
//! in capitals the environment variable, its type (and `deserialize_with`) the validation, and
//! `Default` holds every built-in value. Settings read together (the Redis deployment, the login
//! throttling, the introspection clients) are small structs of their own that resolve into one
//! typed value. The layering and the shared validators are `service_kit::config`; a bad value is
//! one line naming the variable, never echoing a secret.
//!
//! Some settings of the contract are validated here before their feature is wired (see
//! [`Settings::not_yet_in_effect`]); the server warns at start-up when one of them is set.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
pub use service_kit::config::ConfigError;
use service_kit::config::{
    AtLeastOneSecond, BindAddr, DurationBounds, Layered, Layers, Origins, bounded_duration, flag,
    keys_of, non_empty, non_empty_path, optional, optional_duration, parse_text, positive_u32,
};

use crate::passwords::Hasher;
use crate::throttle::{Limits, TrustedProxies};

mod introspection;
mod redis_settings;

pub use introspection::{
    IntrospectionClient, IntrospectionClients, IntrospectionKeys, MIN_CLIENT_SECRET_CHARS,
};
pub use redis_settings::{DEFAULT_REDIS_URL, RedisKeys, RedisSettings, SentinelLogin};

/// The prefix of every environment variable of this server.
pub const ENV_PREFIX: &str = "AUTH";

/// The auth server's settings, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `AUTH_BIND`: address to listen on (`host:port`; port 0 picks a free one).
    pub bind: BindAddr,
    /// `AUTH_REDIS_URL`, or `AUTH_REDIS_CLUSTER_URLS`, or `AUTH_REDIS_SENTINEL_URLS` +
    /// `AUTH_REDIS_SENTINEL_MASTER`: see [`RedisKeys`].
    #[serde(skip)]
    pub redis: RedisSettings,
    /// `AUTH_KEYS_DIR`: holds `private/` and `public/`.
    #[serde(deserialize_with = "non_empty_path")]
    pub keys_dir: PathBuf,
    /// `AUTH_ISSUER`: the `iss` claim and the base of the discovery URLs (no trailing `/`).
    #[serde(deserialize_with = "issuer")]
    pub issuer: String,
    /// `AUTH_AUDIENCE`: the `aud` claim.
    #[serde(deserialize_with = "non_empty")]
    pub audience: String,
    /// `AUTH_ACCESS_TOKEN_TTL`: `exp - iat` of access tokens (whole seconds, at least 1s).
    #[serde(deserialize_with = "bounded_duration::<_, AccessTtl>")]
    pub access_token_ttl: Duration,
    /// `AUTH_REFRESH_TOKEN_TTL`: idle lifetime of a session; every rotation restarts it.
    #[serde(deserialize_with = "bounded_duration::<_, AtLeastOneSecond>")]
    pub refresh_token_ttl: Duration,
    /// `AUTH_SESSION_MAX_AGE`: absolute lifetime of a session, counted from the login.
    #[serde(deserialize_with = "bounded_duration::<_, AtLeastOneSecond>")]
    pub session_max_age: Duration,
    /// `AUTH_REFRESH_REUSE_GRACE`: how long the token just rotated still returns its successor.
    #[serde(deserialize_with = "bounded_duration::<_, ReuseGrace>")]
    pub refresh_reuse_grace: Duration,
    /// `AUTH_REFRESH_MAX_ROTATIONS`: rotations one session may make per
    /// `AUTH_REFRESH_ROTATION_WINDOW` (grace replays excepted); past it, 429.
    #[serde(deserialize_with = "positive_u32")]
    pub refresh_max_rotations: u32,
    /// `AUTH_REFRESH_ROTATION_WINDOW`: the window of `AUTH_REFRESH_MAX_ROTATIONS`.
    #[serde(deserialize_with = "bounded_duration::<_, AtLeastOneSecond>")]
    pub refresh_rotation_window: Duration,
    /// `AUTH_REFRESH_COOKIE`: send the refresh token as an HttpOnly cookie instead of in the body.
    #[serde(deserialize_with = "flag")]
    pub refresh_cookie: bool,
    /// `AUTH_REFRESH_COOKIE_SAMESITE`: the cookie's `SameSite`; `none` needs an https issuer.
    pub refresh_cookie_samesite: SameSite,
    /// `AUTH_CORS_ORIGINS`: browser origins allowed cross-origin (exact origins); empty: no CORS
    /// headers (`service_kit::cors`). Also the origins, besides the issuer's, from which a
    /// request may carry the refresh cookie to `/token` and `/logout`.
    pub cors_origins: Origins,
    /// `AUTH_TRUSTED_PROXIES`: proxies (IPs or CIDRs) whose `X-Forwarded-For` names the client.
    #[serde(deserialize_with = "trusted_proxies")]
    pub trusted_proxies: TrustedProxies,
    /// `AUTH_LOGIN_*`, `AUTH_REGISTER_*`: see [`ThrottleKeys`] and [`crate::throttle`].
    #[serde(skip)]
    pub throttle: Limits,
    /// `AUTH_HASH_CONCURRENCY`: argon2 computations at once (`auto`: the number of cores).
    #[serde(deserialize_with = "hash_concurrency")]
    pub hash_concurrency: usize,
    /// `AUTH_HASH_QUEUE`: logins and registrations that may wait for a hashing slot; past it, 503.
    #[serde(deserialize_with = "service_kit::config::non_negative_usize")]
    pub hash_queue: usize,
    /// `AUTH_SHUTDOWN_TIMEOUT`: on SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[serde(deserialize_with = "bounded_duration::<_, ShutdownTimeout>")]
    pub shutdown_timeout: Duration,
    /// `AUTH_INTROSPECTION_CLIENTS` / `AUTH_INTROSPECTION_CLIENTS_FILE`: who may call
    /// `POST /introspect` (see [`IntrospectionKeys`]).
    #[serde(skip)]
    pub introspection_clients: IntrospectionClients,
    /// `AUTH_REVOCATIONS_MAX_WAITERS`: `GET /revocations` long polls one instance lets wait at
    /// once (each is an open connection and a small future); past it, 503 with `Retry-After`.
    #[serde(deserialize_with = "positive_usize")]
    pub revocations_max_waiters: usize,
    /// `AUTH_KEY_ROTATION_INTERVAL`: rotate the signing key when the active one is this old;
    /// `None` (the default): never by itself (see [`crate::rotation`]).
    #[serde(deserialize_with = "optional_duration::<_, AtLeastOneSecond>")]
    pub key_rotation_interval: Option<Duration>,
    /// How scheduled rotation paces itself: the contract's values, shorter in tests only (no
    /// environment variable).
    #[serde(skip)]
    pub key_rotation_timing: crate::rotation::Timing,
    /// `AUTH_METRICS_BIND`: serve `GET /metrics` on this address only; `None` (the default):
    /// on [`Self::bind`] with the API.
    #[serde(deserialize_with = "optional")]
    pub metrics_bind: Option<BindAddr>,
}

impl Default for Settings {
    /// The built-in values: the one list of defaults.
    fn default() -> Self {
        Self {
            bind: BindAddr::from_static("0.0.0.0:5000"),
            redis: RedisSettings::default(),
            keys_dir: "keys".into(),
            issuer: "http://localhost:5000".into(),
            audience: "articles-api".into(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(7 * 86_400),
            session_max_age: Duration::from_secs(30 * 86_400),
            refresh_reuse_grace: Duration::from_secs(10),
            refresh_max_rotations: 60,
            refresh_rotation_window: Duration::from_secs(3600),
            refresh_cookie: false,
            refresh_cookie_samesite: SameSite::Strict,
            cors_origins: Origins::default(),
            trusted_proxies: TrustedProxies::default(),
            throttle: ThrottleKeys::default().limits(),
            hash_concurrency: Hasher::default_concurrency(),
            hash_queue: 64,
            shutdown_timeout: Duration::from_secs(10),
            introspection_clients: IntrospectionClients::default(),
            revocations_max_waiters: crate::revocations::DEFAULT_MAX_WAITERS,
            key_rotation_interval: None,
            key_rotation_timing: crate::rotation::Timing::default(),
            metrics_bind: None,
        }
    }
}

/// `load` and `from_sources` (the `AUTH_*` variables over the TOML file over the defaults).
impl Layered for Settings {
    const ENV_PREFIX: &'static str = ENV_PREFIX;

    fn keys() -> Vec<&'static [&'static str]> {
        vec![
            keys_of::<Settings>(),
            keys_of::<RedisKeys>(),
            keys_of::<ThrottleKeys>(),
            keys_of::<IntrospectionKeys>(),
        ]
    }

    fn from_layers(layers: &Layers) -> Result<Self, ConfigError> {
        let mut settings: Settings = layers.get()?;
        settings.redis = layers.get::<RedisKeys>()?.resolve(layers)?;
        settings.throttle = layers.get::<ThrottleKeys>()?.resolve(layers)?;
        settings.introspection_clients = layers.get::<IntrospectionKeys>()?.resolve(layers)?;
        settings.check(layers)?;
        Ok(settings)
    }
}

impl Settings {
    /// The rules that span settings.
    fn check(&self, layers: &Layers) -> Result<(), ConfigError> {
        if self.refresh_cookie_samesite == SameSite::None && !self.issuer.starts_with("https://") {
            return Err(layers.invalid(
                "refresh_cookie_samesite",
                "`none` needs an https AUTH_ISSUER (browsers drop SameSite=None cookies that are not Secure)",
            ));
        }
        Ok(())
    }

    /// Settings for tests and tools: the defaults, bound to `127.0.0.1:0`, with the given Redis
    /// and keys folder.
    /// Per-pair and per-username limits are as in production; every test client is 127.0.0.1,
    /// so the per-address ones are raised (the throttling tests lower them again).
    pub fn for_tests(redis_url: impl Into<String>, keys_dir: impl Into<PathBuf>) -> Self {
        let defaults = Self::default();
        Self {
            bind: BindAddr::from_static("127.0.0.1:0"),
            redis: RedisSettings::Standalone { url: SecretString::from(redis_url.into()) },
            keys_dir: keys_dir.into(),
            throttle: Limits {
                max_failures_per_address: 10_000,
                max_registrations_per_address: 10_000,
                ..defaults.throttle.clone()
            },
            ..defaults
        }
    }

    /// The settings that are set (not at their default) though this build does not act on
    /// them yet, by environment variable; the server warns about each at start-up.
    pub fn not_yet_in_effect(&self) -> Vec<&'static str> {
        Vec::new()
    }
}

/// `AUTH_ACCESS_TOKEN_TTL`: at least 1s, whole seconds (`exp` and `iat` are seconds).
#[derive(Debug)]
pub enum AccessTtl {}
impl DurationBounds for AccessTtl {
    const MIN: Duration = Duration::from_secs(1);
    const WHOLE_SECONDS: bool = true;
}

/// `AUTH_REFRESH_REUSE_GRACE`: at most 5m (a replay window, kept short).
#[derive(Debug)]
pub enum ReuseGrace {}
impl DurationBounds for ReuseGrace {
    const MAX: Duration = Duration::from_secs(300);
}

/// `AUTH_SHUTDOWN_TIMEOUT`: at most 1h.
#[derive(Debug)]
pub enum ShutdownTimeout {}
impl DurationBounds for ShutdownTimeout {
    const MAX: Duration = Duration::from_secs(3600);
}

fn issuer<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parse_text(d, |t| {
        let url = service_kit::config::http_url(t)?;
        if url.contains('?') {
            return Err(format!("`{t}` must not have a query (RFC 8414 §2)"));
        }
        Ok(url.trim_end_matches('/').to_owned())
    })
}

fn trusted_proxies<'de, D: Deserializer<'de>>(d: D) -> Result<TrustedProxies, D::Error> {
    parse_text(d, TrustedProxies::parse)
}

/// A whole number of at least 1.
fn positive_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    parse_text(d, |t| {
        service_kit::config::count(t, 1)
            .and_then(|n| usize::try_from(n).map_err(|_| format!("`{t}` is too large")))
    })
}

fn hash_concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    parse_text(d, |t| {
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Hasher::default_concurrency());
        }
        service_kit::config::count(t, 1).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    })
}

// ---------------------------------------------------------------------------------------------
// SameSite

/// The refresh cookie's `SameSite` attribute (`AUTH_REFRESH_COOKIE_SAMESITE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `strict` (the default): never sent on a cross-site request.
    Strict,
    /// `lax`: sent on top-level cross-site navigations.
    Lax,
    /// `none`: sent cross-site; needs `Secure`, so an https issuer.
    None,
}

impl SameSite {
    /// The attribute's value: `Strict`, `Lax` or `None`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

impl FromStr for SameSite {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "strict" => Ok(Self::Strict),
            "lax" => Ok(Self::Lax),
            "none" => Ok(Self::None),
            _ => Err(format!("`{text}` is not strict, lax or none")),
        }
    }
}

service_kit::deserialize_from_text!(SameSite);

// ---------------------------------------------------------------------------------------------
// Throttling

/// The login and registration limits as given; [`Self::resolve`] makes them [`Limits`].
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct ThrottleKeys {
    /// `AUTH_LOGIN_MAX_FAILURES`: per (username, client address) pair.
    #[serde(deserialize_with = "positive_u32")]
    login_max_failures: u32,
    /// `AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS`.
    #[serde(deserialize_with = "positive_u32")]
    login_max_failures_per_address: u32,
    /// `AUTH_LOGIN_MAX_FAILURES_PER_USERNAME`: across all addresses.
    #[serde(deserialize_with = "positive_u32")]
    login_max_failures_per_username: u32,
    /// `AUTH_LOGIN_FAILURE_WINDOW`.
    #[serde(deserialize_with = "bounded_duration::<_, AtLeastOneSecond>")]
    login_failure_window: Duration,
    /// `AUTH_LOGIN_LOCKOUT`.
    #[serde(deserialize_with = "bounded_duration::<_, AtLeastOneSecond>")]
    login_lockout: Duration,
    /// `AUTH_LOGIN_LOCKOUT_MAX`.
    #[serde(deserialize_with = "bounded_duration::<_, AtLeastOneSecond>")]
    login_lockout_max: Duration,
    /// `AUTH_REGISTER_MAX_PER_ADDRESS`.
    #[serde(deserialize_with = "positive_u32")]
    register_max_per_address: u32,
    /// `AUTH_REGISTER_WINDOW`.
    #[serde(deserialize_with = "bounded_duration::<_, AtLeastOneSecond>")]
    register_window: Duration,
}

impl Default for ThrottleKeys {
    fn default() -> Self {
        Self {
            login_max_failures: 5,
            login_max_failures_per_address: 20,
            login_max_failures_per_username: 50,
            login_failure_window: Duration::from_secs(15 * 60),
            login_lockout: Duration::from_secs(60),
            login_lockout_max: Duration::from_secs(3600),
            register_max_per_address: 20,
            register_window: Duration::from_secs(3600),
        }
    }
}

impl ThrottleKeys {
    fn limits(&self) -> Limits {
        Limits {
            max_failures_per_pair: self.login_max_failures,
            max_failures_per_address: self.login_max_failures_per_address,
            max_failures_per_username: self.login_max_failures_per_username,
            failure_window: self.login_failure_window,
            lockout: self.login_lockout,
            lockout_max: self.login_lockout_max,
            max_registrations_per_address: self.register_max_per_address,
            register_window: self.register_window,
        }
    }

    fn resolve(self, layers: &Layers) -> Result<Limits, ConfigError> {
        if self.login_lockout_max < self.login_lockout {
            return Err(
                layers.invalid("login_lockout_max", "must not be less than AUTH_LOGIN_LOCKOUT")
            );
        }
        Ok(self.limits())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_sources(None, env(pairs))
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        let err = load(pairs).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        err
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = load(&[]).unwrap();
        assert_eq!(s.bind.as_str(), "0.0.0.0:5000");
        assert_eq!(s.redis.standalone_url(), Some("redis://127.0.0.1:6379"));
        assert_eq!(s.keys_dir, PathBuf::from("keys"));
        assert_eq!(s.issuer, "http://localhost:5000");
        assert_eq!(s.audience, "articles-api");
        assert_eq!(s.access_token_ttl, Duration::from_secs(900));
        assert_eq!(s.refresh_token_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(s.session_max_age, Duration::from_secs(30 * 86_400));
        assert_eq!(s.refresh_reuse_grace, Duration::from_secs(10));
        assert_eq!(s.refresh_max_rotations, 60);
        assert_eq!(s.refresh_rotation_window, Duration::from_secs(3600));
        assert!(!s.refresh_cookie);
        assert_eq!(s.refresh_cookie_samesite, SameSite::Strict);
        assert!(s.cors_origins.is_empty());
        assert!(s.trusted_proxies.nets().is_empty());
        assert_eq!(s.throttle.max_failures_per_pair, 5);
        assert_eq!(s.throttle.max_failures_per_address, 20);
        assert_eq!(s.throttle.max_failures_per_username, 50);
        assert_eq!(s.throttle.failure_window, Duration::from_secs(900));
        assert_eq!(s.throttle.lockout, Duration::from_secs(60));
        assert_eq!(s.throttle.lockout_max, Duration::from_secs(3600));
        assert_eq!(s.throttle.max_registrations_per_address, 20);
        assert_eq!(s.throttle.register_window, Duration::from_secs(3600));
        assert_eq!(s.hash_concurrency, Hasher::default_concurrency());
        assert_eq!(s.hash_queue, 64);
        assert_eq!(s.shutdown_timeout, Duration::from_secs(10));
        assert!(s.introspection_clients.is_empty());
        assert_eq!(s.key_rotation_interval, None);
        assert_eq!(s.metrics_bind, None);
        assert!(s.not_yet_in_effect().is_empty());
    }

    #[test]
    fn test_settings_are_the_defaults_plus_overrides() {
        let s = Settings::for_tests("redis://127.0.0.1:1", "/k");
        let d = Settings::default();
        assert_eq!(s.bind.as_str(), "127.0.0.1:0");
        assert_eq!(s.redis.standalone_url(), Some("redis://127.0.0.1:1"));
        assert_eq!(s.keys_dir, PathBuf::from("/k"));
        assert_eq!(
            (s.access_token_ttl, s.issuer.as_str()),
            (d.access_token_ttl, d.issuer.as_str())
        );
        assert_eq!(s.throttle.max_failures_per_pair, d.throttle.max_failures_per_pair);
        assert_eq!(s.throttle.max_failures_per_address, 10_000);
    }

    #[test]
    fn hardening_settings_come_from_the_environment() {
        let s = load(&[
            ("AUTH_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
            ("AUTH_LOGIN_MAX_FAILURES", "3"),
            ("AUTH_LOGIN_LOCKOUT", "30s"),
            ("AUTH_HASH_CONCURRENCY", "1"),
            ("AUTH_HASH_QUEUE", "0"),
            ("AUTH_SHUTDOWN_TIMEOUT", "2s"),
        ])
        .unwrap();
        assert_eq!(s.trusted_proxies.nets().len(), 2);
        assert_eq!(s.throttle.max_failures_per_pair, 3);
        assert_eq!(s.throttle.lockout, Duration::from_secs(30));
        assert_eq!((s.hash_concurrency, s.hash_queue), (1, 0));
        assert_eq!(s.shutdown_timeout, Duration::from_secs(2));
    }

    #[test]
    fn environment_overrides_the_file_which_overrides_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        std::fs::write(
            &path,
            "access_token_ttl = 600\naudience = \"from-file\"\nrefresh_cookie = true\n\
             login_max_failures = 7\ncors_origins = [\"https://app.example\"]\n",
        )
        .unwrap();
        let s = Settings::from_sources(Some(&path), env(&[("AUTH_AUDIENCE", "from-env")])).unwrap();
        assert_eq!(s.access_token_ttl, Duration::from_secs(600));
        assert_eq!(s.audience, "from-env");
        assert!(s.refresh_cookie);
        assert_eq!(s.throttle.max_failures_per_pair, 7);
        assert!(s.cors_origins.contains("https://app.example"));
    }

    #[test]
    fn a_bad_duration_is_one_line_naming_the_setting() {
        let err = error(&[("AUTH_ACCESS_TOKEN_TTL", "fifteen")]);
        assert!(err.starts_with("AUTH_ACCESS_TOKEN_TTL"), "{err}");
        assert!(err.contains("fifteen"), "{err}");
    }

    #[test]
    fn a_bad_duration_in_the_file_names_the_setting_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        std::fs::write(&path, "refresh_token_ttl = \"7 fortnights\"\n").unwrap();
        let err = Settings::from_sources(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.starts_with("AUTH_REFRESH_TOKEN_TTL (`refresh_token_ttl`)"), "{err}");
        std::fs::write(&path, "login_lockout = \"never\"\n").unwrap();
        let err = Settings::from_sources(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.starts_with("AUTH_LOGIN_LOCKOUT (`login_lockout`)"), "{err}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        std::fs::write(&path, "acess_token_ttl = \"15m\"\n").unwrap();
        let err = Settings::from_sources(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown setting `acess_token_ttl`"), "{err}");
        // Keys of every group are known.
        std::fs::write(&path, "redis_url = \"redis://r:6379\"\nregister_window = \"2h\"\n")
            .unwrap();
        assert!(Settings::from_sources(Some(&path), env(&[])).is_ok());
    }

    #[test]
    fn the_redis_urls_are_never_echoed_nor_shown() {
        let err = error(&[("AUTH_REDIS_URL", "mysql://u:hunter2@x")]);
        assert!(err.starts_with("AUTH_REDIS_URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = error(&[("AUTH_REDIS_CLUSTER_URLS", "redis://:pw1@a:1, mysql://:hunter2@b")]);
        assert!(err.starts_with("AUTH_REDIS_CLUSTER_URLS"), "{err}");
        assert!(!err.contains("hunter2") && !err.contains("pw1"), "{err}");
        let s = load(&[("AUTH_REDIS_URL", "redis://:hunter2@127.0.0.1:1")]).unwrap();
        assert_eq!(s.redis.standalone_url(), Some("redis://:hunter2@127.0.0.1:1"));
        assert!(!format!("{s:?}").contains("hunter2"));
        let s = load(&[
            ("AUTH_REDIS_SENTINEL_URLS", "redis://:hunter2@s1:26379"),
            ("AUTH_REDIS_SENTINEL_MASTER", "m"),
        ])
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        let s = load(&[
            ("AUTH_REDIS_SENTINEL_URLS", "redis://s1:26379"),
            ("AUTH_REDIS_SENTINEL_MASTER", "m"),
            ("AUTH_REDIS_SENTINEL_USERNAME", "watcher"),
            ("AUTH_REDIS_SENTINEL_PASSWORD", "hunter2"),
        ])
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        let RedisSettings::Sentinel { login, .. } = &s.redis else { panic!("{s:?}") };
        assert_eq!(login.username.as_deref(), Some("watcher"));
        assert_eq!(login.password.as_ref().map(|p| p.expose_secret()), Some("hunter2"));
    }

    #[test]
    fn exactly_one_redis_mode() {
        let s = load(&[("AUTH_REDIS_CLUSTER_URLS", "redis://a:7000,redis://b:7001")]).unwrap();
        assert!(matches!(&s.redis, RedisSettings::Cluster { urls } if urls.len() == 2));
        assert_eq!(s.redis.standalone_url(), None);
        let s = load(&[
            ("AUTH_REDIS_SENTINEL_URLS", "redis://s1:26379, redis://s2:26379"),
            ("AUTH_REDIS_SENTINEL_MASTER", "mymaster"),
        ])
        .unwrap();
        assert!(
            matches!(&s.redis, RedisSettings::Sentinel { urls, master, login } if urls.len() == 2 && master == "mymaster" && login.password.is_none())
        );
        for (pairs, named) in [
            (
                &[("AUTH_REDIS_URL", "redis://a:1"), ("AUTH_REDIS_CLUSTER_URLS", "redis://b:1")][..],
                "AUTH_REDIS_CLUSTER_URLS",
            ),
            (
                &[
                    ("AUTH_REDIS_CLUSTER_URLS", "redis://b:1"),
                    ("AUTH_REDIS_SENTINEL_URLS", "redis://c:1"),
                ][..],
                "AUTH_REDIS_CLUSTER_URLS",
            ),
            (&[("AUTH_REDIS_SENTINEL_URLS", "redis://c:1")][..], "AUTH_REDIS_SENTINEL_MASTER"),
            (&[("AUTH_REDIS_SENTINEL_MASTER", "m")][..], "AUTH_REDIS_SENTINEL_MASTER"),
            (&[("AUTH_REDIS_CLUSTER_URLS", " , ")][..], "AUTH_REDIS_CLUSTER_URLS"),
            (&[("AUTH_REDIS_SENTINEL_PASSWORD", "pw")][..], "AUTH_REDIS_SENTINEL_PASSWORD"),
            (
                &[
                    ("AUTH_REDIS_CLUSTER_URLS", "redis://b:1"),
                    ("AUTH_REDIS_SENTINEL_PASSWORD", "p"),
                ][..],
                "AUTH_REDIS_SENTINEL_PASSWORD",
            ),
            (
                &[
                    ("AUTH_REDIS_SENTINEL_URLS", "redis://c:1"),
                    ("AUTH_REDIS_SENTINEL_MASTER", "m"),
                    ("AUTH_REDIS_SENTINEL_USERNAME", "watcher"),
                ][..],
                "AUTH_REDIS_SENTINEL_USERNAME",
            ),
        ] {
            let err = error(pairs);
            assert!(err.starts_with(named), "{pairs:?}: {err}");
        }
        // A blank variable is unset: the default standalone server.
        let s = load(&[("AUTH_REDIS_CLUSTER_URLS", "")]).unwrap();
        assert_eq!(s.redis.standalone_url(), Some(DEFAULT_REDIS_URL));
    }

    #[test]
    fn samesite_none_needs_an_https_issuer() {
        let s = load(&[("AUTH_REFRESH_COOKIE_SAMESITE", "Lax")]).unwrap();
        assert_eq!(s.refresh_cookie_samesite, SameSite::Lax);
        assert!(s.not_yet_in_effect().is_empty(), "SameSite is in effect");
        let err = error(&[("AUTH_REFRESH_COOKIE_SAMESITE", "none")]);
        assert!(err.starts_with("AUTH_REFRESH_COOKIE_SAMESITE"), "{err}");
        assert!(err.contains("https"), "{err}");
        let s = load(&[
            ("AUTH_REFRESH_COOKIE_SAMESITE", "none"),
            ("AUTH_ISSUER", "https://auth.example/"),
        ])
        .unwrap();
        assert_eq!(
            (s.refresh_cookie_samesite, s.issuer.as_str()),
            (SameSite::None, "https://auth.example")
        );
        assert!(
            error(&[("AUTH_REFRESH_COOKIE_SAMESITE", "sometimes")])
                .starts_with("AUTH_REFRESH_COOKIE_SAMESITE")
        );
    }

    #[test]
    fn cors_origins_are_exact() {
        let s =
            load(&[("AUTH_CORS_ORIGINS", "https://app.example, http://localhost:3000")]).unwrap();
        assert!(s.cors_origins.contains("http://localhost:3000"));
        for bad in ["*", "https://app.example/login", "app.example"] {
            let err = error(&[("AUTH_CORS_ORIGINS", bad)]);
            assert!(err.starts_with("AUTH_CORS_ORIGINS"), "{bad}: {err}");
        }
    }

    #[test]
    fn introspection_clients_inline_or_from_a_file_secrets_kept_secret() {
        let secret = "s".repeat(32);
        let other = format!("{}:tail", "t".repeat(40));
        let s = load(&[("AUTH_INTROSPECTION_CLIENTS", &format!("api:{secret}, billing:{other}"))])
            .unwrap();
        assert_eq!(s.introspection_clients.iter().count(), 2);
        assert_eq!(s.introspection_clients.get("api").unwrap().secret.expose_secret(), secret);
        // The secret may hold a colon: only the first one separates.
        assert_eq!(s.introspection_clients.get("billing").unwrap().secret.expose_secret(), other);
        assert!(!format!("{s:?}").contains(&secret));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients");
        std::fs::write(
            &path,
            format!("# resource servers\napi:{secret}\n\nreports:{}\n", "r".repeat(33)),
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let s = load(&[("AUTH_INTROSPECTION_CLIENTS_FILE", file)]).unwrap();
        assert!(s.introspection_clients.get("reports").is_some());
        assert!(s.not_yet_in_effect().is_empty(), "introspection is in effect");

        let short = "hunter2-is-too-short";
        for (pairs, named) in [
            (
                vec![("AUTH_INTROSPECTION_CLIENTS", format!("api:{short}"))],
                "AUTH_INTROSPECTION_CLIENTS",
            ),
            (vec![("AUTH_INTROSPECTION_CLIENTS", short.to_owned())], "AUTH_INTROSPECTION_CLIENTS"),
            (
                vec![("AUTH_INTROSPECTION_CLIENTS", format!("a b:{secret}"))],
                "AUTH_INTROSPECTION_CLIENTS",
            ),
            (
                vec![("AUTH_INTROSPECTION_CLIENTS", format!("api:{secret},api:{secret}"))],
                "AUTH_INTROSPECTION_CLIENTS",
            ),
            (
                vec![("AUTH_INTROSPECTION_CLIENTS_FILE", "/nonexistent/clients".to_owned())],
                "AUTH_INTROSPECTION_CLIENTS_FILE",
            ),
            (
                vec![
                    ("AUTH_INTROSPECTION_CLIENTS", format!("api:{secret}")),
                    ("AUTH_INTROSPECTION_CLIENTS_FILE", file.to_owned()),
                ],
                "AUTH_INTROSPECTION_CLIENTS_FILE",
            ),
        ] {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let err = error(&pairs);
            assert!(err.starts_with(named), "{err}");
            assert!(!err.contains(short) && !err.contains(&secret), "{err}");
        }
    }

    #[test]
    fn rotation_interval_and_metrics_bind() {
        let s =
            load(&[("AUTH_KEY_ROTATION_INTERVAL", "30d"), ("AUTH_METRICS_BIND", "127.0.0.1:9100")])
                .unwrap();
        assert_eq!(s.key_rotation_interval, Some(Duration::from_secs(30 * 86_400)));
        assert!(s.not_yet_in_effect().is_empty(), "scheduled rotation is in effect");
        assert_eq!(s.key_rotation_timing, crate::rotation::Timing::default());
        assert_eq!(s.metrics_bind.as_ref().map(BindAddr::as_str), Some("127.0.0.1:9100"));
        assert_eq!(
            load(&[("AUTH_KEY_ROTATION_INTERVAL", "")]).unwrap().key_rotation_interval,
            None
        );
    }

    #[test]
    fn other_bad_values_name_their_setting() {
        for (name, value) in [
            ("AUTH_BIND", "nowhere"),
            ("AUTH_METRICS_BIND", "nowhere"),
            ("AUTH_ISSUER", "localhost:5000"),
            ("AUTH_ISSUER", "https://auth.example/?x=1"),
            ("AUTH_AUDIENCE", " "),
            ("AUTH_KEYS_DIR", ""),
            ("AUTH_ACCESS_TOKEN_TTL", "0"),
            ("AUTH_ACCESS_TOKEN_TTL", "1500ms"),
            ("AUTH_SESSION_MAX_AGE", "0"),
            ("AUTH_REFRESH_REUSE_GRACE", "6m"),
            ("AUTH_REFRESH_MAX_ROTATIONS", "0"),
            ("AUTH_REFRESH_ROTATION_WINDOW", "500ms"),
            ("AUTH_LOGIN_MAX_FAILURES_PER_USERNAME", "0"),
            ("AUTH_REFRESH_COOKIE", "maybe"),
            ("AUTH_TRUSTED_PROXIES", "10.0.0.0/40"),
            ("AUTH_LOGIN_MAX_FAILURES", "0"),
            ("AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS", "many"),
            ("AUTH_LOGIN_LOCKOUT", "0"),
            ("AUTH_LOGIN_LOCKOUT_MAX", "1s"),
            ("AUTH_HASH_CONCURRENCY", "0"),
            ("AUTH_HASH_QUEUE", "-1"),
            ("AUTH_SHUTDOWN_TIMEOUT", "2d"),
            ("AUTH_KEY_ROTATION_INTERVAL", "0"),
        ] {
            let err = error(&[(name, value)]);
            assert!(err.starts_with(&format!("{name} (`")), "{name}={value}: {err}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err =
            Settings::from_sources(Some(std::path::Path::new("/nonexistent/auth.toml")), env(&[]))
                .unwrap_err()
                .to_string();
        assert!(err.contains("/nonexistent/auth.toml"), "{err}");
    }
}
