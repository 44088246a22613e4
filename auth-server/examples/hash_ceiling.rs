//! The argon2 ceiling: how many password checks per second this machine's cores can do with
//! the parameters the server hashes with, through the server's own [`Hasher`] (the blocking
//! pool, one run per core). `POST /login` costs one such check, so this is its upper bound;
//! `scripts/bench` compares the two.
//!
//! `cargo run --release -p auth-server --example hash_ceiling -- [SECONDS] [THREADS]`
//! prints one line: `argon2_checks_per_sec=<rate> threads=<n> checks=<count> seconds=<s>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_server::passwords::{Hasher, Password};

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let threads: usize =
        args.next().and_then(|s| s.parse().ok()).unwrap_or_else(Hasher::default_concurrency);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hash_ceiling: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let hasher = Hasher::new(threads, threads);
        let phc: Arc<str> = match hasher.hash(Password::new("bench password 1".into())).await {
            Ok(phc) => Arc::from(phc),
            Err(e) => {
                eprintln!("hash_ceiling: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let done = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let start = Instant::now();
        let loops: Vec<_> = (0..threads)
            .map(|_| {
                let (hasher, phc, done) = (hasher.clone(), Arc::clone(&phc), Arc::clone(&done));
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let password = Password::new("bench password 1".into());
                        if matches!(hasher.verify(password, Arc::clone(&phc)).await, Ok(true)) {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for l in loops {
            let _ = l.await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let checks = done.load(Ordering::Relaxed);
        println!(
            "argon2_checks_per_sec={:.1} threads={threads} checks={checks} seconds={elapsed:.2}",
            checks as f64 / elapsed
        );
        std::process::ExitCode::SUCCESS
    })
}
