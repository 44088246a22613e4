//! Typed settings: built-in defaults → a TOML file → `AUTH_*` environment variables.
//!
//! Every setting is read as text (the layering is `service_kit::config`) and parsed here, so that a
//! bad value produces one line that names the environment variable (and the TOML key) and says
//! what is wrong.

use std::fmt;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use service_kit::config::ConfigError;
use service_kit::config::{Layered, Setting, invalid};

use crate::passwords::Hasher;
use crate::throttle::{Limits, TrustedProxies};

/// The auth server's settings, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// `AUTH_BIND`: address to listen on (`host:port`; port 0 picks a free one).
    pub bind: String,
    /// `AUTH_REDIS_URL`. May carry a password, so it is never logged or shown by `Debug`.
    pub redis_url: String,
    /// `AUTH_KEYS_DIR`: holds `private/` and `public/`.
    pub keys_dir: PathBuf,
    /// `AUTH_ISSUER`: the `iss` claim and the base of the discovery URLs.
    pub issuer: String,
    /// `AUTH_AUDIENCE`: the `aud` claim.
    pub audience: String,
    /// `AUTH_ACCESS_TOKEN_TTL`: `exp - iat` of access tokens (whole seconds, at least 1s).
    pub access_token_ttl: Duration,
    /// `AUTH_REFRESH_TOKEN_TTL`: idle lifetime of a session; every rotation restarts it.
    pub refresh_token_ttl: Duration,
    /// `AUTH_SESSION_MAX_AGE`: absolute lifetime of a session, counted from the login.
    pub session_max_age: Duration,
    /// `AUTH_REFRESH_REUSE_GRACE`: how long the token just rotated still returns its successor.
    pub refresh_reuse_grace: Duration,
    /// `AUTH_REFRESH_MAX_ROTATIONS`: rotations one session may make per
    /// `AUTH_REFRESH_ROTATION_WINDOW` (grace replays excepted); past it, 429.
    pub refresh_max_rotations: u32,
    /// `AUTH_REFRESH_ROTATION_WINDOW`: the window of `AUTH_REFRESH_MAX_ROTATIONS`.
    pub refresh_rotation_window: Duration,
    /// `AUTH_REFRESH_COOKIE`: send the refresh token as an HttpOnly cookie instead of in the body.
    pub refresh_cookie: bool,
    /// `AUTH_TRUSTED_PROXIES`: proxies (IPs or CIDRs) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// `AUTH_LOGIN_MAX_FAILURES` (per username and address), `AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS`,
    /// `AUTH_LOGIN_MAX_FAILURES_PER_USERNAME`, `AUTH_LOGIN_FAILURE_WINDOW`, `AUTH_LOGIN_LOCKOUT`, `AUTH_LOGIN_LOCKOUT_MAX`,
    /// `AUTH_REGISTER_MAX_PER_ADDRESS`, `AUTH_REGISTER_WINDOW`: see [`crate::throttle`].
    pub throttle: Limits,
    /// `AUTH_HASH_CONCURRENCY`: argon2 computations at once (default: the number of cores).
    pub hash_concurrency: usize,
    /// `AUTH_HASH_QUEUE`: logins and registrations that may wait for a hashing slot; past it, 503.
    pub hash_queue: usize,
    /// `AUTH_SHUTDOWN_TIMEOUT`: on SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_timeout: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("redis_url", &"<redacted>")
            .field("keys_dir", &self.keys_dir)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("session_max_age", &self.session_max_age)
            .field("refresh_reuse_grace", &self.refresh_reuse_grace)
            .field("refresh_max_rotations", &self.refresh_max_rotations)
            .field("refresh_rotation_window", &self.refresh_rotation_window)
            .field("refresh_cookie", &self.refresh_cookie)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("throttle", &self.throttle)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("hash_queue", &self.hash_queue)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

