use access_token::AccessClaims;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::helpers::{spawn_app, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_token_verifies_with_the_public_pem_alone_and_carries_every_claim() {
    let app = spawn_app().await;
    let username = unique_user("Claims");
    let reg = app
        .post_json(
            "/register",
            &serde_json::json!({ "username": username, "password": crate::helpers::PASSWORD, "name": "Grace Hopper" }),
        )
        .await;
    let login = app.login(&username).await.tokens();

    let header = jsonwebtoken::decode_header(&login.access_token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.unwrap();
    let pem = std::fs::read(app.public_keys_dir().join(format!("{kid}.pem"))).unwrap();

    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&["http://localhost:5000"]);
    validation.set_audience(&["articles-api"]);
    validation.set_required_spec_claims(&["exp", "iat", "nbf", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<AccessClaims>(
        &login.access_token,
        &DecodingKey::from_rsa_pem(&pem).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims.iss, "http://localhost:5000");
    assert_eq!(claims.aud, "articles-api");
    assert_eq!(claims.sub, reg.body["id"].as_str().unwrap());
    assert_eq!(claims.preferred_username, username.to_lowercase());
    assert_eq!(claims.name.as_deref(), Some("Grace Hopper"));
    assert_eq!(claims.roles, vec!["user".to_owned()]);
    assert_eq!(claims.scope, "articles:read");
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(claims.nbf, claims.iat);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(claims.iat.abs_diff(now) < 60);
    assert!(!claims.jti.is_empty());
    assert_eq!(claims.sid.len(), 22);

    // jti is unique per token.
    let next = app.refresh(login.refresh_token.as_deref().unwrap()).await.tokens();
    let next_claims = crate::helpers::claims_of(&next.access_token);
    assert_ne!(next_claims["jti"], claims.jti.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_publishes_the_kid_of_the_token_header_and_may_be_cached() {
    let app = spawn_app().await;
    let login = app.signed_up(&unique_user("jwks")).await.tokens();
    let kid = jsonwebtoken::decode_header(&login.access_token).unwrap().kid.unwrap();

    let reply = app.get("/.well-known/jwks.json").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("cache-control"), Some("public, max-age=60"));
    let keys = reply.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let jwk = &keys[0];
    assert_eq!(jwk["kid"], kid.as_str());
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["alg"], "RS256");
    assert!(jwk["n"].is_string() && jwk["e"].is_string());
    assert!(jwk.get("d").is_none(), "no private parts");

    // The JWK verifies the token on its own too.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["articles-api"]);
    jsonwebtoken::decode::<AccessClaims>(
        &login.access_token,
        &DecodingKey::from_jwk(&jwk).unwrap(),
        &validation,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_names_the_issuer_and_its_endpoints() {
    let app = spawn_app().await;
    let reply = app.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(reply.status, 200);
    let m = &reply.body;
    assert_eq!(m["issuer"], "http://localhost:5000");
    assert_eq!(m["jwks_uri"], "http://localhost:5000/.well-known/jwks.json");
    assert_eq!(m["token_endpoint"], "http://localhost:5000/token");
    assert_eq!(m["grant_types_supported"], serde_json::json!(["refresh_token"]));
    assert_eq!(m["token_endpoint_auth_methods_supported"], serde_json::json!(["none"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_writes_the_key_pair_in_the_contract_layout() {
    let app = spawn_app().await;
    let reply = app.get("/.well-known/jwks.json").await;
    let kid = reply.body["keys"][0]["kid"].as_str().unwrap().to_owned();
    let private = app.keys_dir.path().join("private").join(format!("{kid}.pem"));
    let text = std::fs::read_to_string(&private).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(app.keys_dir.path().join("private/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["active"], kid.as_str());
    let public = std::fs::read_to_string(app.public_keys_dir().join(format!("{kid}.pem"))).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
}
