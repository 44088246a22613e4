//! The signing keys on disk.
//!
//! ```text
//! keys/private/<kid>.pem     PKCS#8 RSA private key, mode 0600
//! keys/private/state.json    {"active": "<kid>", "keys": {"<kid>": {"created", "activated", "retired", "bits"}}}
//! keys/private/.lock         held (flock) by whoever changes the store
//! keys/public/<kid>.pem      SPKI public key (what the api-server mounts read-only)
//! ```
//!
//! Every file is written atomically (temp file in the same directory, fsync, rename, fsync the
//! directory), public key first, then private key, then state: a reader never sees half a file
//! nor a state naming a key whose files are not there yet. Removal goes the other way (state,
//! private key, public key). A key is *published* (in the JWKS, not signing), *active*
//! (signing; exactly one) or *retired* (still in the JWKS until pruned). Every change takes an
//! exclusive lock on `private/.lock`, so concurrent `keys` commands serialize instead of losing
//! each other's updates; readers (the server's reload, `keys list`) need no lock. Loading builds
//! a [`SigningKeys`], swapped whole.
//!
//! Why one file (~740 lines of code): the on-disk protocol is one invariant (write order public →
//! private → state, removal in reverse, every change under `private/.lock`), and every operation
//! here (load, add, activate, rotate, retire, prune, the signer status files) is a step of it;
//! split by operation, the order each step relies on would live in another file than the step. The
//! file helpers, the atomic-write half of the same invariant, are in `files`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use access_token::jwt_provider::RsaSigningKey;
use access_token::public_key::PublicKey;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use serde::{Deserialize, Serialize};

use crate::signing_keys::SigningKeys;

mod files;
use crate::tokens::Signer;
use files::{create_dir, file_name, list_dir, read_small, remove_file, sync_dir, write_atomic};

/// Size of the key generated on first start.
pub const DEFAULT_BITS: usize = 2048;

/// Key sizes `add` and `rotate` accept.
pub const SUPPORTED_BITS: [usize; 3] = [2048, 3072, 4096];

/// `Cache-Control: max-age` of the JWKS. A client that caches the JWKS must see a new key
/// before it signs: `keys add`, wait at least this long, then `keys activate`.
pub const JWKS_MAX_AGE_SECS: u64 = 60;

/// Leeway added to the access-token lifetime before a retired key may be pruned: the
/// api-server's default `API_LEEWAY`, which also absorbs the server's ≤ 1 s reload delay.
pub const DEFAULT_PRUNE_LEEWAY: Duration = Duration::from_secs(30);

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = ".lock";

/// `private/.signer-<instance>.json`: what a running server signs with (hidden, so the folder
/// watch and the key listing ignore it).
const SIGNER_STATUS_PREFIX: &str = ".signer-";

/// How often a running server rewrites its signer status (and on every reload).
pub const SIGNER_STATUS_HEARTBEAT: Duration = Duration::from_secs(5);

/// A signer status not rewritten for this long is a stopped (or hung) instance's: `prune`
/// ignores it.
pub const SIGNER_STATUS_LIVE_WITHIN: Duration = Duration::from_secs(30);

/// A signer status this old is removed by `prune` (an instance that died without cleaning up).
pub const SIGNER_STATUS_FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What can go wrong with the key store. Messages are one line, name files, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFolderError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `state.json` is not what this program writes.
    #[error("{path}: invalid key state: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A key file does not hold a usable key, or does not match its name.
    #[error("{path}: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The text given as a kid cannot be one.
    #[error("`{0}` is not a kid (43 base64url characters; see `auth-server keys list`)")]
    NotAKid(String),
    /// The state names no such key.
    #[error("no key {0} in the key state (see `auth-server keys list`)")]
    UnknownKey(String),
    /// `retire` on the signing key.
    #[error(
        "key {0} is the active signing key and cannot be retired; activate another key first \
         (`auth-server keys rotate` adds and activates one)"
    )]
    RetireActive(String),
    /// `activate` on a retired key.
    #[error(
        "key {0} is retired and never signs again; add a new key instead (`auth-server keys rotate`)"
    )]
    ActivateRetired(String),
    /// Unsupported RSA size.
    #[error("unsupported key size {0} (use 2048, 3072 or 4096)")]
    UnsupportedBits(usize),
    /// Key generation failed.
    #[error("RSA key generation failed")]
    Generate,
    /// `prune` while a running server signs with another key than the state's active one.
    #[error(
        "refusing to prune: instance {instance} signs with {kid}, not with the active key \
         {active}{why}; fix its keys folder (see its log and /readyz) or stop it first"
    )]
    SignerDiffers {
        /// The instance (as in its status file).
        instance: String,
        /// What it signs with.
        kid: String,
        /// What the state names.
        active: String,
        /// `: its last reload failed (...)`, when it says so.
        why: String,
    },
}

