//! Settings both servers share the machinery of: built-in defaults → a TOML file → environment
//! variables, deserialized with serde into each server's typed `Settings`, and errors that are one
//! line naming the setting and saying what is wrong.
//!
//! A server declares each setting once, as a field of a `#[derive(Deserialize)]` struct with
//! `#[serde(default)]` (the struct's `Default` is the one list of built-in values): the field name
//! is the TOML key, `PREFIX_` + the name in capitals is the environment variable. Settings that
//! make sense only together (e.g. the Redis deployment) live in a small struct of their own that
//! resolves them into one typed value. [`Layers::load`] merges the sources, [`Layers::get`]
//! deserializes one such struct, [`Layers::invalid`] reports a rule that spans fields.
//!
//! Every value is read as text ([`from_text`], [`optional`], [`bounded_duration`], ...), whatever
//! its source: an environment variable is text, and a TOML `600` or `true` reads as `"600"` or
//! `"true"`, so both go through the same parser and the same messages. The validators the servers
//! share are here too: [`BindAddr`], [`http_url`], [`Origins`], [`flag`], [`count`], [`non_empty`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::forward_to_deserialize_any;

mod text;
mod validators;

pub use text::{
    AnyDuration, AtLeastOneSecond, DurationBounds, bounded_duration, check_duration, from_text,
    optional, optional_duration, parse_text,
};
pub use validators::{
    BindAddr, Origins, count, flag, http_url, http_url_field, non_empty, non_empty_path,
    non_negative_usize, optional_http_url, positive_u32,
};

/// Why the settings could not be loaded. `Display` is the one line printed at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file is missing or unreadable or not TOML.
    #[error("config file {path}: {reason}")]
    File {
        /// The file given with `--config` (or the server's `*_CONFIG` variable).
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
        env: String,
        /// Its TOML key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// The merged sources of one server's settings.
#[derive(Debug)]
pub struct Layers {
    cfg: config::Config,
    prefix: &'static str,
}

impl Layers {
    /// Merges the optional TOML `file` (which must exist and may hold only keys of `keys`) and
    /// the variables of `env` named `PREFIX_KEY` for a key of `keys` (others are ignored), the
    /// environment overriding the file. Missing keys take the structs' `Default` when
    /// deserialized. `keys` is usually built with [`keys_of`], one list per settings struct.
    pub fn load(
        prefix: &'static str,
        keys: &[&'static [&'static str]],
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let known: BTreeSet<&str> = keys.iter().flat_map(|k| k.iter().copied()).collect();
        let env: HashMap<String, String> = env.into_iter().collect();
        let mut builder = config::Config::builder();
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
            if let Some(key) = table.keys().find(|k| !known.contains(k.as_str())) {
                return Err(ConfigError::UnknownKey { path: path.to_owned(), key: key.clone() });
            }
            builder = builder.add_source(source);
        }
        for key in &known {
            if let Some(value) = env.get(&env_name(prefix, key)) {
                builder = builder
                    .set_override(*key, value.as_str())
                    .map_err(|e| invalid(prefix, key, e))?;
            }
        }
        let cfg = builder.build().map_err(|e| match file {
            Some(path) => file_error(path, &e),
            None => ConfigError::File { path: PathBuf::new(), reason: one_line(&e.to_string()) },
        })?;
        Ok(Self { cfg, prefix })
    }

    /// Deserializes `T` (a `#[serde(default)]` struct whose fields are settings) from the
    /// layers; a bad value is an error naming its setting.
    pub fn get<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        T::deserialize(self.cfg.clone()).map_err(|e| match e {
            config::ConfigError::At { error, key: Some(key), .. } => self.invalid(&key, error),
            other => self.invalid("?", other),
        })
    }

    /// A bad value of the setting `key`, for a rule that spans fields: one line, naming its
    /// environment variable and key.
    pub fn invalid(&self, key: &str, reason: impl fmt::Display) -> ConfigError {
        invalid(self.prefix, key, reason)
    }
}

/// A server's typed settings, loaded the one way both servers load theirs: the layers of
/// [`Layers::load`] under the server's prefix, then [`Self::from_layers`]. A server says which
/// structs hold its settings and how they make one value; `load` and `from_sources` come with it.
pub trait Layered: Sized {
    /// The prefix of the environment variables (`API`, `AUTH`).
    const ENV_PREFIX: &'static str;

    /// The keys of every struct whose fields are settings ([`keys_of`] of each).
    fn keys() -> Vec<&'static [&'static str]>;

    /// The settings from the merged layers, the rules that span fields checked.
    fn from_layers(layers: &Layers) -> Result<Self, ConfigError>;

    /// Loads the settings from the optional TOML file and the process environment.
    fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_sources(file, std::env::vars())
    }

    /// Loads the settings from the optional TOML file and the given environment (only the
    /// `PREFIX_*` names of the settings are read from it).
    fn from_sources(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let layers = Layers::load(Self::ENV_PREFIX, &Self::keys(), file, env)?;
        Self::from_layers(&layers)
    }
}

/// A bad value of setting `key` of the server whose variables start with `prefix`.
pub fn invalid(prefix: &str, key: &str, reason: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        env: env_name(prefix, key),
        key: key.to_owned(),
        reason: one_line(&reason.to_string()),
    }
}

/// The environment variable of setting `key`: `AUTH` + `access_token_ttl` → `AUTH_ACCESS_TOKEN_TTL`.
pub fn env_name(prefix: &str, key: &str) -> String {
    format!("{prefix}_{}", key.to_ascii_uppercase())
}

