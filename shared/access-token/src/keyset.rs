//! Public-key sets: an immutable [`KeySet`] (kid → key) and the live [`TrustedKeys`] behind it.
//!
//! A [`KeySet`] is built once (from a folder with [`KeySet::load_dir`], or from any
//! [`KeySource`]) and never edited; [`TrustedKeys`] swaps whole sets atomically (`ArcSwap`), so a
//! request always verifies against one consistent set, and a reload never blocks readers.
//!
//! A token's `kid` is only ever used as a map key here: nothing in this module builds a path
//! from it, so `../../etc/passwd` is just a key that is not in the map.
//!
//! Why one file (~600 lines of code): [`KeySet`], the [`KeySource`]s and [`TrustedKeys`] are one
//! mechanism (a source loads a whole set, the live keys swap it, an unknown `kid` re-reads with a
//! cooldown, a re-read that finds the same keys keeps the set and the token cache); the reload
//! rules refer to all three, and the folder watcher ([`crate::watch`]) and the JWKS source are
//! already outside.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};

use crate::public_key::PublicKey;

/// Largest key file read; a public RSA-4096 PEM is under 1 KiB, so anything bigger is not a key
/// and is skipped rather than read into memory.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Default minimum time between two on-demand re-reads (the contract's "at most once a second").
pub const DEFAULT_REFRESH_COOLDOWN: Duration = Duration::from_secs(1);

/// How long a key stays trusted while its file no longer parses: long enough for a writer that
/// truncates and rewrites a file in place (`cp`, an editor) to finish, short enough that the
/// file then counts as removed "within seconds". (A removed file's key goes at once.)
pub const REMOVAL_GRACE: Duration = Duration::from_secs(3);

/// An immutable set of public keys indexed by `kid` (RFC 7638 thumbprint).
///
/// Immutable so it can be shared between threads without locks and swapped whole.
#[derive(Debug, Clone)]
pub struct KeySet {
    /// Unique per set built, growing: what verified tokens are cached against.
    id: u64,
    keys: HashMap<String, Arc<PublicKey>>,
    /// Which file each key came from (file name → kid), so a reload that finds the file
    /// unparsable (half-written) can keep the key it held for a grace.
    origins: HashMap<String, String>,
}

/// The next [`KeySet::id`].
static NEXT_SET_ID: AtomicU64 = AtomicU64::new(1);

impl Default for KeySet {
    fn default() -> Self {
        Self {
            id: NEXT_SET_ID.fetch_add(1, Ordering::Relaxed),
            keys: HashMap::new(),
            origins: HashMap::new(),
        }
    }
}

impl KeySet {
    /// An empty set (nothing verifies; the api-server is not ready).
    pub fn empty() -> Self {
        Self::default()
    }

    /// A set holding exactly `keys`, each under its own `kid`. Used by key sources that do
    /// not read files (a JWKS) and by tests.
    pub fn from_keys(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let mut set = Self::default();
        for key in keys {
            set.insert(Arc::new(key), None);
        }
        set
    }

    fn insert(&mut self, key: Arc<PublicKey>, origin: Option<String>) {
        if let Some(file) = origin {
            self.origins.insert(file, key.kid().to_owned());
        }
        self.keys.insert(key.kid().to_owned(), key);
    }

    /// Whether both sets hold the same keys from the same files: a reload that finds this
    /// changed nothing.
    fn same_as(&self, other: &KeySet) -> bool {
        self.same_kids(other) && self.origins == other.origins
    }

