use redis::Commands;
use test_support::RedisServer;

use crate::{is_noperm, timed};

#[test]
fn a_plain_server_starts_on_a_loopback_port_other_than_6379() {
    let redis = timed("standalone start-up", RedisServer::start);
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
    assert_ne!(redis.port(), 6379);
    assert_eq!(redis.env(), vec![("AUTH_REDIS_URL".to_owned(), redis.url())]);
    let pong: String = redis::cmd("PING")
        .query(&mut redis.client().get_connection().expect("connect"))
        .expect("PING");
    assert_eq!(pong, "PONG");
}

#[test]
fn with_aof_a_restarted_server_still_has_the_acknowledged_writes() {
    let mut redis = RedisServer::builder().aof(true).start();
    let _: () = redis.connection().set("kept", "yes").expect("SET");
    redis.restart();
    let v: Option<String> = redis.connection().get("kept").expect("GET");
    assert_eq!(v.as_deref(), Some("yes"));
}

#[test]
fn an_acl_user_can_run_only_the_commands_and_keys_it_was_granted() {
    let redis = RedisServer::builder()
        .acl_user("app", "s3cret: pass/word", "~app:* +get +set +ping")
        .start();
    let url = redis.url_as("app");
    assert!(url.starts_with("redis://app:s3cret%3A%20pass%2Fword@127.0.0.1:"), "{url}");
    let mut app = redis.client_as("app").get_connection().expect("the app user logs in");

    let _: () = app.set("app:1", "v").expect("a granted command on a granted key");
    let v: String = app.get("app:1").expect("GET app:1");
    assert_eq!(v, "v");
    let other: redis::RedisResult<()> = app.set("other:1", "v");
    assert!(other.as_ref().is_err_and(is_noperm), "a key outside ~app:*: {other:?}");
    let flush: redis::RedisResult<()> = redis::cmd("FLUSHALL").query(&mut app);
    assert!(flush.as_ref().is_err_and(is_noperm), "a command not granted: {flush:?}");
    let del: redis::RedisResult<u32> = app.del("app:1");
    assert!(del.as_ref().is_err_and(is_noperm), "DEL is not granted either: {del:?}");

    let wrong = url.replace("s3cret%3A%20pass%2Fword", "guess");
    let refused = redis::Client::open(wrong).expect("url").get_connection();
    assert!(refused.is_err(), "a wrong password is refused");

    // The harness's own connection is unaffected by the user's restrictions.
    let v: String = redis.connection().get("app:1").expect("admin GET");
    assert_eq!(v, "v");
}

#[test]
fn with_requirepass_the_default_user_needs_the_password_the_url_carries() {
    let redis = RedisServer::builder().requirepass("pa ss").start();
    assert!(redis.url().starts_with("redis://:pa%20ss@127.0.0.1:"), "{}", redis.url());
    let pong: String = redis::cmd("PING")
        .query(&mut redis.client().get_connection().expect("connect"))
        .expect("PING with the password");
    assert_eq!(pong, "PONG");
    let mut anonymous =
        redis::Client::open(redis.anonymous_url()).expect("url").get_connection().expect("TCP");
    let denied: redis::RedisResult<String> = redis::cmd("PING").query(&mut anonymous);
    let error = denied.expect_err("no password, no PING");
    assert!(error.to_string().contains("NOAUTH"), "{error}");
}

#[test]
fn a_tls_server_accepts_clients_that_trust_the_generated_ca_and_only_them() {
    let redis = timed("standalone TLS start-up", || RedisServer::builder().tls(true).start());
    assert!(redis.url().starts_with("rediss://127.0.0.1:"), "{}", redis.url());
    let ca = redis.ca_path().expect("a CA file");
    let pem = std::fs::read(ca).expect("read the CA");
    assert_eq!(Some(pem.as_slice()), redis.ca_pem());
    assert!(pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        redis.env(),
        vec![
            ("AUTH_REDIS_URL".to_owned(), redis.url()),
            ("SSL_CERT_FILE".to_owned(), ca.to_string_lossy().into_owned()),
        ]
    );

    // Trusting exactly the generated CA, as a server under test would.
    let client = redis::Client::build_with_tls(
        redis.url(),
        redis::TlsCertificates { client_tls: None, root_cert: Some(pem) },
    )
    .expect("client");
    let _: () = client.get_connection().expect("TLS handshake").set("k", "v").expect("SET");
    let v: String = redis.client().get_connection().expect("TLS").get("k").expect("GET");
    assert_eq!(v, "v");

    // Plain TCP to the TLS port gets no answer a client can use.
    let plain = format!("redis://127.0.0.1:{}", redis.port());
    let plain = redis::Client::open(plain).expect("url").get_connection_with_timeout(crate::SHORT);
    let ping = plain.and_then(|mut c| {
        c.set_read_timeout(Some(crate::SHORT))?;
        redis::cmd("PING").query::<String>(&mut c)
    });
    assert!(ping.is_err(), "plain TCP to the TLS port must fail: {ping:?}");

    // TLS without the CA (the platform roots only) fails verification.
    let untrusted = redis::Client::open(redis.url()).expect("url").get_connection();
    assert!(untrusted.is_err(), "a client that does not trust the CA must be refused");
}