fn file_error(path: &Path, e: &config::ConfigError) -> ConfigError {
    ConfigError::File { path: path.to_owned(), reason: one_line(&e.to_string()) }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
// ---------------------------------------------------------------------------------------------
// The keys of a settings struct, from its derived `Deserialize` (so they are not listed twice).

/// The field names of a `#[derive(Deserialize)]` struct: serde hands them to the deserializer,
/// which here records them and stops. Not a struct (a bug of the caller): no names.
pub fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(FieldNames(&mut fields));
    fields.unwrap_or(&[])
}

struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = Some(fields);
        Err(Stop)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(default)]
    struct Demo {
        #[serde(deserialize_with = "non_empty")]
        name: String,
        #[serde(deserialize_with = "bounded_duration::<_, AtLeastOneSecond>")]
        wait: Duration,
        #[serde(deserialize_with = "optional")]
        extra: Option<String>,
        #[serde(deserialize_with = "flag")]
        on: bool,
        origins: Origins,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self {
                name: "default".into(),
                wait: Duration::from_secs(900),
                extra: None,
                on: false,
                origins: Origins::default(),
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn load(file: Option<&Path>, pairs: &[(&str, &str)]) -> Result<Demo, ConfigError> {
        Layers::load("T", &[keys_of::<Demo>()], file, env(pairs))?.get()
    }

    #[test]
    fn the_keys_are_the_field_names() {
        assert_eq!(keys_of::<Demo>(), ["name", "wait", "extra", "on", "origins"]);
    }

    #[test]
    fn the_environment_overrides_the_file_which_overrides_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "name = \"file\"\nwait = 60\non = true\n").unwrap();
        let d = load(Some(&path), &[("T_NAME", " env ")]).unwrap();
        assert_eq!(d.name, "env");
        assert_eq!(d.wait, Duration::from_secs(60));
        assert!(d.on);
        assert_eq!(d.extra, None);
        let d = load(None, &[("T_EXTRA", "x"), ("OTHER", "y"), ("T_UNKNOWN", "z")]).unwrap();
        assert_eq!(d.name, "default");
        assert_eq!(d.wait, Duration::from_secs(900));
        assert_eq!(d.extra.as_deref(), Some("x"));
        assert_eq!(load(None, &[("T_EXTRA", " ")]).unwrap().extra, None);
    }

    #[test]
    fn a_toml_list_and_a_comma_separated_variable_mean_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "origins = [\"https://a.example\", \"http://b.example:8080\"]\n")
            .unwrap();
        let from_file = load(Some(&path), &[]).unwrap().origins;
        let from_env =
            load(None, &[("T_ORIGINS", "https://a.example, http://b.example:8080")]).unwrap();
        assert_eq!(from_file, from_env.origins);
        assert!(from_file.contains("http://b.example:8080"));
    }

    #[test]
    fn errors_are_one_line_naming_the_setting_or_the_file() {
        let err = load(None, &[("T_WAIT", "a\nwhile")]).unwrap_err().to_string();
        assert!(err.starts_with("T_WAIT (`wait`): invalid duration"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = load(None, &[("T_WAIT", "0")]).unwrap_err().to_string();
        assert_eq!(err, "T_WAIT (`wait`): must be at least 1s");
        let err = load(None, &[("T_NAME", " ")]).unwrap_err().to_string();
        assert_eq!(err, "T_NAME (`name`): must not be empty");
        let err = load(None, &[("T_ON", "maybe")]).unwrap_err().to_string();
        assert!(err.starts_with("T_ON (`on`): `maybe` is not a boolean"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "wait = \"7 fortnights\"\n").unwrap();
        let err = load(Some(&path), &[]).unwrap_err().to_string();
        assert!(err.starts_with("T_WAIT (`wait`): invalid duration"), "{err}");
        std::fs::write(&path, "nmae = \"typo\"\n").unwrap();
        let err = load(Some(&path), &[]).unwrap_err().to_string();
        assert!(err.contains("unknown setting `nmae`"), "{err}");
        let missing = dir.path().join("missing.toml");
        let err = load(Some(&missing), &[]).unwrap_err().to_string();
        assert!(err.contains("missing.toml"), "{err}");
    }

    #[test]
    fn origins_are_exact_and_in_the_browsers_form() {
        let o: Origins =
            "HTTPS://App.Example:443, http://localhost:3000 https://app.example".parse().unwrap();
        assert_eq!(o.as_slice(), ["https://app.example", "http://localhost:3000"]);
        assert!(o.contains("https://app.example"));
        assert!(!o.contains("https://app.example:8443"));
        for bad in [
            "*",
            "https://*.example",
            "https://app.example/",
            "https://app.example/path",
            "app.example",
            "ftp://app.example",
            "https://user@app.example",
            "https://",
        ] {
            assert!(bad.parse::<Origins>().is_err(), "{bad}");
        }
        assert!("".parse::<Origins>().unwrap().is_empty());
    }

    #[test]
    fn http_urls_and_bind_addresses() {
        assert!(http_url("http://localhost:5000").is_ok());
        assert!(http_url("https://auth.example/realm/x").is_ok());
        for bad in
            ["localhost:5000", "ftp://x", "http://", "http://a b", "https://u:p@x", "http://x#f"]
        {
            assert!(http_url(bad).is_err(), "{bad}");
        }
        let credentials = http_url("https://u:hunter2@x").unwrap_err();
        assert!(!credentials.contains("hunter2"), "{credentials}");
        assert_eq!("127.0.0.1:0".parse::<BindAddr>().unwrap().port(), Some(0));
        assert!("nowhere".parse::<BindAddr>().is_err());
    }
}
