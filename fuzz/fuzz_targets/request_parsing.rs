//! The auth server's request parsing: the `/token` body parser (JSON, form, any content
//! type), the register/login body types and field validation, refresh tokens, session ids,
//! `AUTH_TRUSTED_PROXIES` and `X-Forwarded-For`. Byte 0 chooses what the rest feeds.
#![no_main]

use std::net::IpAddr;

use auth_server::passwords::Password;
use auth_server::routes::{LoginBody, RegisterBody, refresh_token_from_body};
use auth_server::throttle::{TrustedProxies, address_bucket, parse_net};
use auth_server::tokens::{RefreshToken, SessionId};
use auth_server::users::{check_login_fields, check_password, normalize_name, normalize_username};
use libfuzzer_sys::fuzz_target;

fn username_ok(raw: &str) {
    if let Ok(name) = normalize_username(raw) {
        assert!((3..=64).contains(&name.chars().count()));
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_@+".contains(&b))
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 6 {
        0 | 1 => {
            let ct = if mode % 6 == 0 {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            };
            if let Ok(Some(token)) = refresh_token_from_body(Some(ct), rest) {
                assert!(!token.is_empty());
            }
        }
        2 => {
            // First line: the Content-Type; the rest: the body.
            let (ct, body) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            let ct = std::str::from_utf8(ct).ok();
            let _ = refresh_token_from_body(ct, body);
        }
        3 => {
            if let Ok(body) = serde_json::from_slice::<RegisterBody>(rest) {
                username_ok(&body.username);
                let _ = check_password(&Password::new(body.password));
                if let Ok(Some(name)) = normalize_name(body.name) {
                    assert!(!name.is_empty() && name.chars().count() <= 128);
                    assert!(!name.chars().any(char::is_control));
                }
            }
        }
        4 => {
            if let Ok(body) = serde_json::from_slice::<LoginBody>(rest) {
                let _ = check_login_fields(&body.username, &Password::new(body.password));
                username_ok(&body.username);
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            if let Ok(token) = RefreshToken::parse(text) {
                assert_eq!(text.len(), 64);
                let sid = token.sid();
                assert!(SessionId::parse(sid.as_str()).is_some());
                let _ = token.hash();
            }
            let _ = SessionId::parse(text);
            let _ = parse_net(text);
            if let Ok(trusted) = TrustedProxies::parse(text) {
                let peer: IpAddr = [10, 0, 0, 1].into();
                let _ = address_bucket(trusted.client_addr(peer, text.split('\n')));
            }
            let everyone = TrustedProxies::parse("0.0.0.0/0 ::/0").unwrap();
            let client = everyone.client_addr([127, 0, 0, 1].into(), text.split('\n'));
            let _ = address_bucket(client);
        }
    }
});
