//! Picking up key changes without a restart.
//!
//! Three triggers re-read `keys/`: a file-system watch on the folder (`notify`; changes are
//! coalesced for [`DEBOUNCE`]), a poll every [`POLL_INTERVAL`] that compares the files' size,
//! mtime and inode (for mounts where events do not arrive), and SIGHUP. A reload builds a new
//! [`KeyRing`] (signer + JWKS) and a new verifier [`KeySet`] and swaps both whole; a reload that
//! fails (state unreadable, active key missing or garbage) keeps the last good ring and logs a
//! warning naming the file. Every reload is logged, with the active kid; never key material.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use access_token::{KeySet, Keys};
use arc_swap::ArcSwap;

use crate::keys::{KeyRing, KeyStore};

/// The poll fallback: a change is seen at most this long after it happened.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Quiet time after a file-system event before re-reading (one `keys` command writes up to
/// three files).
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// What started a reload (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A file-system event.
    Watch,
    /// The poll saw a change.
    Poll,
    /// SIGHUP.
    Signal,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Watch => "file change",
            Self::Poll => "poll",
            Self::Signal => "SIGHUP",
        })
    }
}

/// Re-reads the key store into the live signer and verifier keys.
#[derive(Debug, Clone)]
pub struct Reloader {
    store: KeyStore,
    ring: Arc<ArcSwap<KeyRing>>,
    verifier_keys: Arc<Keys>,
}

impl Reloader {
    /// A reloader for `store` feeding the server's `ring` and `verifier_keys`.
    pub fn new(store: KeyStore, ring: Arc<ArcSwap<KeyRing>>, verifier_keys: Arc<Keys>) -> Self {
        Self { store, ring, verifier_keys }
    }

    /// Re-reads the store now. Returns whether a new ring is live; on failure the last good
    /// ring stays and a warning is logged.
    pub async fn reload(&self, trigger: Trigger) -> bool {
        let previous = self.ring.load_full();
        let store = self.store.clone();
        let last_good = Arc::clone(&previous);
        let loaded = tokio::task::spawn_blocking(move || store.load_with(Some(&last_good))).await;
        let keeping = format!("keeping the last good keys (active {})", previous.signer().kid());
        let loaded = match loaded {
            Ok(Ok(Some(loaded))) => loaded,
            Ok(Ok(None)) => {
                log::warn!(
                    "key reload ({trigger}) failed: {} names no active key; {keeping}",
                    self.store.state_path().display()
                );
                return false;
            }
            Ok(Err(e)) => {
                log::warn!("key reload ({trigger}) failed: {e}; {keeping}");
                return false;
            }
            Err(_) => {
                log::warn!("key reload ({trigger}) failed: the load task died; {keeping}");
                return false;
            }
        };
        for warning in &loaded.warnings {
            log::warn!("key reload ({trigger}): {warning}");
        }
        let ring = loaded.ring;
        if ring.signer().kid() != previous.signer().kid() {
            log::info!(
                "signing key changed: now {}, was {}",
                ring.signer().kid(),
                previous.signer().kid()
            );
        }
        log::info!("key reload ({trigger}) ok: {}", ring.summary());
        // The verifier first: it then knows every kid the new signer can produce.
        self.verifier_keys.replace(KeySet::from_keys(ring.public_keys().iter().cloned()));
        self.ring.store(Arc::new(ring));
        true
    }

    /// Runs the watch, the poll and the SIGHUP handler on the current tokio runtime until it
    /// shuts down.
    pub fn spawn(self) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let watcher = watch(self.store.dir(), tx.clone());
        tokio::spawn(async move {
            // Both live as long as the task: dropping the watcher stops the events, and `tx`
            // keeps `rx` open when there is no watcher.
            let _watcher_and_sender = (&watcher, tx);
            let mut hup = hangup();
            let mut tick = tokio::time::interval(POLL_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate; the ring was just loaded
            // Empty, so the first poll re-reads once: a change made between the start-up
            // load and this point is not missed.
            let mut seen = Vec::new();
            log::info!(
                "watching {} for key changes ({}poll every {}s, SIGHUP reloads)",
                self.store.dir().display(),
                if watcher.is_some() { "file events, " } else { "" },
                POLL_INTERVAL.as_secs()
            );
            loop {
                let trigger = tokio::select! {
                    Some(()) = rx.recv() => {
                        tokio::time::sleep(DEBOUNCE).await;
                        while rx.try_recv().is_ok() {}
                        Trigger::Watch
                    }
                    Some(()) = next_hangup(&mut hup) => {
                        log::info!("SIGHUP: reloading the keys");
                        Trigger::Signal
                    }
                    _ = tick.tick() => {
                        let now = self.fingerprint().await;
                        if now == seen {
                            continue;
                        }
                        Trigger::Poll
                    }
                };
                // Taken before reading, so a change made during the reload is seen next time.
                seen = self.fingerprint().await;
                self.reload(trigger).await;
            }
        });
    }

    async fn fingerprint(&self) -> Vec<String> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || fingerprint(&store)).await.unwrap_or_default()
    }
}

/// Size, mtime and inode of `state.json` and of every file in `private/` and `public/`
/// (hidden files aside): any write through a rename changes it.
fn fingerprint(store: &KeyStore) -> Vec<String> {
    let mut out = Vec::new();
    for dir in [store.private_dir(), store.public_dir()] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            out.push(format!("{}: unreadable", dir.display()));
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let line = match entry.metadata() {
                Ok(meta) => {
                    let mtime = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_nanos())
                        .unwrap_or_default();
                    #[cfg(unix)]
                    let ino = std::os::unix::fs::MetadataExt::ino(&meta);
                    #[cfg(not(unix))]
                    let ino = 0;
                    format!("{}/{name} {} {mtime} {ino}", dir.display(), meta.len())
                }
                Err(_) => format!("{}/{name} ?", dir.display()),
            };
            out.push(line);
        }
    }
    out.sort();
    out
}

/// Watches `dir` recursively; every relevant event sends on `tx` (coalesced: capacity 1).
/// `None` (and a warning) when the platform watcher cannot start: the poll still runs.
fn watch(dir: &Path, tx: tokio::sync::mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(event) if relevant(&event) => {
            // Full means a reload is already pending; closed means the server is stopping.
            let _ = tx.try_send(());
        }
        Ok(_) => {}
        Err(e) => log::debug!("key folder watch: {e}"),
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(e) => {
            log::warn!("cannot watch {} ({e}); relying on the 1 s poll", dir.display());
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, notify::RecursiveMode::Recursive) {
        log::warn!("cannot watch {} ({e}); relying on the 1 s poll", dir.display());
        return None;
    }
    Some(watcher)
}

/// A change to a file that is not hidden (temp files and the lock file are).
fn relevant(event: &notify::Event) -> bool {
    !matches!(event.kind, notify::EventKind::Access(_))
        && event.paths.iter().any(|path| {
            path.file_name().is_some_and(|name| !name.to_string_lossy().starts_with('.'))
        })
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup() -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(hup) => Some(hup),
        Err(e) => {
            log::warn!("cannot listen for SIGHUP ({e}); keys reload on file changes only");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup() -> Hangup {}

/// The next SIGHUP; never resolves without a handler.
#[cfg(unix)]
async fn next_hangup(hup: &mut Hangup) -> Option<()> {
    match hup {
        Some(hup) => hup.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_hup: &mut Hangup) -> Option<()> {
    std::future::pending().await
}
