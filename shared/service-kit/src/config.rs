//! The layering both servers' settings share: built-in defaults → a TOML file → environment
//! variables, every value read as text, and errors that are one line naming the setting.
//!
//! Each server keeps its typed `Settings` and its validation; it lists its settings as
//! [`Setting`]s, calls [`Layered::load`], then reads each value with [`Layered::text`],
//! [`Layered::optional`] or [`Layered::duration`] and reports a bad one with [`invalid`].

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One setting: its TOML key, its environment variable and its default (`None`: unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The key in the TOML file.
    pub key: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// The built-in value, as text; `None` leaves the setting unset.
    pub default: Option<&'static str>,
}

impl Setting {
    /// A setting with a built-in default.
    pub const fn new(key: &'static str, env: &'static str, default: &'static str) -> Self {
        Self { key, env, default: Some(default) }
    }

    /// A setting that is unset unless the file or the environment sets it.
    pub const fn optional(key: &'static str, env: &'static str) -> Self {
        Self { key, env, default: None }
    }
}

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
        env: &'static str,
        /// Its TOML key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The merged values of a server's settings, read as text.
#[derive(Debug)]
pub struct Layered {
    cfg: config::Config,
    settings: &'static [Setting],
}

/// Stands for a key missing from the list (a bug of the caller) rather than panicking.
static UNKNOWN: Setting = Setting::optional("unknown", "UNKNOWN");

impl Layered {
    /// Merges the defaults of `settings`, the optional TOML `file` (which must exist and may
    /// hold only keys of `settings`) and the variables of `env` named by `settings` (others
    /// are ignored), each layer overriding the one before.
    pub fn load(
        settings: &'static [Setting],
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = env.into_iter().collect();
        let mut builder = config::Config::builder();
        for setting in settings {
            if let Some(default) = setting.default {
                builder =
                    builder.set_default(setting.key, default).map_err(|e| invalid(setting, e))?;
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
            if let Some(key) = table.keys().find(|k| !settings.iter().any(|s| s.key == k.as_str()))
            {
                return Err(ConfigError::UnknownKey { path: path.to_owned(), key: key.clone() });
            }
            builder = builder.add_source(source);
        }
        for setting in settings {
            if let Some(value) = env.get(setting.env) {
                builder = builder
                    .set_override(setting.key, value.as_str())
                    .map_err(|e| invalid(setting, e))?;
            }
        }
        let cfg = builder.build().map_err(|e| match file {
            Some(path) => file_error(path, &e),
            None => ConfigError::File { path: PathBuf::new(), reason: one_line(&e.to_string()) },
        })?;
        Ok(Self { cfg, settings })
    }

    /// The setting with TOML key `key` (to pass to [`invalid`]).
    pub fn setting(&self, key: &str) -> &'static Setting {
        self.settings.iter().find(|s| s.key == key).unwrap_or(&UNKNOWN)
    }

    /// The value of `key`, trimmed, with its setting; an error if it is unset.
    pub fn text(&self, key: &str) -> Result<(String, &'static Setting), ConfigError> {
        let setting = self.setting(key);
        let value = self.cfg.get_string(key).map_err(|e| invalid(setting, e))?;
        Ok((value.trim().to_owned(), setting))
    }

    /// The value of `key`, trimmed; `None` when it is unset or blank.
    pub fn optional(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.cfg.get_string(key) {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => Ok(Some(v.trim().to_owned())),
            Err(config::ConfigError::NotFound(_)) => Ok(None),
            Err(e) => Err(invalid(self.setting(key), e)),
        }
    }

    /// The value of `key` as a [`crate::duration`] (`900`, `15m`, `7d`).
    pub fn duration(&self, key: &str) -> Result<Duration, ConfigError> {
        let (value, setting) = self.text(key)?;
        crate::duration::parse(&value)
            .map_err(|e| invalid(setting, format!("invalid duration `{value}`: {e}")))
    }
}

/// A bad value of `setting`: one line, naming its variable and key.
pub fn invalid(setting: &Setting, reason: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        env: setting.env,
        key: setting.key,
        reason: one_line(&reason.to_string()),
    }
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

    static SETTINGS: &[Setting] = &[
        Setting::new("name", "T_NAME", "default"),
        Setting::new("wait", "T_WAIT", "15m"),
        Setting::optional("extra", "T_EXTRA"),
    ];

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_environment_overrides_the_file_which_overrides_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "name = \"file\"\nwait = 60\n").unwrap();
        let l = Layered::load(SETTINGS, Some(&path), env(&[("T_NAME", " env ")])).unwrap();
        assert_eq!(l.text("name").unwrap().0, "env");
        assert_eq!(l.duration("wait").unwrap(), Duration::from_secs(60));
        assert_eq!(l.optional("extra").unwrap(), None);
        let l = Layered::load(SETTINGS, None, env(&[("T_EXTRA", "x"), ("OTHER", "y")])).unwrap();
        assert_eq!(l.text("name").unwrap().0, "default");
        assert_eq!(l.optional("extra").unwrap().as_deref(), Some("x"));
    }

    #[test]
    fn errors_are_one_line_naming_the_setting_or_the_file() {
        let l = Layered::load(SETTINGS, None, env(&[("T_WAIT", "a\nwhile")])).unwrap();
        let err = l.duration("wait").unwrap_err().to_string();
        assert!(err.starts_with("T_WAIT (`wait`): invalid duration"), "{err}");
        assert!(!err.contains('\n'), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "nmae = \"typo\"\n").unwrap();
        let err = Layered::load(SETTINGS, Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown setting `nmae`"), "{err}");
        let missing = dir.path().join("missing.toml");
        let err = Layered::load(SETTINGS, Some(&missing), env(&[])).unwrap_err().to_string();
        assert!(err.contains("missing.toml"), "{err}");
    }
}