impl KeyFolderError {
    /// Whether the file it names does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The error without any directory in it (file names only), for answers to clients such
    /// as `/readyz`, which never carry a key path.
    pub fn public_reason(&self) -> String {
        match self {
            Self::Io { path, source } => format!("{}: {}", file_name(path), source.kind()),
            Self::State { path, .. } => format!("{}: invalid key state", file_name(path)),
            Self::BadKey { path, reason } => format!("{}: {reason}", file_name(path)),
            other => other.to_string(),
        }
    }
}

/// What a running server writes to `private/.signer-<instance>.json`, atomically: the key it
/// signs with, so `keys prune` can refuse while it is not the state's active key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerStatus {
    /// Random per process start (several instances may share the folder).
    pub instance: String,
    /// Host name, when known, and process id: for the operator.
    pub host: Option<String>,
    /// Process id.
    pub pid: u32,
    /// The kid it signs new tokens with.
    pub kid: String,
    /// Why its last reload failed, while it does.
    pub reload_failing: Option<String>,
    /// When this was written, Unix seconds.
    pub updated: u64,
}

/// One key's entry in `state.json`. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    /// When the pair was generated.
    pub created: u64,
    /// When it became the signer, if ever.
    pub activated: Option<u64>,
    /// When it stopped signing (or was retired unused), if it has.
    pub retired: Option<u64>,
    /// RSA modulus size.
    pub bits: usize,
}

/// The state of a key, derived from `state.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Public key out, not signing.
    Published,
    /// The signer.
    Active,
    /// No longer signing; still published so its tokens verify.
    Retired,
}

impl KeyStatus {
    /// `published`, `active` or `retired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }
}

/// The content of `keys/private/state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// The kid that signs, if any.
    pub active: Option<String>,
    /// Every key not yet removed.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyMeta>,
}

impl KeyState {
    /// The status of `kid`, if the state knows it.
    pub fn status(&self, kid: &str) -> Option<KeyStatus> {
        let meta = self.keys.get(kid)?;
        Some(if self.active.as_deref() == Some(kid) {
            KeyStatus::Active
        } else if meta.retired.is_some() {
            KeyStatus::Retired
        } else {
            KeyStatus::Published
        })
    }

    /// The kids in `status`, in kid order.
    pub fn kids_in(&self, status: KeyStatus) -> Vec<&str> {
        self.keys
            .keys()
            .filter(|kid| self.status(kid) == Some(status))
            .map(String::as_str)
            .collect()
    }
}

/// When a key retired at `retired` may be pruned: strictly after `retired + ttl + leeway`
/// (times are whole seconds, so one more second covers the rounding of `retired`).
pub fn prunable_at(retired: u64, ttl: Duration, leeway: Duration) -> u64 {
    let wait = (ttl + leeway).as_secs() + u64::from((ttl + leeway).subsec_nanos() > 0);
    retired.saturating_add(wait).saturating_add(1)
}

/// A freshly loaded ring and what was wrong with the folder without stopping the load
/// (each message names its file).
#[derive(Debug)]
pub struct Loaded {
    /// The ring.
    pub ring: SigningKeys,
    /// Warnings to log.
    pub warnings: Vec<String>,
    /// Published keys whose file could not be used now, kept from the previous ring.
    pub kept: Vec<String>,
}

/// What `activate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The key that signs now.
    pub kid: String,
    /// The key that signed before and is now retired, if any.
    pub retired: Option<String>,
    /// `kid` was already the active key; nothing changed.
    pub unchanged: bool,
}

/// What `prune` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Keys removed: kid and when it was retired.
    pub removed: Vec<(String, u64)>,
    /// Retired keys kept because tokens they signed may still be valid: kid, retired, prunable at.
    pub kept: Vec<(String, u64, u64)>,
}

/// The exclusive lock on the store; released when dropped.
#[derive(Debug)]
pub struct FolderLock {
    _file: fs::File,
}

/// The `keys/` directory.
#[derive(Debug, Clone)]
pub struct KeyFolder {
    dir: PathBuf,
}

impl KeyFolder {
    /// The store rooted at `dir` (nothing is read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `keys/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `keys/private`.
    pub fn private_dir(&self) -> PathBuf {
        self.dir.join("private")
    }

    /// `keys/public`.
    pub fn public_dir(&self) -> PathBuf {
        self.dir.join("public")
    }