/// Every setting: its TOML key, its environment variable and its default.
const DEFS: &[Setting] = &[
    Setting::new("bind", "AUTH_BIND", "0.0.0.0:5000"),
    Setting::new("redis_url", "AUTH_REDIS_URL", "redis://127.0.0.1:6379"),
    Setting::new("keys_dir", "AUTH_KEYS_DIR", "keys"),
    Setting::new("issuer", "AUTH_ISSUER", "http://localhost:5000"),
    Setting::new("audience", "AUTH_AUDIENCE", "articles-api"),
    Setting::new("access_token_ttl", "AUTH_ACCESS_TOKEN_TTL", "15m"),
    Setting::new("refresh_token_ttl", "AUTH_REFRESH_TOKEN_TTL", "7d"),
    Setting::new("session_max_age", "AUTH_SESSION_MAX_AGE", "30d"),
    Setting::new("refresh_reuse_grace", "AUTH_REFRESH_REUSE_GRACE", "10s"),
    Setting::new("refresh_max_rotations", "AUTH_REFRESH_MAX_ROTATIONS", "60"),
    Setting::new("refresh_rotation_window", "AUTH_REFRESH_ROTATION_WINDOW", "1h"),
    Setting::new("refresh_cookie", "AUTH_REFRESH_COOKIE", "false"),
    Setting::new("trusted_proxies", "AUTH_TRUSTED_PROXIES", ""),
    Setting::new("login_max_failures", "AUTH_LOGIN_MAX_FAILURES", "5"),
    Setting::new("login_max_failures_per_address", "AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS", "20"),
    Setting::new("login_max_failures_per_username", "AUTH_LOGIN_MAX_FAILURES_PER_USERNAME", "50"),
    Setting::new("login_failure_window", "AUTH_LOGIN_FAILURE_WINDOW", "15m"),
    Setting::new("login_lockout", "AUTH_LOGIN_LOCKOUT", "1m"),
    Setting::new("login_lockout_max", "AUTH_LOGIN_LOCKOUT_MAX", "1h"),
    Setting::new("register_max_per_address", "AUTH_REGISTER_MAX_PER_ADDRESS", "20"),
    Setting::new("register_window", "AUTH_REGISTER_WINDOW", "1h"),
    Setting::new("hash_concurrency", "AUTH_HASH_CONCURRENCY", "auto"),
    Setting::new("hash_queue", "AUTH_HASH_QUEUE", "64"),
    Setting::new("shutdown_timeout", "AUTH_SHUTDOWN_TIMEOUT", "10s"),
];

