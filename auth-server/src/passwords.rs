//! Password hashing: argon2id PHC strings (OWASP: m = 19456 KiB, t = 2, p = 1), always on the
//! blocking pool so a login never stalls the async workers, and at most a few at a time (each
//! takes 19 MiB and a core): further requests wait their turn instead of exhausting memory.

use std::fmt;
use std::sync::{Arc, OnceLock};

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

/// Hashing could not run (bad parameters, RNG failure, or the blocking task died).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(19_456, 2, 1, None).map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &Password) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| HashError("random generator failed".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    let phc = argon2()?
        .hash_password(password.expose().as_bytes(), &salt)
        .map_err(|e| HashError(e.to_string()))?;
    Ok(phc.to_string())
}

fn verify_blocking(password: &Password, phc: &str) -> bool {
    // The parameters come from the PHC string, so older hashes keep verifying.
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default().verify_password(password.expose().as_bytes(), &parsed).is_ok()
}

/// Concurrent argon2 runs allowed: two per core.
fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Semaphore::new(cores * 2)
    })
}

async fn bounded<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HashError> {
    let permit = permits().acquire().await.map_err(|e| HashError(e.to_string()))?;
    // The permit moves into the task: it is released when the hashing ends, even if the
    // request that asked for it has gone.
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|e| HashError(e.to_string()))
}

/// Hashes `password` into a PHC string, off the async workers.
pub async fn hash(password: Password) -> Result<String, HashError> {
    bounded(move || hash_blocking(&password)).await?
}

/// Checks `password` against `phc`, off the async workers. A malformed PHC is a mismatch.
pub async fn verify(password: Password, phc: Arc<str>) -> Result<bool, HashError> {
    bounded(move || verify_blocking(&password, &phc)).await
}

/// A PHC string of a random password, computed at start-up: logins of unknown users verify
/// against it, so they cost the same time as a wrong password.
pub async fn dummy_hash() -> Result<Arc<str>, HashError> {
    let mut random = [0u8; 24];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| HashError("random generator failed".into()))?;
    let text: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Arc::from(hash(Password::new(text)).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let phc = hash(Password::new("correct horse".into())).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        let phc: Arc<str> = Arc::from(phc);
        assert!(verify(Password::new("correct horse".into()), phc.clone()).await.unwrap());
        assert!(!verify(Password::new("correct horsE".into()), phc).await.unwrap());
        assert!(!verify(Password::new("x".into()), Arc::from("not a phc")).await.unwrap());
    }

    #[test]
    fn debug_never_shows_the_password() {
        assert!(!format!("{:?}", Password::new("hunter22".into())).contains("hunter22"));
    }
}
