//! Test harness shared by the integration tests of every crate.
//!
//! Every Redis it starts runs from `PATH` on free loopback ports, in temp dirs, and is killed by
//! PID on drop, so tests never touch a developer's Redis on 6379:
//! - [`RedisServer`]: one server, optionally with AOF, `requirepass`, ACL users and TLS
//!   ([`RedisServer::builder`]);
//! - [`RedisCluster`]: 3 primaries + 3 replicas, with failover, kill/restart and resharding;
//! - [`RedisSentinel`]: a primary, a replica and 3 sentinels, with failover and kill/restart;
//! - [`TestRedis`]: one of the three, picked by `TEST_REDIS_MODE`, with the `AUTH_REDIS_*`
//!   variables a server under test needs and mode-independent inspection helpers.

#![allow(clippy::expect_used, clippy::panic)] // a test harness: failing loudly is its job

mod access;
mod cluster;
mod mode;
mod node;
mod sentinel;
mod standalone;
mod tls;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use access::RedisOptions;
pub use cluster::{ClusterNode, NodeRole, RedisCluster, RedisClusterBuilder, Reshard};
pub use mode::{RedisMode, TestConnection, TestRedis};
pub use sentinel::{RedisSentinel, RedisSentinelBuilder};
pub use standalone::{RedisServer, RedisServerBuilder};
pub use tls::TlsFiles;

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct ports that were free a moment ago on 127.0.0.1 (all bound at once, so the OS
/// cannot hand out the same one twice).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free loopback port"))
        .collect();
    listeners.iter().map(|l| l.local_addr().expect("a bound address").port()).collect()
}

/// The value of `field` in `INFO` / `CLUSTER INFO` text (`field:value` lines).
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')).map(str::trim)
    })
}

/// Polls `check` every 50 ms until it returns `Ok`, panicking after `timeout` with the last
/// reason it gave (so a stuck cluster says what it is stuck on). With `TEST_SUPPORT_TRACE` set,
/// every new reason is printed with the time spent so far, to see where a start or failover
/// spends its time.
pub(crate) fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    let trace = std::env::var_os("TEST_SUPPORT_TRACE").is_some();
    let mut last = String::new();
    loop {
        match check() {
            Ok(value) => return value,
            Err(reason) if started.elapsed() >= timeout => {
                panic!("{what}: not done after {timeout:?}: {reason}")
            }
            Err(reason) => {
                if trace && reason != last {
                    eprintln!("[{:>6.2?}] waiting for {what}: {reason}", started.elapsed());
                    last = reason;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
}

/// The workspace's target directory for the current profile (where `cargo build` puts binaries).
pub fn target_dir() -> PathBuf {
    // Integration tests run from target/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).expect("target/<profile>")
}

/// Path to a workspace binary built for the current profile.
pub fn binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Starts `<name> serve` (a workspace binary) with only `env` in its environment (plus
/// `PATH`), its stdout and stderr written to `log` (truncated first): a server as an operator
/// would run it.
pub fn start_server(name: &str, env: &[(&str, String)], log: &Path) -> ChildGuard {
    let mut cmd = Command::new(binary(name));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = std::fs::File::create(log).expect("log file");
    let child = cmd
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .expect("spawn the server binary");
    ChildGuard(child)
}

/// A child process killed (by PID) when dropped.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Sends SIGTERM and waits up to `timeout` for exit; returns the exit status if it exited.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
