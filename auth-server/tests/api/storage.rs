use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::helpers::{PASSWORD, spawn_app, unique_user};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_neither_the_refresh_token_nor_the_password_after_a_login() {
    let app = spawn_app().await;
    let login = app.signed_up(&unique_user("dump")).await.tokens();
    let first = login.refresh_token.unwrap();
    let rotated = app.refresh(&first).await.refresh_token();

    let mut needles =
        vec![PASSWORD.to_owned(), STANDARD.encode(PASSWORD), hex(PASSWORD.as_bytes())];
    for token in [&first, &rotated] {
        let raw = URL_SAFE_NO_PAD.decode(token).unwrap();
        needles.extend([token.to_string(), STANDARD.encode(&raw), hex(&raw), hex(&raw[16..])]);
        needles.push(URL_SAFE_NO_PAD.encode(&raw[16..]));
    }
    needles.push(login.access_token.clone());

    let mut conn = app.redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert!(!keys.is_empty());
    let mut dump = String::new();
    for key in &keys {
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut conn).unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "hash" => redis::cmd("HGETALL").arg(key).query(&mut conn).unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(key).query(&mut conn).unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).query(&mut conn).unwrap(),
            "string" => vec![redis::cmd("GET").arg(key).query(&mut conn).unwrap()],
            other => panic!("unexpected type {other} for {key}"),
        };
        dump.push_str(key);
        dump.push('\n');
        for value in values {
            dump.push_str(&String::from_utf8_lossy(&value));
            dump.push('\n');
        }
    }
    for needle in &needles {
        assert!(!dump.contains(needle.as_str()), "Redis holds a secret: {needle}");
    }
    assert!(dump.contains("$argon2id$"), "the password is stored as an argon2id PHC string");
}
