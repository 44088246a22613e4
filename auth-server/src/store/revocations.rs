//! The session revocation list, in one hash slot (`{revocations}`) so that each script runs on
//! one node of a Redis Cluster:
//!
//! - `rev:list:{revocations}`: a sorted set `sid digest → until`, the list itself (the snapshot
//!   a `reset` answer carries); entries leave it once `until` has passed;
//! - `rev:stream:{revocations}`: a stream of every publication (`d` = sid digest, `u` = until),
//!   trimmed to [`retention`]; its entry ids are the cursors, so every auth-server instance
//!   serves the same cursors and a cursor from one works on another;
//! - `rev:meta:{revocations}`: a hash with `epoch` (random, made by the first publication: a
//!   Redis that lost its data gets a new one, so old cursors are refused rather than trusted)
//!   and `trimmed` (the newest stream id trimmed away: a cursor before it cannot be served).
//!
//! A cursor is `<epoch>.<stream id>` (opaque to clients). The domain side (long polls, the
//! publisher's retries) is [`crate::revocations`].

use std::fmt;
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{Store, StoreError, lua_script};
use crate::tokens::SessionId;

/// The largest leeway a verifier may allow (the contract's 5 minutes): `until` is the newest
/// `exp` of a session's access tokens plus this.
pub const VERIFIER_LEEWAY_SECS: u64 = 300;

const STREAM_KEY: &str = "rev:stream:{revocations}";
const LIST_KEY: &str = "rev:list:{revocations}";
const META_KEY: &str = "rev:meta:{revocations}";

/// How long publications stay in the stream: one access-token lifetime plus the leeway. Past
/// that every entry's `until` has passed, so a cursor older than it is served a `reset`
/// (whose list no longer holds them either).
pub fn retention(access_ttl: Duration) -> Duration {
    access_ttl + Duration::from_secs(VERIFIER_LEEWAY_SECS)
}

/// base64url (no padding) of SHA-256 of a sid's UTF-8 text: how the list names a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SidDigest(String);

impl SidDigest {
    /// The digest of `sid`.
    pub fn of(sid: &SessionId) -> Self {
        Self(URL_SAFE_NO_PAD.encode(digest(&SHA256, sid.as_str().as_bytes())))
    }

    /// The text on the list.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// base64url(SHA-256(sid)).
    pub sid_sha256: String,
    /// Unix seconds: the last moment an access token of the session may still be accepted.
    pub until: u64,
}

/// A stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    ms: u64,
    seq: u64,
}

impl StreamId {
    /// Parses `<ms>-<seq>` (digits only).
    pub fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(Self { ms: ms.parse().ok()?, seq: seq.parse().ok()? })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A position in the list: its epoch and a stream id. Shown to clients as
/// `<epoch>.<ms>-<seq>`, which they treat as opaque.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor {
    epoch: String,
    id: StreamId,
}

impl Cursor {
    /// Parses a cursor a client sent; `None` for anything that is not one of ours (the client
    /// then gets a `reset`).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > 64 {
            return None;
        }
        let (epoch, id) = text.split_once('.')?;
        let epoch_ok = !epoch.is_empty()
            && epoch.len() <= 22
            && epoch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !epoch_ok {
            return None;
        }
        Some(Self { epoch: epoch.to_owned(), id: StreamId::parse(id)? })
    }

    /// The position `id` in `epoch`.
    pub fn new(epoch: &str, id: StreamId) -> Self {
        Self { epoch: epoch.to_owned(), id }
    }

    /// The list's epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The stream position.
    pub fn id(&self) -> StreamId {
        self.id
    }

    fn from_reply(epoch: String, id: &str) -> Result<Self, StoreError> {
        let id = StreamId::parse(id)
            .ok_or_else(|| StoreError::Unexpected("malformed revocation stream id".into()))?;
        Ok(Self { epoch, id })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.id)
    }
}

/// What a publication left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The list's head after it.
    pub head: Cursor,
    /// Entries in the list.
    pub size: u64,
}

/// What a read of the list found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRead {
    /// The cursor could not be served (none, unknown, too old): `entries` is the whole list
    /// (or nothing, when only the head was asked for).
    pub reset: bool,
    /// Where the next read continues: after the last entry read, or the head on a reset.
    pub cursor: Cursor,
    /// The entries: on a reset by `until`; otherwise in publication order, each with its
    /// stream id (for the long-poll hub's memory of recent entries).
    pub entries: Vec<(Option<StreamId>, Revoked)>,
    /// Entries in the list (those whose `until` has not passed).
    pub size: u64,
}

