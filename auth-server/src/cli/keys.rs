//! `auth-server keys ...`: the operator's commands on the key store.
//!
//! Each command prints what it did on stdout; a refusal is one line on stderr and a non-zero
//! exit. The running server picks every change up by itself (watch, poll, SIGHUP).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::Settings;
use crate::key_folder::{
    self, DEFAULT_BITS, DEFAULT_PRUNE_LEEWAY, JWKS_MAX_AGE_SECS, KeyFolder, KeyFolderError,
    KeyStatus, SUPPORTED_BITS,
};

/// `auth-server keys`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Manage the signing keys: list, add, activate, rotate, retire, prune.",
    long_about = "Manage the signing keys in AUTH_KEYS_DIR (or --keys-dir).\n\n\
        A key is published (in the JWKS, not signing), then active (the one signer), then \
        retired (verifies tokens it signed, signs nothing), then pruned. A running server picks \
        every change up within a second, without a restart."
)]
pub struct KeysArgs {
    /// The keys folder (holding private/ and public/); overrides AUTH_KEYS_DIR and the config
    /// file.
    #[arg(long, global = true, value_name = "DIR")]
    pub keys_dir: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The `keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Show every key: kid, size, state, and when it was created, activated and retired.
    List {
        /// Print JSON instead of a table (times in Unix seconds).
        #[arg(long)]
        json: bool,
    },
    /// Generate a key pair and publish its public key without signing with it yet.
    ///
    /// Activate it once every JWKS client has had time to fetch it (the JWKS max-age, 60 s).
    Add {
        /// RSA modulus size: 2048, 3072 or 4096.
        #[arg(long, default_value_t = DEFAULT_BITS, value_name = "BITS")]
        bits: usize,
    },
    /// Make a published key the signer; the previous active key is retired.
    Activate {
        /// The key id, as shown by `keys list` (one may start with `-`).
        #[arg(allow_hyphen_values = true, value_name = "KID")]
        kid: String,
    },
    /// Add a key and activate it at once (`add` + `activate`); the previous key is retired.
    Rotate {
        /// RSA modulus size: 2048, 3072 or 4096.
        #[arg(long, default_value_t = DEFAULT_BITS, value_name = "BITS")]
        bits: usize,
    },
    /// Retire a published key (it stays in the JWKS until pruned). Refuses the active key.
    Retire {
        /// The key id, as shown by `keys list` (one may start with `-`).
        #[arg(allow_hyphen_values = true, value_name = "KID")]
        kid: String,
    },
    /// Remove retired keys that no valid token can name any more.
    ///
    /// A key retired at T is removed only after T + AUTH_ACCESS_TOKEN_TTL + leeway: until then
    /// a token it signed may still be valid. Nothing due yet is success (exit 0) with a line
    /// saying when the next key is due, so it can run from cron. It refuses (exit 1) to remove
    /// a key a running server still signs with. Run it with the server's settings.
    Prune {
        /// Verifiers' clock leeway added to the access-token lifetime (the api-server's
        /// API_LEEWAY; e.g. 30s, 2m).
        #[arg(long, default_value = "30s", value_name = "DURATION")]
        leeway: String,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs a `keys` command; prints the outcome, returns the exit code.
pub fn run(settings: &Settings, args: KeysArgs) -> ExitCode {
    let dir = args.keys_dir.unwrap_or_else(|| settings.keys_dir.clone());
    let store = KeyFolder::new(dir);
    match execute(&store, settings.access_token_ttl, args.command) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("auth-server: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(store: &KeyFolder, ttl: Duration, command: KeysCommand) -> Result<String, String> {
    let err = |e: KeyFolderError| e.to_string();
    match command {
        KeysCommand::List { json } => list(store, json),
        KeysCommand::Add { bits } => {
            check_bits(bits)?;
            let kid = store.add(bits).map_err(err)?;
            Ok(format!(
                "published {kid} (RSA-{bits}); it does not sign yet.\n\
                 Wait at least {JWKS_MAX_AGE_SECS} s (the JWKS max-age), then: auth-server keys activate {kid}\n"
            ))
        }
        KeysCommand::Activate { kid } => {
            let done = store.activate(&kid).map_err(err)?;
            if done.unchanged {
                return Ok(format!("{kid} is already the active key; nothing changed\n"));
            }
            Ok(activated(&done, ttl))
        }
        KeysCommand::Rotate { bits } => {
            check_bits(bits)?;
            let done = store.rotate(bits).map_err(err)?;
            Ok(activated(&done, ttl))
        }
        KeysCommand::Retire { kid } => {
            let at = store.retire(&kid).map_err(err)?;
            let after = key_folder::prunable_at(at, ttl, DEFAULT_PRUNE_LEEWAY);
            Ok(format!(
                "{kid} retired at {}; it stays in the JWKS until `keys prune` after {}\n",
                time(at),
                time(after)
            ))
        }
        KeysCommand::Prune { leeway, dry_run } => {
            let leeway =
                service_kit::duration::parse(&leeway).map_err(|e| format!("--leeway: {e}"))?;
            prune(store, ttl, leeway, dry_run)
        }
    }
}

fn check_bits(bits: usize) -> Result<(), String> {
    if SUPPORTED_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(KeyFolderError::UnsupportedBits(bits).to_string())
    }
}

fn activated(done: &key_folder::Activation, ttl: Duration) -> String {
    let mut out = format!("{} is the active signing key now\n", done.kid);
    if let Some(old) = &done.retired {
        let after = key_folder::prunable_at(key_folder::now_secs(), ttl, DEFAULT_PRUNE_LEEWAY);
        out.push_str(&format!(
            "{old} retired: tokens it signed keep verifying; `keys prune` removes it after {}\n",
            time(after)
        ));
    }
    out
}

fn prune(
    store: &KeyFolder,
    ttl: Duration,
    leeway: Duration,
    dry_run: bool,
) -> Result<String, String> {
    let report =
        store.prune(ttl, leeway, key_folder::now_secs(), dry_run).map_err(|e| e.to_string())?;
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut out = String::new();
    for (kid, retired) in &report.removed {
        out.push_str(&format!("{verb} {kid} (retired {})\n", time(*retired)));
    }
    for (kid, retired, at) in &report.kept {
        out.push_str(&format!(
            "kept {kid}: retired {}, tokens it signed may be valid until {} (access-token TTL {}s + leeway {}s)\n",
            time(*retired),
            time(*at),
            ttl.as_secs(),
            leeway.as_secs()
        ));
    }
    if report.removed.is_empty() {
        // Nothing due is success (a cron job runs this), with a line saying when.
        match report.kept.iter().min_by_key(|(_, _, at)| *at) {
            Some((kid, _, at)) => out.push_str(&format!(
                "nothing to prune yet: the next retired key, {kid}, can be pruned after {} \
                 (access-token TTL {}s + leeway {}s)\n",
                time(*at),
                ttl.as_secs(),
                leeway.as_secs()
            )),
            None => out.push_str("no retired keys; nothing to prune\n"),
        }
    }
    Ok(out)
}

fn list(store: &KeyFolder, json: bool) -> Result<String, String> {
    let state = store.read_state().map_err(|e| e.to_string())?;
    let strays = store.stray_files(&state);
    for stray in &strays {
        eprintln!("auth-server: warning: {stray}");
    }
    let status = |kid: &str| state.status(kid).map_or("unknown", KeyStatus::as_str);
    if json {
        let keys: Vec<_> = state
            .keys
            .iter()
            .map(|(kid, meta)| {
                serde_json::json!({
                    "kid": kid,
                    "bits": meta.bits,
                    "state": status(kid),
                    "created": meta.created,
                    "activated": meta.activated,
                    "retired": meta.retired,
                })
            })
            .collect();
        let doc = serde_json::json!({ "active": state.active, "keys": keys });
        return Ok(format!("{doc:#}\n"));
    }
    if state.keys.is_empty() {
        return Ok(format!(
            "no keys in {} (the server generates one on its first start; or `keys rotate`)\n",
            store.dir().display()
        ));
    }
    let mut out = format!(
        "{:<43}  {:>4}  {:<9}  {:<20}  {:<20}  {}\n",
        "KID", "BITS", "STATE", "CREATED", "ACTIVATED", "RETIRED"
    );
    // Oldest first, so the table reads as the key history.
    let mut rows: Vec<_> = state.keys.iter().collect();
    rows.sort_by_key(|(kid, meta)| (meta.created, kid.as_str()));
    let opt = |t: Option<u64>| t.map_or_else(|| "-".to_owned(), time);
    for (kid, meta) in rows {
        out.push_str(&format!(
            "{kid:<43}  {:>4}  {:<9}  {:<20}  {:<20}  {}\n",
            meta.bits,
            status(kid),
            time(meta.created),
            opt(meta.activated),
            opt(meta.retired),
        ));
    }
    Ok(out)
}

/// RFC 3339 UTC, whole seconds.
fn time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        keys: KeysArgs,
    }

    fn kid_of(args: &[&str]) -> Result<(String, Option<PathBuf>), String> {
        let cli = Cli::try_parse_from(std::iter::once("keys").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        match cli.keys.command {
            KeysCommand::Activate { kid } | KeysCommand::Retire { kid } => {
                Ok((kid, cli.keys.keys_dir))
            }
            other => Err(format!("{other:?}")),
        }
    }

    /// A kid is base64url: about one in 64 starts with `-`, one in 4096 with `--`.
    #[test]
    fn a_kid_starting_with_a_hyphen_is_taken_as_printed() {
        let kids = [
            "-eYb2xGJ0mWQ6B3hVZp9nT1cK5sLrD8aUfo7iH4qXgE",
            "--Yb2xGJ0mWQ6B3hVZp9nT1cK5sLrD8aUfo7iH4qXgE",
            "-h-b2xGJ0mWQ6B3hVZp9nT1cK5sLrD8aUfo7iH4qXgE",
            "-V_b2xGJ0mWQ6B3hVZp9nT1cK5sLrD8aUfo7iH4qXgE",
        ];
        for kid in kids {
            assert!(key_folder::is_kid(kid), "{kid}");
            for command in ["activate", "retire"] {
                assert_eq!(kid_of(&[command, kid]), Ok((kid.to_owned(), None)), "{command} {kid}");
                // Options still work around it, and `--` too.
                assert_eq!(
                    kid_of(&[command, kid, "--keys-dir", "/k"]),
                    Ok((kid.to_owned(), Some(PathBuf::from("/k")))),
                    "{command} {kid}"
                );
                assert_eq!(
                    kid_of(&["--keys-dir", "/k", command, "--", kid]),
                    Ok((kid.to_owned(), Some(PathBuf::from("/k")))),
                    "{command} -- {kid}"
                );
            }
        }
        // A missing kid is still an error, not an empty one.
        assert!(kid_of(&["retire"]).is_err());
    }
}
