//! The signing keys on disk.
//!
//! ```text
//! keys/private/<kid>.pem     PKCS#8 RSA private key, mode 0600
//! keys/private/state.json    {"active": "<kid>", "keys": {"<kid>": {"created", "activated", "retired", "bits"}}}
//! keys/public/<kid>.pem      SPKI public key (what the api-server mounts read-only)
//! ```
//!
//! Every file is written atomically (temp file in the same directory, fsync, rename), public key
//! first, then private key, then state: a reader never sees a state naming a key whose files are
//! not there yet. A key is *published* (in the JWKS, not signing), *active* (signing; at most one)
//! or *retired* (still in the JWKS until pruned). Loading builds a [`KeyRing`], swapped whole.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use serde::{Deserialize, Serialize};
use shared::keys::PublicKey;

use crate::tokens::Signer;

/// Size of the key generated on first start.
pub const DEFAULT_BITS: usize = 2048;

const STATE_FILE: &str = "state.json";

/// What can go wrong with the key store. Messages name files, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
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
    #[error("key {kid}: {reason}")]
    BadKey {
        /// The key's id.
        kid: String,
        /// What is wrong.
        reason: String,
    },
    /// The state names no such key.
    #[error("no key {0} in the key state")]
    UnknownKey(String),
    /// Unsupported RSA size.
    #[error("unsupported key size {0} (use 2048, 3072 or 4096)")]
    UnsupportedBits(usize),
    /// Key generation failed.
    #[error("RSA key generation failed")]
    Generate,
}

/// One key's entry in `state.json`. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    /// When the pair was generated.
    pub created: u64,
    /// When it became the signer, if ever.
    pub activated: Option<u64>,
    /// When it stopped signing, if it has.
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
}

/// What the server signs and publishes with; replaced whole on reload.
#[derive(Debug)]
pub struct KeyRing {
    signer: Arc<Signer>,
    public: Vec<PublicKey>,
    jwks: String,
}

impl KeyRing {
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
}

