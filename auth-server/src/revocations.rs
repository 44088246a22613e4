//! The session revocation list, domain side: [`Publisher`] ends marked sessions in order
//! (publish, then delete) and retries in the background when Redis fails in between; [`Hub`]
//! serves `GET /revocations` long polls without a blocking Redis command and without one Redis
//! call per waiter per publication.
//!
//! The hub: one task per instance reads the list after its own cursor (a non-blocking script
//! call) every [`POLL_ACTIVE`] while someone waits (every [`POLL_IDLE`] otherwise, and at once
//! after a publication by this instance), and keeps the entries it read recently in memory
//! ([`TAIL_MAX`] at most) behind a `tokio::sync::watch`. A waiter reads Redis once (the
//! authoritative answer: a reset, or what is after its cursor); when there is nothing yet, it
//! waits on the watch and is answered from memory as soon as the hub has read something after
//! its cursor. The cursors are Redis stream ids, so every instance serves the same ones.
//!
//! Why one file (~500 lines of code): [`Publisher`] and [`Hub`] are the two ends of one list (what
//! one publishes the other serves, and the publisher wakes the hub of its own instance), and their
//! ordering rules (publish before delete, cursors as stream ids) are stated once, above.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::metrics;
use crate::store::revocations::{Cursor, ListRead, OnReset, Revoked, StreamId};
use crate::store::sessions::{EndFailure, Marked};
use crate::store::{Store, StoreError};
use crate::tokens::SessionId;

/// Long polls of `GET /revocations` one instance lets wait at once, by default.
pub const DEFAULT_MAX_WAITERS: usize = 4096;

/// How often the hub reads the list while requests wait on it.
pub const POLL_ACTIVE: Duration = Duration::from_millis(150);
/// How often it reads the list when nobody waits (keeps the size metric and its memory fresh).
pub const POLL_IDLE: Duration = Duration::from_secs(5);
/// Recent entries the hub keeps in memory for waiters.
pub const TAIL_MAX: usize = 4096;
/// Most entries one answer carries after a cursor (the client continues from the new cursor).
pub const ANSWER_MAX: usize = 10_000;
/// The longest `wait` a client may ask for.
pub const MAX_WAIT_SECS: u64 = 30;
/// `Retry-After` when the waiters are at their bound.
pub const BUSY_RETRY_AFTER_SECS: u64 = 5;

/// Why a session end did not complete.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PublishError(#[from] pub StoreError);

/// Ends marked sessions: publish, delete, drop from the index ([`Store::end_marked`]); with
/// [`Publisher::with_background_retries`], a failed end is retried in the background, so that a
/// session marked revoked is published even if the request that marked it failed.
#[derive(Debug, Clone)]
pub struct Publisher {
    store: Store,
    access_ttl: Duration,
    background: Option<Arc<Background>>,
    hub: Option<Arc<Hub>>,
}

/// What is being retried in the background: each session (and each user's "end them all") at
/// most once at a time, however often its tokens are presented, and at most
/// [`MAX_PENDING`] sessions in all.
#[derive(Debug, Default)]
struct Background {
    sessions: Mutex<HashSet<SessionId>>,
    users: Mutex<HashSet<String>>,
}

/// Sessions whose end may be retried in the background at once; past it, a failed end is only
/// logged: the sessions stay marked and are published when one of their tokens comes back.
pub const MAX_PENDING: usize = 4096;

/// Ending every session of a user logged in by a time, retried after a failure (a password
/// change whose own request could not end them).
#[derive(Debug, Clone)]
pub struct EndAll {
    /// The user.
    pub uid: String,
    /// The session that stays (the caller's).
    pub except: Option<SessionId>,
    /// Only sessions logged in at or before this Redis time (ms): later logins are not ended.
    pub logged_in_by: u64,
    /// The session max age (the generation's lifetime), ms.
    pub max_age_ms: u64,
    /// The metrics reason.
    pub reason: &'static str,
}

