//! Keys picked up without a restart.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{assert_invalid_token, spawn_app, spawn_app_with};
use crate::insecure_test_keys::{TestKey, claims_for};

#[tokio::test]
async fn a_key_dropped_in_the_folder_after_start_is_accepted_at_once() {
    let app = spawn_app().await;
    let new_key = TestKey::generate();
    let token = new_key.sign(&claims_for("alice"));
    // Let the start-up read settle so the next re-read is on demand.
    tokio::time::sleep(Duration::from_millis(100)).await;
    new_key.write_public(&app.keys_dir);
    // The first request with the new kid is not refused: it waits for the next re-read.
    let started = Instant::now();
    let resp = app.get_with_token("/articles", &token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_unknown_kid_is_refused_after_at_most_one_reread() {
    let app = spawn_app().await;
    let stranger = TestKey::attacker().sign(&claims_for("alice"));
    let started = Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let req =
                app.client.get(format!("{}/articles", app.address)).bearer_auth(&stranger).send();
            tokio::spawn(req)
        })
        .collect();
    for call in calls {
        assert_invalid_token(call.await.unwrap().unwrap()).await;
    }
    // Ten concurrent requests share the re-read: about one cooldown, not ten.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_garbage_pem_in_the_folder_leaves_verification_working() {
    let app = spawn_app().await;
    std::fs::write(app.keys_dir.join("garbage.pem"), b"-----BEGIN PUBLIC KEY-----\nxx").unwrap();
    // A token naming an unknown key makes the server re-read the folder, garbage included.
    let stranger = TestKey::attacker().sign(&claims_for("alice"));
    assert_invalid_token(app.get_with_token("/articles", &stranger).await).await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    assert_eq!(app.get_with_token("/articles", &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_server_is_ready_only_once_a_key_is_loaded() {
    let app = spawn_app_with(|_| {}).await;
    let resp = app.get("/readyz", None).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    TestKey::trusted().write_public(&app.keys_dir);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if app.get("/readyz", None).await.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "not ready 5s after a key appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
