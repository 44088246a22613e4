//! What signs: the active signer and the published keys ([`SigningKeys`], one read of the key
//! folder), kept live without a restart ([`LiveSigningKeys`]).
//!
//! The shared folder watcher ([`access_token::watch`]: file events, a 1 s fingerprint poll,
//! SIGHUP) calls [`LiveSigningKeys::reload`] whenever `keys/` may have changed. A reload builds
//! a new [`SigningKeys`] and a new verifier [`KeySet`] and swaps both whole (the verifier's only
//! when its kids changed, so its token cache stays warm). Every reload is logged, with the
//! active kid; never key material.
//!
//! A reload that fails (state unreadable, active key missing or garbage) keeps the last good
//! keys, so the server goes on signing with the previous key. That is made visible: a warning
//! naming the file, `auth_key_reloads_total{outcome="failed"}` and `auth_key_reload_failing`,
//! `/readyz` 503 with the reason once it has lasted [`FAILURE_VISIBLE_AFTER`] (a write in
//! progress is not a failure), and the instance's signer status
//! (`keys/private/.signer-<instance>.json`, rewritten on every reload and every
//! [`SIGNER_STATUS_HEARTBEAT`]) naming the key it really signs with, so `keys prune` refuses
//! to remove it.
//!
//! A published key whose public file stops being usable keeps its previous copy for
//! [`REMOVAL_GRACE`] (a non-atomic writer rewriting it), then leaves the JWKS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use access_token::keyset::{REMOVAL_GRACE, ReloadTrigger};
use access_token::public_key::PublicKey;
use access_token::watch::{self, WatchOptions};
use access_token::{KeySet, TrustedKeys};
use arc_swap::{ArcSwap, Guard};
use tokio::task::JoinHandle;

use crate::key_folder::{
    KeyFolder, KeyState, KeyStatus, Loaded, SIGNER_STATUS_HEARTBEAT, SignerStatus, now_secs,
};
use crate::tokens::Signer;

/// How long a reload must keep failing before `/readyz` says so: a `keys` command or a
/// non-atomic writer in the middle of its writes is not a failure.
pub const FAILURE_VISIBLE_AFTER: Duration = Duration::from_secs(3);

/// What the server signs and publishes with: the active signer and every published public key
/// (with their JWKS), built from one read of the key folder; replaced whole on reload.
#[derive(Debug)]
pub struct SigningKeys {
    signer: Arc<Signer>,
    public: Vec<PublicKey>,
    jwks: String,
    state: KeyState,
}

impl SigningKeys {
    /// The keys of one folder read: `signer` (the state's active key), every published public
    /// key, and the state they come from.
    pub fn new(signer: Signer, public: Vec<PublicKey>, state: KeyState) -> Self {
        let jwks =
            serde_json::json!({ "keys": public.iter().map(PublicKey::jwk).collect::<Vec<_>>() })
                .to_string();
        Self { signer: Arc::new(signer), public, jwks, state }
    }

    /// The active signer.
    pub fn signer(&self) -> &Arc<Signer> {
        &self.signer
    }

    /// Every published key (published, active, retired).
    pub fn public_keys(&self) -> &[PublicKey] {
        &self.public
    }

    /// The public key named `kid`.
    pub fn public_key(&self, kid: &str) -> Option<&PublicKey> {
        self.public.iter().find(|k| k.kid() == kid)
    }

    /// The RFC 7517 JWK Set, serialized once.
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }

    /// The key state this ring was built from.
    pub fn state(&self) -> &KeyState {
        &self.state
    }

    /// One line for logs: the active kid and the other kids by state (kids only, never keys).
    pub fn summary(&self) -> String {
        let list = |status| {
            let kids = self.state.kids_in(status);
            if kids.is_empty() { "none".to_owned() } else { kids.join(", ") }
        };
        format!(
            "active {}; published: {}; retired: {}; {} key(s) in the JWKS",
            self.signer.kid(),
            list(KeyStatus::Published),
            list(KeyStatus::Retired),
            self.public.len()
        )
    }
}

