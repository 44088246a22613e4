//! Scheduled key rotation (`AUTH_KEY_ROTATION_INTERVAL`): when the active key is that old, the
//! auth servers **add** a key (published, not signing), wait until every JWKS cache can hold it
//! ([`PUBLISH_WAIT`]), **activate** it (the previous key is retired), and **prune** retired keys
//! once no token they signed can still be valid: the `keys add | activate | prune` commands'
//! own functions ([`KeyFolder::add`], [`KeyFolder::activate`], [`KeyFolder::prune`]), so the
//! same guarantees.
//!
//! Every instance checks every [`CHECK_EVERY`] (jittered); the step due is decided from the key
//! folder's state alone ([`due_step`]), so a crash between steps resumes where it stopped (a
//! published key waiting is activated, not added again). A step runs only under a Redis lock
//! ([`KEY_ROTATION_LOCK`]: `SET NX PX`, renewed and released by its holder only) and is decided
//! again once the lock is held, so exactly one instance acts per step; a crashed holder's lock
//! goes with its TTL.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::key_folder::{
    self, DEFAULT_BITS, DEFAULT_PRUNE_LEEWAY, JWKS_MAX_AGE_SECS, KeyFolder, KeyState, KeyStatus,
    SUPPORTED_BITS,
};
use crate::store::Store;
pub use crate::store::locks::KEY_ROTATION_LOCK;

/// How often each instance looks whether a step is due (jittered by ±20 %).
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// How long an added key is published before it signs: the JWKS `max-age`, so it is in every
/// cache first, plus a margin for every instance to re-read the folder and serve it.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(JWKS_MAX_AGE_SECS + 5);

/// The lock's TTL: how long a crashed holder delays the next step at most. Its holder renews it
/// every third of it while a step runs.
pub const LOCK_TTL: Duration = Duration::from_secs(30);

/// How scheduled rotation paces itself. The defaults are the contract's; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often each instance checks ([`CHECK_EVERY`]).
    pub check_every: Duration,
    /// How long an added key is published before it is activated ([`PUBLISH_WAIT`]).
    pub publish_wait: Duration,
    /// Verifiers' clock leeway for pruning, as `keys prune --leeway` ([`DEFAULT_PRUNE_LEEWAY`]).
    pub prune_leeway: Duration,
    /// The lock's TTL ([`LOCK_TTL`]).
    pub lock_ttl: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            check_every: CHECK_EVERY,
            publish_wait: PUBLISH_WAIT,
            prune_leeway: DEFAULT_PRUNE_LEEWAY,
            lock_ttl: LOCK_TTL,
        }
    }
}

/// A step of the rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Add (publish) a key of this size.
    Add(usize),
    /// Activate this published key.
    Activate(String),
    /// Prune the retired keys that are due.
    Prune,
}

impl Step {
    /// `add`, `activate` or `prune` (the metric's label).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Add(_) => "add",
            Self::Activate(_) => "activate",
            Self::Prune => "prune",
        }
    }
}

/// Whole seconds of `d`, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The step due at `now` (Unix s) for `state`, if any: with the active key `interval` old, the
/// newest published key once published for `publish_wait`, else a new key (never a second one
/// while one waits); otherwise pruning, once a retired key is past
/// [`key_folder::prunable_at`] with the access-token `ttl`.
pub fn due_step(
    state: &KeyState,
    now: u64,
    interval: Duration,
    timing: &Timing,
    ttl: Duration,
) -> Option<Step> {
    let active = state.active.as_deref()?;
    let meta = state.keys.get(active)?;
    let since = meta.activated.unwrap_or(meta.created);
    if now >= since.saturating_add(ceil_secs(interval)) {
        let waiting = state
            .kids_in(KeyStatus::Published)
            .into_iter()
            .filter_map(|kid| state.keys.get(kid).map(|m| (m.created, kid)))
            .max();
        match waiting {
            // Times are whole seconds: one more covers the rounding of `created`.
            Some((created, kid)) => {
                if now >= created.saturating_add(ceil_secs(timing.publish_wait)).saturating_add(1) {
                    return Some(Step::Activate(kid.to_owned()));
                }
            }
            None => {
                let bits =
                    if SUPPORTED_BITS.contains(&meta.bits) { meta.bits } else { DEFAULT_BITS };
                return Some(Step::Add(bits));
            }
        }
    }
    let prunable = state.kids_in(KeyStatus::Retired).into_iter().any(|kid| {
        state.keys.get(kid).and_then(|m| m.retired).is_some_and(|retired| {
            now >= key_folder::prunable_at(retired, ttl, timing.prune_leeway)
        })
    });
    prunable.then_some(Step::Prune)
}

