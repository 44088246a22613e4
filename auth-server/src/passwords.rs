//! Password hashing: argon2id PHC strings (OWASP: m = 19456 KiB, t = 2, p = 1), always on the
//! blocking pool so a login never stalls the async workers, and at most a few at a time (each
//! takes 19 MiB and a core): further requests wait their turn in a bounded queue, and past it
//! get a 503 at once instead of exhausting memory (see [`Hasher`]).

use std::fmt;
use std::sync::Arc;

use tokio::sync::Semaphore;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// A plain password. `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Wraps a password received from a client.
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The text, for hashing and length checks only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Hashing could not run.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot is taken and the wait queue is full: answer 503, retry later.
    #[error("password hashing is saturated")]
    Busy,
    /// Bad parameters, RNG failure, or the blocking task died.
    #[error("password hashing failed: {0}")]
    Failed(String),
}

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(19_456, 2, 1, None).map_err(|e| HashError::Failed(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &Password) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt)
        .map_err(|_| HashError::Failed("random generator failed".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError::Failed(e.to_string()))?;
    let phc = argon2()?
        .hash_password(password.expose().as_bytes(), &salt)
        .map_err(|e| HashError::Failed(e.to_string()))?;
    Ok(phc.to_string())
}

fn verify_blocking(password: &Password, phc: &str) -> bool {
    // The parameters come from the PHC string, so older hashes keep verifying.
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default().verify_password(password.expose().as_bytes(), &parsed).is_ok()
}

/// Runs argon2 on the blocking pool, at most `concurrency` at a time, with at most `queue`
/// more waiting; past that, [`HashError::Busy`] at once. So a flood of logins holds a bounded
/// amount of memory (each run takes 19 MiB) and leaves the async workers, and the cores not
/// hashing, to `/token`, `/healthz` and the JWKS. Cheap to clone (one limiter for all).
#[derive(Debug, Clone)]
pub struct Hasher {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
}

impl Hasher {
    /// At most `concurrency` (at least 1) hashes at once and `queue` waiting.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency.saturating_add(queue))),
        }
    }

    /// The number of cores, the default concurrency.
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    }

    async fn bounded<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        // Admission first, without waiting: a full queue is an immediate 503. A request that
        // goes away while queued drops its admission with it.
        let admission = self.admitted.clone().try_acquire_owned().map_err(|_| HashError::Busy)?;
        let permit = self.running.clone().acquire_owned().await.map_err(|_| HashError::Busy)?;
        // Both permits move into the task: they are released when the hashing ends, even if
        // the request that asked for it has gone.
        tokio::task::spawn_blocking(move || {
            let _held = (admission, permit);
            work()
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))
    }

    /// Hashes `password` into a PHC string, off the async workers.
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        self.bounded(move || hash_blocking(&password)).await?
    }

    /// Checks `password` against `phc`, off the async workers. A malformed PHC is a mismatch.
    pub async fn verify(&self, password: Password, phc: Arc<str>) -> Result<bool, HashError> {
        self.bounded(move || verify_blocking(&password, &phc)).await
    }

    /// A PHC string of a random password, computed at start-up: logins of unknown users verify
    /// against it (through the same limiter), so they cost the same time as a wrong password.
    pub async fn dummy_hash(&self) -> Result<Arc<str>, HashError> {
        let mut random = [0u8; 24];
        aws_lc_rs::rand::fill(&mut random)
            .map_err(|_| HashError::Failed("random generator failed".into()))?;
        let text: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Arc::from(self.hash(Password::new(text)).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = Hasher::new(2, 4);
        let phc = hasher.hash(Password::new("correct horse".into())).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        let phc: Arc<str> = Arc::from(phc);
        assert!(hasher.verify(Password::new("correct horse".into()), phc.clone()).await.unwrap());
        assert!(!hasher.verify(Password::new("correct horsE".into()), phc).await.unwrap());
        assert!(!hasher.verify(Password::new("x".into()), Arc::from("not a phc")).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_queue_hashing_is_refused_at_once() {
        let hasher = Hasher::new(1, 1);
        let phc = hasher.dummy_hash().await.unwrap();
        let (a, b) = (hasher.clone(), hasher.clone());
        let (p1, p2) = (phc.clone(), phc.clone());
        let first = tokio::spawn(async move { a.verify(Password::new("x".into()), p1).await });
        let second = tokio::spawn(async move { b.verify(Password::new("y".into()), p2).await });
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let third = hasher.verify(Password::new("z".into()), phc).await;
        assert!(matches!(third, Err(HashError::Busy)), "{third:?}");
        assert!(!first.await.unwrap().unwrap());
        assert!(!second.await.unwrap().unwrap());
    }

    #[test]
    fn debug_never_shows_the_password() {
        assert!(!format!("{:?}", Password::new("hunter22".into())).contains("hunter22"));
    }
}
