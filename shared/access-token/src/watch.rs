//! Keeping a live [`Keys`] in step with a keys folder without a restart.
//!
//! Three triggers re-read the folder ([`spawn_folder_reload`]):
//! - a file-system watch (`notify`): events are coalesced for [`DEBOUNCE`], then the folder is
//!   re-read, so a new key is live within a few milliseconds;
//! - a poll every [`POLL_INTERVAL`] comparing the files' size, times, mode and inode, for mounts
//!   where events do not arrive (network file systems, some container volumes) and to re-arm
//!   the watch when the folder is created or replaced; a change is seen at most this late;
//! - SIGHUP ([`Hangup`]).
//!
//! A re-read goes through [`Keys::reload_for`], so it is single-flight with the unknown-kid
//! re-reads, swaps the set whole, keeps the last good set when the folder is momentarily
//! broken, and logs one line naming the trigger and the kids.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::keyset::{Keys, ReloadTrigger};

/// The poll fallback: a change the watch misses is seen at most this long after it happened.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Quiet time after a file-system event before re-reading: writers often produce a burst of
/// events (create, write, rename) for one change.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// Watches `dir` and re-reads it into `keys` on every change (see the module docs), on the
/// current tokio runtime, until the runtime shuts down or the handle is aborted.
pub fn spawn_folder_reload(keys: Arc<Keys>, dir: impl Into<PathBuf>) -> JoinHandle<()> {
    spawn_folder_reload_every(keys, dir, POLL_INTERVAL)
}

/// [`spawn_folder_reload`] with another poll interval.
pub fn spawn_folder_reload_every(
    keys: Arc<Keys>,
    dir: impl Into<PathBuf>,
    poll: Duration,
) -> JoinHandle<()> {
    let dir = dir.into();
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let mut watch = FolderWatch::new(tx);
        let mut seen = fingerprint(&dir).await;
        watch.arm(&dir, &seen);
        log::info!(
            "watching {} for key changes ({}poll every {}ms, SIGHUP reloads)",
            dir.display(),
            if watch.is_armed() { "file events, " } else { "" },
            poll.as_millis()
        );
        let mut hup = Hangup::new();
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        // The start-up read happened before `seen` was taken: re-read once, so a change made
        // in between is not missed.
        keys.reload_for(ReloadTrigger::Poll).await;
        loop {
            let trigger = tokio::select! {
                Some(()) = rx.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    ReloadTrigger::Watch
                }
                () = hup.recv() => {
                    log::info!("SIGHUP: reloading the public keys from {}", dir.display());
                    ReloadTrigger::Signal
                }
                _ = tick.tick() => {
                    let now = fingerprint(&dir).await;
                    watch.arm(&dir, &now);
                    if now == seen {
                        continue;
                    }
                    ReloadTrigger::Poll
                }
            };
            // Taken before reading, so a change made during the read is seen next time.
            seen = fingerprint(&dir).await;
            keys.reload_for(trigger).await;
        }
    })
}

/// The `notify` watcher on the folder, re-armed when the folder appears or is replaced.
struct FolderWatch {
    tx: mpsc::Sender<()>,
    watcher: Option<notify::RecommendedWatcher>,
    /// The folder identity the watch is on (`None`: not watching).
    armed_on: Option<FolderId>,
    /// Whether "cannot watch" was already logged (the poll retries every second).
    warned: bool,
}

impl FolderWatch {
    fn new(tx: mpsc::Sender<()>) -> Self {
        Self { tx, watcher: None, armed_on: None, warned: false }
    }

    fn is_armed(&self) -> bool {
        self.armed_on.is_some()
    }

    /// Makes sure the watch is on the folder `print` describes: a folder that did not exist
    /// or was replaced (a new inode) gets a new watch; a missing one drops it.
    fn arm(&mut self, dir: &Path, print: &Fingerprint) {
        let Some(id) = print.folder else {
            if self.armed_on.take().is_some() {
                log::warn!("{} is gone; polling until it is back", dir.display());
            }
            return;
        };
        if self.armed_on == Some(id) {
            return;
        }
        use notify::Watcher as _;
        if self.watcher.is_none() {
            let tx = self.tx.clone();
            let handler = move |event: notify::Result<notify::Event>| match event {
                Ok(event) if relevant(&event) => {
                    // Full means a reload is already pending; closed means we are stopping.
                    let _ = tx.try_send(());
                }
                Ok(_) => {}
                Err(e) => log::debug!("key folder watch: {e}"),
            };
            match notify::recommended_watcher(handler) {
                Ok(watcher) => self.watcher = Some(watcher),
                Err(e) => {
                    self.warn_once(dir, &e);
                    return;
                }
            }
        }
        let Some(watcher) = self.watcher.as_mut() else { return };
        // The old watch (if any) is on an inode that is no longer the folder.
        let _ = watcher.unwatch(dir);
        match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => {
                if self.armed_on.is_none() && self.warned {
                    log::info!("watching {} for key changes again", dir.display());
                }
                self.armed_on = Some(id);
                self.warned = false;
            }
            Err(e) => self.warn_once(dir, &e),
        }
    }

    fn warn_once(&mut self, dir: &Path, e: &notify::Error) {
        if !self.warned {
            log::warn!("cannot watch {} ({e}); relying on the poll", dir.display());
            self.warned = true;
        }
    }
}

/// Whether an event can change the keys. Reads (our own re-reads open every file) cannot, and
/// reacting to them would re-read forever.
fn relevant(event: &notify::Event) -> bool {
    !matches!(event.kind, notify::EventKind::Access(_))
}

/// Device and inode of the folder (zero on platforms without them).
type FolderId = (u64, u64);