    /// Reads every `*.pem` file directly in `dir` (not recursively, hidden files skipped).
    ///
    /// A file that cannot be read or parsed is skipped and reported in
    /// [`KeyLoad::skipped`] ([`TrustedKeys`] logs a warning naming it), so one stray or
    /// half-written file never costs the other keys. Only an unreadable folder is an error.
    /// The `kid` is always the key's thumbprint; the file name is informational.
    pub fn load_dir(dir: &Path) -> std::io::Result<KeyLoad> {
        let mut set = Self::default();
        let mut skipped = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| is_candidate_key_file(p))
            .collect();
        // Deterministic order, so duplicates resolve the same way on every reload.
        entries.sort();
        for path in entries {
            let file = file_name(&path);
            match read_key_file(&path) {
                Ok(key) => {
                    if path.file_stem() != Some(OsStr::new(key.kid())) {
                        log::debug!(
                            "key file {} holds the key with kid {}; the file name is ignored",
                            path.display(),
                            key.kid()
                        );
                    }
                    set.insert(Arc::new(key), Some(file));
                }
                Err(reason) => {
                    // Logged by `TrustedKeys` (once per change, not on every poll).
                    log::debug!("skipping key file {}: {reason}", path.display());
                    skipped.push(SkippedKey { file, reason });
                }
            }
        }
        Ok(KeyLoad { set, skipped })
    }

    /// This set's identity: unique among the sets of the process, and larger for a set built
    /// later. A clone shares it (it holds the same keys).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The key named `kid`, if loaded. `kid` is only a map key.
    #[inline]
    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(kid).map(Arc::as_ref)
    }

    /// Whether a key named `kid` is loaded.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The kids, sorted (for logs and listings).
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// Every key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values().map(Arc::as_ref)
    }

    /// Whether both sets hold the same kids (used to log only real changes).
    pub fn same_kids(&self, other: &KeySet) -> bool {
        self.keys.len() == other.keys.len() && self.keys.keys().all(|k| other.keys.contains_key(k))
    }
}

fn is_candidate_key_file(path: &Path) -> bool {
    let name = path.file_name().and_then(OsStr::to_str).unwrap_or("");
    // Hidden files are editors' and atomic writers' temporaries.
    !name.starts_with('.') && path.extension() == Some(OsStr::new("pem"))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn read_key_file(path: &Path) -> Result<PublicKey, String> {
    // `metadata` follows symlinks: mounted secrets (Kubernetes, Docker) are often symlinks.
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot stat: {}", e.kind()))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(format!("larger than {MAX_KEY_FILE_BYTES} bytes"));
    }
    let pem = std::fs::read(path).map_err(|e| format!("cannot read: {}", e.kind()))?;
    PublicKey::from_pem(&pem).map_err(|e| e.to_string())
}

/// What [`KeySet::load_dir`] found: the keys, and the files it skipped.
#[derive(Debug, Default)]
pub struct KeyLoad {
    /// The keys that parsed.
    pub set: KeySet,
    /// Files that looked like keys (`*.pem`) but could not be used.
    pub skipped: Vec<SkippedKey>,
}

/// A key file (or JWK) that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The file name (never a full path: logs and health output may show it).
    pub file: String,
    /// Why it was skipped.
    pub reason: String,
}

/// Why a key source could not produce a set at all (individual bad keys are skipped instead).
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    /// The folder could not be listed.
    #[error("cannot read the keys folder: {0}")]
    Io(#[from] std::io::Error),
    /// A remote source (JWKS) could not be fetched or parsed.
    #[error("cannot fetch the key set: {0}")]
    Fetch(String),
    /// The load task died (it panicked or the runtime is shutting down).
    #[error("the key loading task failed")]
    Task,
}

/// A boxed future, so [`KeySource`] stays object-safe.
pub type LoadFuture<'a> =
    Pin<Box<dyn Future<Output = Result<KeyLoad, KeySourceError>> + Send + 'a>>;

/// Where [`TrustedKeys`] reads its keys from: a folder ([`FolderSource`]) now, a JWKS URL later.
///
/// A trait rather than an enum so a service can plug in its own source (the api-server's JWKS
/// client lives with its HTTP client, not in this crate).
pub trait KeySource: Send + Sync + fmt::Debug + 'static {
    /// Produces a fresh set. Bad individual keys are skipped and reported, not fatal.
    fn load(&self) -> LoadFuture<'_>;

    /// A short description for logs (e.g. the folder); never a secret.
    fn describe(&self) -> String;

    /// Whether a load with no usable key is a failure that keeps the last good set, rather
    /// than an answer ("trust no key"). A folder's emptiness is an answer (the contract: an
    /// empty folder trusts no key); a source that always publishes a key in use (a JWKS) can
    /// say that an empty answer is a broken one.
    fn empty_is_failure(&self) -> bool {
        false
    }
}

/// Public keys from `<dir>/*.pem`, read on a blocking thread.
#[derive(Debug, Clone)]
pub struct FolderSource {
    dir: PathBuf,
}

