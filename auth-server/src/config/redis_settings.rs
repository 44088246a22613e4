//! The Redis deployment: exactly one of a server, a Cluster or a Sentinel-watched master.

use std::str::FromStr;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use service_kit::config::{Layers, optional};

pub use super::ConfigError;

/// The Redis server used when no Redis setting is given.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Where Redis is: exactly one deployment mode. URLs may carry a password, so they are
/// [`SecretString`]s: never logged, never shown by `Debug`, never echoed in an error.
#[derive(Debug, Clone)]
pub enum RedisSettings {
    /// `AUTH_REDIS_URL`: one server (`redis://`, or `rediss://` for TLS; ACL user and password
    /// in the URL).
    Standalone {
        /// The URL.
        url: SecretString,
    },
    /// `AUTH_REDIS_CLUSTER_URLS`: Redis Cluster, by its seed nodes.
    Cluster {
        /// The seed nodes' URLs.
        urls: Vec<SecretString>,
    },
    /// `AUTH_REDIS_SENTINEL_URLS` + `AUTH_REDIS_SENTINEL_MASTER`: Redis Sentinel (the user and
    /// password in the URLs are the data nodes'; the sentinels' own are [`SentinelLogin`]).
    Sentinel {
        /// The sentinels' URLs.
        urls: Vec<SecretString>,
        /// The name of the monitored master.
        master: String,
        /// How the sentinels themselves are logged in to.
        login: SentinelLogin,
    },
}

/// The sentinels' own login (`AUTH_REDIS_SENTINEL_USERNAME`, `AUTH_REDIS_SENTINEL_PASSWORD`),
/// apart from the data nodes' in the URLs: sentinels are separate servers with their own
/// `requirepass` or ACL users, as Spring's `sentinel.password` and Jedis' `sentinelPassword` have
/// it. None by default (sentinels on a private network).
#[derive(Debug, Clone, Default)]
pub struct SentinelLogin {
    /// The ACL user; `None`: the `default` user.
    pub username: Option<String>,
    /// The password; `None`: no `AUTH` at all.
    pub password: Option<SecretString>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self::Standalone { url: SecretString::from(DEFAULT_REDIS_URL) }
    }
}

impl RedisSettings {
    /// The URL of a standalone server, else `None`.
    pub fn standalone_url(&self) -> Option<&str> {
        match self {
            Self::Standalone { url } => Some(url.expose_secret()),
            Self::Cluster { .. } | Self::Sentinel { .. } => None,
        }
    }

    /// The mode's setting, for messages: `AUTH_REDIS_URL`, `AUTH_REDIS_CLUSTER_URLS` or
    /// `AUTH_REDIS_SENTINEL_URLS`.
    pub fn setting(&self) -> &'static str {
        match self {
            Self::Standalone { .. } => "AUTH_REDIS_URL",
            Self::Cluster { .. } => "AUTH_REDIS_CLUSTER_URLS",
            Self::Sentinel { .. } => "AUTH_REDIS_SENTINEL_URLS",
        }
    }
}

/// The Redis settings as given; [`Self::resolve`] makes them a [`RedisSettings`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RedisKeys {
    #[serde(deserialize_with = "optional")]
    redis_url: Option<RedisUrl>,
    #[serde(deserialize_with = "optional")]
    redis_cluster_urls: Option<RedisUrls>,
    #[serde(deserialize_with = "optional")]
    redis_sentinel_urls: Option<RedisUrls>,
    #[serde(deserialize_with = "optional")]
    redis_sentinel_master: Option<String>,
    #[serde(deserialize_with = "optional")]
    redis_sentinel_username: Option<String>,
    #[serde(deserialize_with = "optional")]
    redis_sentinel_password: Option<Secret>,
}

impl RedisKeys {
    /// Exactly one mode (none given: the default standalone URL).
    pub(super) fn resolve(self, layers: &Layers) -> Result<RedisSettings, ConfigError> {
        let sentinel_login = SentinelLogin {
            username: self.redis_sentinel_username,
            password: self.redis_sentinel_password.map(|p| p.0),
        };
        if sentinel_login.username.is_some() && sentinel_login.password.is_none() {
            return Err(layers.invalid(
                "redis_sentinel_username",
                "needs AUTH_REDIS_SENTINEL_PASSWORD (the user's password)",
            ));
        }
        let login_given = sentinel_login.password.is_some();
        let one_mode =
            "set exactly one of AUTH_REDIS_URL, AUTH_REDIS_CLUSTER_URLS, AUTH_REDIS_SENTINEL_URLS";
        match (self.redis_url, self.redis_cluster_urls, self.redis_sentinel_urls) {
            (url, None, None) => {
                if login_given {
                    return Err(
                        layers.invalid("redis_sentinel_password", "needs AUTH_REDIS_SENTINEL_URLS")
                    );
                }
                if self.redis_sentinel_master.is_some() {
                    return Err(
                        layers.invalid("redis_sentinel_master", "needs AUTH_REDIS_SENTINEL_URLS")
                    );
                }
                Ok(url.map_or_else(RedisSettings::default, |u| RedisSettings::Standalone {
                    url: u.0,
                }))
            }
            (None, Some(urls), None) => {
                if login_given {
                    return Err(layers.invalid(
                        "redis_sentinel_password",
                        "needs AUTH_REDIS_SENTINEL_URLS, not AUTH_REDIS_CLUSTER_URLS",
                    ));
                }
                if self.redis_sentinel_master.is_some() {
                    return Err(layers.invalid(
                        "redis_sentinel_master",
                        "needs AUTH_REDIS_SENTINEL_URLS, not AUTH_REDIS_CLUSTER_URLS",
                    ));
                }
                Ok(RedisSettings::Cluster { urls: urls.0 })
            }
            (None, None, Some(urls)) => match self.redis_sentinel_master {
                Some(master) => {
                    Ok(RedisSettings::Sentinel { urls: urls.0, master, login: sentinel_login })
                }
                None => Err(layers.invalid(
                    "redis_sentinel_master",
                    "must be set with AUTH_REDIS_SENTINEL_URLS (the master's name)",
                )),
            },
            (_, Some(_), _) => Err(layers.invalid("redis_cluster_urls", one_mode)),
            (_, _, Some(_)) => Err(layers.invalid("redis_sentinel_urls", one_mode)),
        }
    }
}

/// One Redis URL, checked to parse; the message never quotes it (it may hold a password).
#[derive(Debug)]
struct RedisUrl(SecretString);

impl FromStr for RedisUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if redis::Client::open(text).is_err() {
            return Err(
                "not a valid Redis URL (expected redis[s]://[user:password@]host:port[/db])".into(),
            );
        }
        Ok(Self(SecretString::from(text)))
    }
}

/// A password setting: held as a secret from the moment it is read.
#[derive(Debug)]
struct Secret(SecretString);

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(SecretString::from(text)))
    }
}

/// Comma-separated Redis URLs (at least one).
#[derive(Debug)]
struct RedisUrls(Vec<SecretString>);

impl FromStr for RedisUrls {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut urls = Vec::new();
        for (i, item) in text.split(',').map(str::trim).filter(|s| !s.is_empty()).enumerate() {
            let url: RedisUrl = item.parse().map_err(|e| format!("URL {}: {e}", i + 1))?;
            urls.push(url.0);
        }
        if urls.is_empty() {
            return Err("needs at least one URL".into());
        }
        Ok(Self(urls))
    }
}
