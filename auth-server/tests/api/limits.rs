//! Limits on every input: headers, request target, body, fields, slow clients.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{PASSWORD, read, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_line_over_8_kib_gets_431_and_a_long_target_414() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/healthz")).header("x-big", "a".repeat(9000)).send();
    let reply = read(res.await.unwrap()).await;
    assert_eq!(reply.status, 431, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_request");
    let ok = app.client.get(app.url("/healthz")).header("x-fine", "a".repeat(7000)).send();
    assert_eq!(ok.await.unwrap().status(), 200);

    let reply = app.get(&format!("/healthz?{}", "q".repeat(9000))).await;
    assert_eq!(reply.status, 414, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_16_kib_get_413_on_every_body_route() {
    let app = spawn_app().await;
    let big = "x".repeat(17 * 1024);
    for path in ["/register", "/login", "/token", "/logout"] {
        let reply = app.post_json(path, &json!({ "username": big, "refresh_token": big })).await;
        assert_eq!(reply.status, 413, "{path}: {}", reply.text);
        assert_eq!(reply.error(), "payload_too_large", "{path}");
    }
    let form = app
        .client
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=refresh_token&refresh_token={big}"))
        .send();
    assert_eq!(read(form.await.unwrap()).await.status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_fields_longer_than_any_valid_one_get_400_naming_the_field() {
    let app = spawn_app().await;
    let reply =
        app.post_json("/login", &json!({ "username": "a".repeat(65), "password": PASSWORD })).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.body["error_description"].as_str().unwrap().contains("username"));
    let reply =
        app.post_json("/login", &json!({ "username": "alice", "password": "p".repeat(129) })).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(reply.body["error_description"].as_str().unwrap().contains("password"));
    assert!(!reply.text.contains(&"p".repeat(20)), "the password is never echoed");
    // An over-long refresh token is simply not a token.
    let reply = app.refresh(&"t".repeat(4000)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error(), "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    let app = spawn_app().await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    let mut buf = Vec::new();
    // The head must arrive within 5s; the server answers 408 and/or closes the connection.
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection is still open after 10s");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}