/// One instance's scheduler of key rotation.
#[derive(Debug, Clone)]
pub struct Rotator {
    folder: KeyFolder,
    store: Store,
    interval: Duration,
    timing: Timing,
    access_ttl: Duration,
}

impl Rotator {
    /// Rotates the keys of `folder` when the active key is `interval` old; `access_ttl` is the
    /// access-token lifetime (for pruning).
    pub fn new(
        folder: KeyFolder,
        store: Store,
        interval: Duration,
        timing: Timing,
        access_ttl: Duration,
    ) -> Self {
        Self { folder, store, interval, timing, access_ttl }
    }

    /// Checks every `timing.check_every` (jittered) until the handle is aborted.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(jittered(self.timing.check_every)).await;
                self.check().await;
            }
        })
    }

    /// The step due now, from the folder's state; a state that cannot be read is logged and
    /// nothing is due.
    async fn decide(&self) -> Option<Step> {
        let folder = self.folder.clone();
        let state = match tokio::task::spawn_blocking(move || folder.read_state()).await {
            Ok(Ok(state)) => state,
            Ok(Err(e)) => {
                log::warn!("key rotation: cannot read the key state: {e}");
                return None;
            }
            Err(e) => {
                log::warn!("key rotation: reading the key state failed: {e}");
                return None;
            }
        };
        due_step(&state, key_folder::now_secs(), self.interval, &self.timing, self.access_ttl)
    }

    /// One check: when a step is due, takes the lock, decides again (another instance may have
    /// just done it), runs the step and releases the lock.
    pub async fn check(&self) {
        if self.decide().await.is_none() {
            return;
        }
        let token = uuid::Uuid::new_v4().to_string();
        match self.store.try_lock(KEY_ROTATION_LOCK, &token, self.timing.lock_ttl).await {
            Ok(true) => {}
            Ok(false) => {
                log::debug!("key rotation: another instance holds the lock");
                return;
            }
            Err(e) => {
                log::warn!("key rotation: cannot take the lock: {e}");
                return;
            }
        }
        if let Some(step) = self.decide().await {
            self.run(step, &token).await;
        }
        match self.store.unlock(KEY_ROTATION_LOCK, &token).await {
            Ok(true) => {}
            Ok(false) => log::warn!("key rotation: the lock had expired before it was released"),
            // It goes with its TTL.
            Err(e) => log::warn!("key rotation: cannot release the lock: {e}"),
        }
    }

    /// Runs `step` on a blocking thread (key generation, file writes), renewing the lock while
    /// it runs; logs and counts the outcome.
    async fn run(&self, step: Step, token: &str) {
        let name = step.as_str();
        let folder = self.folder.clone();
        let (ttl, leeway, wait) =
            (self.access_ttl, self.timing.prune_leeway, self.timing.publish_wait);
        let work = tokio::task::spawn_blocking(move || -> Result<String, String> {
            match step {
                Step::Add(bits) => {
                    let kid = folder.add(bits).map_err(|e| e.to_string())?;
                    Ok(format!(
                        "added {kid} (RSA-{bits}): published, not signing; activated after {}",
                        humantime::format_duration(wait)
                    ))
                }
                Step::Activate(kid) => {
                    let done = folder.activate(&kid).map_err(|e| e.to_string())?;
                    Ok(match done.retired {
                        Some(old) => format!("{kid} signs now; {old} retired"),
                        None => format!("{kid} signs now"),
                    })
                }
                Step::Prune => {
                    let report = folder
                        .prune(ttl, leeway, key_folder::now_secs(), false)
                        .map_err(|e| e.to_string())?;
                    let kids: Vec<&str> = report.removed.iter().map(|(k, _)| k.as_str()).collect();
                    Ok(format!("pruned {}", kids.join(", ")))
                }
            }
        });
        tokio::pin!(work);
        let every = (self.timing.lock_ttl / 3).max(Duration::from_millis(10));
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                _ = renew.tick() => {
                    match self.store.renew_lock(KEY_ROTATION_LOCK, token, self.timing.lock_ttl).await {
                        Ok(true) => {}
                        Ok(false) => log::warn!("key rotation: lost the lock during `{name}`"),
                        Err(e) => log::warn!("key rotation: cannot renew the lock: {e}"),
                    }
                }
            }
        };
        match result {
            Ok(Ok(what)) => {
                crate::metrics::key_rotation(name, true);
                log::info!("key rotation: {what}");
            }
            Ok(Err(e)) => {
                crate::metrics::key_rotation(name, false);
                log::warn!("key rotation: `{name}` failed: {e}");
            }
            Err(e) => {
                crate::metrics::key_rotation(name, false);
                log::warn!("key rotation: `{name}` crashed: {e}");
            }
        }
    }
}

