//! Limits on every input: header lines, the token, the request target, bodies, slow clients.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, assert_invalid_token, refusal, spawn_app};
use crate::insecure_test_keys::{TestKey, claims_for};

/// Sends `request` on a fresh connection and reads until the server closes it (at most
/// `within`); returns what came back and whether the server closed the connection.
async fn raw(app: &TestApp, request: &[u8], within: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(within, stream.read_to_end(&mut buf)).await.is_ok();
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

#[tokio::test]
async fn a_header_line_over_8_kib_gets_431_and_a_long_target_414() {
    let app = spawn_app().await;
    let res = app.client.get(format!("{}/healthz", app.address)).header("x-big", "a".repeat(9000));
    let r = refusal(res.send().await.unwrap()).await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{r:?}");
    assert_eq!(r.error, "invalid_request");
    let ok = app.client.get(format!("{}/healthz", app.address)).header("x-fine", "a".repeat(7000));
    assert_eq!(ok.send().await.unwrap().status(), StatusCode::OK);

    let r = refusal(app.get(&format!("/healthz?{}", "q".repeat(9000)), None).await).await;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG, "{r:?}");
    assert_eq!(r.error, "invalid_request");
}

#[tokio::test]
async fn a_token_over_8_kib_is_an_invalid_token_with_its_challenge_not_a_431() {
    let app = spawn_app().await;
    let token = format!("{}{}", TestKey::trusted().sign(&claims_for("alice")), "A".repeat(9000));
    let r = assert_invalid_token(app.get_with_token("/me", &token).await).await;
    assert!(r.description.contains("too long"), "{r:?}");
}

#[tokio::test]
async fn a_body_declared_over_16_kib_gets_413_before_the_token_is_looked_at() {
    let app = spawn_app().await;
    let (reply, closed) = raw(
        &app,
        b"GET /articles HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains(r#""error":"payload_too_large""#), "{reply}");
    assert!(closed, "the connection stays open waiting for a megabyte");
}

#[tokio::test]
async fn a_small_body_is_ignored_and_the_connection_closed_after_the_answer() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    let request = format!(
        "GET /me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 5\r\n\r\nhello"
    );
    let (reply, closed) = raw(&app, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("connection: close"), "{reply}");
    assert!(closed);
}

#[tokio::test]
async fn a_chunked_body_trickled_for_ever_does_not_hold_the_connection() {
    let app = spawn_app().await;
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    stream
        .write_all(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    // Keep sending a chunk every 100 ms; the server must answer and hang up anyway.
    let closed_after = loop {
        assert!(started.elapsed() < Duration::from_secs(10), "still open after 10s");
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => reply.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if stream.write_all(b"5\r\nhello\r\n").await.is_err() {
            break started.elapsed();
        }
    };
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(closed_after < Duration::from_secs(5), "{closed_after:?}");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    let app = spawn_app().await;
    // The head must arrive within 5s; the server answers 408 and/or closes the connection.
    let (reply, closed) =
        raw(&app, b"GET /articles HTTP/1.1\r\nHost: 127.0.0.1\r\n", Duration::from_secs(10)).await;
    assert!(closed, "the connection is still open after 10s");
    assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 408"), "{reply}");
}
