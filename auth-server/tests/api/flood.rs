//! A flood of logins: hashing is bounded, so everything else stays fast and memory stays flat.

use std::time::{Duration, Instant};

use serde_json::json;
use test_support::RedisServer;

use crate::binary::Server;
use crate::helpers::{PASSWORD, read, unique_user};

fn p95(v: &mut [Duration]) -> Duration {
    v.sort();
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_login_flood_healthz_and_token_answer_quickly_and_memory_stays_bounded() {
    let redis = RedisServer::start();
    let server = Server::start(
        &redis,
        &[
            ("AUTH_HASH_CONCURRENCY", "2"),
            ("AUTH_HASH_QUEUE", "16"),
            ("AUTH_LOGIN_MAX_FAILURES", "100000"),
            ("AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS", "100000"),
            // The probe below rotates one session every 50 ms.
            ("AUTH_REFRESH_MAX_ROTATIONS", "100000"),
        ],
    )
    .await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let username = unique_user("flood");
    let body = json!({ "username": username, "password": PASSWORD });
    let res = client.post(server.url("/register")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let login = read(client.post(server.url("/login")).json(&body).send().await.unwrap()).await;
    let mut refresh = login.refresh_token();
    let rss_before = server.rss_kib();

    // 96 clients (6x the hashing slots + queue), each sending 5 wrong-password logins.
    let mut flood = Vec::new();
    for _ in 0..96 {
        let (client, url) = (client.clone(), server.url("/login"));
        let wrong = json!({ "username": username, "password": "a wrong password" });
        flood.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..5 {
                let res = client.post(&url).json(&wrong).send().await.unwrap();
                statuses.push(res.status().as_u16());
            }
            statuses
        }));
    }
    let probe_client = reqwest::Client::new();
    let (mut health, mut token) = (Vec::new(), Vec::new());
    let mut rss_max = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) && flood.iter().any(|t| !t.is_finished()) {
        let t = Instant::now();
        let res = probe_client.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        health.push(t.elapsed());
        let t = Instant::now();
        let reply = read(
            probe_client
                .post(server.url("/token"))
                .json(&json!({ "refresh_token": refresh }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        token.push(t.elapsed());
        refresh = reply.refresh_token();
        rss_max = rss_max.max(server.rss_kib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut statuses = Vec::new();
    for task in flood {
        statuses.extend(task.await.unwrap());
    }

    assert!(statuses.iter().all(|s| *s == 401 || *s == 503), "{statuses:?}");
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert!(refused > 0, "past the queue, logins get 503 at once");
    assert!(health.len() >= 10, "only {} probes ran", health.len());
    let (h, t) = (p95(&mut health), p95(&mut token));
    assert!(h < Duration::from_millis(500), "p95 /healthz {h:?}");
    assert!(t < Duration::from_millis(500), "p95 /token {t:?}");
    // Each argon2 run holds 19 MiB; unbounded, 96 at once would be ~1.8 GiB.
    assert!(rss_max < rss_before + 128 * 1024, "RSS grew from {rss_before} KiB to {rss_max} KiB");
    eprintln!(
        "flood: {} logins ({refused} refused), p95 healthz {h:?}, token {t:?}, RSS {rss_before} -> max {rss_max} KiB",
        statuses.len()
    );
}
