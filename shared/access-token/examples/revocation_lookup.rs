//! Measures the request-path cost of the revocation check: `RevocationList::check` (SHA-256 of
//! the `sid` + one lock-free shard lookup) on a list of N entries, by R reader threads, with
//! the follower's writer idle and then applying one entry every millisecond (a logout storm).
//! If readers contended with the writer (a lock), the second figure would be far above the
//! first.
//!
//! ```sh
//! cargo run --release -p access-token --example revocation_lookup -- [entries] [readers] [secs]
//! ```
//!
//! Prints `revocation_check entries=N readers=R idle_ns=… storm_ns=… updates=…`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use access_token::AccessClaims;
use access_token::revocation::{Page, RevocationList, SidDigest};

fn claims(sid: String) -> AccessClaims {
    let json = serde_json::json!({
        "iss": "i", "aud": "a", "sub": "u", "preferred_username": "p", "scope": "s",
        "iat": 1, "exp": 2, "jti": "j", "sid": sid
    });
    serde_json::from_value(json).unwrap_or_else(|e| {
        eprintln!("claims: {e}");
        std::process::exit(1)
    })
}

/// Nanoseconds per check over `readers` threads for `secs`, while `storm` updates the list.
fn run(list: &Arc<RevocationList>, readers: usize, secs: f64, storm: bool) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let updates = Arc::new(AtomicU64::new(0));
    let writer = storm.then(|| {
        let (list, stop, updates) = (Arc::clone(list), Arc::clone(&stop), Arc::clone(&updates));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let page = Page {
                    cursor: "c".into(),
                    reset: false,
                    revoked: vec![(SidDigest::of(&format!("storm-{i}")), u64::MAX)],
                };
                list.apply(&page, 0);
                i += 1;
                updates.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    });
    let handles: Vec<_> = (0..readers)
        .map(|r| {
            let (list, stop) = (Arc::clone(list), Arc::clone(&stop));
            std::thread::spawn(move || {
                // Live sessions (not listed): the common case, a full lookup every time.
                let tokens: Vec<AccessClaims> =
                    (0..1024).map(|i| claims(format!("live-{r}-{i}-xxxxxxxxxxxx"))).collect();
                let (mut n, started) = (0u64, Instant::now());
                while !stop.load(Ordering::Relaxed) {
                    for c in &tokens {
                        if list.check(c).is_err() {
                            std::process::exit(2);
                        }
                    }
                    n += tokens.len() as u64;
                }
                started.elapsed().as_nanos() as f64 / n as f64
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let per: Vec<f64> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
    if let Some(w) = writer {
        let _ = w.join();
    }
    (per.iter().sum::<f64>() / per.len().max(1) as f64, updates.load(Ordering::Relaxed))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: f64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (entries, readers, secs) = (arg(1, 10_000.0) as u64, arg(2, 2.0) as usize, arg(3, 2.0));
    let list = Arc::new(RevocationList::new(None));
    let page = Page {
        cursor: "c".into(),
        reset: true,
        revoked: (0..entries).map(|i| (SidDigest::of(&format!("ended-{i}")), u64::MAX)).collect(),
    };
    list.apply(&page, 0);
    let (idle, _) = run(&list, readers, secs, false);
    let (storm, updates) = run(&list, readers, secs, true);
    println!(
        "revocation_check entries={entries} readers={readers} idle_ns={idle:.1} storm_ns={storm:.1} updates={updates}"
    );
}