/// How long an [`EndAll`] is retried before giving up (logged as an error).
const END_ALL_RETRY_FOR: Duration = Duration::from_secs(3600);
/// The first and the longest delay between two retries.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it leaves a set of ids: still usable.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Publisher {
    /// A publisher on `store`; `access_ttl` bounds the stream's retention. Without
    /// [`Self::with_background_retries`] a failure is only returned (the operator commands).
    pub fn new(store: Store, access_ttl: Duration) -> Self {
        Self { store, access_ttl, background: None, hub: None }
    }

    /// Wakes `hub` after each publication, so this instance's waiters are answered at once.
    pub fn with_hub(mut self, hub: Arc<Hub>) -> Self {
        self.hub = Some(hub);
        self
    }

    /// Retries failed ends in background tasks (needs a Tokio runtime when one fails).
    pub fn with_background_retries(mut self) -> Self {
        self.background = Some(Arc::default());
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The access-token lifetime the list is kept for.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Publishes and deletes `marked`, counted under `reason` (`None`: a re-publication of a
    /// session already counted). On a failure of the publication or the deletion, they are
    /// retried in the background and the error is returned.
    pub async fn end(
        &self,
        marked: Vec<Marked>,
        reason: Option<&'static str>,
    ) -> Result<(), PublishError> {
        match self.try_end(&marked, reason).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.retry(marked, reason, RETRY_FIRST);
                Err(e)
            }
        }
    }

    /// Like [`Self::end`] but in the background, at once: for a re-publication on a request
    /// that does not wait for it (a token of a marked session presented again). A session
    /// already being retried is not retried twice.
    pub fn end_in_background(&self, marked: Vec<Marked>) {
        self.retry(marked, None, Duration::ZERO);
    }

    /// Marks, publishes and deletes every session `job` names; on a failure the whole job is
    /// retried in the background and the error returned.
    pub async fn end_all(&self, job: EndAll) -> Result<usize, PublishError> {
        match self.try_end_all(&job).await {
            Ok(count) => Ok(count),
            Err(e) => {
                self.retry_end_all(job);
                Err(e)
            }
        }
    }

    async fn try_end_all(&self, job: &EndAll) -> Result<usize, PublishError> {
        let marked = self
            .store
            .mark_all_sessions(
                &job.uid,
                job.except.as_ref(),
                Some(job.logged_in_by),
                job.max_age_ms,
                self.access_ttl,
            )
            .await?;
        let count = marked.len();
        self.try_end(&marked, Some(job.reason)).await?;
        Ok(count)
    }

    async fn try_end(
        &self,
        marked: &[Marked],
        reason: Option<&'static str>,
    ) -> Result<(), PublishError> {
        let ended = match self.store.end_marked(marked, self.access_ttl).await {
            Ok(ended) => ended,
            Err(e) => {
                let step = if matches!(e, EndFailure::Publish(_)) { "publish" } else { "delete" };
                metrics::revocation_publish_error(step);
                log::warn!("{} session(s) marked revoked, end not complete: {e}", marked.len());
                return Err(PublishError(e.into()));
            }
        };
        if let Some(e) = ended.stale_index {
            log::warn!("ended sessions left in an index (harmless): {e}");
        }
        if let Some(size) = ended.list_size {
            metrics::revocation_list_size(size);
        }
        // Counted once, by whichever end deleted them (a retry racing a repeated request).
        if let Some(reason) = reason {
            metrics::sessions_revoked(reason, u64::try_from(ended.deleted).unwrap_or(u64::MAX));
        }
        if let Some(hub) = &self.hub {
            hub.poke();
        }
        Ok(())
    }

    /// Retries `marked` in a background task after `first` (then with a growing delay) until
    /// the end completes or no token of theirs can pass any more (`until` is behind: the
    /// marked sessions then expire by themselves).
    fn retry(&self, marked: Vec<Marked>, reason: Option<&'static str>, first: Duration) {
        let Some(background) = &self.background else { return };
        let fresh: Vec<Marked> = {
            let mut pending = lock(&background.sessions);
            let room = MAX_PENDING.saturating_sub(pending.len());
            let fresh: Vec<Marked> =
                marked.into_iter().filter(|m| !pending.contains(&m.sid)).take(room).collect();
            pending.extend(fresh.iter().map(|m| m.sid.clone()));
            fresh
        };
        if fresh.is_empty() {
            return;
        }
        let publisher = self.clone();
        let background = Arc::clone(background);
        tokio::spawn(async move {
            let mut delay = first;
            loop {
                tokio::time::sleep(delay).await;
                if publisher.try_end(&fresh, reason).await.is_ok() {
                    log::info!("{} marked session(s) published and deleted", fresh.len());
                    break;
                }
                let latest = fresh.iter().map(|m| m.until).max().unwrap_or(0);
                if crate::clock::now_secs() > latest {
                    log::warn!(
                        "{} marked session(s) not published before their tokens expired; \
                         they expire by themselves",
                        fresh.len()
                    );
                    break;
                }
                delay = (delay * 2).clamp(RETRY_FIRST, RETRY_MAX);
            }
            let mut pending = lock(&background.sessions);
            for m in &fresh {
                pending.remove(&m.sid);
            }
        });
    }

    fn retry_end_all(&self, job: EndAll) {
        let Some(background) = &self.background else { return };
        if !lock(&background.users).insert(job.uid.clone()) {
            return; // already being retried: it ends the same sessions
        }
        let publisher = self.clone();
        let background = Arc::clone(background);
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut delay = RETRY_FIRST;
            loop {
                tokio::time::sleep(delay).await;
                match publisher.try_end_all(&job).await {
                    Ok(count) => {
                        log::info!("user {}: {count} session(s) ended on retry", job.uid);
                        break;
                    }
                    Err(_) if started.elapsed() > END_ALL_RETRY_FOR => {
                        log::error!("user {}: could not end its sessions; giving up", job.uid);
                        break;
                    }
                    Err(_) => delay = (delay * 2).min(RETRY_MAX),
                }
            }
            lock(&background.users).remove(&job.uid);
        });
    }
}