/// The `keys/` directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// The store rooted at `dir` (nothing is read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
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

    /// Creates `keys/` (0755), `private/` (0700) and `public/` (0755) when missing.
    pub fn ensure_dirs(&self) -> Result<(), KeyStoreError> {
        // The root first, so `public/` stays reachable for a reader running as another user.
        create_dir(&self.dir, 0o755)?;
        create_dir(&self.private_dir(), 0o700)?;
        create_dir(&self.public_dir(), 0o755)
    }

    /// Reads `state.json`; a missing file is an empty state.
    pub fn read_state(&self) -> Result<KeyState, KeyStoreError> {
        let path = self.state_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(KeyState::default()),
            Err(source) => return Err(KeyStoreError::Io { path, source }),
        };
        let state: KeyState = serde_json::from_str(&text)
            .map_err(|e| KeyStoreError::State { path: path.clone(), reason: e.to_string() })?;
        if let Some(kid) = state.keys.keys().find(|kid| !is_kid(kid)) {
            return Err(KeyStoreError::State { path, reason: format!("`{kid}` is not a kid") });
        }
        if let Some(active) = &state.active
            && !state.keys.contains_key(active)
        {
            return Err(KeyStoreError::State {
                path,
                reason: format!("active key {active} is not listed"),
            });
        }
        Ok(state)
    }

    /// Writes `state.json` atomically.
    pub fn write_state(&self, state: &KeyState) -> Result<(), KeyStoreError> {
        let path = self.state_path();
        let mut json = serde_json::to_vec_pretty(state)
            .map_err(|e| KeyStoreError::State { path: path.clone(), reason: e.to_string() })?;
        json.push(b'\n');
        write_atomic(&path, &json, 0o600)
    }

    /// Generates a pair and publishes it (public key, private key, then state); not signing yet.
    pub fn add(&self, bits: usize) -> Result<String, KeyStoreError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => return Err(KeyStoreError::UnsupportedBits(other)),
        };
        self.ensure_dirs()?;
        let pair = RsaKeyPair::generate(size).map_err(|_| KeyStoreError::Generate)?;
        let private_der = pair.as_der().map_err(|_| KeyStoreError::Generate)?;
        let public_der = pair.public_key().as_der().map_err(|_| KeyStoreError::Generate)?;
        let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", private_der.as_ref().to_vec()));
        let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", public_der.as_ref().to_vec()));
        let kid = PublicKey::from_pem(public_pem.as_bytes())
            .map_err(|e| KeyStoreError::BadKey { kid: "(new)".into(), reason: e.to_string() })?
            .kid()
            .to_owned();

        write_atomic(&self.public_path(&kid), public_pem.as_bytes(), 0o644)?;
        write_atomic(&self.private_path(&kid), private_pem.as_bytes(), 0o600)?;
        let mut state = self.read_state()?;
        state.keys.insert(
            kid.clone(),
            KeyMeta { created: now_secs(), activated: None, retired: None, bits },
        );
        self.write_state(&state)?;
        Ok(kid)
    }

    /// Makes `kid` the signer; the previous active key becomes retired.
    pub fn activate(&self, kid: &str) -> Result<(), KeyStoreError> {
        let mut state = self.read_state()?;
        if !state.keys.contains_key(kid) {
            return Err(KeyStoreError::UnknownKey(kid.to_owned()));
        }
        // Refuse to activate a key that cannot sign: load it first.
        self.load_signer(kid)?;
        let now = now_secs();
        if let Some(previous) = state.active.take()
            && previous != kid
            && let Some(meta) = state.keys.get_mut(&previous)
        {
            meta.retired = Some(now);
        }
        if let Some(meta) = state.keys.get_mut(kid) {
            meta.activated = Some(now);
            meta.retired = None;
        }
        state.active = Some(kid.to_owned());
        self.write_state(&state)
    }

    /// Loads the active signer and every published public key.
    pub fn load(&self) -> Result<Option<KeyRing>, KeyStoreError> {
        let state = self.read_state()?;
        let Some(active) = state.active.clone() else {
            return Ok(None);
        };
        let signer = self.load_signer(&active)?;
        let mut public = Vec::with_capacity(state.keys.len());
        for kid in state.keys.keys() {
            match self.load_public(kid) {
                Ok(key) => public.push(key),
                Err(e) if *kid == active => return Err(e),
                Err(e) => log::warn!("key {kid} left out of the JWKS: {e}"),
            }
        }
        let jwks =
            serde_json::json!({ "keys": public.iter().map(PublicKey::jwk).collect::<Vec<_>>() })
                .to_string();
        Ok(Some(KeyRing { signer: Arc::new(signer), public, jwks }))
    }

    /// Loads the keys; on a store without an active key, generates an RSA-2048 pair and
    /// activates it first (first start).
    pub fn load_or_init(&self) -> Result<KeyRing, KeyStoreError> {
        self.ensure_dirs()?;
        if let Some(ring) = self.load()? {
            return Ok(ring);
        }
        let kid = self.add(DEFAULT_BITS)?;
        self.activate(&kid)?;
        log::info!("generated signing key {kid} (RSA-{DEFAULT_BITS}) in {}", self.dir.display());
        self.load()?.ok_or(KeyStoreError::UnknownKey(kid))
    }

    fn load_public(&self, kid: &str) -> Result<PublicKey, KeyStoreError> {
        let path = self.public_path(kid);
        let pem = fs::read(&path).map_err(|source| KeyStoreError::Io { path, source })?;
        let key = PublicKey::from_pem(&pem)
            .map_err(|e| KeyStoreError::BadKey { kid: kid.to_owned(), reason: e.to_string() })?;
        if key.kid() != kid {
            return Err(KeyStoreError::BadKey {
                kid: kid.to_owned(),
                reason: "the public key's thumbprint does not match its file name".into(),
            });
        }
        Ok(key)
    }

    fn load_signer(&self, kid: &str) -> Result<Signer, KeyStoreError> {
        let bad =
            |reason: &str| KeyStoreError::BadKey { kid: kid.to_owned(), reason: reason.to_owned() };
        let path = self.private_path(kid);
        let text = fs::read(&path).map_err(|source| KeyStoreError::Io { path, source })?;
        let parsed = pem::parse(&text).map_err(|_| bad("the private key file is not PEM"))?;
        if parsed.tag() != "PRIVATE KEY" {
            return Err(bad("the private key file is not a PKCS#8 PRIVATE KEY"));
        }
        let pair = RsaKeyPair::from_pkcs8(parsed.contents())
            .map_err(|_| bad("the private key is not a usable PKCS#8 RSA key"))?;
        let public_der =
            pair.public_key().as_der().map_err(|_| bad("cannot encode its public key"))?;
        let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", public_der.as_ref().to_vec()));
        let public = PublicKey::from_pem(public_pem.as_bytes()).map_err(|e| bad(&e.to_string()))?;
        if public.kid() != kid {
            return Err(bad("the private key does not match its file name"));
        }
        Ok(Signer::new(kid.to_owned(), pair))
    }
}

