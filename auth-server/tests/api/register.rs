use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_returns_201_with_a_stable_id_the_lowercased_username_and_the_name() {
    let app = spawn_app().await;
    let username = unique_user("Reg");
    let reply = app
        .post_json(
            "/register",
            &json!({ "username": username, "password": PASSWORD, "name": "Ada Lovelace" }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["username"], username.to_lowercase());
    assert_eq!(reply.body["name"], "Ada Lovelace");
    let id = reply.body["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert!(!reply.text.contains(PASSWORD));

    let login = app.login(&username.to_uppercase()).await;
    let claims = crate::helpers::claims_of(&login.tokens().access_token);
    assert_eq!(claims["sub"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_taken_username_in_any_case_returns_409_username_taken() {
    let app = spawn_app().await;
    let username = unique_user("taken");
    assert_eq!(app.register(&username).await.status, 201);
    for again in [username.clone(), username.to_uppercase()] {
        let reply = app.register(&again).await;
        assert_eq!(reply.status, 409, "{}", reply.text);
        assert_eq!(reply.error(), "username_taken");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_of_one_username_create_exactly_one_user() {
    let app = spawn_app().await;
    let username = unique_user("race");
    let replies = futures_util::future::join_all((0..8).map(|_| app.register(&username))).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let taken = replies.iter().filter(|r| r.status == 409).count();
    assert_eq!((created, taken), (1, 7), "{replies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_field_returns_400_invalid_request_naming_the_field_without_echoing_the_password() {
    let app = spawn_app().await;
    let ok = unique_user("field");
    let cases = [
        (json!({ "username": "ab", "password": PASSWORD }), "username"),
        (json!({ "username": "has space", "password": PASSWORD }), "username"),
        (json!({ "username": "x".repeat(65), "password": PASSWORD }), "username"),
        (json!({ "username": ok, "password": "short7!" }), "password"),
        (json!({ "username": ok, "password": "p".repeat(129) }), "password"),
        (json!({ "username": ok, "password": PASSWORD, "name": "n".repeat(129) }), "name"),
        (json!({ "username": ok, "password": PASSWORD, "name": "bell\u{7}" }), "name"),
        (json!({ "username": ok }), "password"),
        (json!({ "password": PASSWORD }), "username"),
        (json!({ "username": 42, "password": PASSWORD }), "string"),
    ];
    for (body, field) in cases {
        let reply = app.post_json("/register", &body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert_eq!(reply.error(), "invalid_request");
        let description = reply.body["error_description"].as_str().unwrap();
        assert!(description.contains(field), "{body}: {description}");
        assert!(
            !description.contains("short7!") && !description.contains(PASSWORD),
            "{description}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_returns_400_invalid_request_describing_the_problem() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/register"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    let reply = crate::helpers::read(res).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_request");
    assert!(reply.body["error_description"].as_str().unwrap().contains("JSON"), "{}", reply.text);

    let res = app.client.post(app.url("/register")).body("username=x").send().await.unwrap();
    let reply = crate::helpers::read(res).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error(), "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_16_kib_returns_413_payload_too_large() {
    let app = spawn_app().await;
    let big = json!({ "username": unique_user("big"), "password": PASSWORD, "name": "x".repeat(17 * 1024) });
    for path in ["/register", "/login", "/token"] {
        let reply = app.post_json(path, &big).await;
        assert_eq!(reply.status, 413, "{path}: {}", reply.text);
        assert_eq!(reply.error(), "payload_too_large");
    }
    let form = format!("grant_type=refresh_token&refresh_token={}", "x".repeat(17 * 1024));
    let res = app
        .client
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let reply = crate::helpers::read(res).await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert_eq!(reply.error(), "payload_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_of_the_wrong_json_type_is_named_and_its_value_not_echoed() {
    let app = spawn_app().await;
    let ok = unique_user("types");
    let cases = [
        (json!({ "username": 5, "password": PASSWORD }), "`username` must be a string"),
        (json!({ "username": ["a"], "password": PASSWORD }), "`username` must be a string"),
        (json!({ "username": ok, "password": 31_415_926_535_u64 }), "`password` must be a string"),
        (json!({ "username": ok, "password": { "p": PASSWORD } }), "`password` must be a string"),
        (json!({ "username": ok, "password": PASSWORD, "name": 7 }), "`name` must be a string"),
        (json!({ "username": ok, "password": PASSWORD, "name": true }), "`name` must be a string"),
        (json!({ "password": PASSWORD }), "`username` is required"),
        (json!({ "username": ok }), "`password` is required"),
        (json!(["not-an", "object-of", "fields"]), "must be an object"),
    ];
    for (body, want) in cases {
        let reply = app.post_json("/register", &body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert_eq!(reply.error(), "invalid_request", "{body}");
        let description = reply.body["error_description"].as_str().unwrap();
        assert!(description.contains(want), "{body}: {description}");
        assert!(!description.contains("31415926535") && !description.contains(PASSWORD));
    }
    // The account was never created by any of them.
    assert_eq!(app.register(&ok).await.status, 201);
}