    /// `keys/private/state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.private_dir().join(STATE_FILE)
    }

    /// `keys/public/<kid>.pem`.
    pub fn public_path(&self, kid: &str) -> PathBuf {
        self.public_dir().join(format!("{kid}.pem"))
    }

    /// `keys/private/<kid>.pem`.
    pub fn private_path(&self, kid: &str) -> PathBuf {
        self.private_dir().join(format!("{kid}.pem"))
    }

    /// `keys/private/.signer-<instance>.json`.
    fn signer_status_path(&self, instance: &str) -> PathBuf {
        self.private_dir().join(format!("{SIGNER_STATUS_PREFIX}{instance}.json"))
    }

    /// Writes a running server's signer status, atomically (no lock: each instance writes its
    /// own file).
    pub fn write_signer_status(&self, status: &SignerStatus) -> Result<(), KeyFolderError> {
        let path = self.signer_status_path(&status.instance);
        let json = serde_json::to_vec(status)
            .map_err(|e| KeyFolderError::State { path: path.clone(), reason: e.to_string() })?;
        write_atomic(&path, &json, 0o600)
    }

    /// Removes an instance's signer status (on a graceful stop).
    pub fn remove_signer_status(&self, instance: &str) -> Result<(), KeyFolderError> {
        remove_file(&self.signer_status_path(instance))
    }

    /// Every signer status in the folder, with its file; unreadable ones are skipped.
    pub fn signer_statuses(&self) -> Vec<(PathBuf, SignerStatus)> {
        let Ok(paths) = list_dir(&self.private_dir()) else { return Vec::new() };
        paths
            .into_iter()
            .filter(|p| {
                let name = file_name(p);
                name.starts_with(SIGNER_STATUS_PREFIX) && name.ends_with(".json")
            })
            .filter_map(|p| {
                let bytes = read_small(&p).ok()?;
                let status = serde_json::from_slice(&bytes).ok()?;
                Some((p, status))
            })
            .collect()
    }

    /// Refuses (see [`KeyFolderError::SignerDiffers`]) when a live instance signs with another
    /// key than `state`'s active one and either that key is among `removing` or its reloads
    /// fail (it would go on signing with it); an instance that differs only for the moment it
    /// takes to pick up a change just made (a `rotate` right before) is no reason. Forgets the
    /// statuses of instances long gone when `forget`.
    fn check_signers(
        &self,
        state: &KeyState,
        removing: &[(String, u64)],
        now: u64,
        forget: bool,
    ) -> Result<(), KeyFolderError> {
        let active = state.active.clone().unwrap_or_default();
        for (path, status) in self.signer_statuses() {
            let age = now.saturating_sub(status.updated);
            if age > SIGNER_STATUS_FORGET_AFTER.as_secs() {
                if forget {
                    remove_file(&path)?;
                }
                continue;
            }
            let removed = removing.iter().any(|(kid, _)| *kid == status.kid);
            if age > SIGNER_STATUS_LIVE_WITHIN.as_secs()
                || status.kid == active
                || !(removed || status.reload_failing.is_some())
            {
                continue;
            }
            let who = match &status.host {
                Some(host) => format!("{} ({host}, pid {})", status.instance, status.pid),
                None => format!("{} (pid {})", status.instance, status.pid),
            };
            let why = status
                .reload_failing
                .map(|reason| format!(": its last reload failed ({reason})"))
                .unwrap_or_default();
            return Err(KeyFolderError::SignerDiffers {
                instance: who,
                kid: status.kid,
                active,
                why,
            });
        }
        Ok(())
    }

    /// Creates `keys/` (0755), `private/` (0700) and `public/` (0755) when missing.
    pub fn ensure_dirs(&self) -> Result<(), KeyFolderError> {
        // The root first, so `public/` stays reachable for a reader running as another user.
        create_dir(&self.dir, 0o755)?;
        create_dir(&self.private_dir(), 0o700)?;
        create_dir(&self.public_dir(), 0o755)
    }

    /// Takes the exclusive lock on the store (`private/.lock`, 0600), waiting for another
    /// holder (a concurrent `keys` command) to finish.
    pub fn lock(&self) -> Result<FolderLock, KeyFolderError> {
        self.ensure_dirs()?;
        let path = self.private_dir().join(LOCK_FILE);
        let io_err = |source| KeyFolderError::Io { path: path.clone(), source };
        let mut options = fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                log::info!("waiting for another `keys` command to release {}", path.display());
                file.lock().map_err(io_err)?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        Ok(FolderLock { _file: file })
    }

    /// Reads `state.json`; a missing file is an empty state.
    pub fn read_state(&self) -> Result<KeyState, KeyFolderError> {
        let path = self.state_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(KeyState::default()),
            Err(source) => return Err(KeyFolderError::Io { path, source }),
        };
        let state: KeyState = serde_json::from_str(&text)
            .map_err(|e| KeyFolderError::State { path: path.clone(), reason: e.to_string() })?;
        if let Some(kid) = state.keys.keys().find(|kid| !is_kid(kid)) {
            return Err(KeyFolderError::State { path, reason: format!("`{kid}` is not a kid") });
        }
        if let Some(active) = &state.active
            && !state.keys.contains_key(active)
        {
            return Err(KeyFolderError::State {
                path,
                reason: format!("active key {active} is not listed"),
            });
        }
        Ok(state)
    }

    /// Writes `state.json` atomically. Callers that read-modify-write hold [`Self::lock`].
    pub fn write_state(&self, state: &KeyState) -> Result<(), KeyFolderError> {
        let path = self.state_path();
        let mut json = serde_json::to_vec_pretty(state)
            .map_err(|e| KeyFolderError::State { path: path.clone(), reason: e.to_string() })?;
        json.push(b'\n');
        write_atomic(&path, &json, 0o600)
    }

    /// Generates a pair and publishes it (public key, private key, then state); not signing yet.
    pub fn add(&self, bits: usize) -> Result<String, KeyFolderError> {
        let _lock = self.lock()?;
        let kid = self.write_new_pair(bits)?;
        let mut state = self.read_state()?;
        state.keys.insert(
            kid.clone(),
            KeyMeta { created: now_secs(), activated: None, retired: None, bits },
        );
        self.write_state(&state)?;
        Ok(kid)
    }

    /// Makes the published key `kid` the signer; the previous active key becomes retired.
    /// Activating the active key changes nothing; a retired key is refused.
    pub fn activate(&self, kid: &str) -> Result<Activation, KeyFolderError> {
        check_kid(kid)?;
        let _lock = self.lock()?;
        let mut state = self.read_state()?;
        match state.status(kid) {
            None => return Err(KeyFolderError::UnknownKey(kid.to_owned())),
            Some(KeyStatus::Retired) => {
                return Err(KeyFolderError::ActivateRetired(kid.to_owned()));
            }
            Some(KeyStatus::Active) => {
                return Ok(Activation { kid: kid.to_owned(), retired: None, unchanged: true });
            }
            Some(KeyStatus::Published) => {}
        }
        // Refuse to activate a key that cannot sign or whose public key is not out.
        self.load_signer(kid)?;
        self.load_public(kid)?;
        let retired = set_active(&mut state, kid, now_secs());
        self.write_state(&state)?;
        Ok(Activation { kid: kid.to_owned(), retired, unchanged: false })
    }

    /// `add` + `activate` under one lock, with a single state write: the new key signs from
    /// the moment the state names it, and the previous active key is retired.
    pub fn rotate(&self, bits: usize) -> Result<Activation, KeyFolderError> {
        let _lock = self.lock()?;
        let kid = self.write_new_pair(bits)?;
        let mut state = self.read_state()?;
        let now = now_secs();
        state
            .keys
            .insert(kid.clone(), KeyMeta { created: now, activated: None, retired: None, bits });
        let retired = set_active(&mut state, &kid, now);
        self.write_state(&state)?;
        Ok(Activation { kid, retired, unchanged: false })
    }

    /// Retires a published key (it stays in the JWKS until pruned). Refuses the active key.
    /// Returns when the key was retired (earlier, if it already was).
    pub fn retire(&self, kid: &str) -> Result<u64, KeyFolderError> {
        check_kid(kid)?;
        let _lock = self.lock()?;
        let mut state = self.read_state()?;
        if state.active.as_deref() == Some(kid) {
            return Err(KeyFolderError::RetireActive(kid.to_owned()));
        }
        let meta =
            state.keys.get_mut(kid).ok_or_else(|| KeyFolderError::UnknownKey(kid.to_owned()))?;
        if let Some(at) = meta.retired {
            return Ok(at);
        }
        let now = now_secs();
        meta.retired = Some(now);
        self.write_state(&state)?;
        Ok(now)
    }

    /// Removes every retired key for which [`prunable_at`] (with the access-token `ttl` and
    /// `leeway`) has passed at `now`: its state entry first, then its private key, then its
    /// public key. Never an active or published key. With `dry_run`, only reports.
    pub fn prune(
        &self,
        ttl: Duration,
        leeway: Duration,
        now: u64,
        dry_run: bool,
    ) -> Result<PruneReport, KeyFolderError> {
        let _lock = self.lock()?;
        let mut state = self.read_state()?;
        let mut report = PruneReport::default();
        for (kid, meta) in &state.keys {
            let Some(retired) = meta.retired else { continue };
            if state.active.as_deref() == Some(kid.as_str()) {
                continue;
            }
            let at = prunable_at(retired, ttl, leeway);
            if now >= at {
                report.removed.push((kid.clone(), retired));
            } else {
                report.kept.push((kid.clone(), retired, at));
            }
        }
        if report.removed.is_empty() {
            return Ok(report);
        }
        // Removing a key some server still signs with would break its tokens everywhere.
        self.check_signers(&state, &report.removed, now, !dry_run)?;
        if dry_run {
            return Ok(report);
        }
        for (kid, _) in &report.removed {
            state.keys.remove(kid);
        }
        self.write_state(&state)?;
        for (kid, _) in &report.removed {
            remove_file(&self.private_path(kid))?;
            remove_file(&self.public_path(kid))?;
        }
        sync_dir(&self.private_dir())?;
        sync_dir(&self.public_dir())?;
        // Temp files left by a write that crashed; no `keys` command writes while we hold the
        // lock.
        for dir in [self.private_dir(), self.public_dir()] {
            for path in list_dir(&dir)? {
                let name = file_name(&path);
                // Signer statuses are written by running servers, without the lock.
                if name.starts_with('.')
                    && name.contains(".tmp-")
                    && !name.contains(SIGNER_STATUS_PREFIX)
                {
                    remove_file(&path)?;
                }
            }
        }
        Ok(report)
    }

    /// `*.pem` files in `public/` or `private/` that the state does not name, as messages
    /// naming the file (for `keys list` and the reload log).
    pub fn stray_files(&self, state: &KeyState) -> Vec<String> {
        let mut found = Vec::new();
        for (dir, public) in [(self.public_dir(), true), (self.private_dir(), false)] {
            let Ok(paths) = list_dir(&dir) else { continue };
            for path in paths {
                let name = file_name(&path);
                if name.starts_with('.') || !name.ends_with(".pem") {
                    continue;
                }
                let stem = name.trim_end_matches(".pem");
                if state.keys.contains_key(stem) {
                    continue;
                }
                let usable =
                    public && read_small(&path).is_ok_and(|b| PublicKey::from_pem(&b).is_ok());
                found.push(if usable || !public {
                    format!("{}: not in the key state; ignored", path.display())
                } else {
                    format!("{}: not a usable public key; ignored", path.display())
                });
            }
        }
        found
    }

    /// Loads the active signer and every published public key. Non-active keys whose file
    /// cannot be used are left out with a warning (at start-up nothing better exists).
    pub fn load(&self) -> Result<Option<Loaded>, KeyFolderError> {
        self.load_with(None, &|_| false)
    }

    /// Loads like [`Self::load`]; a non-active key whose file does not read as a key now
    /// (half-written by a writer that is not atomic) keeps the copy `previous` holds when
    /// `may_keep(kid)` allows it (the caller bounds that by a grace), and is named in
    /// [`Loaded::kept`]. Errors (state unreadable, active key unusable) leave the caller's
    /// ring as it is.
    pub fn load_with(
        &self,
        previous: Option<&SigningKeys>,
        may_keep: &dyn Fn(&str) -> bool,
    ) -> Result<Option<Loaded>, KeyFolderError> {
        let state = self.read_state()?;
        let Some(active) = state.active.clone() else {
            return Ok(None);
        };
        let signer = self.load_signer(&active)?;
        let mut public = Vec::with_capacity(state.keys.len());
        let mut warnings = Vec::new();
        let mut kept = Vec::new();
        for kid in state.keys.keys() {
            match self.load_public(kid) {
                Ok(key) => public.push(key),
                Err(e) if *kid == active => return Err(e),
                // A removed file's key leaves at once; one that does not read as a key now
                // (rewritten in place) may keep its previous copy.
                Err(e) => match previous.and_then(|ring| ring.public_key(kid)) {
                    Some(key) if !e.is_not_found() && may_keep(kid) => {
                        warnings.push(format!("{e}; keeping the copy loaded before for now"));
                        public.push(key.clone());
                        kept.push(kid.clone());
                    }
                    _ => warnings.push(format!("{e}; key {kid} left out of the JWKS")),
                },
            }
        }
        warnings.extend(self.stray_files(&state));
        Ok(Some(Loaded { ring: SigningKeys::new(signer, public, state), warnings, kept }))
    }

    /// Loads the keys; on a store without an active key, generates an RSA-2048 pair and
    /// activates it first (first start).
    pub fn load_or_init(&self) -> Result<SigningKeys, KeyFolderError> {
        self.ensure_dirs()?;
        if let Some(loaded) = self.load()? {
            return Ok(log_warnings(loaded));
        }
        let _lock = self.lock()?;
        // A `keys` command may have activated a key while we waited for the lock.
        if let Some(loaded) = self.load()? {
            return Ok(log_warnings(loaded));
        }
        let kid = self.write_new_pair(DEFAULT_BITS)?;
        let mut state = self.read_state()?;
        let now = now_secs();
        state.keys.insert(
            kid.clone(),
            KeyMeta { created: now, activated: None, retired: None, bits: DEFAULT_BITS },
        );
        set_active(&mut state, &kid, now);
        self.write_state(&state)?;
        log::info!("generated signing key {kid} (RSA-{DEFAULT_BITS}) in {}", self.dir.display());
        self.load()?.map(log_warnings).ok_or(KeyFolderError::UnknownKey(kid))
    }

    /// Generates a pair and writes its public, then private key; returns the kid. The state
    /// is the caller's (under the lock).
    fn write_new_pair(&self, bits: usize) -> Result<String, KeyFolderError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => return Err(KeyFolderError::UnsupportedBits(other)),
        };
        self.ensure_dirs()?;
        let pair = RsaKeyPair::generate(size).map_err(|_| KeyFolderError::Generate)?;
        let private_der = pair.as_der().map_err(|_| KeyFolderError::Generate)?;
        let public_der = pair.public_key().as_der().map_err(|_| KeyFolderError::Generate)?;
        let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", private_der.as_ref().to_vec()));
        let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", public_der.as_ref().to_vec()));
        let kid = PublicKey::from_pem(public_pem.as_bytes())
            .map_err(|_| KeyFolderError::Generate)?
            .kid()
            .to_owned();
        write_atomic(&self.public_path(&kid), public_pem.as_bytes(), 0o644)?;
        write_atomic(&self.private_path(&kid), private_pem.as_bytes(), 0o600)?;
        Ok(kid)
    }

    fn load_public(&self, kid: &str) -> Result<PublicKey, KeyFolderError> {
        let path = self.public_path(kid);
        let pem = read_small(&path)?;
        let key = PublicKey::from_pem(&pem)
            .map_err(|e| KeyFolderError::BadKey { path: path.clone(), reason: e.to_string() })?;
        if key.kid() != kid {
            return Err(KeyFolderError::BadKey {
                path,
                reason: "the public key's thumbprint does not match its file name".into(),
            });
        }
        Ok(key)
    }

    fn load_signer(&self, kid: &str) -> Result<Signer, KeyFolderError> {
        let path = self.private_path(kid);
        let bad =
            |reason: &str| KeyFolderError::BadKey { path: path.clone(), reason: reason.to_owned() };
        let text = read_small(&path)?;
        let parsed = pem::parse(&text).map_err(|_| bad("the private key file is not PEM"))?;
        if parsed.tag() != "PRIVATE KEY" {
            return Err(bad("the private key file is not a PKCS#8 PRIVATE KEY"));
        }
        let key = RsaSigningKey::from_pem(&text)
            .map_err(|_| bad("the private key is not a usable PKCS#8 RSA key"))?;
        let public_der = key
            .key_pair()
            .public_key()
            .as_der()
            .map_err(|_| bad("cannot encode its public key"))?;
        let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", public_der.as_ref().to_vec()));
        let public = PublicKey::from_pem(public_pem.as_bytes()).map_err(|e| bad(&e.to_string()))?;
        if public.kid() != kid {
            return Err(bad("the private key does not match its file name"));
        }
        Ok(Signer::new(kid.to_owned(), key))
    }
}

