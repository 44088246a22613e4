//! No revocation is missed across faults: 200 sessions end while the long poll is cut, the
//! api-server restarts, the auth server is killed and restarted, and Redis restarts (AOF);
//! then every one of their access tokens is refused, and a session that did not end still
//! works. The real binaries; the api-server reaches the auth server's list through a TCP relay
//! the test can cut.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use test_support::{free_port, wait_for_port};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::e2e::{start, wait_ready};
use crate::revocation::{Auth, Session, client, login, register, status};

/// A loopback TCP relay to `target` whose open connections the test can drop at once.
struct Relay {
    port: u16,
    open: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Relay {
    async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let tracked = Arc::clone(&open);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { port, open }
    }

    /// Drops every connection open now (both sides see it closed mid-request).
    fn cut(&self) -> usize {
        let open: Vec<AbortHandle> = std::mem::take(&mut *self.open.lock().unwrap());
        let live = open.iter().filter(|t| !t.is_finished()).count();
        for task in open {
            task.abort();
        }
        live
    }
}

/// Ends `sessions` by `/logout`, retrying while the auth server answers 503 or is
/// unreachable (a Redis restart, a process restart): an end counts once it answered 204.
async fn end_all(client: &reqwest::Client, auth: &str, sessions: &[Session]) {
    for s in sessions {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let resp = client
                .post(format!("{auth}/logout"))
                .json(&json!({"refresh_token": s.refresh}))
                .send()
                .await;
            match resp.map(|r| r.status()) {
                Ok(StatusCode::NO_CONTENT) => break,
                Ok(StatusCode::SERVICE_UNAVAILABLE) | Err(_) => {}
                Ok(other) => panic!("logout answered {other}"),
            }
            assert!(Instant::now() < deadline, "logout never succeeded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_revocation_is_missed_across_restarts_of_every_part_and_a_cut_long_poll() {
    let started = Instant::now();
    let client = client();
    let mut auth = Auth::start(&client).await;
    let relay = Relay::start(auth.port).await;

    // 200 sessions to end (4 users × 50) and one to keep.
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(register(&client, &auth.base, &format!("fault{i}-")).await);
    }
    let keeper_user = register(&client, &auth.base, "keeper").await;
    let keeper = login(&client, &auth.base, &keeper_user).await;
    let mut sessions = Vec::new();
    for chunk in 0..100 {
        let (a, b) = (&users[chunk % 4], &users[(chunk + 1) % 4]);
        let (x, y) = tokio::join!(login(&client, &auth.base, a), login(&client, &auth.base, b));
        sessions.push(x);
        sessions.push(y);
    }
    let batches: Vec<&[Session]> = sessions.chunks(40).collect();
    assert_eq!(batches.len(), 5);

    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let env = [
        ("API_BIND", format!("127.0.0.1:{api_port}")),
        ("API_KEYS_DIR", auth.public_keys().display().to_string()),
        ("API_REVOCATIONS_URL", format!("http://127.0.0.1:{}/revocations", relay.port)),
        ("RUST_LOG", "info".into()),
    ];
    let log = |n: usize| auth.dir.path().join(format!("api-{n}.log"));
    let mut api_server = start("api-server", &env, &log(1));
    wait_for_port(api_port, Duration::from_secs(30));
    wait_ready(&client, &api).await;
    for s in &sessions {
        assert_eq!(status(&client, &api, &s.access).await, StatusCode::OK);
    }

    // 1. Plain ends, the long poll healthy.
    end_all(&client, &auth.base, batches[0]).await;
    // 2. The long poll is cut (mid-wait), ends published while the follower reconnects.
    assert!(relay.cut() >= 1, "no long poll was open");
    end_all(&client, &auth.base, batches[1]).await;
    // 3. The api-server is down while sessions end; it comes back.
    assert!(api_server.terminate(Duration::from_secs(15)).is_some());
    end_all(&client, &auth.base, batches[2]).await;
    api_server = start("api-server", &env, &log(2));
    wait_for_port(api_port, Duration::from_secs(30));
    wait_ready(&client, &api).await;
    // 4. Ends, then the auth server is killed at once (its long polls drop unanswered) and
    //    restarted.
    end_all(&client, &auth.base, batches[3]).await;
    auth.kill();
    auth.spawn(&client).await;
    // 5. Redis restarts (AOF) between ends.
    let (before, after) = batches[4].split_at(20);
    end_all(&client, &auth.base, before).await;
    auth.redis.stop();
    auth.redis.restart();
    end_all(&client, &auth.base, after).await;

    // Every ended session's token is refused, within the follower's reconnect time.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut pending: Vec<&Session> = sessions.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for s in pending {
            if status(&client, &api, &s.access).await != StatusCode::UNAUTHORIZED {
                still.push(s);
            }
        }
        pending = still;
        assert!(Instant::now() < deadline, "{} ended sessions still accepted", pending.len());
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(status(&client, &api, &keeper.access).await, StatusCode::OK);
    drop(api_server);
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}
