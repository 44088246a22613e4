//! Graceful shutdown, with the real binary: SIGTERM or SIGINT stops accepting, lets the
//! requests in flight finish (at most `API_SHUTDOWN_TIMEOUT`), and the process exits 0.
//! Needs `cargo build --workspace --bins` first.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::{ChildGuard, free_port, wait_for_port};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::e2e::{start, wait_ready};
use crate::insecure_test_keys::{TestKey, claims_for};

/// Articles in the file the server gets: 3000 of 4 KiB for alice, so `GET /articles` answers
/// ~12 MiB, far more than the socket buffers hold: the response stays in flight while the
/// client reads slowly.
const ARTICLES: usize = 3000;

struct Api {
    child: ChildGuard,
    port: u16,
    _root: tempfile::TempDir,
}

impl Api {
    async fn start(shutdown_timeout: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let keys = root.path().join("public");
        std::fs::create_dir_all(&keys).unwrap();
        TestKey::trusted().write_public(&keys);
        let articles: Vec<Value> = (1..=ARTICLES)
            .map(|id| json!({"id": id, "author": "alice", "title": format!("#{id}"), "body": "b".repeat(4096)}))
            .collect();
        let file: PathBuf = root.path().join("articles.json");
        std::fs::write(&file, serde_json::to_vec(&articles).unwrap()).unwrap();
        let port = free_port();
        let env = [
            ("API_BIND", format!("127.0.0.1:{port}")),
            ("API_KEYS_DIR", keys.display().to_string()),
            ("API_ARTICLES_FILE", file.display().to_string()),
            ("API_SHUTDOWN_TIMEOUT", shutdown_timeout.to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ];
        let child = start("api-server", &env, &root.path().join("api.log"));
        wait_for_port(port, Duration::from_secs(30));
        wait_ready(&reqwest::Client::new(), &format!("http://127.0.0.1:{port}")).await;
        Self { child, port, _root: root }
    }

    fn signal(&self, name: &str) {
        let pid = self.child.0.id().to_string();
        assert!(std::process::Command::new("kill").args([name, &pid]).status().unwrap().success());
    }

    fn running(&mut self) -> bool {
        self.child.0.try_wait().unwrap().is_none()
    }

    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._root.path().join("api.log")).unwrap_or_default()
    }

    /// Sends `GET /articles` as alice on a socket with a small receive buffer, and reads the
    /// first bytes of the answer: the rest is still to come.
    async fn start_big_response(&self) -> (TcpStream, Vec<u8>) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(8 * 1024).unwrap();
        let mut stream = socket.connect(([127, 0, 0, 1], self.port).into()).await.unwrap();
        let token = TestKey::trusted().sign(&claims_for("alice"));
        let request = format!(
            "GET /articles HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut first = vec![0u8; 4096];
        let n = stream.read(&mut first).await.unwrap();
        first.truncate(n);
        assert!(first.starts_with(b"HTTP/1.1 200 OK"), "{}", String::from_utf8_lossy(&first));
        (stream, first)
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        TcpStream::connect(("127.0.0.1", self.port)).await
    }
}