/// What the hub has read recently: entries after `from`, up to `head`, in one epoch.
#[derive(Debug, Clone, Default)]
struct Tail {
    /// Not read yet.
    unknown: bool,
    epoch: String,
    from: StreamId,
    head: StreamId,
    entries: Vec<(StreamId, Revoked)>,
}

impl Tail {
    /// What this tail holds after `cursor`: `None` when it cannot tell (another epoch, or a
    /// cursor older than what it holds or newer than its head).
    fn after(&self, cursor: &Cursor) -> Option<(Cursor, Vec<Revoked>)> {
        if self.unknown
            || self.epoch != cursor.epoch()
            || cursor.id() < self.from
            || cursor.id() > self.head
        {
            return None;
        }
        let start = self.entries.partition_point(|(id, _)| *id <= cursor.id());
        let newer = &self.entries[start..];
        let last = newer.last().map_or(cursor.id(), |(id, _)| *id);
        let cursor = Cursor::new(&self.epoch, last);
        Some((cursor, newer.iter().map(|(_, r)| r.clone()).collect()))
    }

    /// Whether `cursor` is in this epoch but ahead of what the hub has read (it came from an
    /// instance that read more recently): wait for the hub to catch up.
    fn is_behind(&self, cursor: &Cursor) -> bool {
        !self.unknown && self.epoch == cursor.epoch() && cursor.id() > self.head
    }
}

/// An answer to `GET /revocations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The next cursor.
    pub cursor: String,
    /// `revoked` is the whole list.
    pub reset: bool,
    /// The entries.
    pub revoked: Vec<Revoked>,
}

impl From<ListRead> for Answer {
    fn from(read: ListRead) -> Self {
        Self {
            cursor: read.cursor.to_string(),
            reset: read.reset,
            revoked: read.entries.into_iter().map(|(_, r)| r).collect(),
        }
    }
}

