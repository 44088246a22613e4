//! What `WAIT 1 200` costs a write: the latency of a `SET` alone vs a `SET` followed by
//! `WAIT 1 200` (two round trips, as the server does after a rotation, a new session or a
//! registration when the deployment has replicas), on one connection to a master that has a
//! replica. Rounds alternate (ABBA), so a busy neighbour weighs on both sides alike.
//!
//! `cargo run --release -p auth-server --example wait_cost -- URL [OPS] [ROUNDS]` (URL: the
//! master, e.g. `redis://127.0.0.1:6380`; OPS per side per round, default 2000; ROUNDS default
//! 4) prints one line: `set_p50_us=… set_p99_us=… set_mean_us=… wait_p50_us=… wait_p99_us=…
//! wait_mean_us=… acked=<writes a replica acknowledged> ops=<per side>`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: wait_cost URL [OPS] [ROUNDS]");
        return ExitCode::FAILURE;
    };
    let ops: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4);
    match measure(&url, ops, rounds) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wait_cost: {e}");
            ExitCode::FAILURE
        }
    }
}

fn measure(url: &str, ops: usize, rounds: usize) -> redis::RedisResult<String> {
    let mut conn = redis::Client::open(url)?.get_connection()?;
    let (mut set, mut waited) = (Vec::new(), Vec::new());
    let mut acked = 0_usize;
    for round in 0..rounds {
        // ABBA: SET first in even rounds, SET + WAIT first in odd ones.
        for with_wait in [round % 2 == 1, round % 2 == 0] {
            for i in 0..ops {
                let start = Instant::now();
                redis::cmd("SET").arg(format!("bench:wait:{i}")).arg(i).exec(&mut conn)?;
                if with_wait {
                    let replicas: i64 = redis::cmd("WAIT").arg(1).arg(200).query(&mut conn)?;
                    acked += usize::from(replicas > 0);
                    waited.push(start.elapsed());
                } else {
                    set.push(start.elapsed());
                }
            }
        }
    }
    let (s, w) = (stats(&mut set), stats(&mut waited));
    Ok(format!(
        "set_p50_us={} set_p99_us={} set_mean_us={} wait_p50_us={} wait_p99_us={} \
         wait_mean_us={} acked={acked} ops={}",
        s.0,
        s.1,
        s.2,
        w.0,
        w.1,
        w.2,
        waited.len()
    ))
}

/// (p50, p99, mean) in whole microseconds.
fn stats(samples: &mut [Duration]) -> (u128, u128, u128) {
    if samples.is_empty() {
        return (0, 0, 0);
    }
    samples.sort_unstable();
    let at = |q: usize| samples[(samples.len() * q / 100).min(samples.len() - 1)].as_micros();
    let total: Duration = samples.iter().sum();
    (at(50), at(99), total.as_micros() / samples.len() as u128)
}
