//! The attack table: each test would catch the hole it names, and checks status, `error` and
//! `WWW-Authenticate` as the contract's table gives them.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_invalid_request, assert_invalid_token, refusal, spawn_app};
use crate::insecure_test_keys::{TestKey, b64, claims_for, now, with, without};

#[tokio::test]
async fn a_valid_token_reads_the_articles() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    let resp = app.get_with_token("/articles", &token).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_token_with_alg_none_is_refused() {
    let app = spawn_app().await;
    let header = json!({"alg": "none", "typ": "at+jwt", "kid": TestKey::trusted().kid});
    let token = format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims_for("alice").to_string().as_bytes())
    );
    assert_invalid_token(app.get_with_token("/articles", &token).await).await;
    // And with a dummy signature, so an empty one is not the only thing refused.
    let token = format!("{token}c2ln");
    let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
    assert!(r.description.contains("alg"), "{r:?}");
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_public_key_pem_is_refused() {
    let app = spawn_app().await;
    let key = TestKey::trusted();
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid.clone());
    let token = jsonwebtoken::encode(
        &header,
        &claims_for("alice"),
        &EncodingKey::from_secret(key.public_pem.as_bytes()),
    )
    .unwrap();
    let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
    assert!(r.description.contains("alg"), "{r:?}");
}

#[tokio::test]
async fn a_token_signed_by_a_foreign_key_under_a_known_kid_is_refused() {
    let app = spawn_app().await;
    let mut header = TestKey::attacker().header();
    header.kid = Some(TestKey::trusted().kid.clone());
    let token = TestKey::attacker().sign_with(&header, &claims_for("alice"));
    let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
    assert!(r.description.contains("signature"), "{r:?}");
}

#[tokio::test]
async fn a_token_with_an_unknown_kid_is_refused() {
    let app = spawn_app().await;
    let token = TestKey::attacker().sign(&claims_for("alice"));
    let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
    assert!(r.description.contains("key"), "{r:?}");
}

#[tokio::test]
async fn a_kid_shaped_like_a_path_is_only_a_map_key() {
    let app = spawn_app().await;
    // An attacker who could plant a file outside the keys folder must not get it loaded by
    // naming it in the kid.
    std::fs::write(app.root.path().join("keys").join("evil.pem"), &TestKey::attacker().public_pem)
        .unwrap();
    for kid in ["../../etc/passwd", "../evil", "../evil.pem", "/etc/passwd"] {
        let mut header = TestKey::attacker().header();
        header.kid = Some(kid.into());
        let token = TestKey::attacker().sign_with(&header, &claims_for("alice"));
        let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
        assert!(r.description.contains("key"), "{kid}: {r:?}");
    }
}

#[tokio::test]
async fn jku_and_jwk_headers_pointing_at_an_attacker_key_are_ignored() {
    let app = spawn_app().await;
    let attacker = TestKey::attacker();
    let mut embedded = attacker.header();
    embedded.jwk = Some(attacker.jwk());
    let mut embedded_known_kid = embedded.clone();
    embedded_known_kid.kid = Some(TestKey::trusted().kid.clone());
    let mut jku = attacker.header();
    jku.jku = Some("http://127.0.0.1:9/jwks.json".into());
    jku.kid = Some(TestKey::trusted().kid.clone());
    let mut x5u = attacker.header();
    x5u.x5u = Some("http://127.0.0.1:9/cert.pem".into());
    for header in [embedded, embedded_known_kid, jku, x5u] {
        let token = attacker.sign_with(&header, &claims_for("alice"));
        assert_invalid_token(app.get_with_token("/articles", &token).await).await;
    }
}

#[tokio::test]
async fn a_token_expired_beyond_the_leeway_is_refused() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&with(claims_for("alice"), "exp", json!(now() - 60)));
    let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
    assert!(r.description.contains("expired"), "{r:?}");
}

#[tokio::test]
async fn a_token_expired_within_the_leeway_is_accepted() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&with(claims_for("alice"), "exp", json!(now() - 10)));
    assert_eq!(app.get_with_token("/articles", &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&with(claims_for("alice"), "nbf", json!(now() + 120)));
    let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
    assert!(r.description.contains("not valid yet"), "{r:?}");
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let app = spawn_app().await;
    let token =
        TestKey::trusted().sign(&with(claims_for("alice"), "iss", json!("http://evil.example")));
    let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
    assert!(r.description.contains("issuer"), "{r:?}");
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&with(claims_for("alice"), "aud", json!("billing-api")));
    let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
    assert!(r.description.contains("audience"), "{r:?}");
}

#[tokio::test]
async fn an_aud_array_is_accepted_only_when_it_contains_ours() {
    let app = spawn_app().await;
    // RFC 7519 §4.1.3: `aud` may be an array; ours among others is ours.
    for aud in [json!(["articles-api"]), json!(["billing-api", "articles-api"])] {
        let token = TestKey::trusted().sign(&with(claims_for("alice"), "aud", aud.clone()));
        let resp = app.get_with_token("/articles", &token).await;
        assert_eq!(resp.status(), StatusCode::OK, "{aud}");
    }
    for aud in [json!(["billing-api", "photos-api"]), json!([]), json!(["articles-api-x"])] {
        let token = TestKey::trusted().sign(&with(claims_for("alice"), "aud", aud.clone()));
        let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
        assert!(r.description.contains("audience"), "{aud}: {r:?}");
    }
}