/// The live [`SigningKeys`] of a running server, the verifier keys fed from them, and how the
/// last reloads went.
pub struct LiveSigningKeys {
    folder: KeyFolder,
    current: ArcSwap<SigningKeys>,
    verifier_keys: Arc<TrustedKeys>,
    /// This process in the folder's signer statuses.
    instance: String,
    health: Mutex<Health>,
}

impl std::fmt::Debug for LiveSigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSigningKeys")
            .field("active", &self.current.load().signer().kid())
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// What the reloads have found.
#[derive(Debug, Default)]
struct Health {
    /// Since when reloads fail, and why (file names only, no path).
    failing: Option<(Instant, String)>,
    /// Published keys whose file is unusable, kept from the previous ring since when.
    missing_since: HashMap<String, Instant>,
}

impl LiveSigningKeys {
    /// The keys `initial` (loaded from `folder`), feeding `verifier_keys` on every reload.
    pub fn new(folder: KeyFolder, initial: SigningKeys, verifier_keys: Arc<TrustedKeys>) -> Self {
        let mut id = [0u8; 6];
        // Not a secret; on the (unlikely) RNG failure, the pid and clock still tell apart.
        if aws_lc_rs::rand::fill(&mut id).is_err() {
            id[..4].copy_from_slice(&std::process::id().to_le_bytes());
            id[4..].copy_from_slice(&(now_secs() as u16).to_le_bytes());
        }
        Self {
            folder,
            current: ArcSwap::from_pointee(initial),
            verifier_keys,
            instance: id.iter().map(|b| format!("{b:02x}")).collect(),
            health: Mutex::new(Health::default()),
        }
    }

    /// The live keys. Cheap; hold the guard only briefly and never across an `.await`.
    pub fn load(&self) -> Guard<Arc<SigningKeys>> {
        self.current.load()
    }

    /// `Err(reason)` once reloads have failed for [`FAILURE_VISIBLE_AFTER`]: the server signs
    /// with the previous key, not the one the key state names. The reason names files, never
    /// a path, and the kid still signing.
    pub fn readiness(&self) -> Result<(), String> {
        let health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        match &health.failing {
            Some((since, reason)) if since.elapsed() >= FAILURE_VISIBLE_AFTER => Err(format!(
                "the signing keys cannot be reloaded ({reason}); still signing with {}",
                self.current.load().signer().kid()
            )),
            _ => Ok(()),
        }
    }