impl ListRead {
    /// The entries without their ids.
    pub fn revoked(&self) -> impl Iterator<Item = &Revoked> {
        self.entries.iter().map(|(_, r)| r)
    }
}

/// What [`Store::read_revocations`] returns on a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReset {
    /// The whole list (a client's answer).
    WholeList,
    /// Only the head (the long-poll hub catching up: it serves deltas only).
    HeadOnly,
}

/// A fresh random epoch (8 bytes, base64url: 11 characters).
fn new_epoch() -> Result<String, StoreError> {
    let mut raw = [0u8; 8];
    aws_lc_rs::rand::fill(&mut raw)
        .map_err(|_| StoreError::Unexpected("the random generator failed".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(raw))
}

fn number(text: &str) -> Result<u64, StoreError> {
    // Scores come back as Redis formats doubles: integers here, possibly with an exponent.
    text.parse::<u64>()
        .ok()
        .or_else(|| {
            text.parse::<f64>().ok().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64)
        })
        .ok_or_else(|| StoreError::Unexpected("malformed number in a revocation reply".into()))
}

impl Store {
    /// Publishes `entries` (step 2 of ending sessions, see ARCHITECTURE.md): each joins the
    /// list (keeping the later `until` of a sid published twice) and the stream, unless its
    /// `until` has already passed; entries past their `until` leave the list and the stream is
    /// trimmed to `retention`. One script, one slot.
    pub async fn publish_revocations(
        &self,
        entries: &[Revoked],
        retention: Duration,
    ) -> Result<Published, StoreError> {
        let mut invocation = lua_script!("publish_revocations.lua").key(STREAM_KEY);
        invocation
            .key(LIST_KEY)
            .key(META_KEY)
            .arg(new_epoch()?)
            .arg(super::expiry_ms(crate::clock::millis(retention)));
        for entry in entries {
            invocation.arg(&entry.sid_sha256).arg(entry.until);
        }
        let reply: Vec<String> = self.run(&invocation).await?;
        let [epoch, head, size]: [String; 3] = reply
            .try_into()
            .map_err(|_| StoreError::Unexpected("malformed publication reply".into()))?;
        Ok(Published { head: Cursor::from_reply(epoch, &head)?, size: number(&size)? })
    }