impl Settings {
    /// Loads the settings from the optional TOML file and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_sources(file, std::env::vars())
    }

    /// Loads the settings from the optional TOML file and the given environment
    /// (only the `AUTH_*` names of the contract are read from it).
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

        let (redis_url, d) = cfg.text("redis_url")?;
        // The URL may hold a password: never echo it.
        redis::Client::open(redis_url.as_str())
            .map_err(|_| invalid(d, "not a valid Redis URL (expected redis://host:port)"))?;

        let (keys_dir, d) = cfg.text("keys_dir")?;
        if keys_dir.is_empty() {
            return Err(invalid(d, "must not be empty"));
        }

        let (issuer, d) = cfg.text("issuer")?;
        if !(issuer.starts_with("http://") || issuer.starts_with("https://"))
            || issuer.len() <= "https://".len()
            || issuer.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(d, format!("`{issuer}` is not an http(s) URL")));
        }

        let (audience, d) = cfg.text("audience")?;
        if audience.is_empty() {
            return Err(invalid(d, "must not be empty"));
        }

        let access_token_ttl = cfg.duration("access_token_ttl")?;
        let d = cfg.setting("access_token_ttl");
        if access_token_ttl < Duration::from_secs(1) {
            return Err(invalid(d, "must be at least 1s"));
        }
        if access_token_ttl.subsec_nanos() != 0 {
            return Err(invalid(d, "must be a whole number of seconds"));
        }
        let refresh_token_ttl = cfg.duration("refresh_token_ttl")?;
        if refresh_token_ttl < Duration::from_secs(1) {
            return Err(invalid(cfg.setting("refresh_token_ttl"), "must be at least 1s"));
        }
        let session_max_age = cfg.duration("session_max_age")?;
        if session_max_age < Duration::from_secs(1) {
            return Err(invalid(cfg.setting("session_max_age"), "must be at least 1s"));
        }
        let refresh_reuse_grace = cfg.duration("refresh_reuse_grace")?;
        if refresh_reuse_grace > Duration::from_secs(300) {
            return Err(invalid(cfg.setting("refresh_reuse_grace"), "must be at most 5m"));
        }
        let refresh_max_rotations = count(cfg, "refresh_max_rotations", 1)?;
        let refresh_rotation_window = at_least_1s(cfg, "refresh_rotation_window")?;

        let (cookie, d) = cfg.text("refresh_cookie")?;
        let refresh_cookie = match cookie.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" | "" => false,
            _ => return Err(invalid(d, format!("`{cookie}` is not a boolean (true or false)"))),
        };

        let (proxies, d) = cfg.text("trusted_proxies")?;
        let trusted_proxies = TrustedProxies::parse(&proxies).map_err(|e| invalid(d, e))?;

        let throttle = Limits {
            max_failures_per_pair: count(cfg, "login_max_failures", 1)?,
            max_failures_per_address: count(cfg, "login_max_failures_per_address", 1)?,
            max_failures_per_username: count(cfg, "login_max_failures_per_username", 1)?,
            failure_window: at_least_1s(cfg, "login_failure_window")?,
            lockout: at_least_1s(cfg, "login_lockout")?,
            lockout_max: at_least_1s(cfg, "login_lockout_max")?,
            max_registrations_per_address: count(cfg, "register_max_per_address", 1)?,
            register_window: at_least_1s(cfg, "register_window")?,
        };
        if throttle.lockout_max < throttle.lockout {
            return Err(invalid(
                cfg.setting("login_lockout_max"),
                "must not be less than AUTH_LOGIN_LOCKOUT",
            ));
        }

        let (concurrency, _) = cfg.text("hash_concurrency")?;
        let hash_concurrency = if concurrency.eq_ignore_ascii_case("auto") {
            Hasher::default_concurrency()
        } else {
            usize::try_from(count(cfg, "hash_concurrency", 1)?).unwrap_or(usize::MAX)
        };
        let hash_queue = usize::try_from(count(cfg, "hash_queue", 0)?).unwrap_or(usize::MAX);
        let shutdown_timeout = cfg.duration("shutdown_timeout")?;
        if shutdown_timeout > Duration::from_secs(3600) {
            return Err(invalid(cfg.setting("shutdown_timeout"), "must be at most 1h"));
        }

        Ok(Self {
            bind,
            redis_url,
            keys_dir: PathBuf::from(keys_dir),
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience,
            access_token_ttl,
            refresh_token_ttl,
            session_max_age,
            refresh_reuse_grace,
            refresh_max_rotations,
            refresh_rotation_window,
            refresh_cookie,
            trusted_proxies,
            throttle,
            hash_concurrency,
            hash_queue,
            shutdown_timeout,
        })
    }

    /// Settings for tests and tools: the defaults, bound to `127.0.0.1:0`.
    pub fn for_tests(redis_url: impl Into<String>, keys_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind: "127.0.0.1:0".into(),
            redis_url: redis_url.into(),
            keys_dir: keys_dir.into(),
            issuer: "http://localhost:5000".into(),
            audience: "articles-api".into(),
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(7 * 86_400),
            session_max_age: Duration::from_secs(30 * 86_400),
            refresh_reuse_grace: Duration::from_secs(10),
            refresh_max_rotations: 60,
            refresh_rotation_window: Duration::from_secs(3600),
            refresh_cookie: false,
            trusted_proxies: TrustedProxies::default(),
            // Per-pair and per-username limits as in production; every test client is
            // 127.0.0.1, so the per-address ones are raised (the throttling tests lower them).
            throttle: Limits {
                max_failures_per_pair: 5,
                max_failures_per_address: 10_000,
                max_failures_per_username: 50,
                failure_window: Duration::from_secs(900),
                lockout: Duration::from_secs(60),
                lockout_max: Duration::from_secs(3600),
                max_registrations_per_address: 10_000,
                register_window: Duration::from_secs(3600),
            },
            hash_concurrency: Hasher::default_concurrency(),
            hash_queue: 64,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

fn count(cfg: &Layered, key: &str, min: u32) -> Result<u32, ConfigError> {
    let (value, setting) = cfg.text(key)?;
    match value.parse::<u32>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(invalid(setting, format!("`{value}` is not a whole number of at least {min}"))),
    }
}

