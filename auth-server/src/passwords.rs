//! Password hashing: argon2id PHC strings (OWASP: m = 19456 KiB, t = 2, p = 1), always on a
//! small pool of threads of its own so a login never stalls the async workers, and at most a few at a time (each
//! takes 19 MiB and a core): further requests wait their turn in a bounded queue, and past it
//! get a 503 at once instead of exhausting memory (see [`Hasher`]).

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

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

/// The largest argon2 memory a stored PHC string may ask for (KiB); ours use 19 MiB.
const MAX_M_COST: u32 = 256 * 1024;

thread_local! {
    /// The argon2 working memory of this hashing thread, kept between runs. Each pool thread
    /// allocates its 19 MiB once, so the process's memory is bounded by the pool size (left
    /// to the allocator, freed 19 MiB chunks pile up in per-thread arenas: 500+ MiB seen).
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

fn run_argon2(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), HashError> {
    if params.m_cost() > MAX_M_COST {
        return Err(HashError::Failed(format!("m_cost {} is over the limit", params.m_cost())));
    }
    let count = params.block_count();
    let failed = |e: argon2::Error| HashError::Failed(e.to_string());
    BLOCKS
        .with(|cell| match cell.try_borrow_mut() {
            Ok(mut blocks) => {
                if blocks.len() < count {
                    blocks.resize(count, Block::default());
                }
                argon2.hash_password_into_with_memory(password, salt, out, &mut blocks[..count])
            }
            // Not reachable (nothing re-enters); a fresh buffer rather than a panic.
            Err(_) => argon2.hash_password_into(password, salt, out),
        })
        .map_err(failed)
}

fn hash_blocking(password: &Password) -> Result<String, HashError> {
    let failed = |e: &dyn fmt::Display| HashError::Failed(e.to_string());
    let params = Params::new(19_456, 2, 1, Some(32)).map_err(|e| failed(&e))?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt)
        .map_err(|_| HashError::Failed("random generator failed".into()))?;
    let mut out = [0u8; 32];
    run_argon2(&argon2, &params, password.expose().as_bytes(), &salt, &mut out)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| failed(&e))?;
    let hash = Output::new(&out).map_err(|e| failed(&e))?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${hash}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        salt.as_str()
    ))
}

fn verify_blocking(password: &Password, phc: &str) -> bool {
    // The parameters come from the PHC string, so older hashes keep verifying.
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let Ok(version) = parsed.version.map_or(Ok(Version::V0x13), Version::try_from) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    if run_argon2(&argon2, &params, password.expose().as_bytes(), salt, &mut out).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|computed| computed == expected)
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads that run argon2 (each keeping its working memory).
struct Pool {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            let spawned =
                std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                    loop {
                        // The lock is held only while taking a job, not while running it.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        // Every sender is gone (the server stopped): end the thread.
                        let Ok(job) = job else { return };
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                log::error!("cannot start an argon2 thread: {e}");
            }
        }
        Self { jobs }
    }
}

/// Runs argon2 on a pool of `concurrency` threads, with at most `queue` more runs waiting;
/// past that, [`HashError::Busy`] at once. So a flood of logins holds a bounded amount of
/// memory (each thread keeps its 19 MiB) and leaves the async workers, and the cores not
/// hashing, to `/token`, `/healthz` and the JWKS. Cheap to clone (one limiter for all).
#[derive(Clone)]
pub struct Hasher {
    pool: Arc<Pool>,
    admitted: Arc<Semaphore>,
    concurrency: usize,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("concurrency", &self.concurrency)
            .field("free_slots", &self.admitted.available_permits())
            .finish()
    }
}

impl Hasher {
    /// At most `concurrency` (at least 1) hashes at once and `queue` waiting.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            pool: Arc::new(Pool::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency.saturating_add(queue))),
            concurrency,
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
        // Admission without waiting: a full queue is an immediate 503. The permit moves into
        // the job, so it is released when the hashing ends, even if the request has gone.
        let admission = self.admitted.clone().try_acquire_owned().map_err(|_| HashError::Busy)?;
        let (done, result) = tokio::sync::oneshot::channel();
        // `auth_argon2_queue_depth` until a hashing thread takes the job, then `_running`.
        let queued = crate::metrics::Argon2Queued::enter();
        let job: Job = Box::new(move || {
            drop(queued);
            let _running = crate::metrics::Argon2Running::enter();
            let _admission = admission;
            let _ = done.send(work());
        });
        self.pool.jobs.send(job).map_err(|_| HashError::Failed("no hashing thread".into()))?;
        result.await.map_err(|_| HashError::Failed("the hashing thread died".into()))
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
        // A hash made by the argon2 crate's own API (as before the pool) still verifies.
        use argon2::password_hash::PasswordHasher as _;
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let params = Params::new(19_456, 2, 1, None).unwrap();
        let old = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(
            hasher
                .verify(Password::new("correct horse".into()), Arc::from(old.clone()))
                .await
                .unwrap()
        );
        assert!(!hasher.verify(Password::new("wrong horse".into()), Arc::from(old)).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_queue_hashing_is_refused_at_once() {
        let hasher = Hasher::new(1, 1);
        // A deliberately costly PHC (64 MiB, 30 passes: about a second or more per check), so
        // the first check still holds the only slot and the second still waits in the queue
        // when the third arrives, however fast or loaded the machine is. The parameters come
        // from the PHC string; the hash is wrong on purpose (every check answers false).
        let phc: Arc<str> = Arc::from(
            "$argon2id$v=19$m=65536,t=30,p=1$c29tZXNhbHRzb21lc2FsdA$\
             AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        );
        let (a, b) = (hasher.clone(), hasher.clone());
        let (p1, p2) = (phc.clone(), phc.clone());
        let first = tokio::spawn(async move { a.verify(Password::new("x".into()), p1).await });
        let second = tokio::spawn(async move { b.verify(Password::new("y".into()), p2).await });
        // Wait until both hold their slot (the first hashing, the second queued).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while hasher.admitted.available_permits() > 0 {
            assert!(std::time::Instant::now() < deadline, "the two hashes never started");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
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