    /// Re-reads the folder now. Returns whether new keys are live; on failure the last good
    /// keys stay, and the failure is logged, counted and reported (see the module docs).
    pub async fn reload(&self, trigger: ReloadTrigger) -> bool {
        let previous = self.current.load_full();
        let folder = self.folder.clone();
        let last_good = Arc::clone(&previous);
        let missing = self.health().missing_since.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let may_keep = |kid: &str| missing.get(kid).is_none_or(|t| t.elapsed() < REMOVAL_GRACE);
            folder.load_with(Some(&last_good), &may_keep)
        })
        .await;
        let loaded = match loaded {
            Ok(Ok(Some(loaded))) => loaded,
            Ok(Ok(None)) => {
                let state = self.folder.state_path();
                let reason = "state.json names no active key".to_owned();
                self.failed(
                    trigger,
                    &previous,
                    &format!("{} names no active key", state.display()),
                    reason,
                )
                .await;
                return false;
            }
            Ok(Err(e)) => {
                self.failed(trigger, &previous, &e.to_string(), e.public_reason()).await;
                return false;
            }
            Err(_) => {
                let reason = "the load task died".to_owned();
                self.failed(trigger, &previous, &reason, reason.clone()).await;
                return false;
            }
        };
        self.loaded(trigger, &previous, loaded).await;
        true
    }

    async fn loaded(&self, trigger: ReloadTrigger, previous: &SigningKeys, loaded: Loaded) {
        for warning in &loaded.warnings {
            log::warn!("key reload ({trigger}): {warning}");
        }
        {
            let mut health = self.health();
            if health.failing.take().is_some() {
                log::info!("key reload ({trigger}): the keys folder reads cleanly again");
            }
            let now = Instant::now();
            let missing = std::mem::take(&mut health.missing_since);
            health.missing_since = loaded
                .kept
                .iter()
                .map(|kid| (kid.clone(), missing.get(kid).copied().unwrap_or(now)))
                .collect();
        }
        crate::metrics::key_reload(true);
        let ring = loaded.ring;
        if ring.signer().kid() != previous.signer().kid() {
            log::info!(
                "signing key changed: now {}, was {}",
                ring.signer().kid(),
                previous.signer().kid()
            );
        }
        log::info!("key reload ({trigger}) ok: {}", ring.summary());
        // The status first: `prune` must not take the old signer for the live one.
        self.write_status(ring.signer().kid(), None).await;
        // The verifier before the signer: it then knows every kid the new signer can produce.
        self.verifier_keys.update(KeySet::from_keys(ring.public_keys().iter().cloned()));
        self.current.store(Arc::new(ring));
    }

    async fn failed(
        &self,
        trigger: ReloadTrigger,
        previous: &SigningKeys,
        log: &str,
        reason: String,
    ) {
        log::warn!(
            "key reload ({trigger}) failed: {log}; keeping the last good keys (active {})",
            previous.signer().kid()
        );
        crate::metrics::key_reload(false);
        self.health().failing.get_or_insert_with(|| (Instant::now(), String::new())).1 =
            reason.clone();
        self.write_status(previous.signer().kid(), Some(reason)).await;
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When a reload must run even if nothing changes: when a kept copy's grace ends.
    fn recheck_at(&self) -> Option<Instant> {
        self.health().missing_since.values().map(|since| *since + REMOVAL_GRACE).min()
    }

    /// Writes this instance's signer status (see the module docs); a failure is logged, the
    /// next heartbeat tries again.
    async fn write_status(&self, kid: &str, reload_failing: Option<String>) {
        let status = SignerStatus {
            instance: self.instance.clone(),
            host: std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()),
            pid: std::process::id(),
            kid: kid.to_owned(),
            reload_failing,
            updated: now_secs(),
        };
        let folder = self.folder.clone();
        match tokio::task::spawn_blocking(move || folder.write_signer_status(&status)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::warn!("cannot write the signer status: {e}"),
            Err(_) => log::warn!("cannot write the signer status: the task died"),
        }
    }

    /// Re-reads the folder whenever `keys/` changes (file events, the 1 s poll, SIGHUP: the
    /// shared folder watcher, [`access_token::watch`], over `private/` and `public/`), and
    /// rewrites the signer status every [`SIGNER_STATUS_HEARTBEAT`], on the current tokio
    /// runtime until it shuts down.
    pub fn spawn(self: &Arc<Self>) -> JoinHandle<()> {
        let heartbeat = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SIGNER_STATUS_HEARTBEAT);
            loop {
                tick.tick().await;
                let kid = heartbeat.load().signer().kid().to_owned();
                let failing = heartbeat.health().failing.as_ref().map(|(_, r)| r.clone());
                heartbeat.write_status(&kid, failing).await;
            }
        });
        let this = Arc::clone(self);
        let dir = self.folder.dir().to_owned();
        watch::spawn_watch(dir, WatchOptions::default().with_subfolders(), move |trigger| {
            let this = Arc::clone(&this);
            async move {
                this.reload(trigger).await;
                this.recheck_at()
            }
        })
    }

    /// Removes this instance's signer status (on a graceful stop: it signs nothing any more).
    pub fn remove_status(&self) {
        if let Err(e) = self.folder.remove_signer_status(&self.instance) {
            log::warn!("cannot remove the signer status: {e}");
        }
    }
}
