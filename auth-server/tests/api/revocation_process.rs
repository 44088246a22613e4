//! What only the real binary shows for the revocation side: no introspection secret (or token)
//! in its log, the waiters gauge, and long polls answered at once when it stops.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use test_support::{ChildGuard, RedisServer, free_port, wait_for_port};

use crate::helpers::{PASSWORD, read, unique_user};

const BIN: &str = env!("CARGO_BIN_EXE_auth-server");
const CLIENT: &str = "reports";
const SECRET: &str = "q8Zr2vN5xT1mK7pL4sW9yB3cF6hJ0dG2eA5uI8oY";

struct Process {
    child: ChildGuard,
    base: String,
    log: std::path::PathBuf,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn start(redis: &RedisServer) -> Process {
    let keys = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("auth.log");
    let port = free_port();
    let child = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTH_BIND", format!("127.0.0.1:{port}"))
        .env("AUTH_REDIS_URL", redis.url())
        .env("AUTH_KEYS_DIR", keys.path())
        .env("AUTH_INTROSPECTION_CLIENTS", format!("{CLIENT}:{SECRET}"))
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(port, Duration::from_secs(30));
    Process {
        child: ChildGuard(child),
        base: format!("http://127.0.0.1:{port}"),
        log,
        _dirs: (keys, logs),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_never_holds_an_introspection_secret_or_a_token() {
    let redis = RedisServer::start();
    let mut server = start(&redis);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let username = unique_user("logged");
    let body = json!({ "username": username, "password": PASSWORD });
    let res = client.post(format!("{base}/register")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let login =
        read(client.post(format!("{base}/login")).json(&body).send().await.unwrap()).await.tokens();
    let access = login.access_token.clone();

    let wrong_secret = format!("{}X", &SECRET[..SECRET.len() - 1]);
    let introspect = |secret: String| {
        client
            .post(format!("{base}/introspect"))
            .basic_auth(CLIENT, Some(secret))
            .form(&[("token", access.as_str())])
            .send()
    };
    assert_eq!(read(introspect(SECRET.to_owned()).await.unwrap()).await.body["active"], true);
    assert_eq!(read(introspect(wrong_secret.clone()).await.unwrap()).await.status, 401);
    let res = client
        .post(format!("{base}/introspect"))
        .header("authorization", "Basic !!!")
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let password = json!({ "current_password": "a wrong one!", "new_password": "something new" });
    let res =
        client.post(format!("{base}/password")).bearer_auth(&access).json(&password).send().await;
    assert_eq!(res.unwrap().status(), 401);
    let res = client.post(format!("{base}/revoke")).form(&[("token", access.as_str())]).send();
    assert_eq!(res.await.unwrap().status(), 200);
    let refresh = login.refresh_token.clone().unwrap();
    let res = client.post(format!("{base}/revoke")).form(&[("token", refresh.as_str())]).send();
    assert_eq!(res.await.unwrap().status(), 200);
    assert_eq!(client.get(format!("{base}/revocations")).send().await.unwrap().status(), 200);

    assert!(server.child.terminate(Duration::from_secs(10)).is_some());
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("\"POST /introspect\" 401"), "the access log ran: {log}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{SECRET}"));
    let signature = access.rsplit('.').next().unwrap();
    for secret in [
        SECRET,
        &wrong_secret,
        &basic,
        PASSWORD,
        "a wrong one!",
        "something new",
        &access,
        signature,
        &refresh,
    ] {
        assert!(!log.contains(secret), "the log holds a secret: {secret}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_long_polls_are_counted_and_answered_at_once_when_the_server_stops() {
    let redis = RedisServer::start();
    let mut server = start(&redis);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let head = loop {
        let reply = read(client.get(format!("{base}/revocations")).send().await.unwrap()).await;
        if reply.status == 200 {
            break reply.body["cursor"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "{}", reply.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let polls: Vec<_> = (0..3)
        .map(|_| {
            let url = format!("{base}/revocations?after={head}&wait=25");
            let client = client.clone();
            tokio::spawn(async move { read(client.get(url).send().await.unwrap()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "auth_revocation_waiters 3"), "{metrics}");

    let stopping = Instant::now();
    server.child.terminate(Duration::from_secs(15)).expect("the server stops");
    for poll in polls {
        let reply = poll.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["reset"], false);
        assert_eq!(reply.body["cursor"], head.as_str());
    }
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(5), "long polls held the shutdown for {took:?}");
}