fn at_least_1s(cfg: &Layered, key: &str) -> Result<Duration, ConfigError> {
    let value = cfg.duration(key)?;
    if value < Duration::from_secs(1) {
        return Err(invalid(cfg.setting(key), "must be at least 1s"));
    }
    Ok(value)
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
        assert_eq!(s.bind, "0.0.0.0:5000");
        assert_eq!(s.redis_url, "redis://127.0.0.1:6379");
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
        assert!(s.trusted_proxies.nets().is_empty());
        assert_eq!(s.throttle.max_failures_per_pair, 5);
        assert_eq!(s.throttle.max_failures_per_address, 20);
        assert_eq!(s.throttle.max_failures_per_username, 50);
        assert_eq!(s.throttle.failure_window, Duration::from_secs(900));
        assert_eq!(s.throttle.lockout, Duration::from_secs(60));
        assert_eq!(s.throttle.lockout_max, Duration::from_secs(3600));
        assert_eq!(s.throttle.max_registrations_per_address, 20);
        assert_eq!(s.hash_concurrency, Hasher::default_concurrency());
        assert_eq!(s.hash_queue, 64);
        assert_eq!(s.shutdown_timeout, Duration::from_secs(10));
    }

    #[test]
    fn hardening_settings_come_from_the_environment() {
        let s = Settings::from_sources(
            None,
            env(&[
                ("AUTH_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
                ("AUTH_LOGIN_MAX_FAILURES", "3"),
                ("AUTH_LOGIN_LOCKOUT", "30s"),
                ("AUTH_HASH_CONCURRENCY", "1"),
                ("AUTH_HASH_QUEUE", "0"),
                ("AUTH_SHUTDOWN_TIMEOUT", "2s"),
            ]),
        )
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
            "access_token_ttl = 600\naudience = \"from-file\"\nrefresh_cookie = true\n",
        )
        .unwrap();
        let s = Settings::from_sources(Some(&path), env(&[("AUTH_AUDIENCE", "from-env")])).unwrap();
        assert_eq!(s.access_token_ttl, Duration::from_secs(600));
        assert_eq!(s.audience, "from-env");
        assert!(s.refresh_cookie);
    }

    #[test]
    fn a_bad_duration_is_one_line_naming_the_setting() {
        let err = Settings::from_sources(None, env(&[("AUTH_ACCESS_TOKEN_TTL", "fifteen")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("AUTH_ACCESS_TOKEN_TTL"), "{err}");
        assert!(err.contains("fifteen"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn a_bad_duration_in_the_file_names_the_setting_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        std::fs::write(&path, "refresh_token_ttl = \"7 fortnights\"\n").unwrap();
        let err = Settings::from_sources(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.starts_with("AUTH_REFRESH_TOKEN_TTL (`refresh_token_ttl`)"), "{err}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        std::fs::write(&path, "acess_token_ttl = \"15m\"\n").unwrap();
        let err = Settings::from_sources(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown setting `acess_token_ttl`"), "{err}");
    }

    #[test]
    fn the_redis_url_is_never_echoed() {
        let err = Settings::from_sources(None, env(&[("AUTH_REDIS_URL", "mysql://u:hunter2@x")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("AUTH_REDIS_URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let s = Settings::for_tests("redis://:hunter2@127.0.0.1:1", "keys");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn other_bad_values_name_their_setting() {
        for (name, value) in [
            ("AUTH_BIND", "nowhere"),
            ("AUTH_ISSUER", "localhost:5000"),
            ("AUTH_AUDIENCE", " "),
            ("AUTH_ACCESS_TOKEN_TTL", "0"),
            ("AUTH_ACCESS_TOKEN_TTL", "1500ms"),
            ("AUTH_SESSION_MAX_AGE", "0"),
            ("AUTH_REFRESH_MAX_ROTATIONS", "0"),
            ("AUTH_REFRESH_ROTATION_WINDOW", "500ms"),
            ("AUTH_REFRESH_COOKIE", "maybe"),
            ("AUTH_TRUSTED_PROXIES", "10.0.0.0/40"),
            ("AUTH_LOGIN_MAX_FAILURES", "0"),
            ("AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS", "many"),
            ("AUTH_LOGIN_MAX_FAILURES_PER_USERNAME", "0"),
            ("AUTH_LOGIN_LOCKOUT", "0"),
            ("AUTH_LOGIN_LOCKOUT_MAX", "1s"),
            ("AUTH_HASH_CONCURRENCY", "0"),
            ("AUTH_HASH_QUEUE", "-1"),
            ("AUTH_SHUTDOWN_TIMEOUT", "2d"),
        ] {
            let err = Settings::from_sources(None, env(&[(name, value)])).unwrap_err().to_string();
            assert!(err.starts_with(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = Settings::from_sources(Some(Path::new("/nonexistent/auth.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/auth.toml"), "{err}");
    }
}