/// A kid is an RFC 7638 SHA-256 thumbprint: 43 base64url characters. Checked before it
/// becomes part of a path.
pub fn is_kid(text: &str) -> bool {
    text.len() == 43 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn create_dir(path: &Path, mode: u32) -> Result<(), KeyStoreError> {
    let io_err = |source| KeyStoreError::Io { path: path.to_owned(), source };
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, mode);
    builder.create(path).map_err(io_err)?;
    // Explicitly, so the umask does not decide who can read `public/`.
    set_mode(path, mode).map_err(io_err)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Writes `bytes` to `path` through a temp file in the same directory: fsync, rename, fsync dir.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyStoreError> {
    let io_err = |source| KeyStoreError::Io { path: path.to_owned(), source };
    let dir = path.parent().ok_or_else(|| io_err(io::ErrorKind::InvalidInput.into()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let mut suffix = [0u8; 8];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|_| io_err(io::Error::other("random")))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.tmp-{suffix}"));

    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp)?;
        set_mode(&tmp, mode)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_generates_an_active_key_in_the_contract_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("keys");
        let store = KeyStore::new(&root);
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
        }
        // No temp files left behind.
        for dir in [store.private_dir(), store.public_dir()] {
            for entry in fs::read_dir(dir).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                assert!(!name.starts_with('.'), "{name}");
            }
        }

        // A second start loads the same key.
        let again = store.load_or_init().unwrap();
        assert_eq!(again.signer().kid(), kid);
        assert_eq!(again.public_keys().len(), 1);
    }

    #[test]
    fn activating_another_key_retires_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let first = store.load_or_init().unwrap().signer().kid().to_owned();
        let second = store.add(2048).unwrap();
        let ring = store.load().unwrap().unwrap();
        assert_eq!(ring.signer().kid(), first);
        assert_eq!(ring.public_keys().len(), 2);
        assert_eq!(store.read_state().unwrap().status(&second), Some(KeyStatus::Published));

        store.activate(&second).unwrap();
        let state = store.read_state().unwrap();
        assert_eq!(state.status(&first), Some(KeyStatus::Retired));
        assert_eq!(state.status(&second), Some(KeyStatus::Active));
        assert_eq!(store.load().unwrap().unwrap().signer().kid(), second);
    }

    #[test]
    fn a_private_key_under_another_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let first = store.load_or_init().unwrap().signer().kid().to_owned();
        let second = store.add(2048).unwrap();
        fs::copy(store.private_path(&first), store.private_path(&second)).unwrap();
        assert!(matches!(store.activate(&second), Err(KeyStoreError::BadKey { .. })));
    }
}
