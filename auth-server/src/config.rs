//! Typed settings: built-in defaults → a TOML file → `AUTH_*` environment variables.
//!
//! Every setting is read as text and parsed here, so that a bad value produces one line that
//! names the environment variable (and the TOML key) and says what is wrong.

use std::collections::HashMap;
use std::fmt;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// `AUTH_REFRESH_COOKIE`: send the refresh token as an HttpOnly cookie instead of in the body.
    pub refresh_cookie: bool,
    /// `AUTH_TRUSTED_PROXIES`: proxies (IPs or CIDRs) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// `AUTH_LOGIN_MAX_FAILURES`, `AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS`,
    /// `AUTH_LOGIN_FAILURE_WINDOW`, `AUTH_LOGIN_LOCKOUT`, `AUTH_LOGIN_LOCKOUT_MAX`,
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
            .field("refresh_cookie", &self.refresh_cookie)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("throttle", &self.throttle)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("hash_queue", &self.hash_queue)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

/// One setting: its TOML key, its environment variable and its default.
struct Def {
    key: &'static str,
    env: &'static str,
    default: &'static str,
}

const DEFS: &[Def] = &[
    Def { key: "bind", env: "AUTH_BIND", default: "0.0.0.0:5000" },
    Def { key: "redis_url", env: "AUTH_REDIS_URL", default: "redis://127.0.0.1:6379" },
    Def { key: "keys_dir", env: "AUTH_KEYS_DIR", default: "keys" },
    Def { key: "issuer", env: "AUTH_ISSUER", default: "http://localhost:5000" },
    Def { key: "audience", env: "AUTH_AUDIENCE", default: "articles-api" },
    Def { key: "access_token_ttl", env: "AUTH_ACCESS_TOKEN_TTL", default: "15m" },
    Def { key: "refresh_token_ttl", env: "AUTH_REFRESH_TOKEN_TTL", default: "7d" },
    Def { key: "session_max_age", env: "AUTH_SESSION_MAX_AGE", default: "30d" },
    Def { key: "refresh_reuse_grace", env: "AUTH_REFRESH_REUSE_GRACE", default: "10s" },
    Def { key: "refresh_cookie", env: "AUTH_REFRESH_COOKIE", default: "false" },
    Def { key: "trusted_proxies", env: "AUTH_TRUSTED_PROXIES", default: "" },
    Def { key: "login_max_failures", env: "AUTH_LOGIN_MAX_FAILURES", default: "5" },
    Def {
        key: "login_max_failures_per_address",
        env: "AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS",
        default: "20",
    },
    Def { key: "login_failure_window", env: "AUTH_LOGIN_FAILURE_WINDOW", default: "15m" },
    Def { key: "login_lockout", env: "AUTH_LOGIN_LOCKOUT", default: "1m" },
    Def { key: "login_lockout_max", env: "AUTH_LOGIN_LOCKOUT_MAX", default: "1h" },
    Def { key: "register_max_per_address", env: "AUTH_REGISTER_MAX_PER_ADDRESS", default: "20" },
    Def { key: "register_window", env: "AUTH_REGISTER_WINDOW", default: "1h" },
    Def { key: "hash_concurrency", env: "AUTH_HASH_CONCURRENCY", default: "auto" },
    Def { key: "hash_queue", env: "AUTH_HASH_QUEUE", default: "64" },
    Def { key: "shutdown_timeout", env: "AUTH_SHUTDOWN_TIMEOUT", default: "10s" },
];