impl FolderSource {
    /// A source reading `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl KeySource for FolderSource {
    fn load(&self) -> LoadFuture<'_> {
        let dir = self.dir.clone();
        Box::pin(async move {
            // File reads block; keep them off the async workers.
            tokio::task::spawn_blocking(move || KeySet::load_dir(&dir))
                .await
                .map_err(|_| KeySourceError::Task)?
                .map_err(KeySourceError::Io)
        })
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// What started a reload; named in its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// The first load, at start-up.
    Start,
    /// A file-system event in the keys folder.
    Watch,
    /// The poll fallback saw the folder change.
    Poll,
    /// A refresh timer (the JWKS's `max-age`, or a retry).
    Timer,
    /// SIGHUP.
    Signal,
    /// A token named a `kid` that is not loaded.
    UnknownKid,
    /// A direct call to [`TrustedKeys::reload`].
    Manual,
}

impl fmt::Display for ReloadTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Start => "start",
            Self::Watch => "file change",
            Self::Poll => "poll",
            Self::Timer => "timer",
            Self::Signal => "SIGHUP",
            Self::UnknownKid => "unknown kid",
            Self::Manual => "manual",
        })
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The load was installed (when it holds the same kids as before, the live set stays the
    /// same `Arc`).
    Loaded {
        /// Keys in the live set.
        keys: usize,
        /// Files or JWKs skipped.
        skipped: Vec<SkippedKey>,
    },
    /// The source failed (or came back empty where that is a failure): the last good set
    /// stays.
    KeptPrevious {
        /// Why.
        reason: String,
    },
}

/// The live key set: an atomically swapped [`KeySet`] plus on-demand refresh from a
/// [`KeySource`].
///
/// Readers ([`TrustedKeys::current`]) never wait. Refreshes are single-flight (one load at a time,
/// concurrent callers share it) and, when triggered by an unknown `kid`, at most one per
/// cooldown; a caller arriving during the cooldown waits for the next allowed re-read instead
/// of being refused early (the contract's "Keys and rotation").
pub struct TrustedKeys {
    current: ArcSwap<KeySet>,
    source: Box<dyn KeySource>,
    cooldown: Duration,
    removal_grace: Duration,
    /// Held while a reload runs.
    reload: tokio::sync::Mutex<ReloadState>,
    reloads: AtomicU64,
    /// When a key held under [`REMOVAL_GRACE`] must be re-checked (see [`Self::recheck_at`]).
    recheck: std::sync::Mutex<Option<Instant>>,
}

impl fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedKeys")
            .field("source", &self.source)
            .field("kids", &self.current.load().kids())
            .field("cooldown", &self.cooldown)
            .finish()
    }
}

impl TrustedKeys {
    /// Live keys starting from `initial` (usually the result of a first `source.load()`).
    pub fn new(source: impl KeySource, initial: KeySet) -> Self {
        crate::metrics::init_key_series();
        Self {
            current: ArcSwap::from_pointee(initial),
            source: Box::new(source),
            cooldown: DEFAULT_REFRESH_COOLDOWN,
            removal_grace: REMOVAL_GRACE,
            reload: tokio::sync::Mutex::new(ReloadState::default()),
            reloads: AtomicU64::new(0),
            recheck: std::sync::Mutex::new(None),
        }
    }

    /// Loads the first set from `source` (an empty set if it fails: the service starts, and
    /// is not ready until a key appears). Skipped files are logged by the source.
    pub async fn load(source: impl KeySource) -> Self {
        let keys = Self::new(source, KeySet::empty());
        keys.reload_for(ReloadTrigger::Start).await;
        keys
    }

    /// Changes the minimum time between two unknown-kid re-reads (tests use a short one).
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Changes how long a key whose file does not parse stays trusted ([`REMOVAL_GRACE`]).
    pub fn with_removal_grace(mut self, grace: Duration) -> Self {
        self.removal_grace = grace;
        self
    }

    /// The live set. Cheap (no lock, no allocation); hold the guard only briefly and never
    /// across an `.await`.
    #[inline]
    pub fn current(&self) -> Guard<Arc<KeySet>> {
        self.current.load()
    }

