//! Login and registration throttling, shared through Redis by every instance.

use std::time::Duration;

use auth_server::Settings;
use serde_json::json;

use crate::helpers::{
    PASSWORD, Reply, TestApp, read, second_instance, spawn_app_with, unique_user,
};

async fn login_at(app: &TestApp, base: &str, username: &str, password: &str) -> Reply {
    let body = json!({ "username": username, "password": password });
    read(app.client.post(format!("{base}/login")).json(&body).send().await.unwrap()).await
}

async fn login_from(app: &TestApp, forwarded_for: &str, username: &str) -> Reply {
    login_as(app, forwarded_for, username, "a wrong password").await
}

/// A login from client `forwarded_for` (the app must trust 127.0.0.1 as a proxy).
async fn login_as(app: &TestApp, forwarded_for: &str, username: &str, password: &str) -> Reply {
    let body = json!({ "username": username, "password": password });
    let req = app.client.post(app.url("/login")).header("x-forwarded-for", forwarded_for);
    read(req.json(&body).send().await.unwrap()).await
}

fn behind_proxy(s: &mut Settings) {
    s.trusted_proxies = auth_server::throttle::TrustedProxies::parse("127.0.0.1").unwrap();
}

fn assert_rate_limited(reply: &Reply) -> u64 {
    assert_eq!(reply.status, 429, "{}", reply.text);
    assert_eq!(reply.error(), "rate_limited");
    let retry: u64 = reply.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry >= 1, "{retry}");
    retry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_passwords_spread_over_two_instances_lock_the_username_with_429() {
    let app = spawn_app_with(|_| {}).await;
    let other = second_instance(&app, |_| {}).await;
    let username = unique_user("brute");
    assert_eq!(app.register(&username).await.status, 201);

    // The failures alternate between the instances: the count lives in Redis.
    for i in 0..5 {
        let base = if i % 2 == 0 { app.address.clone() } else { other.clone() };
        let reply = login_at(&app, &base, &username, "a wrong password").await;
        assert_eq!(reply.status, 401, "attempt {i}: {}", reply.text);
    }
    let locked = login_at(&app, &other, &username, "a wrong password").await;
    let retry = assert_rate_limited(&locked);
    assert!((55..=60).contains(&retry), "the first lockout is AUTH_LOGIN_LOCKOUT: {retry}");
    // Locked means locked: even the right password, on either instance.
    let right = login_at(&app, &app.address, &username, PASSWORD).await;
    assert_rate_limited(&right);

    // An unknown username locks out the same way, with the same body: no oracle.
    let ghost = unique_user("ghost");
    for _ in 0..5 {
        assert_eq!(login_at(&app, &other, &ghost, "a wrong password").await.status, 401);
    }
    let ghost_locked = login_at(&app, &app.address, &ghost, "a wrong password").await;
    assert_rate_limited(&ghost_locked);
    assert_eq!(ghost_locked.text, locked.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_login_clears_the_failures_of_its_username_and_address() {
    let app = spawn_app_with(|_| {}).await;
    let username = unique_user("clears");
    assert_eq!(app.register(&username).await.status, 201);
    for _ in 0..2 {
        for _ in 0..4 {
            let reply = login_at(&app, &app.address, &username, "a wrong password").await;
            assert_eq!(reply.status, 401, "{}", reply.text);
        }
        assert_eq!(app.login(&username).await.status, 200, "4 failures do not lock");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lockout_lasts_twice_as_long_as_the_one_before_up_to_the_cap() {
    let app = spawn_app_with(|s| {
        s.throttle.max_failures_per_pair = 2;
        s.throttle.lockout = Duration::from_secs(1);
        s.throttle.lockout_max = Duration::from_secs(2);
    })
    .await;
    let username = unique_user("grows");
    let mut retries = Vec::new();
    for _ in 0..3 {
        for _ in 0..2 {
            let reply = login_at(&app, &app.address, &username, "a wrong password").await;
            assert_eq!(reply.status, 401, "{}", reply.text);
        }
        let retry =
            assert_rate_limited(&login_at(&app, &app.address, &username, "a wrong password").await);
        retries.push(retry);
        tokio::time::sleep(Duration::from_millis(retry * 1000 + 150)).await;
    }
    assert_eq!(retries, [1, 2, 2], "1s, doubled, capped at 2s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_one_address_lock_that_address_and_behind_a_trusted_proxy_it_is_the_forwarded_one()
 {
    let app = spawn_app_with(|s| {
        s.throttle.max_failures_per_address = 3;
        s.trusted_proxies = auth_server::throttle::TrustedProxies::parse("127.0.0.1").unwrap();
    })
    .await;
    // Three usernames, one client: the address is locked, for any username.
    for _ in 0..3 {
        let reply = login_from(&app, "203.0.113.7", &unique_user("spray")).await;
        assert_eq!(reply.status, 401, "{}", reply.text);
    }
    assert_rate_limited(&login_from(&app, "203.0.113.7", &unique_user("spray")).await);
    // The right-most untrusted address is the client: a forged left part changes nothing.
    assert_rate_limited(&login_from(&app, "198.51.100.1, 203.0.113.7", &unique_user("x")).await);
    // Another client behind the same proxy is not locked.
    assert_eq!(login_from(&app, "203.0.113.8", &unique_user("spray")).await.status, 401);

    // Without trusted proxies, X-Forwarded-For is ignored: every request is 127.0.0.1's.
    let direct = spawn_app_with(|s| s.throttle.max_failures_per_address = 3).await;
    for i in 0..3 {
        let reply = login_from(&direct, &format!("203.0.113.{i}"), &unique_user("spoof")).await;
        assert_eq!(reply.status, 401, "{}", reply.text);
    }
    assert_rate_limited(&login_from(&direct, "203.0.113.99", &unique_user("spoof")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_from_one_address_are_rate_limited() {
    let app = spawn_app_with(|s| s.throttle.max_registrations_per_address = 3).await;
    for _ in 0..3 {
        assert_eq!(app.register(&unique_user("reg")).await.status, 201);
    }
    let reply = app.register(&unique_user("reg")).await;
    let retry = assert_rate_limited(&reply);
    assert!(retry <= 3600, "{retry}");
    // Invalid requests are answered 400 without counting (nothing expensive was done).
    let bad = app.post_json("/register", &json!({ "username": "!", "password": PASSWORD })).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_four_concurrent_correct_logins_of_one_user_all_get_200() {
    // Even with a limit of one failure: nothing is counted before the password is checked.
    let app = spawn_app_with(|s| {
        s.throttle.max_failures_per_pair = 1;
        s.throttle.max_failures_per_address = 1;
        s.throttle.max_failures_per_username = 1;
    })
    .await;
    let username = unique_user("family");
    assert_eq!(app.register(&username).await.status, 201);
    let replies = futures_util::future::join_all((0..24).map(|_| app.login(&username))).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_address_locks_itself_out_while_the_owner_logs_in_from_another() {
    let app = spawn_app_with(behind_proxy).await;
    let username = unique_user("victim");
    assert_eq!(app.register(&username).await.status, 201);
    let attacker = "203.0.113.66";
    for i in 0..5 {
        let reply = login_from(&app, attacker, &username).await;
        assert_eq!(reply.status, 401, "guess {i}: {}", reply.text);
    }
    let locked = login_from(&app, attacker, &username).await;
    assert_rate_limited(&locked);
    // The pair's lockout is hard: the right password from the attacker's address waits too.
    assert_rate_limited(&login_as(&app, attacker, &username, PASSWORD).await);
    // The owner, from an address that never logged in before, is not locked out.
    let owner = login_as(&app, "198.51.100.7", &username, PASSWORD).await;
    assert_eq!(owner.status, 200, "{}", owner.text);
    // Nor by a guesser elsewhere, and the attacker's lock survives the owner's success.
    assert_rate_limited(&login_from(&app, attacker, &username).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_guesses_across_usernames_is_locked_out_for_usernames_new_to_it() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.throttle.max_failures_per_address = 4;
    })
    .await;
    let (victim, regular) = (unique_user("sprayed"), unique_user("regular"));
    for user in [&victim, &regular] {
        assert_eq!(app.register(user).await.status, 201);
    }
    let shared = "192.0.2.44";
    // Someone behind that address logged in before (a shared NAT).
    assert_eq!(login_as(&app, shared, &regular, PASSWORD).await.status, 200);
    for _ in 0..4 {
        let reply = login_from(&app, shared, &unique_user("spray")).await;
        assert_eq!(reply.status, 401, "{}", reply.text);
    }
    // Locked for every username the address never logged in: even the right password.
    assert_rate_limited(&login_from(&app, shared, &unique_user("spray")).await);
    assert_rate_limited(&login_as(&app, shared, &victim, PASSWORD).await);
    // The user known at that address still gets in; other addresses are not affected.
    assert_eq!(login_as(&app, shared, &regular, PASSWORD).await.status, 200);
    assert_eq!(login_as(&app, "192.0.2.45", &victim, PASSWORD).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_username_wide_flood_the_owner_still_logs_in_from_an_address_used_before() {
    let app = spawn_app_with(|s| {
        behind_proxy(s);
        s.throttle.max_failures_per_username = 10;
    })
    .await;
    let username = unique_user("famous");
    let ghost = unique_user("ghost");
    assert_eq!(app.register(&username).await.status, 201);
    let home = "198.51.100.20";
    assert_eq!(login_as(&app, home, &username, PASSWORD).await.status, 200);

    // Twelve addresses, each below the pair limit, guess the username (and a ghost username).
    let mut last = (None, None);
    for i in 1..=12 {
        let from = format!("203.0.113.{i}");
        for (name, slot) in [(&username, &mut last.0), (&ghost, &mut last.1)] {
            let reply = login_from(&app, &from, name).await;
            *slot = Some(reply);
        }
    }
    let (real, unknown) = (last.0.unwrap(), last.1.unwrap());
    // Past the username-wide limit, new addresses wait, the same way for a ghost username.
    assert_rate_limited(&real);
    assert_rate_limited(&unknown);
    assert_eq!(real.text, unknown.text);
    let new_device = login_as(&app, "192.0.2.99", &username, PASSWORD).await;
    assert_rate_limited(&new_device);
    // The owner at home is never refused by the username-wide limit.
    let owner = login_as(&app, home, &username, PASSWORD).await;
    assert_eq!(owner.status, 200, "{}", owner.text);
    let typo = login_as(&app, home, &username, "a wrong password").await;
    assert_eq!(typo.status, 401, "a known address is slowed by its pair only: {}", typo.text);
    // Concurrent correct logins from home during the flood: all 200.
    let replies =
        futures_util::future::join_all((0..20).map(|_| login_as(&app, home, &username, PASSWORD)))
            .await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored_with_one_warning_naming_the_setting() {
    use std::process::{Command, Stdio};
    let redis = test_support::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let port = test_support::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .env_clear()
        .env("AUTH_BIND", format!("127.0.0.1:{port}"))
        .env("AUTH_REDIS_URL", redis.url())
        .env("AUTH_KEYS_DIR", dir.path().join("keys"))
        .env("AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS", "2")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut guard = test_support::ChildGuard(child);
    test_support::wait_for_port(port, Duration::from_secs(30));
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/login");
    let mut statuses = Vec::new();
    for i in 0..3 {
        let body = json!({ "username": unique_user("xff"), "password": "a wrong password" });
        let req = client.post(&url).header("x-forwarded-for", format!("203.0.113.{i}"));
        statuses.push(req.json(&body).send().await.unwrap().status().as_u16());
    }
    // Ignored: the three "clients" are one (127.0.0.1), locked after two failures.
    assert_eq!(statuses, [401, 401, 429]);
    guard.terminate(Duration::from_secs(10)).expect("the server exits on SIGTERM");
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("X-Forwarded-For")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("AUTH_TRUSTED_PROXIES=127.0.0.1"), "{text}");
}