#[tokio::test]
async fn a_token_issued_in_the_future_beyond_the_leeway_is_refused() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&with(claims_for("alice"), "iat", json!(now() + 120)));
    let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
    assert!(r.description.contains("issued in the future"), "{r:?}");
    // Within the leeway (clock skew), it is accepted.
    let token = TestKey::trusted().sign(&with(claims_for("alice"), "iat", json!(now() + 10)));
    assert_eq!(app.get_with_token("/articles", &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_token_typed_jwt_instead_of_at_jwt_is_refused() {
    let app = spawn_app().await;
    let key = TestKey::trusted();
    let mut header = key.header();
    header.typ = Some("JWT".into());
    let token = key.sign_with(&header, &claims_for("alice"));
    let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
    assert!(r.description.contains("typ"), "{r:?}");
    // No typ at all is refused the same way.
    header.typ = None;
    let token = key.sign_with(&header, &claims_for("alice"));
    assert_invalid_token(app.get_with_token("/articles", &token).await).await;
}

#[tokio::test]
async fn a_token_missing_a_required_claim_is_refused() {
    let app = spawn_app().await;
    for claim in ["exp", "iat", "iss", "aud", "sub"] {
        let token = TestKey::trusted().sign(&without(claims_for("alice"), claim));
        let r = assert_invalid_token(app.get_with_token("/articles", &token).await).await;
        assert!(r.description.contains(claim), "{claim}: {r:?}");
    }
}

#[tokio::test]
async fn a_token_without_the_scope_is_forbidden() {
    let app = spawn_app().await;
    for claims in [
        without(claims_for("alice"), "scope"),
        with(claims_for("alice"), "scope", json!("articles:write profile")),
        with(claims_for("alice"), "scope", json!("articles:readall")),
    ] {
        let token = TestKey::trusted().sign(&claims);
        let r = refusal(app.get_with_token("/articles", &token).await).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
        assert_eq!(r.error, "insufficient_scope", "{r:?}");
        assert_eq!(
            r.www_authenticate,
            "Bearer realm=\"articles\", error=\"insufficient_scope\", scope=\"articles:read\"",
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    let parts: Vec<&str> = token.split('.').collect();
    let forged = with(claims_for("alice"), "roles", json!(["admin"]));
    let tampered = format!("{}.{}.{}", parts[0], b64(forged.to_string().as_bytes()), parts[2]);
    let r = assert_invalid_token(app.get_with_token("/articles", &tampered).await).await;
    assert!(r.description.contains("signature"), "{r:?}");
}

#[tokio::test]
async fn a_token_with_its_signature_stripped_is_refused() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    let stripped = &token[..=token.rfind('.').unwrap()];
    assert_invalid_token(app.get_with_token("/articles", stripped).await).await;
    let two_parts = &token[..token.rfind('.').unwrap()];
    assert_invalid_token(app.get_with_token("/articles", two_parts).await).await;
}

#[tokio::test]
async fn a_100_kb_token_is_refused_without_harm() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    let huge = format!("{token}{}", "A".repeat(100 * 1024));
    let r = assert_invalid_token(app.get_with_token("/articles", &huge).await).await;
    assert!(r.description.contains("too long"), "{r:?}");
    // The server is still fine.
    assert_eq!(app.get_with_token("/articles", &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn two_spaces_after_bearer_is_a_malformed_request() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    assert_invalid_request(app.get("/articles", Some(&format!("Bearer  {token}"))).await).await;
}

#[tokio::test]
async fn characters_outside_base64url_are_a_malformed_request_whatever_the_key() {
    // The syntax is checked once verification fails; the answer must stay 400, for a token
    // signed by a trusted key as for one naming a key the server does not know.
    let app = spawn_app().await;
    for key in [TestKey::trusted(), TestKey::attacker()] {
        let token = key.sign(&claims_for("alice"));
        let (signed, signature) = token.rsplit_once('.').unwrap();
        for bad in [format!("{signed}.!{signature}"), format!("{token}%"), format!("{token}=x")] {
            let r = assert_invalid_request(app.get_with_token("/articles", &bad).await).await;
            assert!(
                r.description.contains("base64url") || r.description.contains("ASCII"),
                "{r:?}"
            );
        }
    }
}

#[tokio::test]
async fn bearer_with_no_token_is_a_malformed_request() {
    let app = spawn_app().await;
    assert_invalid_request(app.get("/articles", Some("Bearer")).await).await;
    assert_invalid_request(app.get("/articles", Some("Bearer ")).await).await;
}

#[tokio::test]
async fn another_scheme_is_a_malformed_request() {
    let app = spawn_app().await;
    assert_invalid_request(app.get("/articles", Some("Basic YWxpY2U6c2VjcmV0")).await).await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    assert_invalid_request(app.get("/articles", Some(&token)).await).await;
}

#[tokio::test]
async fn a_lowercase_bearer_scheme_is_accepted() {
    let app = spawn_app().await;
    let token = TestKey::trusted().sign(&claims_for("alice"));
    let resp = app.get("/articles", Some(&format!("bearer {token}"))).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn no_authorization_header_gets_a_bare_bearer_challenge() {
    let app = spawn_app().await;
    for path in ["/articles", "/articles/1", "/me"] {
        let r = refusal(app.get(path, None).await).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {r:?}");
        assert_eq!(r.www_authenticate, "Bearer realm=\"articles\"", "{path}: {r:?}");
        assert_eq!(r.error, "invalid_token", "{path}: {r:?}");
    }
}

#[tokio::test]
async fn an_unauthenticated_caller_cannot_probe_article_ids() {
    let app = spawn_app().await;
    // Auth is checked before the id: a bad token gets 401 whether the id exists or not.
    let bad = TestKey::attacker().sign(&claims_for("alice"));
    for path in ["/articles/1", "/articles/999", "/articles/abc"] {
        assert_invalid_token(app.get_with_token(path, &bad).await).await;
    }
}
