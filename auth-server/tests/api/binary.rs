//! The real `auth-server` binary as a child process, for what only a process shows (memory,
//! signals).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::{ChildGuard, RedisServer, free_port, wait_for_port};

const BIN: &str = env!("CARGO_BIN_EXE_auth-server");

pub struct Server {
    pub child: ChildGuard,
    pub base: String,
    pub _keys: tempfile::TempDir,
}

impl Server {
    /// Starts the binary on a free port against `redis`, with extra `AUTH_*` settings, and
    /// waits until it is ready.
    pub async fn start(redis: &RedisServer, env: &[(&str, &str)]) -> Self {
        let keys = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AUTH_BIND", format!("127.0.0.1:{port}"))
            .env("AUTH_REDIS_URL", redis.url())
            .env("AUTH_KEYS_DIR", keys.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in env {
            cmd.env(name, value);
        }
        let child = ChildGuard(cmd.spawn().unwrap());
        wait_for_port(port, Duration::from_secs(30));
        let server = Self { child, base: format!("http://127.0.0.1:{port}"), _keys: keys };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.get(server.url("/readyz")).send().await.map_or(true, |r| r.status() != 200) {
            assert!(Instant::now() < deadline, "the binary never got ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Resident memory of the process, in KiB (`VmRSS` of /proc/<pid>/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Sends `signal` (as `kill` spells it: `-TERM`, `-INT`), without waiting.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.pid().to_string()]).status();
        assert!(status.unwrap().success());
    }

    /// Waits for the exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}