/// Why the settings could not be loaded. `Display` is the one line printed at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file is missing or unreadable or not TOML.
    #[error("config file {path}: {reason}")]
    File {
        /// The file given with `--config` / `AUTH_CONFIG`.
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

    /// Loads the settings from the optional TOML file and the given environment
    /// (only the `AUTH_*` names of the contract are read from it).
    pub fn from_sources(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = env.into_iter().collect();
        let mut builder = config::Config::builder();
        for def in DEFS {
            builder = builder.set_default(def.key, def.default).map_err(|e| invalid(def, e))?;
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
        let text = |key: &'static str| -> Result<(String, &'static Def), ConfigError> {
            let def = def(key);
            let value = cfg.get_string(key).map_err(|e| invalid(def, e))?;
            Ok((value.trim().to_owned(), def))
        };

        let (bind, d) = text("bind")?;
        if !bind.to_socket_addrs().is_ok_and(|mut addrs| addrs.next().is_some()) {
            return Err(invalid(d, format!("`{bind}` is not a host:port address")));
        }

        let (redis_url, d) = text("redis_url")?;
        // The URL may hold a password: never echo it.
        redis::Client::open(redis_url.as_str())
            .map_err(|_| invalid(d, "not a valid Redis URL (expected redis://host:port)"))?;

        let (keys_dir, d) = text("keys_dir")?;
        if keys_dir.is_empty() {
            return Err(invalid(d, "must not be empty"));
        }

        let (issuer, d) = text("issuer")?;
        if !(issuer.starts_with("http://") || issuer.starts_with("https://"))
            || issuer.len() <= "https://".len()
            || issuer.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(d, format!("`{issuer}` is not an http(s) URL")));
        }

        let (audience, d) = text("audience")?;
        if audience.is_empty() {
            return Err(invalid(d, "must not be empty"));
        }

        let access_token_ttl = duration(cfg, "access_token_ttl")?;
        let d = def("access_token_ttl");
        if access_token_ttl < Duration::from_secs(1) {
            return Err(invalid(d, "must be at least 1s"));
        }
        if access_token_ttl.subsec_nanos() != 0 {
            return Err(invalid(d, "must be a whole number of seconds"));
        }
        let refresh_token_ttl = duration(cfg, "refresh_token_ttl")?;
        if refresh_token_ttl < Duration::from_secs(1) {
            return Err(invalid(def("refresh_token_ttl"), "must be at least 1s"));
        }
        let session_max_age = duration(cfg, "session_max_age")?;
        if session_max_age < Duration::from_secs(1) {
            return Err(invalid(def("session_max_age"), "must be at least 1s"));
        }
        let refresh_reuse_grace = duration(cfg, "refresh_reuse_grace")?;
        if refresh_reuse_grace > Duration::from_secs(300) {
            return Err(invalid(def("refresh_reuse_grace"), "must be at most 5m"));
        }

        let (cookie, d) = text("refresh_cookie")?;
        let refresh_cookie = match cookie.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" | "" => false,
            _ => return Err(invalid(d, format!("`{cookie}` is not a boolean (true or false)"))),
        };

        let (proxies, d) = text("trusted_proxies")?;
        let trusted_proxies = TrustedProxies::parse(&proxies).map_err(|e| invalid(d, e))?;

        let throttle = Limits {
            max_failures_per_user: count(cfg, "login_max_failures", 1)?,
            max_failures_per_address: count(cfg, "login_max_failures_per_address", 1)?,
            failure_window: at_least_1s(cfg, "login_failure_window")?,
            lockout: at_least_1s(cfg, "login_lockout")?,
            lockout_max: at_least_1s(cfg, "login_lockout_max")?,
            max_registrations_per_address: count(cfg, "register_max_per_address", 1)?,
            register_window: at_least_1s(cfg, "register_window")?,
        };
        if throttle.lockout_max < throttle.lockout {
            return Err(invalid(
                def("login_lockout_max"),
                "must not be less than AUTH_LOGIN_LOCKOUT",
            ));
        }

        let (concurrency, _) = text("hash_concurrency")?;
        let hash_concurrency = if concurrency.eq_ignore_ascii_case("auto") {
            Hasher::default_concurrency()
        } else {
            usize::try_from(count(cfg, "hash_concurrency", 1)?).unwrap_or(usize::MAX)
        };
        let hash_queue = usize::try_from(count(cfg, "hash_queue", 0)?).unwrap_or(usize::MAX);
        let shutdown_timeout = duration(cfg, "shutdown_timeout")?;
        if shutdown_timeout > Duration::from_secs(3600) {
            return Err(invalid(def("shutdown_timeout"), "must be at most 1h"));
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
            refresh_cookie: false,
            trusted_proxies: TrustedProxies::default(),
            // Per-username limits as in production; every test client is 127.0.0.1, so the
            // per-address ones are raised (the throttling tests lower them again).
            throttle: Limits {
                max_failures_per_user: 5,
                max_failures_per_address: 10_000,
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

fn def(key: &str) -> &'static Def {
    // Every caller passes a key of `DEFS`; fall back to the first entry rather than panic.
    DEFS.iter().find(|d| d.key == key).unwrap_or(&DEFS[0])
}

fn duration(cfg: &config::Config, key: &'static str) -> Result<Duration, ConfigError> {
    let def = def(key);
    let value = cfg.get_string(key).map_err(|e| invalid(def, e))?;
    shared::duration::parse(&value)
        .map_err(|e| invalid(def, format!("invalid duration `{}`: {e}", value.trim())))
}

fn count(cfg: &config::Config, key: &'static str, min: u32) -> Result<u32, ConfigError> {
    let def = def(key);
    let value = cfg.get_string(key).map_err(|e| invalid(def, e))?;
    match value.trim().parse::<u32>() {
        Ok(n) if n >= min => Ok(n),
        _ => {
            Err(invalid(def, format!("`{}` is not a whole number of at least {min}", value.trim())))
        }
    }
}

fn at_least_1s(cfg: &config::Config, key: &'static str) -> Result<Duration, ConfigError> {
    let value = duration(cfg, key)?;
    if value < Duration::from_secs(1) {
        return Err(invalid(def(key), "must be at least 1s"));
    }
    Ok(value)
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
        assert_eq!(s.bind, "0.0.0.0:5000");
        assert_eq!(s.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(s.keys_dir, PathBuf::from("keys"));
        assert_eq!(s.issuer, "http://localhost:5000");
        assert_eq!(s.audience, "articles-api");
        assert_eq!(s.access_token_ttl, Duration::from_secs(900));
        assert_eq!(s.refresh_token_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(s.session_max_age, Duration::from_secs(30 * 86_400));
        assert_eq!(s.refresh_reuse_grace, Duration::from_secs(10));
        assert!(!s.refresh_cookie);
        assert!(s.trusted_proxies.nets().is_empty());
        assert_eq!(s.throttle.max_failures_per_user, 5);
        assert_eq!(s.throttle.max_failures_per_address, 20);
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
        assert_eq!(s.throttle.max_failures_per_user, 3);
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
            ("AUTH_REFRESH_COOKIE", "maybe"),
            ("AUTH_TRUSTED_PROXIES", "10.0.0.0/40"),
            ("AUTH_LOGIN_MAX_FAILURES", "0"),
            ("AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS", "many"),
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