    /// Number of completed reloads, for metrics and tests.
    pub fn reload_count(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// The source's description, for logs.
    pub fn source_description(&self) -> String {
        self.source.describe()
    }

    /// Replaces the live set (e.g. with a set built elsewhere). Whole-set swap: a new set,
    /// even with the same keys (the verified-token cache starts over).
    pub fn replace(&self, set: KeySet) {
        self.current.store(Arc::new(set));
    }

    /// Installs `set` unless the live set holds the same kids (a kid is its key's thumbprint,
    /// so the same kids are the same keys); answers whether it did. Keeping the set keeps the
    /// verified-token cache warm.
    pub fn update(&self, set: KeySet) -> bool {
        if self.current.load().same_kids(&set) {
            return false;
        }
        self.current.store(Arc::new(set));
        true
    }

    /// When the set must be re-read at the latest, because a key whose file does not parse is
    /// still trusted under its grace ([`REMOVAL_GRACE`]) and must be dropped once it ends (no
    /// file event will say so). Whoever drives the reloads ([`crate::watch`], a JWKS timer)
    /// re-reads then.
    pub fn recheck_at(&self) -> Option<Instant> {
        *self.recheck.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Re-reads the source now, ignoring the cooldown but single-flight with every other
    /// reload. The same as [`TrustedKeys::reload_for`] with [`ReloadTrigger::Manual`].
    pub async fn reload(&self) -> ReloadOutcome {
        self.reload_for(ReloadTrigger::Manual).await
    }

    /// Re-reads the source now because of `trigger` (a file watcher, a timer, SIGHUP),
    /// ignoring the cooldown but single-flight with every other reload. The reload is logged
    /// with `trigger` and the kids (see [`TrustedKeys`] for the levels).
    pub async fn reload_for(&self, trigger: ReloadTrigger) -> ReloadOutcome {
        let mut state = self.reload.lock().await;
        state.last_start = Some(Instant::now());
        self.reload_locked(&mut state, trigger).await
    }

    /// Called on a token whose `kid` is not in the live set: re-reads the source, at most
    /// once per cooldown, and returns whether `kid` is known afterwards.
    ///
    /// If a re-read started after this caller saw the miss, its result is used without
    /// another read (single flight). Otherwise the caller waits until the cooldown since the
    /// last re-read has passed and then re-reads, so a token signed with a key published a
    /// moment ago is accepted rather than refused early.
    pub async fn refresh_for_unknown_kid(&self, kid: &str) -> bool {
        let missed_at = Instant::now();
        if self.current().contains(kid) {
            return true;
        }
        let mut state = self.reload.lock().await;
        // A re-read that ran while we queued (in flight at our miss, or started after it)
        // may have brought the key: share it rather than read again.
        if self.current().contains(kid) {
            return true;
        }
        if matches!(state.last_start, Some(started) if started >= missed_at) {
            // That re-read started after our miss and did not find the kid: it is unknown.
            return false;
        }
        if let Some(started) = state.last_start {
            let next_allowed = started + self.cooldown;
            if Instant::now() < next_allowed {
                // Holding the lock while sleeping is deliberate: callers that queue behind
                // us share the read we are about to do.
                tokio::time::sleep_until(next_allowed.into()).await;
            }
        }
        state.last_start = Some(Instant::now());
        self.reload_locked(&mut state, ReloadTrigger::UnknownKid).await;
        self.current().contains(kid)
    }

    async fn reload_locked(
        &self,
        state: &mut ReloadState,
        trigger: ReloadTrigger,
    ) -> ReloadOutcome {
        let previous = self.current.load_full();
        let (outcome, problems) = match self.source.load().await {
            Ok(load) => self.install(&previous, load, state),
            Err(e) => (
                ReloadOutcome::KeptPrevious { reason: format!("{}: {e}", self.source.describe()) },
                Vec::new(),
            ),
        };
        // Warn when the problems change, not on every reload: an unknown-kid flood re-reads
        // once a second, and a stray file would otherwise be reported each time. A failure's
        // reason is part of what is compared, but `log_reload` prints it.
        let mut seen = problems.clone();
        if let ReloadOutcome::KeptPrevious { reason } = &outcome {
            seen.push(reason.clone());
        }
        let new_problems = seen != state.last_problems;
        if new_problems {
            for problem in &problems {
                log::warn!("{problem}");
            }
            if seen.is_empty() && !state.last_problems.is_empty() {
                log::info!("keys from {} read cleanly again", self.source.describe());
            }
            state.last_problems = seen;
        }
        self.log_reload(trigger, &previous, &outcome, new_problems);
        crate::metrics::record_reload(&outcome);
        self.reloads.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    /// One line per reload, naming the trigger and the kids (never key material). Info when
    /// the set changed, when it failed anew, or when an operator or the folder asked for it;
    /// debug for the unchanged results of timers and unknown kids, which an attacker or a
    /// steady timer can repeat every second or minute.
    fn log_reload(
        &self,
        trigger: ReloadTrigger,
        previous: &KeySet,
        outcome: &ReloadOutcome,
        new_problems: bool,
    ) {
        let routine = matches!(trigger, ReloadTrigger::UnknownKid | ReloadTrigger::Timer);
        let current = self.current.load();
        let kids = current.kids().join(", ");
        match outcome {
            ReloadOutcome::Loaded { keys, skipped } => {
                let skipped = match skipped.len() {
                    0 => String::new(),
                    n => format!(
                        "; skipped {n}: {}",
                        skipped.iter().map(|s| s.file.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                };
                if current.same_kids(previous) {
                    let level = if routine { log::Level::Debug } else { log::Level::Info };
                    log::log!(
                        level,
                        "key reload ({trigger}) ok, unchanged: {keys} key(s) [{kids}]{skipped}"
                    );
                } else {
                    let added: Vec<&str> =
                        current.kids().into_iter().filter(|k| !previous.contains(k)).collect();
                    let removed: Vec<&str> =
                        previous.kids().into_iter().filter(|k| !current.contains(k)).collect();
                    log::info!(
                        "key reload ({trigger}) ok: {keys} key(s) [{kids}]; added [{}], removed [{}]{skipped}",
                        added.join(", "),
                        removed.join(", ")
                    );
                }
            }
            ReloadOutcome::KeptPrevious { reason } => {
                let level = if new_problems { log::Level::Warn } else { log::Level::Debug };
                log::log!(
                    level,
                    "key reload ({trigger}) failed, keeping the last good set of {} key(s) [{kids}]: {reason}",
                    current.len()
                );
            }
        }
    }

    /// Installs a freshly loaded set. A key of the live set whose file is still there but does
    /// not parse now (most likely being rewritten in place) stays trusted for its removal grace
    /// ([`REMOVAL_GRACE`]) from the first load that found it so, then counts as removed; a key
    /// whose file is gone is dropped at once, and an empty load is "trust no key" unless the
    /// source says it is a failure. When the result holds the same keys from the same files
    /// as the live set, the live set stays (same `Arc`: the token cache stays warm). Returns
    /// the outcome and the warnings it calls for.
    fn install(
        &self,
        previous: &Arc<KeySet>,
        load: KeyLoad,
        state: &mut ReloadState,
    ) -> (ReloadOutcome, Vec<String>) {
        let KeyLoad { mut set, skipped } = load;
        let mut problems = Vec::new();
        let now = Instant::now();
        let mut held = HashMap::new();
        let mut recheck: Option<Instant> = None;
        for file in &skipped {
            problems.push(format!(
                "skipping key {} from {}: {}",
                file.file,
                self.source.describe(),
                file.reason
            ));
            let Some(kid) = previous.origins.get(&file.file) else { continue };
            let Some(key) = previous.keys.get(kid) else { continue };
            if set.contains(kid) {
                continue;
            }
            let since = state.missing_since.get(kid).copied().unwrap_or(now);
            let until = since + self.removal_grace;
            if now < until {
                problems.push(format!(
                    "keeping the previous key {kid} of {} until it reads again, for at most {} ms",
                    file.file,
                    self.removal_grace.as_millis()
                ));
                set.insert(Arc::clone(key), Some(file.file.clone()));
                held.insert(kid.clone(), since);
                recheck = Some(recheck.map_or(until, |r| r.min(until)));
            } else {
                problems.push(format!(
                    "{} has not read as a key for {} ms: key {kid} is no longer trusted",
                    file.file,
                    self.removal_grace.as_millis()
                ));
            }
        }
        state.missing_since = held;
        *self.recheck.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = recheck;
        if set.is_empty() && self.source.empty_is_failure() {
            let reason = format!("{} has no usable key", self.source.describe());
            return (ReloadOutcome::KeptPrevious { reason }, problems);
        }
        let keys = set.len();
        if !previous.same_as(&set) {
            self.current.store(Arc::new(set));
        }
        (ReloadOutcome::Loaded { keys, skipped }, problems)
    }
}

/// What the reload lock guards.
#[derive(Debug, Default)]
struct ReloadState {
    /// When the last re-read started (the cooldown counts from it).
    last_start: Option<Instant>,
    /// The warnings of the last re-read, so a persisting problem is logged once.
    last_problems: Vec<String>,
    /// Keys of the live set whose file does not parse, since when (see [`REMOVAL_GRACE`]).
    missing_since: HashMap<String, Instant>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::TestKey;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn load_dir_skips_garbage_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = TestKey::generate();
        key.write_public(dir.path());
        std::fs::write(dir.path().join("garbage.pem"), b"not a key").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        std::fs::write(dir.path().join(".tmp123.pem"), b"half").unwrap();

        let load = KeySet::load_dir(dir.path()).unwrap();
        assert_eq!(load.set.kids(), vec![key.kid.as_str()]);
        assert_eq!(load.skipped.len(), 1);
        assert_eq!(load.skipped[0].file, "garbage.pem");
    }

    #[test]
    fn a_missing_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(KeySet::load_dir(&dir.path().join("nope")).is_err());
    }

    #[tokio::test]
    async fn a_reload_that_finds_nothing_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().unwrap();
        let key = TestKey::generate();
        let file = key.write_public(dir.path());
        let keys = TrustedKeys::load(FolderSource::new(dir.path())).await;
        assert!(keys.current().contains(&key.kid));

        // The file is rewritten badly (half-written): its key stays.
        std::fs::write(&file, b"-----BEGIN PUBLIC KEY-----\nAAA").unwrap();
        keys.reload().await;
        assert!(keys.current().contains(&key.kid));

        // The folder disappears: the set stays.
        drop(dir);
        assert!(matches!(keys.reload().await, ReloadOutcome::KeptPrevious { .. }));
        assert!(keys.current().contains(&key.kid));
    }

    /// A source that counts its loads and serves whatever keys it is given.
    #[derive(Debug, Clone, Default)]
    struct Counting {
        loads: Arc<AtomicUsize>,
        keys: Arc<std::sync::Mutex<Vec<PublicKey>>>,
    }

    impl KeySource for Counting {
        fn load(&self) -> LoadFuture<'_> {
            Box::pin(async move {
                self.loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let keys = self.keys.lock().unwrap().clone();
                Ok(KeyLoad { set: KeySet::from_keys(keys), skipped: Vec::new() })
            })
        }
        fn describe(&self) -> String {
            "counting".into()
        }
    }

    #[tokio::test]
    async fn concurrent_requests_for_a_new_key_share_one_reread() {
        let source = Counting::default();
        let key = TestKey::generate();
        source.keys.lock().unwrap().push(key.public());
        let keys = Arc::new(TrustedKeys::new(source.clone(), KeySet::empty()));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let keys = Arc::clone(&keys);
                let kid = key.kid.clone();
                tokio::spawn(async move { keys.refresh_for_unknown_kid(&kid).await })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(source.loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_flood_of_unknown_kids_rereads_at_most_once_per_cooldown() {
        let source = Counting::default();
        let cooldown = Duration::from_millis(100);
        let keys =
            Arc::new(TrustedKeys::new(source.clone(), KeySet::empty()).with_cooldown(cooldown));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let keys = Arc::clone(&keys);
            tasks.push(tokio::spawn(async move {
                keys.refresh_for_unknown_kid(&format!("kid{i}")).await
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for t in tasks {
            assert!(!t.await.unwrap());
        }
        let allowed = (start.elapsed().as_millis() / cooldown.as_millis()) as usize + 1;
        let loads = source.loads.load(Ordering::SeqCst);
        assert!(loads <= allowed, "{loads} re-reads in {:?}", start.elapsed());
    }

    #[tokio::test]
    async fn an_unknown_kid_during_the_cooldown_waits_for_the_next_reread() {
        let source = Counting::default();
        let keys = TrustedKeys::new(source.clone(), KeySet::empty())
            .with_cooldown(Duration::from_millis(300));
        assert!(!keys.refresh_for_unknown_kid("a").await);
        let first_done = Instant::now();

        // The key appears right after the first re-read; a request for it must not be
        // refused early: it waits out the cooldown and the second re-read finds it.
        let key = TestKey::generate();
        source.keys.lock().unwrap().push(key.public());
        assert!(keys.refresh_for_unknown_kid(&key.kid).await);
        assert!(first_done.elapsed() >= Duration::from_millis(250));
        assert_eq!(source.loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_removed_or_broken_key_file_stops_being_trusted_once_the_grace_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (TestKey::generate(), TestKey::generate());
        let (file_a, file_b) = (a.write_public(dir.path()), b.write_public(dir.path()));
        let grace = Duration::from_millis(300);
        let keys = TrustedKeys::load(FolderSource::new(dir.path())).await.with_removal_grace(grace);
        assert_eq!(keys.current().len(), 2);
        assert_eq!(keys.recheck_at(), None);

        // Removed: no longer trusted, at once.
        std::fs::remove_file(&file_a).unwrap();
        keys.reload().await;
        assert_eq!(keys.current().kids(), vec![b.kid.as_str()]);
        assert_eq!(keys.recheck_at(), None);

        // A file that stops parsing, the only one left: trusted during the grace (a rewrite in
        // place may be under way), asking for a re-read when it ends; then no key at all.
        std::fs::write(&file_b, b"-----BEGIN PUBLIC KEY-----\nAAA").unwrap();
        let broken_at = Instant::now();
        keys.reload().await;
        assert!(keys.current().contains(&b.kid));
        let recheck = keys.recheck_at().expect("a re-read when the grace ends");
        assert!(recheck > broken_at && recheck <= Instant::now() + grace, "{recheck:?}");
        keys.reload().await;
        assert!(keys.current().contains(&b.kid), "the grace counts from the first miss");
        tokio::time::sleep(grace).await;
        keys.reload().await;
        assert!(keys.current().is_empty(), "a folder with no usable key trusts no key");
        assert_eq!(keys.recheck_at(), None);

        // A file rewritten within the grace keeps its key throughout.
        let c = TestKey::generate();
        let file_c = c.write_public(dir.path());
        keys.reload().await;
        std::fs::write(&file_c, &c.public_pem[..40]).unwrap();
        keys.reload().await;
        std::fs::write(&file_c, &c.public_pem).unwrap();
        tokio::time::sleep(grace).await;
        keys.reload().await;
        assert_eq!(keys.current().kids(), vec![c.kid.as_str()]);
    }

    #[tokio::test]
    async fn an_unchanged_folder_and_unknown_kid_rereads_keep_the_same_set() {
        let dir = tempfile::tempdir().unwrap();
        let key = TestKey::generate();
        key.write_public(dir.path());
        let keys = TrustedKeys::load(FolderSource::new(dir.path()))
            .await
            .with_cooldown(Duration::from_millis(20));
        let before = keys.current().clone();
        keys.reload().await;
        for i in 0..5 {
            assert!(!keys.refresh_for_unknown_kid(&format!("random-{i}")).await);
        }
        assert!(keys.reload_count() >= 6);
        assert!(Arc::ptr_eq(&before, &keys.current()), "a re-read that found nothing new");
        // A real change installs a new set.
        TestKey::generate().write_public(dir.path());
        keys.reload().await;
        assert!(!Arc::ptr_eq(&before, &keys.current()));
        assert_eq!(keys.current().len(), 2);
    }

    #[tokio::test]
    async fn an_empty_answer_of_a_source_that_calls_it_a_failure_keeps_the_last_good_set() {
        #[derive(Debug)]
        struct Jwks;
        impl KeySource for Jwks {
            fn load(&self) -> LoadFuture<'_> {
                Box::pin(async { Ok(KeyLoad::default()) })
            }
            fn describe(&self) -> String {
                "jwks".into()
            }
            fn empty_is_failure(&self) -> bool {
                true
            }
        }
        let key = TestKey::generate();
        let keys = TrustedKeys::new(Jwks, KeySet::from_keys([key.public()]));
        assert!(matches!(keys.reload().await, ReloadOutcome::KeptPrevious { .. }));
        assert!(keys.current().contains(&key.kid));
    }
}