    /// Reads the list after `after` (at most `limit` entries), or, when `after` is `None` or
    /// cannot be served, resets: the whole list or only the head, as `on_reset` says. Reads
    /// only; one script, one slot, so the list and the cursor of a reset are consistent.
    pub async fn read_revocations(
        &self,
        after: Option<&Cursor>,
        limit: usize,
        on_reset: OnReset,
    ) -> Result<ListRead, StoreError> {
        let mut invocation = lua_script!("read_revocations.lua").key(STREAM_KEY);
        let (epoch, id) =
            after.map_or((String::new(), String::new()), |c| (c.epoch.clone(), c.id.to_string()));
        invocation
            .key(LIST_KEY)
            .key(META_KEY)
            .arg(epoch)
            .arg(id)
            .arg(limit.max(1))
            .arg(if on_reset == OnReset::WholeList { "1" } else { "0" });
        let reply: Vec<String> = self.run(&invocation).await?;
        let bad = || StoreError::Unexpected("malformed revocation list reply".into());
        let mut it = reply.into_iter();
        let kind = it.next().ok_or_else(bad)?;
        let epoch = it.next().ok_or_else(bad)?;
        let position = it.next().ok_or_else(bad)?;
        let size = number(&it.next().ok_or_else(bad)?)?;
        let reset = match kind.as_str() {
            "reset" => true,
            "delta" => false,
            _ => return Err(bad()),
        };
        let mut entries = Vec::with_capacity(it.len() / if reset { 2 } else { 3 });
        loop {
            let id = if reset {
                None
            } else {
                match it.next() {
                    Some(id) => Some(StreamId::parse(&id).ok_or_else(bad)?),
                    None => break,
                }
            };
            let Some(sid_sha256) = it.next() else {
                if id.is_some() {
                    return Err(bad());
                }
                break;
            };
            let until = number(&it.next().ok_or_else(bad)?)?;
            entries.push((id, Revoked { sid_sha256, until }));
        }
        Ok(ListRead { reset, cursor: Cursor::from_reply(epoch, &position)?, entries, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util;

    const MINUTE: Duration = Duration::from_secs(60);

    fn entry(name: &str, until: u64) -> Revoked {
        Revoked { sid_sha256: name.into(), until }
    }

    fn redis_now_s(redis: &test_support::RedisServer) -> u64 {
        let (secs, _): (u64, u64) = redis::cmd("TIME").query(&mut redis.connection()).unwrap();
        secs
    }

    #[test]
    fn the_digest_is_base64url_sha256_of_the_sid_text() {
        let sid = SessionId::parse("AAAAAAAAAAAAAAAAAAAAAA").unwrap();
        // python3: urlsafe_b64encode(sha256(b"AAAAAAAAAAAAAAAAAAAAAA").digest()), padding cut
        assert_eq!(SidDigest::of(&sid).as_str(), "ilvbTMFRZBJsbvJmjendJA0pnOY5ekLJWpQRuT0IDtg");
        assert_eq!(SidDigest::of(&sid).as_str().len(), 43);
    }

    #[test]
    fn cursors_round_trip_and_junk_is_no_cursor() {
        let c = Cursor::parse("k3J9a1-_bcQ.1733350000000-7").unwrap();
        assert_eq!(c.to_string(), "k3J9a1-_bcQ.1733350000000-7");
        assert_eq!(c.epoch(), "k3J9a1-_bcQ");
        for junk in [
            "",
            ".",
            "0",
            "abc",
            "e.1-",
            "e.-1",
            "e.1-2-3",
            "e.x-1",
            ".1-1",
            "e/..1-1",
            "e.+1-1",
            "e.999999999999999999999-0",
            &format!("{}.1-1", "e".repeat(23)),
        ] {
            assert!(Cursor::parse(junk).is_none(), "{junk}");
        }
        assert!(StreamId::parse("2-0").unwrap() > StreamId::parse("1-9").unwrap());
        assert!(StreamId::parse("2-10").unwrap() > StreamId::parse("2-9").unwrap());
    }

    #[tokio::test]
    async fn an_empty_list_resets_to_epoch_zero_and_a_publication_starts_an_epoch() {
        let (redis, store) = test_util::store();
        let empty = store.read_revocations(None, 100, OnReset::WholeList).await.unwrap();
        assert!(empty.reset);
        assert!(empty.entries.is_empty());
        assert_eq!(empty.cursor.to_string(), "0.0-0");

        let until = redis_now_s(&redis) + 600;
        let published = store.publish_revocations(&[entry("a", until)], MINUTE).await.unwrap();
        assert_eq!(published.size, 1);
        assert_ne!(published.head.epoch(), "0");
        // The epoch-0 cursor is of another epoch: a reset with the whole list.
        let read = store.read_revocations(Some(&empty.cursor), 100, OnReset::WholeList).await;
        let read = read.unwrap();
        assert!(read.reset);
        assert_eq!(read.entries, [(None, entry("a", until))]);
        assert_eq!(read.cursor, published.head);
        // A second publication keeps the epoch.
        let again = store.publish_revocations(&[entry("b", until)], MINUTE).await.unwrap();
        assert_eq!(again.head.epoch(), published.head.epoch());
        assert!(again.head.id() > published.head.id());
    }

    #[tokio::test]
    async fn a_cursor_gets_what_was_published_after_it_and_nothing_twice() {
        let (redis, store) = test_util::store();
        let until = redis_now_s(&redis) + 600;
        let first = store.publish_revocations(&[entry("a", until)], MINUTE).await.unwrap();
        let nothing = store.read_revocations(Some(&first.head), 100, OnReset::WholeList).await;
        let nothing = nothing.unwrap();
        assert!(!nothing.reset);
        assert!(nothing.entries.is_empty());
        assert_eq!(nothing.cursor, first.head, "no news: the same cursor");

        store
            .publish_revocations(&[entry("b", until), entry("c", until + 1)], MINUTE)
            .await
            .unwrap();
        let delta = store.read_revocations(Some(&first.head), 100, OnReset::WholeList).await;
        let delta = delta.unwrap();
        assert!(!delta.reset);
        let got: Vec<Revoked> = delta.revoked().cloned().collect();
        assert_eq!(got, [entry("b", until), entry("c", until + 1)]);
        assert_eq!(delta.size, 3);
        let ids: Vec<StreamId> = delta.entries.iter().filter_map(|(id, _)| *id).collect();
        assert!(ids.len() == 2 && first.head.id() < ids[0] && ids[0] < ids[1]);
        assert_eq!(ids[1], delta.cursor.id(), "the cursor is the last entry's id");

        // At most `limit` per answer; the cursor continues where it stopped.
        let part = store.read_revocations(Some(&first.head), 1, OnReset::WholeList).await.unwrap();
        assert_eq!(part.revoked().collect::<Vec<_>>(), [&entry("b", until)]);
        let rest = store.read_revocations(Some(&part.cursor), 1, OnReset::WholeList).await;
        assert_eq!(rest.unwrap().revoked().collect::<Vec<_>>(), [&entry("c", until + 1)]);
        let end = store.read_revocations(Some(&delta.cursor), 100, OnReset::WholeList).await;
        assert!(end.unwrap().entries.is_empty());

        // A cursor from the future, or of another epoch, resets to the whole list.
        let ahead =
            Cursor { epoch: first.head.epoch.clone(), id: StreamId { ms: u64::MAX / 2, seq: 0 } };
        let read = store.read_revocations(Some(&ahead), 100, OnReset::WholeList).await.unwrap();
        assert!(read.reset);
        assert_eq!(read.entries.len(), 3);
        let other = Cursor { epoch: "elsewhere".into(), id: first.head.id };
        let read = store.read_revocations(Some(&other), 100, OnReset::HeadOnly).await.unwrap();
        assert!(read.reset);
        assert!(read.entries.is_empty(), "head only");
        assert_eq!(read.cursor, delta.cursor);
    }

    #[tokio::test]
    async fn a_later_until_wins_repeats_add_nothing_and_passed_entries_are_not_listed() {
        let (redis, store) = test_util::store();
        let now = redis_now_s(&redis);
        store.publish_revocations(&[entry("a", now + 600)], MINUTE).await.unwrap();
        store.publish_revocations(&[entry("a", now + 300)], MINUTE).await.unwrap();
        let published = store
            .publish_revocations(&[entry("past", now.saturating_sub(10))], MINUTE)
            .await
            .unwrap();
        assert_eq!(published.size, 1, "a passed until is not listed");
        let read = store.read_revocations(None, 100, OnReset::WholeList).await.unwrap();
        assert_eq!(read.entries, [(None, entry("a", now + 600))], "the later until is kept");
        // Re-publications (a marked session's token presented again and again) add nothing.
        for _ in 0..5 {
            store.publish_revocations(&[entry("a", now + 600)], MINUTE).await.unwrap();
        }
        let len: u64 = redis::cmd("XLEN").arg(STREAM_KEY).query(&mut redis.connection()).unwrap();
        assert_eq!(len, 1, "one stream entry for a");
    }

    #[tokio::test]
    async fn a_cursor_older_than_the_trimmed_stream_resets_and_the_head_survives_trimming() {
        let (redis, store) = test_util::store();
        let until = redis_now_s(&redis) + 600;
        let old = store.publish_revocations(&[entry("a", until)], MINUTE).await.unwrap();
        let before = store.read_revocations(None, 100, OnReset::WholeList).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        // A retention of 1 ms trims everything published before this call.
        let newer = store
            .publish_revocations(&[entry("b", until)], Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let trimmed = store.publish_revocations(&[], Duration::from_millis(1)).await.unwrap();
        assert_eq!(trimmed.head, newer.head, "the head is kept when the stream is empty");
        let len: u64 = redis::cmd("XLEN").arg(STREAM_KEY).query(&mut redis.connection()).unwrap();
        assert_eq!(len, 0);

        for stale in [&old.head, &before.cursor] {
            let read = store.read_revocations(Some(stale), 100, OnReset::WholeList).await.unwrap();
            assert!(read.reset, "{stale}");
            assert_eq!(read.entries.len(), 2, "the list itself keeps both");
            assert_eq!(read.cursor, newer.head);
        }
        // The head cursor is still served: nothing after it, no reset loop.
        let read = store.read_revocations(Some(&newer.head), 100, OnReset::WholeList).await;
        let read = read.unwrap();
        assert!(!read.reset);
        assert!(read.entries.is_empty());
    }
}