/// Reads the rest of a response begun with `first`, in small slow reads; returns the body.
async fn finish_slowly(mut stream: TcpStream, mut all: Vec<u8>) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the server stopped sending")
            .unwrap();
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..split]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("a content-length");
    let body = all.split_off(split);
    assert_eq!(body.len(), length, "the whole body arrived");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_in_flight_at_sigterm_or_sigint_completes_with_200_and_the_process_exits_0() {
    for signal in ["-TERM", "-INT"] {
        let mut api = Api::start("10s").await;
        let (stream, first) = api.start_big_response().await;
        api.signal(signal);
        tokio::time::sleep(Duration::from_millis(300)).await;

        assert!(api.running(), "{signal}: the process exited with a response half sent");
        // Stopped accepting: a new connection is refused (or closed unanswered).
        if let Ok(mut late) = api.connect().await {
            let _ = late.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let mut buf = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), late.read_to_end(&mut buf));
            assert!(
                matches!(read.await, Ok(Err(_)) | Ok(Ok(0))),
                "{signal}: a new connection was served during shutdown: {}",
                String::from_utf8_lossy(&buf)
            );
        }

        let body = finish_slowly(stream, first).await;
        let articles: Vec<Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(articles.len(), ARTICLES, "{signal}");

        let status = api.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "{signal}: {status:?}\n{}", api.log());
        assert!(api.connect().await.is_err(), "{signal}: still accepting after exit");
        assert!(api.log().contains("received: no longer accepting"), "{}", api.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_delays_the_exit_by_at_most_the_shutdown_timeout() {
    let mut api = Api::start("1s").await;
    // Never read past the first bytes.
    let (_stuck, _) = api.start_big_response().await;
    let signalled = Instant::now();
    api.signal("-TERM");
    let status = api.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}\n{}", api.log());
    assert!(took >= Duration::from_millis(900), "did not wait for the response: {took:?}");
    assert!(took < Duration::from_secs(5), "waited {took:?} with API_SHUTDOWN_TIMEOUT=1s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_concurrent_requests_at_sigterm_every_one_answered_is_a_complete_200() {
    let mut api = Api::start("10s").await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    let base = format!("http://127.0.0.1:{}", api.port);
    let stop_at = Instant::now() + Duration::from_secs(3);
    let mut clients = Vec::new();
    for i in 0..8 {
        let (token, base) = (token.clone(), base.clone());
        clients.push(tokio::spawn(async move {
            // A fresh connection per request for half the clients, keep-alive for the others.
            let client = if i % 2 == 0 {
                reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap()
            } else {
                reqwest::Client::new()
            };
            let (mut answered, mut refused) = (0u32, 0u32);
            while Instant::now() < stop_at {
                let path = if i % 4 == 0 {
                    "/articles".to_owned()
                } else {
                    format!("/articles/{}", i + 1)
                };
                match client.get(format!("{base}{path}")).bearer_auth(&token).send().await {
                    Ok(res) => {
                        let status = res.status();
                        let body = res.bytes().await;
                        assert_eq!(status, 200, "{path}");
                        let body = body.unwrap_or_else(|e| panic!("{path}: body cut short: {e}"));
                        serde_json::from_slice::<Value>(&body).unwrap();
                        answered += 1;
                    }
                    // No response at all: refused, or closed before the request was read.
                    Err(_) => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (answered, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    api.signal("-TERM");
    let mut answered = 0;
    let mut refused = 0;
    for client in clients {
        let (a, r) = client.await.unwrap();
        answered += a;
        refused += r;
    }
    let status = api.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}\n{}", api.log());
    assert!(answered > 8, "too few requests went through to prove anything: {answered}");
    assert!(refused > 0, "no request came after SIGTERM: the test proves nothing");
}

#[tokio::test]
async fn with_a_metrics_listener_sigterm_stops_both_and_the_process_exits_0() {
    let root = tempfile::tempdir().unwrap();
    let keys = root.path().join("public");
    std::fs::create_dir_all(&keys).unwrap();
    TestKey::trusted().write_public(&keys);
    let ports = test_support::free_ports(2);
    let env = [
        ("API_BIND", format!("127.0.0.1:{}", ports[0])),
        ("API_METRICS_BIND", format!("127.0.0.1:{}", ports[1])),
        ("API_KEYS_DIR", keys.display().to_string()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut child = start("api-server", &env, &root.path().join("api.log"));
    wait_for_port(ports[0], Duration::from_secs(30));
    wait_for_port(ports[1], Duration::from_secs(30));
    let client = reqwest::Client::new();
    let res = client.get(format!("http://127.0.0.1:{}/metrics", ports[1])).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = client.get(format!("http://127.0.0.1:{}/metrics", ports[0])).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let status = child.terminate(Duration::from_secs(10)).expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect(("127.0.0.1", ports[1])).await.is_err(), "metrics listener closed");
}
