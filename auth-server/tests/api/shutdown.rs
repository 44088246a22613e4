//! Graceful shutdown: SIGTERM or SIGINT stops accepting, lets in-flight requests finish, exits 0.

use std::time::{Duration, Instant};

use serde_json::json;
use test_support::RedisServer;

use crate::binary::Server;
use crate::helpers::{PASSWORD, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_in_flight_at_sigterm_or_sigint_complete_with_200_and_the_process_exits_0() {
    let redis = RedisServer::start();
    for signal in ["-TERM", "-INT"] {
        logins_in_flight_complete_after(&redis, signal).await;
    }
}

async fn logins_in_flight_complete_after(redis: &RedisServer, signal: &str) {
    // One hashing slot: eight logins take a while, one after the other. (Concurrent attempts
    // on one username count against its limit until they succeed: raise it.)
    let mut server =
        Server::start(redis, &[("AUTH_HASH_CONCURRENCY", "1"), ("AUTH_LOGIN_MAX_FAILURES", "100")])
            .await;
    let client = reqwest::Client::new();
    let username = unique_user("graceful");
    let body = json!({ "username": username, "password": PASSWORD });
    let res = client.post(server.url("/register")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);

    let mut in_flight = Vec::new();
    for _ in 0..8 {
        let (client, url, body) = (client.clone(), server.url("/login"), body.clone());
        in_flight.push(tokio::spawn(async move {
            let res = client.post(url).json(&body).send().await;
            (res.map(|r| r.status().as_u16()), Instant::now())
        }));
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    let signalled = Instant::now();
    server.signal(signal);

    let mut after_signal = 0;
    for task in in_flight {
        let (status, done) = task.await.unwrap();
        assert_eq!(status.expect("the request completed"), 200, "{signal}");
        if done > signalled {
            after_signal += 1;
        }
    }
    assert!(after_signal > 0, "{signal}: no request was still in flight; the test proves nothing");
    let status = server.wait_exit(Duration::from_secs(15)).expect("the process exits");
    assert!(status.success(), "{signal}: {status:?}");
    // And it no longer accepts.
    assert!(client.get(server.url("/healthz")).send().await.is_err(), "{signal}");
}