/// Why a long poll was refused.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// As many requests wait as `AUTH_REVOCATIONS_MAX_WAITERS` allows.
    #[error("too many requests waiting on the revocation list")]
    Busy,
    /// Redis.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The long-poll hub of one instance. See the module doc.
#[derive(Debug)]
pub struct Hub {
    store: Store,
    tail: watch::Sender<Arc<Tail>>,
    poke: Notify,
    waiters: AtomicUsize,
    max_waiters: usize,
    closing: AtomicBool,
    closed: Notify,
}

impl Hub {
    /// A hub on `store` allowing `max_waiters` long polls at once; [`Self::spawn`] starts it.
    pub fn new(store: Store, max_waiters: usize) -> Arc<Self> {
        let tail = Tail { unknown: true, ..Tail::default() };
        Arc::new(Self {
            store,
            tail: watch::Sender::new(Arc::new(tail)),
            poke: Notify::new(),
            waiters: AtomicUsize::new(0),
            max_waiters,
            closing: AtomicBool::new(false),
            closed: Notify::new(),
        })
    }

    /// Starts the task that reads the list (needs a Tokio runtime; it runs as long as the
    /// runtime does).
    pub fn spawn(self: &Arc<Self>) {
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match hub.read_more().await {
                    Ok(more) => {
                        if failing {
                            log::info!("revocation list readable again");
                            failing = false;
                        }
                        if more {
                            continue; // a full batch: there is more to read now
                        }
                    }
                    Err(e) => {
                        if !failing {
                            log::warn!("revocation list: cannot read it, will keep trying: {e}");
                            failing = true;
                        }
                    }
                }
                let interval = if hub.waiting() > 0 { POLL_ACTIVE } else { POLL_IDLE };
                let poked = hub.poke.notified();
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = poked => {}
                }
            }
        });
    }

    /// Reads the list right away (after a publication by this instance, or a new waiter).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Answers every waiter now and every later long poll at once (the server is stopping).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.closed.notify_waiters();
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// One read of the list after the hub's cursor; `true` when a full batch came (read again).
    async fn read_more(&self) -> Result<bool, StoreError> {
        let tail = self.tail.borrow().clone();
        let cursor = (!tail.unknown).then(|| Cursor::new(&tail.epoch, tail.head));
        let read = self.store.read_revocations(cursor.as_ref(), TAIL_MAX, OnReset::HeadOnly);
        let read = read.await?;
        metrics::revocation_list_size(read.size);
        let head = read.cursor.id();
        if read.reset {
            if tail.unknown || tail.epoch != read.cursor.epoch() || tail.head != head {
                let epoch = read.cursor.epoch().to_owned();
                let fresh = Tail { unknown: false, epoch, from: head, head, entries: Vec::new() };
                self.tail.send_replace(Arc::new(fresh));
            }
            return Ok(false);
        }
        if head == tail.head {
            return Ok(false);
        }
        let full = read.entries.len() >= TAIL_MAX;
        let mut next = Tail { head, ..(*tail).clone() };
        next.entries.extend(read.entries.into_iter().filter_map(|(id, r)| Some((id?, r))));
        if next.entries.len() > TAIL_MAX {
            let drop = next.entries.len() - TAIL_MAX;
            next.from = next.entries[drop - 1].0;
            next.entries.drain(..drop);
        }
        self.tail.send_replace(Arc::new(next));
        Ok(full)
    }

    /// `GET /revocations?after=&wait=`: at once when there is something after `after` (or it
    /// cannot be served: a reset), else as soon as something is published, else after `wait`.
    pub async fn poll(&self, after: Option<&str>, wait: Duration) -> Result<Answer, PollError> {
        let cursor = after.and_then(Cursor::parse);
        let cursor = match cursor {
            Some(cursor) if !wait.is_zero() => cursor,
            cursor => {
                let read =
                    self.store.read_revocations(cursor.as_ref(), ANSWER_MAX, OnReset::WholeList);
                return Ok(read.await?.into());
            }
        };
        let _waiter = self.enter()?;
        // Subscribed before the read: a publication read by the hub after it wakes us.
        let mut tail = self.tail.subscribe();
        let first = self.store.read_revocations(Some(&cursor), ANSWER_MAX, OnReset::WholeList);
        let first = first.await?;
        if first.reset || !first.entries.is_empty() {
            return Ok(first.into());
        }
        let quiet = Answer { cursor: cursor.to_string(), reset: false, revoked: Vec::new() };
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            // Created before the flag is read: a close() in between still wakes it.
            let closed = self.closed.notified();
            if self.closing.load(Ordering::SeqCst) {
                return Ok(quiet);
            }
            tokio::select! {
                changed = tail.changed() => {
                    if changed.is_err() {
                        return Ok(quiet); // the hub is gone
                    }
                }
                () = &mut deadline => return Ok(quiet),
                () = closed => return Ok(quiet),
            }
            let now = tail.borrow_and_update().clone();
            match now.after(&cursor) {
                Some((_, revoked)) if revoked.is_empty() => {}
                Some((next, revoked)) => {
                    return Ok(Answer { cursor: next.to_string(), reset: false, revoked });
                }
                None if now.is_behind(&cursor) || now.unknown => {}
                None => {
                    let read =
                        self.store.read_revocations(Some(&cursor), ANSWER_MAX, OnReset::WholeList);
                    return Ok(read.await?.into());
                }
            }
        }
    }

    fn enter(&self) -> Result<Waiter<'_>, PollError> {
        let before = self.waiters.fetch_add(1, Ordering::SeqCst);
        if before >= self.max_waiters {
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            return Err(PollError::Busy);
        }
        metrics::revocation_waiters(before + 1);
        if before == 0 {
            self.poke(); // from the idle rate to the active one
        }
        Ok(Waiter(self))
    }
}

