//! "This folder changed": a watcher that calls back whenever a folder's content may have
//! changed, and [`spawn_folder_reload`], which keeps a live [`TrustedKeys`] in step with a keys folder
//! through it. The auth server's signing keys subscribe to the same watcher ([`spawn_watch`]).
//!
//! Three triggers call back:
//! - a file-system watch (`notify`): events are coalesced for [`DEBOUNCE`], so a writer's burst
//!   (create, write, rename) is one call, and a change is seen within milliseconds;
//! - a poll every [`POLL_INTERVAL`] comparing a fingerprint of the folder (per entry: name,
//!   size, mtime, ctime, mode, device and inode, symlinks followed), for mounts where events do
//!   not arrive (network file systems, some container volumes); it also re-arms the watch when
//!   the folder appears or is replaced (a new inode), so a change is seen at most this late;
//! - SIGHUP ([`Hangup`]).
//!
//! Kubernetes secret and config-map mounts are covered: their files are symlinks through the
//! hidden `..data` link, which the kubelet swaps atomically. Hidden names (editors' and atomic
//! writers' temporaries, lock files) are left out of the fingerprint and their events ignored,
//! except `..data`, whose swap is the change; the symlinks are followed, so the fingerprint of
//! every file changes with it.
//!
//! A callback runs to completion before the next one starts; the fingerprint is taken before
//! it runs, so a change made during a call is seen by the next poll.

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::keyset::{ReloadTrigger, TrustedKeys};

/// The poll fallback: a change the watch misses is seen at most this long after it happened.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Quiet time after a file-system event before calling back: writers produce a burst of events
/// for one change (a `keys` command writes up to three files, each through a rename).
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// What a watch looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// How often the poll compares fingerprints.
    pub poll: Duration,
    /// Whether the folder's direct subfolders are watched too (the auth server's `keys/`, with
    /// `private/` and `public/`); otherwise only the folder's own entries.
    pub subfolders: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self { poll: POLL_INTERVAL, subfolders: false }
    }
}

impl WatchOptions {
    /// Watches the direct subfolders too.
    pub fn with_subfolders(mut self) -> Self {
        self.subfolders = true;
        self
    }

    /// Polls every `poll` instead of [`POLL_INTERVAL`].
    pub fn poll_every(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }
}

/// Watches `dir` and re-reads it into `keys` on every change (see the module docs), on the
/// current tokio runtime, until the runtime shuts down or the handle is aborted.
pub fn spawn_folder_reload(keys: Arc<TrustedKeys>, dir: impl Into<PathBuf>) -> JoinHandle<()> {
    spawn_folder_reload_every(keys, dir, POLL_INTERVAL)
}

/// [`spawn_folder_reload`] with another poll interval.
pub fn spawn_folder_reload_every(
    keys: Arc<TrustedKeys>,
    dir: impl Into<PathBuf>,
    poll: Duration,
) -> JoinHandle<()> {
    spawn_watch(dir, WatchOptions::default().poll_every(poll), move |trigger| {
        let keys = Arc::clone(&keys);
        async move {
            keys.reload_for(trigger).await;
            // A key kept under its removal grace is dropped by a re-read when the grace ends.
            keys.recheck_at()
        }
    })
}

