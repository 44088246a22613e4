//! Picking up key changes without a restart.
//!
//! The shared folder watcher ([`access_token::watch`]: file events, a 1 s fingerprint poll,
//! SIGHUP) calls [`Reloader::reload`] whenever `keys/` may have changed. A reload builds a new
//! [`SigningKeys`] (signer + JWKS) and a new verifier [`KeySet`] and swaps both whole; a reload that
//! fails (state unreadable, active key missing or garbage) keeps the last good ring and logs a
//! warning naming the file. Every reload is logged, with the active kid; never key material.

use std::sync::Arc;

use access_token::keyset::ReloadTrigger;
use access_token::watch::{self, WatchOptions};
use access_token::{KeySet, TrustedKeys};
use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use access_token::public_key::PublicKey;

use crate::key_folder::{KeyFolder, KeyState, KeyStatus};
use crate::tokens::Signer;

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

/// Re-reads the key store into the live signer and verifier keys.
#[derive(Debug, Clone)]
pub struct Reloader {
    store: KeyFolder,
    ring: Arc<ArcSwap<SigningKeys>>,
    verifier_keys: Arc<TrustedKeys>,
}

impl Reloader {
    /// A reloader for `store` feeding the server's `ring` and `verifier_keys`.
    pub fn new(
        store: KeyFolder,
        ring: Arc<ArcSwap<SigningKeys>>,
        verifier_keys: Arc<TrustedKeys>,
    ) -> Self {
        Self { store, ring, verifier_keys }
    }

    /// Re-reads the store now. Returns whether a new ring is live; on failure the last good
    /// ring stays and a warning is logged.
    pub async fn reload(&self, trigger: ReloadTrigger) -> bool {
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

    /// Re-reads the store whenever `keys/` changes (file events, the 1 s poll, SIGHUP: the
    /// shared folder watcher, [`access_token::watch`], over `private/` and `public/`), on the
    /// current tokio runtime until it shuts down.
    pub fn spawn(self) -> JoinHandle<()> {
        let dir = self.store.dir().to_owned();
        watch::spawn_watch(dir, WatchOptions::default().with_subfolders(), move |trigger| {
            let this = self.clone();
            async move {
                this.reload(trigger).await;
            }
        })
    }
}
