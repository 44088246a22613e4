//! The harness against real `redis-server` processes: what it starts is what it claims, and its
//! fault operations leave the deployment in the state they promise.
//!
//! Start-up and failover times are printed (run with `--nocapture`), never asserted.

#![allow(clippy::expect_used, clippy::panic)] // tests fail loudly

mod cluster;
mod mode;
mod sentinel;
mod standalone;

use std::time::{Duration, Instant};

/// Runs `f`, printing how long it took under `what`.
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    println!("{what}: {:?}", started.elapsed());
    value
}

/// Whether an error reply is a permission refusal (`NOPERM`).
pub fn is_noperm(e: &redis::RedisError) -> bool {
    e.code() == Some("NOPERM") || e.to_string().contains("NOPERM")
}

/// Ports in URLs such as `redis://user:pw@127.0.0.1:7000`.
pub fn url_port(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port at the end of the url")
}

pub const SHORT: Duration = Duration::from_millis(1000);
