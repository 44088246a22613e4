use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{PASSWORD, read, spawn_app, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_returns_a_bearer_token_pair_that_is_not_cached() {
    let app = spawn_app().await;
    let username = unique_user("login");
    let reply = app.signed_up(&username).await;
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("pragma"), Some("no-cache"));
    let tokens = reply.tokens();
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 900);
    assert_eq!(tokens.refresh_expires_in, 7 * 86_400);
    let refresh = tokens.refresh_token.unwrap();
    assert_eq!(refresh.len(), 64);
    assert!(refresh.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(tokens.access_token.split('.').count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_user_get_the_same_401_in_about_the_same_time() {
    let app = spawn_app().await;
    let username = unique_user("cred");
    assert_eq!(app.register(&username).await.status, 201);

    let mut wrong_times = Vec::new();
    let mut unknown_times = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        for (user, times) in
            [(username.clone(), &mut wrong_times), (unique_user("ghost"), &mut unknown_times)]
        {
            let start = Instant::now();
            let reply = app
                .post_json("/login", &json!({ "username": user, "password": "wrong password" }))
                .await;
            times.push(start.elapsed());
            assert_eq!(reply.status, 401, "{}", reply.text);
            assert_eq!(reply.error(), "invalid_credentials");
            bodies.push(reply.text);
        }
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    // Both ran one argon2 verification: the unknown user is not answered markedly faster.
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[1]
    };
    let (wrong, unknown) = (median(&mut wrong_times), median(&mut unknown_times));
    assert!(unknown * 4 >= wrong, "unknown user {unknown:?} vs wrong password {wrong:?}");

    // A name that cannot exist gets the same answer.
    let reply = app.post_json("/login", &json!({ "username": "!", "password": PASSWORD })).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.text, bodies[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_a_missing_field_returns_400_invalid_request() {
    let app = spawn_app().await;
    let reply = app.post_json("/login", &json!({ "username": unique_user("nofield") })).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_request");
    assert!(reply.body["error_description"].as_str().unwrap().contains("password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_field_of_the_wrong_json_type_is_named_and_its_value_not_echoed() {
    let app = spawn_app().await;
    let user = unique_user("logintypes");
    let cases = [
        (json!({ "username": 5, "password": "a password" }), "`username` must be a string"),
        (
            json!({ "username": user, "password": 12_345_678_901_u64 }),
            "`password` must be a string",
        ),
        (json!({ "username": user, "password": null }), "`password` must be a string"),
        (json!({ "password": "a password" }), "`username` is required"),
    ];
    for (body, want) in cases {
        let reply = app.post_json("/login", &body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert_eq!(reply.error(), "invalid_request", "{body}");
        let description = reply.body["error_description"].as_str().unwrap();
        assert!(description.contains(want), "{body}: {description}");
        assert!(!description.contains("12345678901"), "{description}");
    }
    let reply = read(
        app.client
            .post(app.url("/login"))
            .header("content-type", "text/plain")
            .body(r#"{"username":"u","password":"p"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((reply.status, reply.error()), (400, "invalid_request"));
    assert!(reply.text.contains("Content-Type"), "{}", reply.text);
}