/// What the poll compares: the folder's identity and, per file, its name, size, times, mode
/// and inode. Any write, rename, `chmod` or symlink swap changes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Fingerprint {
    folder: Option<FolderId>,
    files: Vec<String>,
}

async fn fingerprint(dir: &Path) -> Fingerprint {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || fingerprint_now(&dir)).await.unwrap_or_default()
}

fn fingerprint_now(dir: &Path) -> Fingerprint {
    let Ok(folder) = std::fs::metadata(dir) else { return Fingerprint::default() };
    let Ok(entries) = std::fs::read_dir(dir) else {
        // Unreadable: keep the identity so the watch stays, and note the state.
        return Fingerprint { folder: Some(id_of(&folder)), files: vec!["<unreadable>".into()] };
    };
    let mut files: Vec<String> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Hidden names are temporaries (and Kubernetes' `..data`, which the symlinks
            // below resolve through).
            if name.starts_with('.') {
                return None;
            }
            // Follow symlinks: mounted secrets are symlinks whose target changes.
            let path = entry.path();
            let line = match std::fs::metadata(&path).or_else(|_| std::fs::symlink_metadata(&path))
            {
                Ok(meta) => format!("{name} {}", describe(&meta)),
                Err(_) => format!("{name} ?"),
            };
            Some(line)
        })
        .collect();
    files.sort();
    Fingerprint { folder: Some(id_of(&folder)), files }
}

#[cfg(unix)]
fn describe(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt as _;
    format!(
        "{} {}.{} {}.{} {:o} {}:{}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
        meta.mode(),
        meta.dev(),
        meta.ino()
    )
}

#[cfg(not(unix))]
fn describe(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{} {mtime} {}", meta.len(), meta.permissions().readonly())
}

#[cfg(unix)]
fn id_of(meta: &std::fs::Metadata) -> FolderId {
    use std::os::unix::fs::MetadataExt as _;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn id_of(_meta: &std::fs::Metadata) -> FolderId {
    (0, 0)
}

/// SIGHUP as a stream that never ends; pending forever where it cannot be had (not Unix, or
/// the handler could not be installed: that is logged once).
#[derive(Debug)]
pub struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Default for Hangup {
    fn default() -> Self {
        Self::new()
    }
}

impl Hangup {
    /// Installs the handler (on the current tokio runtime).
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::hangup()) {
                Ok(signal) => Self { signal: Some(signal) },
                Err(e) => {
                    log::warn!("cannot listen for SIGHUP ({e}); keys reload without it");
                    Self { signal: None }
                }
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next SIGHUP.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut()
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyset::DirSource;
    use crate::test_keys::TestKey;
    use std::time::Instant;

    async fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) -> Duration {
        let started = Instant::now();
        while !ok() {
            assert!(started.elapsed() < within, "{what}: not within {within:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        started.elapsed()
    }

    #[tokio::test]
    async fn a_new_key_file_is_live_well_within_a_second_without_a_request() {
        let dir = tempfile::tempdir().unwrap();
        TestKey::generate().write_public(dir.path());
        let keys = Arc::new(Keys::load(DirSource::new(dir.path())).await);
        // A long poll: only the watch can be this fast.
        let task =
            spawn_folder_reload_every(Arc::clone(&keys), dir.path(), Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(200)).await;

        let key = TestKey::generate();
        key.write_public(dir.path());
        let took =
            wait_until("the watch", Duration::from_secs(1), || keys.current().contains(&key.kid))
                .await;
        assert!(took < Duration::from_millis(900), "{took:?}");
        task.abort();
    }

    #[tokio::test]
    async fn the_poll_finds_a_change_when_no_event_arrives() {
        // The folder does not exist yet, so nothing can be watched at first.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("public");
        let keys = Arc::new(Keys::load(DirSource::new(&dir)).await);
        let task = spawn_folder_reload_every(Arc::clone(&keys), &dir, Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(100)).await;

        std::fs::create_dir(&dir).unwrap();
        let key = TestKey::generate();
        key.write_public(&dir);
        wait_until("the poll", Duration::from_secs(2), || keys.current().contains(&key.kid)).await;

        // Once the folder exists the watch is armed too: a second key is fast.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = TestKey::generate();
        second.write_public(&dir);
        wait_until("the watch", Duration::from_secs(2), || keys.current().contains(&second.kid))
            .await;
        task.abort();
    }

    #[tokio::test]
    async fn reading_the_folder_does_not_trigger_another_read() {
        let dir = tempfile::tempdir().unwrap();
        TestKey::generate().write_public(dir.path());
        let keys = Arc::new(Keys::load(DirSource::new(dir.path())).await);
        let task =
            spawn_folder_reload_every(Arc::clone(&keys), dir.path(), Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let settled = keys.reload_count();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(keys.reload_count(), settled, "the watch re-reads its own reads");

        // One change is one re-read (the burst of events is coalesced).
        TestKey::generate().write_public(dir.path());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(keys.reload_count(), settled + 1);
        task.abort();
    }

    #[tokio::test]
    async fn a_garbage_file_in_the_watched_folder_keeps_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let key = TestKey::generate();
        key.write_public(dir.path());
        let keys = Arc::new(Keys::load(DirSource::new(dir.path())).await);
        let task =
            spawn_folder_reload_every(Arc::clone(&keys), dir.path(), Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = keys.reload_count();

        std::fs::write(dir.path().join("garbage.pem"), b"-----BEGIN PUBLIC KEY-----\nxx").unwrap();
        wait_until("a re-read", Duration::from_secs(1), || keys.reload_count() > before).await;
        assert_eq!(keys.current().kids(), vec![key.kid.as_str()]);
        task.abort();
    }
}