/// Counts one waiter until dropped (also when its request goes away).
struct Waiter<'a>(&'a Hub);

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let left = self.0.waiters.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        metrics::revocation_waiters(left);
    }
}

/// Parses `wait`: whole seconds, 0 to [`MAX_WAIT_SECS`].
pub fn parse_wait(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|w| *w <= MAX_WAIT_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> StreamId {
        StreamId::parse(&format!("{ms}-0")).unwrap()
    }

    fn entry(name: &str) -> Revoked {
        Revoked { sid_sha256: name.into(), until: 1 }
    }

    #[test]
    fn wait_is_0_to_30_whole_seconds() {
        assert_eq!(parse_wait("0"), Some(0));
        assert_eq!(parse_wait("30"), Some(30));
        assert_eq!(parse_wait("07"), Some(7));
        for bad in ["", "31", "100", "-1", "1.5", "x", " 1", "+1", "1e1", "999999999999"] {
            assert_eq!(parse_wait(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_tail_serves_only_cursors_it_covers() {
        let tail = Tail {
            unknown: false,
            epoch: "e".into(),
            from: id(10),
            head: id(30),
            entries: vec![(id(20), entry("a")), (id(30), entry("b"))],
        };
        let at = |ms: u64| Cursor::parse(&format!("e.{ms}-0")).unwrap();
        let (next, got) = tail.after(&at(10)).unwrap();
        assert_eq!(got, [entry("a"), entry("b")]);
        assert_eq!(next, at(30));
        let (next, got) = tail.after(&at(25)).unwrap();
        assert_eq!(got, [entry("b")]);
        assert_eq!(next, at(30));
        let (next, got) = tail.after(&at(30)).unwrap();
        assert!(got.is_empty());
        assert_eq!(next, at(30));
        assert!(tail.after(&at(9)).is_none(), "older than the tail: Redis answers");
        assert!(tail.after(&at(31)).is_none());
        assert!(tail.is_behind(&at(31)), "newer: another instance read more, wait");
        assert!(tail.after(&Cursor::parse("f.20-0").unwrap()).is_none(), "another epoch");
        assert!(!tail.is_behind(&Cursor::parse("f.40-0").unwrap()));
    }
}