/// Calls `on_change` with what noticed it ([`ReloadTrigger::Watch`], [`ReloadTrigger::Poll`] or
/// [`ReloadTrigger::Signal`]) whenever `dir` may have changed, and once at the start (a change
/// made between the caller's first read and the watch being armed is not missed). A call may
/// answer a time by which it wants to be called again even if nothing changes (e.g. when a
/// grace ends): it is then called with [`ReloadTrigger::Timer`]. Runs on the current tokio
/// runtime until it shuts down or the handle is aborted.
pub fn spawn_watch<F, Fut>(
    dir: impl Into<PathBuf>,
    options: WatchOptions,
    mut on_change: F,
) -> JoinHandle<()>
where
    F: FnMut(ReloadTrigger) -> Fut + Send + 'static,
    Fut: Future<Output = Option<Instant>> + Send,
{
    let dir = dir.into();
    tokio::spawn(async move {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let mut watch = FolderWatch::new(tx, options.subfolders);
        let mut seen = fingerprint(&dir, options.subfolders).await;
        watch.arm(&dir, &seen);
        log::info!(
            "watching {} for changes ({}poll every {}ms, SIGHUP re-reads)",
            dir.display(),
            if watch.is_armed() { "file events, " } else { "" },
            options.poll.as_millis()
        );
        let mut hup = Hangup::new();
        let mut tick = tokio::time::interval(options.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        let mut again = on_change(ReloadTrigger::Poll).await;
        loop {
            let timer = async {
                match again {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let trigger = tokio::select! {
                () = timer => ReloadTrigger::Timer,
                Some(()) = rx.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    ReloadTrigger::Watch
                }
                () = hup.recv() => {
                    log::info!("SIGHUP: re-reading {}", dir.display());
                    ReloadTrigger::Signal
                }
                _ = tick.tick() => {
                    let now = fingerprint(&dir, options.subfolders).await;
                    watch.arm(&dir, &now);
                    if now == seen {
                        continue;
                    }
                    ReloadTrigger::Poll
                }
            };
            // Taken before the call, so a change made during it is seen next time.
            seen = fingerprint(&dir, options.subfolders).await;
            again = on_change(trigger).await;
        }
    })
}

/// The `notify` watcher on the folder, re-armed when the folder appears or is replaced.
struct FolderWatch {
    tx: mpsc::Sender<()>,
    /// Watch the subfolders too.
    recursive: bool,
    watcher: Option<notify::RecommendedWatcher>,
    /// The folder identity the watch is on (`None`: not watching).
    armed_on: Option<FolderId>,
    /// Whether "cannot watch" was already logged (the poll retries every second).
    warned: bool,
}

impl FolderWatch {
    fn new(tx: mpsc::Sender<()>, recursive: bool) -> Self {
        Self { tx, recursive, watcher: None, armed_on: None, warned: false }
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
                Err(e) => log::debug!("folder watch: {e}"),
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
        let mode = if self.recursive {
            notify::RecursiveMode::Recursive
        } else {
            notify::RecursiveMode::NonRecursive
        };
        match watcher.watch(dir, mode) {
            Ok(()) => {
                if self.armed_on.is_none() && self.warned {
                    log::info!("watching {} for changes again", dir.display());
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

/// Whether an event can change what the folder holds. Reads (our own re-reads open every
/// file) cannot, and reacting to them would re-read forever; nor can changes to hidden names
/// alone (temporaries before their rename, lock files), except Kubernetes' `..data` swap.
fn relevant(event: &notify::Event) -> bool {
    !matches!(event.kind, notify::EventKind::Access(_))
        && event.paths.iter().any(|path| path.file_name().is_none_or(|name| !is_hidden(name)))
}

/// A name the watch leaves out: it starts with a dot, and is not `..data`.
fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b".") && name != KUBERNETES_DATA_LINK
}

/// The symlink a Kubernetes secret or config-map mount swaps to publish a new version.
const KUBERNETES_DATA_LINK: &str = "..data";

/// Device and inode of the folder (zero on platforms without them).
type FolderId = (u64, u64);

/// What the poll compares: the folder's identity and, per file, its name, size, times, mode
/// and inode. Any write, rename, `chmod` or symlink swap changes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Fingerprint {
    folder: Option<FolderId>,
    files: Vec<String>,
}

async fn fingerprint(dir: &Path, subfolders: bool) -> Fingerprint {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || fingerprint_now(&dir, subfolders)).await.unwrap_or_default()
}

fn fingerprint_now(dir: &Path, subfolders: bool) -> Fingerprint {
    let Ok(folder) = std::fs::metadata(dir) else { return Fingerprint::default() };
    let mut files = Vec::new();
    describe_entries(dir, "", subfolders, &mut files);
    files.sort();
    Fingerprint { folder: Some(id_of(&folder)), files }
}

/// One line per entry of `dir` (names prefixed with `prefix`), and those of its subfolders
/// when `subfolders`. Hidden names are temporaries (and `..data`, which the symlinks beside it
/// resolve through, so they change with it).
fn describe_entries(dir: &Path, prefix: &str, subfolders: bool, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        // Unreadable: keep the identity so the watch stays, and note the state.
        out.push(format!("{prefix}<unreadable>"));
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let name = format!("{prefix}{}", name.to_string_lossy());
        // Follow symlinks: mounted secrets are symlinks whose target changes.
        let path = entry.path();
        match std::fs::metadata(&path).or_else(|_| std::fs::symlink_metadata(&path)) {
            // A folder by identity only: its times change with every temporary in it, and
            // its entries are described one by one.
            Ok(meta) if meta.is_dir() => {
                let (dev, ino) = id_of(&meta);
                out.push(format!("{name}/ {dev}:{ino}"));
                if subfolders {
                    describe_entries(&path, &format!("{name}/"), false, out);
                }
            }
            Ok(meta) => out.push(format!("{name} {}", describe(&meta))),
            Err(_) => out.push(format!("{name} ?")),
        }
    }
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
                    log::warn!("cannot listen for SIGHUP ({e}); folders are re-read without it");
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
    use crate::TrustedKeys;
    use crate::keyset::FolderSource;
    use crate::test_keys::TestKey;

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
        let keys = Arc::new(TrustedKeys::load(FolderSource::new(dir.path())).await);
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
        let keys = Arc::new(TrustedKeys::load(FolderSource::new(&dir)).await);
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
        let keys = Arc::new(TrustedKeys::load(FolderSource::new(dir.path())).await);
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
        let keys = Arc::new(TrustedKeys::load(FolderSource::new(dir.path())).await);
        let task =
            spawn_folder_reload_every(Arc::clone(&keys), dir.path(), Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = keys.reload_count();

        std::fs::write(dir.path().join("garbage.pem"), b"-----BEGIN PUBLIC KEY-----\nxx").unwrap();
        wait_until("a re-read", Duration::from_secs(1), || keys.reload_count() > before).await;
        assert_eq!(keys.current().kids(), vec![key.kid.as_str()]);
        task.abort();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_kubernetes_style_data_link_swap_is_seen_by_the_watch() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (TestKey::generate(), TestKey::generate());
        // The kubelet's layout: a hidden version folder, `..data` pointing at it, and the
        // visible names as symlinks through `..data`.
        let v1 = dir.path().join("..v1");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(v1.join("signing.pem"), &first.public_pem).unwrap();
        symlink("..v1", dir.path().join("..data")).unwrap();
        symlink("..data/signing.pem", dir.path().join("signing.pem")).unwrap();
        let keys = Arc::new(TrustedKeys::load(FolderSource::new(dir.path())).await);
        assert_eq!(keys.current().kids(), vec![first.kid.as_str()]);
        // A long poll: only the watch can see the swap this fast.
        let task =
            spawn_folder_reload_every(Arc::clone(&keys), dir.path(), Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(300)).await;

        // The kubelet's update: a new version folder, then `..data` swapped by a rename.
        let v2 = dir.path().join("..v2");
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v2.join("signing.pem"), &second.public_pem).unwrap();
        symlink("..v2", dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        wait_until("the ..data swap", Duration::from_secs(2), || {
            keys.current().contains(&second.kid)
        })
        .await;
        task.abort();
    }

    #[tokio::test]
    async fn the_poll_sees_subfolders_and_a_mode_change() {
        let dir = tempfile::tempdir().unwrap();
        let public = dir.path().join("public");
        std::fs::create_dir(&public).unwrap();
        let file = public.join("a.pem");
        std::fs::write(&file, b"x").unwrap();
        let print = |subfolders| fingerprint_now(dir.path(), subfolders);
        let in_sub = |p: &Fingerprint| p.files.iter().any(|l| l.starts_with("public/a.pem "));
        assert!(!in_sub(&print(false)), "only the folder's own entries");
        assert!(in_sub(&print(true)));
        let deep = print(true);
        std::fs::write(public.join("b.pem"), b"y").unwrap();
        assert_ne!(print(true), deep, "a file added in a subfolder");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let before = print(true);
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert_ne!(print(true), before, "a chmod changes mode and ctime");
        }
        // Hidden temporaries are not part of it.
        let before = print(true);
        std::fs::write(public.join(".a.pem.tmp-1"), b"half").unwrap();
        assert_eq!(print(true), before);
    }

    #[tokio::test]
    async fn subscribers_are_called_once_per_change_with_what_noticed_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("private")).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = spawn_watch(
            dir.path(),
            WatchOptions::default().with_subfolders().poll_every(Duration::from_secs(60)),
            move |trigger| {
                let _ = tx.send(trigger);
                async { None }
            },
        );
        let next = async |rx: &mut mpsc::UnboundedReceiver<ReloadTrigger>| {
            tokio::time::timeout(Duration::from_secs(2), rx.recv()).await.ok().flatten()
        };
        assert_eq!(next(&mut rx).await, Some(ReloadTrigger::Poll), "the start-up call");
        // A write through a hidden temporary and a rename, in a subfolder: one call.
        let tmp = dir.path().join("private").join(".state.json.tmp-1");
        std::fs::write(&tmp, b"{}").unwrap();
        std::fs::rename(&tmp, dir.path().join("private").join("state.json")).unwrap();
        assert_eq!(next(&mut rx).await, Some(ReloadTrigger::Watch));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rx.try_recv().is_err(), "one change, one call");
        // A hidden file alone (a lock) is no change.
        std::fs::write(dir.path().join("private").join(".lock"), b"").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(rx.try_recv().is_err(), "a hidden file is not a change");
        task.abort();
    }

    #[tokio::test]
    async fn a_key_file_that_stops_parsing_is_dropped_when_its_grace_ends_with_no_other_event() {
        let dir = tempfile::tempdir().unwrap();
        let key = TestKey::generate();
        let file = key.write_public(dir.path());
        let keys = Arc::new(
            TrustedKeys::load(FolderSource::new(dir.path()))
                .await
                .with_removal_grace(Duration::from_millis(400)),
        );
        // A long poll: the write's event, then the grace's own timer, must do it.
        let task =
            spawn_folder_reload_every(Arc::clone(&keys), dir.path(), Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(&file, b"-----BEGIN PUBLIC KEY-----\nhalf").unwrap();
        let broken = Instant::now();
        wait_until("the drop", Duration::from_secs(2), || keys.current().is_empty()).await;
        assert!(broken.elapsed() >= Duration::from_millis(400), "dropped before the grace");
        task.abort();
    }
}