/// Makes `kid` active at `now`, retiring the previous active key; returns that key.
fn set_active(state: &mut KeyState, kid: &str, now: u64) -> Option<String> {
    let mut retired = None;
    if let Some(previous) = state.active.take()
        && previous != kid
        && let Some(meta) = state.keys.get_mut(&previous)
    {
        meta.retired = Some(now);
        retired = Some(previous);
    }
    if let Some(meta) = state.keys.get_mut(kid) {
        meta.activated = Some(now);
        meta.retired = None;
    }
    state.active = Some(kid.to_owned());
    retired
}

fn log_warnings(loaded: Loaded) -> SigningKeys {
    for warning in &loaded.warnings {
        log::warn!("keys: {warning}");
    }
    loaded.ring
}

/// A kid is an RFC 7638 SHA-256 thumbprint: 43 base64url characters. Checked before it
/// becomes part of a path.
pub fn is_kid(text: &str) -> bool {
    text.len() == 43 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_kid(text: &str) -> Result<(), KeyFolderError> {
    if is_kid(text) { Ok(()) } else { Err(KeyFolderError::NotAKid(text.to_owned())) }
}

/// Now, in Unix seconds: the crate's one clock.
pub use crate::clock::now_secs;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_generates_an_active_key_in_the_contract_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("keys");
        let store = KeyFolder::new(&root);
        let ring = store.load_or_init().unwrap();
        let kid = ring.signer().kid().to_owned();
        assert!(is_kid(&kid));
        assert!(store.public_path(&kid).is_file());
        assert!(store.private_path(&kid).is_file());
        let state = store.read_state().unwrap();
        assert_eq!(state.active.as_deref(), Some(kid.as_str()));
        assert_eq!(state.status(&kid), Some(KeyStatus::Active));
        assert_eq!(state.keys[&kid].bits, 2048);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&store.private_path(&kid)), 0o600);
            assert_eq!(mode(&store.private_dir()), 0o700);
            assert_eq!(mode(&store.public_path(&kid)), 0o644);
            assert_eq!(mode(&store.public_dir()), 0o755);
            assert_eq!(mode(&root), 0o755);
            assert_eq!(mode(&store.private_dir().join(LOCK_FILE)), 0o600);
        }
        // No temp files left behind.
        for dir in [store.private_dir(), store.public_dir()] {
            for entry in fs::read_dir(dir).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                assert!(!name.contains(".tmp-"), "{name}");
            }
        }

        // A second start loads the same key.
        let again = store.load_or_init().unwrap();
        assert_eq!(again.signer().kid(), kid);
        assert_eq!(again.public_keys().len(), 1);
    }

    #[test]
    fn an_atomic_write_replaces_whole_with_its_mode_and_leaves_no_temp_file_when_it_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_atomic(&path, b"one", 0o644).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // The rename fails (a folder is in the way): the temp file goes too.
        let blocked = dir.path().join("blocked");
        fs::create_dir(blocked.join("inside").parent().unwrap()).unwrap();
        fs::write(blocked.join("inside"), b"x").unwrap();
        assert!(write_atomic(&blocked, b"three", 0o644).is_err());
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    }

    #[test]
    fn activating_another_key_retires_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyFolder::new(dir.path());
        let first = store.load_or_init().unwrap().signer().kid().to_owned();
        let second = store.add(2048).unwrap();
        let ring = store.load().unwrap().unwrap().ring;
        assert_eq!(ring.signer().kid(), first);
        assert_eq!(ring.public_keys().len(), 2);
        assert_eq!(store.read_state().unwrap().status(&second), Some(KeyStatus::Published));

        let activation = store.activate(&second).unwrap();
        assert_eq!(activation.retired.as_deref(), Some(first.as_str()));
        let state = store.read_state().unwrap();
        assert_eq!(state.status(&first), Some(KeyStatus::Retired));
        assert_eq!(state.status(&second), Some(KeyStatus::Active));
        assert_eq!(store.load().unwrap().unwrap().ring.signer().kid(), second);

        // A retired key never signs again.
        assert!(matches!(store.activate(&first), Err(KeyFolderError::ActivateRetired(_))));
        // Activating the active key is a no-op.
        assert!(store.activate(&second).unwrap().unchanged);
    }

    #[test]
    fn a_private_key_under_another_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyFolder::new(dir.path());
        let first = store.load_or_init().unwrap().signer().kid().to_owned();
        let second = store.add(2048).unwrap();
        fs::copy(store.private_path(&first), store.private_path(&second)).unwrap();
        assert!(matches!(store.activate(&second), Err(KeyFolderError::BadKey { .. })));
    }

    #[test]
    fn retire_refuses_the_active_key_and_prune_waits_for_ttl_plus_leeway() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyFolder::new(dir.path());
        let first = store.load_or_init().unwrap().signer().kid().to_owned();
        assert!(matches!(store.retire(&first), Err(KeyFolderError::RetireActive(_))));
        let rotated = store.rotate(2048).unwrap();
        assert_eq!(rotated.retired.as_deref(), Some(first.as_str()));
        let retired = store.read_state().unwrap().keys[&first].retired.unwrap();

        let ttl = Duration::from_secs(900);
        let leeway = Duration::from_secs(30);
        let at = prunable_at(retired, ttl, leeway);
        assert_eq!(at, retired + 931);
        let early = store.prune(ttl, leeway, at - 1, false).unwrap();
        assert!(early.removed.is_empty());
        assert_eq!(early.kept, vec![(first.clone(), retired, at)]);
        assert!(store.public_path(&first).is_file());

        let dry = store.prune(ttl, leeway, at, true).unwrap();
        assert_eq!(dry.removed, vec![(first.clone(), retired)]);
        assert!(store.public_path(&first).is_file());

        let done = store.prune(ttl, leeway, at, false).unwrap();
        assert_eq!(done.removed, vec![(first.clone(), retired)]);
        assert!(!store.public_path(&first).exists());
        assert!(!store.private_path(&first).exists());
        let state = store.read_state().unwrap();
        assert!(!state.keys.contains_key(&first));
        assert_eq!(state.active.as_deref(), Some(rotated.kid.as_str()));
    }

    #[test]
    fn prune_refuses_while_a_live_instance_signs_with_another_key_and_forgets_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyFolder::new(dir.path());
        let first = store.load_or_init().unwrap().signer().kid().to_owned();
        let second = store.rotate(2048).unwrap().kid;
        let ttl = Duration::from_secs(900);
        let leeway = Duration::from_secs(30);
        let retired = store.read_state().unwrap().keys[&first].retired.unwrap();
        let due = prunable_at(retired, ttl, leeway);
        let status = |instance: &str, kid: &str, age: u64| SignerStatus {
            instance: instance.into(),
            host: Some("web-1".into()),
            pid: 7,
            kid: kid.into(),
            reload_failing: Some("x.pem: not a key".into()),
            updated: due - age,
        };
        // One instance up to date, one stopped a minute ago still naming the old key, one
        // dead for two days: nothing stops the prune, and the dead one's file goes.
        let mut a = status("a", &second, 1);
        a.reload_failing = None;
        store.write_signer_status(&a).unwrap();
        store.write_signer_status(&status("b", &first, 60)).unwrap();
        store.write_signer_status(&status("c", &first, 2 * 86_400)).unwrap();
        assert_eq!(store.signer_statuses().len(), 3);
        // A live instance still signing with the key to remove (its reload fails): refused,
        // dry run too, nothing removed; without the failure too (it signs with it).
        store.write_signer_status(&status("d", &first, 2)).unwrap();
        for dry_run in [true, false] {
            let err = store.prune(ttl, leeway, due, dry_run).unwrap_err().to_string();
            assert!(err.contains("refusing to prune") && err.contains(&first), "{err}");
            assert!(err.contains("d (web-1, pid 7)") && err.contains("x.pem: not a key"), "{err}");
        }
        let mut d = status("d", &first, 2);
        d.reload_failing = None;
        store.write_signer_status(&d).unwrap();
        assert!(store.prune(ttl, leeway, due, true).is_err());
        assert!(store.public_path(&first).is_file());

        // An instance that signs with another key than the active one, not being removed
        // (here a published one): refused while its reloads fail, not while it is only
        // catching up with a change made a moment ago.
        let other = store.add(2048).unwrap();
        store.remove_signer_status("d").unwrap();
        store.write_signer_status(&status("e", &other, 2)).unwrap();
        assert!(store.prune(ttl, leeway, due, true).is_err());
        let mut e = status("e", &other, 2);
        e.reload_failing = None;
        store.write_signer_status(&e).unwrap();
        store.prune(ttl, leeway, due, true).unwrap();
        store.remove_signer_status("e").unwrap();
        // Nothing due: nothing to refuse.
        assert!(store.prune(ttl, leeway, due - 1, false).unwrap().removed.is_empty());

        let done = store.prune(ttl, leeway, due, false).unwrap();
        assert_eq!(done.removed, vec![(first.clone(), retired)]);
        let left: Vec<String> =
            store.signer_statuses().into_iter().map(|(_, s)| s.instance).collect();
        assert_eq!(left, vec!["a".to_owned(), "b".to_owned()]);
    }

    #[test]
    fn public_reasons_name_files_never_folders() {
        let err = KeyFolderError::Io {
            path: PathBuf::from("/srv/keys/private/abc.pem"),
            source: io::ErrorKind::PermissionDenied.into(),
        };
        assert_eq!(err.public_reason(), "abc.pem: permission denied");
        let err = KeyFolderError::State {
            path: PathBuf::from("/srv/keys/private/state.json"),
            reason: "expected value at line 1".into(),
        };
        assert_eq!(err.public_reason(), "state.json: invalid key state");
    }

    #[test]
    fn a_reload_keeps_the_previous_copy_of_a_key_whose_file_broke() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyFolder::new(dir.path());
        let first = store.load_or_init().unwrap().signer().kid().to_owned();
        let second = store.rotate(2048).unwrap().kid;
        let good = store.load().unwrap().unwrap();
        assert!(good.warnings.is_empty(), "{:?}", good.warnings);
        fs::write(store.public_path(&first), b"-----BEGIN PUBLIC KEY-----\nAAA").unwrap();
        fs::write(store.public_dir().join("garbage.pem"), b"garbage").unwrap();

        let again = store.load_with(Some(&good.ring), &|_| true).unwrap().unwrap();
        assert_eq!(again.ring.signer().kid(), second);
        assert!(again.ring.public_key(&first).is_some());
        assert_eq!(again.kept, vec![first.clone()]);
        // Past the caller's grace, the key is left out.
        let later = store.load_with(Some(&good.ring), &|_| false).unwrap().unwrap();
        assert!(later.ring.public_key(&first).is_none());
        assert!(later.kept.is_empty());
        assert!(again.warnings.iter().any(|w| w.contains(&format!("{first}.pem"))));
        assert!(again.warnings.iter().any(|w| w.contains("garbage.pem")));

        // The active key's file broken: the load fails, naming the file.
        fs::write(store.private_path(&second), b"garbage").unwrap();
        let err = store.load_with(Some(&good.ring), &|_| true).unwrap_err().to_string();
        assert!(err.contains(&format!("{second}.pem")), "{err}");
    }
}