/// `every` ± 20 %, so instances started together do not check together.
fn jittered(every: Duration) -> Duration {
    let r = uuid::Uuid::new_v4().as_u128() % 1000;
    #[allow(clippy::cast_precision_loss)]
    let factor = 0.8 + 0.4 * (r as f64 / 1000.0);
    every.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::key_folder::KeyMeta;

    const A: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const B: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    const DAY: Duration = Duration::from_secs(86_400);
    const TTL: Duration = Duration::from_secs(900);

    fn meta(created: u64, activated: Option<u64>, retired: Option<u64>) -> KeyMeta {
        KeyMeta { created, activated, retired, bits: 3072 }
    }

    fn state(keys: &[(&str, KeyMeta)], active: &str) -> KeyState {
        let keys: BTreeMap<_, _> = keys.iter().map(|(k, m)| ((*k).to_owned(), m.clone())).collect();
        KeyState { active: Some(active.to_owned()), keys }
    }

    #[test]
    fn a_key_is_added_once_the_active_one_is_as_old_as_the_interval() {
        let timing = Timing::default();
        let s = state(&[(A, meta(0, Some(100), None))], A);
        assert_eq!(due_step(&s, 100 + 86_399, DAY, &timing, TTL), None);
        assert_eq!(due_step(&s, 100 + 86_400, DAY, &timing, TTL), Some(Step::Add(3072)));
    }

    #[test]
    fn a_published_key_is_activated_after_the_wait_and_never_a_second_one_added() {
        let timing = Timing::default();
        let now = 200_000;
        let s = state(&[(A, meta(0, Some(0), None)), (B, meta(now, None, None))], A);
        let wait = PUBLISH_WAIT.as_secs();
        assert_eq!(due_step(&s, now + wait, DAY, &timing, TTL), None);
        assert_eq!(
            due_step(&s, now + wait + 1, DAY, &timing, TTL),
            Some(Step::Activate(B.to_owned()))
        );
    }

    #[test]
    fn retired_keys_are_pruned_once_no_token_they_signed_can_be_valid() {
        let timing = Timing::default();
        let s = state(&[(A, meta(0, Some(0), Some(1000))), (B, meta(900, Some(1000), None))], B);
        let at = key_folder::prunable_at(1000, TTL, DEFAULT_PRUNE_LEEWAY);
        assert_eq!(due_step(&s, at - 1, DAY, &timing, TTL), None);
        assert_eq!(due_step(&s, at, DAY, &timing, TTL), Some(Step::Prune));
    }

    #[test]
    fn without_an_active_key_nothing_is_due() {
        let s = KeyState::default();
        assert_eq!(due_step(&s, u64::MAX, DAY, &Timing::default(), TTL), None);
    }

    #[test]
    fn the_jitter_stays_within_a_fifth() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(60));
            assert!(d >= Duration::from_secs(48) && d <= Duration::from_secs(72), "{d:?}");
        }
    }
}
