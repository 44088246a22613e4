//! Scale-out (issue 13): the contract's "Redis deployments" on real Cluster (3 + 3) and Sentinel
//! (primary, replica, 3 sentinels) groups started by `test-support`.
//!
//! ## The same tests on every mode
//!
//! `spawn_app` starts the deployment `TEST_REDIS_MODE` names, so any test of this binary runs
//! on Cluster or Sentinel without a copy: [`SUBSET`] is run by
//! `the_named_subset_passes_on_cluster` / `..._on_sentinel`, which start this test binary again
//! with `TEST_REDIS_MODE` set and those names as exact filters (by hand:
//! `TEST_REDIS_MODE=cluster cargo test -p auth-server --test api -- --exact <names>`).
//! Together they run every Lua script of `store/lua/` (each named below), every route family
//! that touches Redis (`/register`, `/login`, `/token`, `/logout`, `/logout/all`, `/sessions`,
//! `/password`, `/revoke`, `/introspect`, `/revocations`, `/readyz`), login and registration
//! throttling over two instances, the `users` commands (the binary on the same deployment,
//! `SCAN` on every primary), and two instances sharing one Redis.
//!
//! Left out of the subset, and why:
//! - tests that stop, restart, fill or reconfigure the one server (`faults`, `outage`, the
//!   `revocation` tests that break a slot or stop Redis): standalone fault models; the
//!   failovers below are the Cluster and Sentinel ones;
//! - tests of processes started with a standalone `AUTH_REDIS_URL` (`binary`, `cli`,
//!   `key_reload`, `keys_cli`, `shutdown`, `revocation_process`, `observability`) and tests that
//!   touch no Redis (`discovery`, `http`, `limits`, `openapi`): nothing mode-dependent;
//! - load and timing measurements (`flood`, `timing`, the 10 000-rotation footprint, the
//!   lockout-doubling and idle/max-age clocks of `throttling` and `refresh` that wait out real
//!   time): the same scripts as in the subset, minutes of waiting on a shared 2-core machine.
//!
//! ## Faults
//!
//! Under a refresh load: a manual `CLUSTER FAILOVER` and a killed primary, a slot migration
//! (`redis-cli --cluster reshard`), a `SENTINEL FAILOVER` (also with its leading sentinel
//! stopped right after the promotion) and a killed Sentinel master: no `invalid_grant` for a
//! valid token, no lost session, errors only 503 with `Retry-After` and only around the fault
//! (the window is printed: run with `--nocapture`). `SCRIPT FLUSH` on every node, and the first request after a restart of a
//! standalone Redis.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use test_support::{
    ChildGuard, RedisMode, RedisOptions, RedisSentinel, RedisServer, TestRedis, free_port,
};
use tokio::sync::Mutex;

use crate::helpers::{
    PASSWORD, TestApp, second_instance, spawn_app, spawn_app_on, spawn_app_on_deployment,
    unique_user,
};

/// The tests that run on Cluster and Sentinel too, by their full names, with the scripts and
/// routes each one brings into play.
pub const SUBSET: &[&str] = &[
    // create_user, register_attempt: /register
    "register::registering_returns_201_with_a_stable_id_the_lowercased_username_and_the_name",
    "register::registering_a_taken_username_in_any_case_returns_409_username_taken",
    "register::concurrent_registrations_of_one_username_create_exactly_one_user",
    // login_check, login_lock_left, login_success, login_failure, index_session,
    // create_session: /login
    "login::login_returns_a_bearer_token_pair_that_is_not_cached",
    "login::a_wrong_password_and_an_unknown_user_get_the_same_401_in_about_the_same_time",
    // rotate: /token
    "refresh::refreshing_returns_a_new_pair_and_keeps_the_sid_across_rotations",
    "refresh::within_the_grace_the_token_just_rotated_returns_the_identical_pair",
    "refresh::an_older_spent_token_is_reuse_even_within_the_grace",
    "refresh::with_grace_zero_50_concurrent_refreshes_of_one_token_give_exactly_one_200",
    "refresh::with_the_default_grace_50_concurrent_refreshes_all_return_one_identical_pair",
    "refresh::garbage_and_unknown_refresh_tokens_are_invalid_grant_and_a_known_sid_cannot_revoke",
    "refresh::past_the_rotation_limit_refresh_answers_429_and_a_grace_replay_is_not_counted",
    // mark_session, publish_revocations, end_all_sessions: /logout, /logout/all
    "logout::logout_by_post_or_delete_ends_the_session",
    "logout::logout_all_ends_every_session_of_the_user_and_no_other",
    // describe_session, set_password: /sessions, /password
    "sessions::the_inventory_lists_the_callers_live_sessions_newest_first_with_their_fields",
    "sessions::deleting_a_session_ends_and_publishes_it_and_another_users_sid_is_not_found",
    "sessions::an_ended_sessions_access_token_gets_401_on_every_bearer_route",
    "sessions::a_password_change_ends_every_other_session_and_keeps_the_current_one",
    // read_revocations: /revocations, /revoke, /introspect, two instances
    "revocation::the_list_resets_without_a_cursor_then_serves_only_what_came_after_it",
    "revocation::reuse_detection_publishes_the_session",
    "revocation::revoke_ends_the_session_of_a_refresh_or_access_token_and_answers_200_for_anything_else",
    "revocation::introspection_is_active_only_for_a_live_sessions_access_token_and_sees_an_end_at_once",
    "revocation::two_instances_serve_the_same_list_and_a_cursor_from_one_works_on_the_other",
    "revocation::the_login_past_100_sessions_publishes_the_oldest",
    // throttling, over two instances and across slots
    "throttling::five_wrong_passwords_spread_over_two_instances_lock_the_username_with_429",
    "throttling::a_successful_login_clears_the_failures_of_its_username_and_address",
    "throttling::failures_from_one_address_lock_that_address_and_behind_a_trusted_proxy_it_is_the_forwarded_one",
    "throttling::registrations_from_one_address_are_rate_limited",
    "throttling::an_address_that_guesses_across_usernames_is_locked_out_for_usernames_new_to_it",
    // set_disabled, set_roles, SCAN on every primary: the users commands
    "users_cli::list_shows_every_user_with_its_state_as_a_table_or_json",
    "users_cli::disable_ends_and_publishes_every_session_and_refuses_logins_until_enable",
    "users_cli::set_roles_ends_and_publishes_the_sessions_and_unknown_users_are_refused",
    // what Redis holds; /readyz
    "storage::redis_holds_neither_the_refresh_token_nor_the_password_after_a_login",
    "http::healthz_and_readyz_answer_200_when_all_is_well",
    // renew_lock.lua, unlock.lua (and SET NX PX): the scheduled key rotation's lock, by hand
    // and between two instances rotating on one keys folder
    "scheduled_rotation::the_rotation_lock_is_renewed_and_released_only_by_its_holder",
    "scheduled_rotation::two_instances_on_one_folder_add_exactly_one_key_and_both_sign_with_it",
    // this module's mode-independent tests
    "scale::after_script_flush_on_every_node_every_script_still_runs",
    "scale::fifty_concurrent_refreshes_of_one_token_over_two_instances_give_exactly_one_pair",
];

/// Runs [`SUBSET`] in a child test process on `mode`; fails with the child's output.
fn run_subset_on(mode: RedisMode) {
    if RedisMode::from_env() != RedisMode::Standalone {
        return; // already a child run (or a whole run on another mode): no recursion
    }
    let started = Instant::now();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .env(RedisMode::ENV, mode.to_string())
        .args(["--exact", "--test-threads", "3"])
        .args(SUBSET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().filter(|l| l.starts_with("test result")).collect::<Vec<_>>();
    println!("subset on {mode}: {summary:?} in {:?}", started.elapsed());
    assert!(
        out.status.success(),
        "the subset failed on {mode}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = format!("{} passed", SUBSET.len());
    assert!(
        summary.iter().any(|l| l.contains(&passed)),
        "not every test of the subset ran: {summary:?}"
    );
}

#[test]
fn the_named_subset_passes_on_cluster() {
    run_subset_on(RedisMode::Cluster);
}

#[test]
fn the_named_subset_passes_on_sentinel() {
    run_subset_on(RedisMode::Sentinel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_script_flush_on_every_node_every_script_still_runs() {
    let mut app = spawn_app().await;
    let username = unique_user("flush");
    let token = app.signed_up(&username).await.refresh_token();
    tokio::task::block_in_place(|| app.redis.script_flush());
    // Each of these runs scripts that are no longer cached anywhere: EVALSHA gets NOSCRIPT,
    // the invocation loads them again, the request never sees it.
    let rotated = app.refresh(&token).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let again = app.register(&unique_user("flush-new")).await;
    assert_eq!(again.status, 201, "{}", again.text);
    let login = app.login(&username).await;
    assert_eq!(login.status, 200, "{}", login.text);
    tokio::task::block_in_place(|| app.redis.script_flush());
    assert_eq!(app.logout(&rotated.refresh_token()).await.status, 204);
    let gone = app.refresh(&rotated.refresh_token()).await;
    assert_eq!((gone.status, gone.error()), (400, "invalid_grant"), "{}", gone.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_refreshes_of_one_token_over_two_instances_give_exactly_one_pair() {
    let app = spawn_app().await;
    let other = second_instance(&app, |_| {}).await;
    let token = app.signed_up(&unique_user("two")).await.refresh_token();
    let body = serde_json::json!({ "refresh_token": token });
    let requests = (0..50).map(|i| {
        let url = if i % 2 == 0 { app.url("/token") } else { format!("{other}/token") };
        let req = app.client.post(url).json(&body);
        async move { crate::helpers::read(req.send().await.unwrap()).await }
    });
    let replies = futures_util::future::join_all(requests).await;
    let mut pairs = HashSet::new();
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.text);
        let tokens = reply.tokens();
        pairs.insert((tokens.access_token, tokens.refresh_token));
    }
    assert_eq!(pairs.len(), 1, "50 refreshes over two instances gave {} pairs", pairs.len());
    let (_, successor) = pairs.into_iter().next().unwrap();
    assert_eq!(app.refresh(&successor.unwrap()).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_after_a_redis_restart_succeeds() {
    let mut app = spawn_app_on(RedisServer::start_with_aof(), |_| {}).await;
    let mut token = app.signed_up(&unique_user("restart")).await.refresh_token();
    // Right after the restart, and once the dead connection has sat idle a while (what an
    // operator's restart looks like): the pooled connection is dead both times, and neither
    // first request may pay for it.
    for idle in [Duration::ZERO, Duration::from_secs(3)] {
        tokio::task::block_in_place(|| app.standalone().restart());
        tokio::time::sleep(idle).await;
        let reply = app.refresh(&token).await;
        assert_eq!(
            reply.status, 200,
            "first /token after a restart (idle {idle:?}): {}",
            reply.text
        );
        token = reply.refresh_token();
    }
}

/// What a refresh load saw: per session its current token, and every answer's time and status.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(Instant, u16, String)>>>,
    tokens: Vec<Arc<Mutex<String>>>,
}

impl Load {
    /// `sessions` sessions of one user, each refreshed in a loop by its own task until stopped;
    /// a 503 keeps the token (the client retries it), anything else than 200 or 503 is kept
    /// for the assertions.
    async fn start(app: &TestApp, sessions: usize) -> Self {
        let username = unique_user("load");
        let first = app.signed_up(&username).await.refresh_token();
        let mut tokens = vec![Arc::new(Mutex::new(first))];
        for _ in 1..sessions {
            let reply = app.login(&username).await;
            tokens.push(Arc::new(Mutex::new(reply.refresh_token())));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = tokens
            .iter()
            .map(|token| {
                let (token, stop) = (Arc::clone(token), Arc::clone(&stop));
                let (client, url) = (app.client.clone(), app.url("/token"));
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let current = token.lock().await.clone();
                        let body = serde_json::json!({ "refresh_token": current });
                        let reply = match client.post(&url).json(&body).send().await {
                            Ok(res) => crate::helpers::read(res).await,
                            Err(e) => panic!("the server did not answer: {e}"),
                        };
                        if reply.status == 200 {
                            *token.lock().await = reply.refresh_token();
                        } else if reply.status == 503 {
                            assert_eq!(reply.error(), "unavailable", "{}", reply.text);
                            assert!(
                                reply.header("retry-after").is_some(),
                                "503 without Retry-After"
                            );
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        seen.push((Instant::now(), reply.status, reply.text));
                    }
                    seen
                })
            })
            .collect();
        Self { stop, tasks, tokens }
    }

    /// Stops the load; every answer, in no particular order.
    async fn stop(self) -> (Vec<(Instant, u16, String)>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.unwrap());
        }
        let mut tokens = Vec::new();
        for token in &self.tokens {
            tokens.push(token.lock().await.clone());
        }
        (all, tokens)
    }
}

/// Checks what a load saw around faults in `[fault_start, settled]` and that every session
/// still refreshes; returns (answers, 503s, the 503 window) for the report.
async fn check_load(
    app: &TestApp,
    what: &str,
    answers: &[(Instant, u16, String)],
    tokens: &[String],
    settled: Instant,
) -> (usize, usize, Duration) {
    let bad: Vec<_> = answers.iter().filter(|(_, s, _)| *s != 200 && *s != 503).collect();
    assert!(
        bad.is_empty(),
        "{what}: {} answers other than 200 and 503, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
    let unavailable: Vec<Instant> =
        answers.iter().filter(|(_, s, _)| *s == 503).map(|(t, _, _)| *t).collect();
    let window = match (unavailable.iter().min(), unavailable.iter().max()) {
        (Some(first), Some(last)) => {
            // 503s only until shortly after the deployment settled (the client's connections
            // and slot map catch up on the next calls; on a 2-core machine running the rest of
            // the suite beside this, the sentinels' and nodes' answers can lag by seconds).
            assert!(
                *last < settled + Duration::from_secs(5),
                "{what}: a 503 {:?} after the deployment settled",
                last.duration_since(settled)
            );
            last.duration_since(*first)
        }
        _ => Duration::ZERO,
    };
    let oks = answers.iter().filter(|(_, s, _)| *s == 200).count();
    assert!(oks > tokens.len(), "{what}: the load hardly ran ({oks} rotations)");
    for token in tokens {
        let reply = app.refresh(token).await;
        assert_eq!(reply.status, 200, "{what}: a session was lost: {}", reply.text);
    }
    (answers.len(), unavailable.len(), window)
}

/// No rotation limit: the load rotates each session hundreds of times a minute.
fn unlimited_rotations(s: &mut auth_server::Settings) {
    s.refresh_max_rotations = 1_000_000;
}

/// Runs the load for `warm` before `fault` (blocking, e.g. a harness failover) and `after` it.
async fn load_through(
    app: &mut TestApp,
    what: &str,
    fault: impl FnOnce(&mut TestRedis),
) -> (usize, usize, Duration) {
    let load = Load::start(app, 12).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    tokio::task::block_in_place(|| fault(&mut app.redis));
    let settled = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (answers, tokens) = load.stop().await;
    let report = check_load(app, what, &answers, &tokens, settled).await;
    println!(
        "{what}: {} answers, {} of them 503, 503 window {:?}; the harness's fault took {:?}",
        report.0,
        report.1,
        report.2,
        settled.duration_since(started)
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_and_a_killed_primary_under_refresh_load_lose_no_session() {
    let _ = env_logger::builder().is_test(true).try_init();
    let redis = tokio::task::spawn_blocking(|| TestRedis::start(RedisMode::Cluster)).await.unwrap();
    let mut app = spawn_app_on_deployment(redis, unlimited_rotations).await;
    let cluster = |r: &mut TestRedis| -> usize {
        let c = r.as_cluster().unwrap();
        c.primaries()[0]
    };
    let first = tokio::task::block_in_place(|| cluster(&mut app.redis));
    load_through(&mut app, "CLUSTER FAILOVER", |r| {
        r.as_cluster().unwrap().failover(first);
    })
    .await;
    let victim = tokio::task::block_in_place(|| cluster(&mut app.redis));
    load_through(&mut app, "killed cluster primary", |r| {
        r.as_cluster().unwrap().kill_primary(victim);
    })
    .await;
}

/// `redis-cli --cluster reshard` moves every slot of the primary holding the most sessions to
/// another while they are refreshed: the client follows `MOVED` and `ASK` (and a script whose
/// two keys are split mid-migration gets `TRYAGAIN`: a 503 the client repeats).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migration_under_refresh_load_loses_no_session() {
    let _ = env_logger::builder().is_test(true).try_init();
    let redis = tokio::task::spawn_blocking(|| TestRedis::start(RedisMode::Cluster)).await.unwrap();
    let mut app = spawn_app_on_deployment(redis, unlimited_rotations).await;
    load_through(&mut app, "reshard", |r| {
        let cluster = r.as_cluster().unwrap();
        let sessions = cluster.keys("sess:*");
        let mut holders: Vec<(usize, Vec<&String>)> = Vec::new();
        for key in &sessions {
            let node = cluster.primary_for_key(key);
            match holders.iter_mut().find(|(n, _)| *n == node) {
                Some((_, keys)) => keys.push(key),
                None => holders.push((node, vec![key])),
            }
        }
        holders.sort_by_key(|(_, keys)| std::cmp::Reverse(keys.len()));
        let (from, moved) = holders.first().cloned().expect("sessions in the cluster");
        let to = cluster.primaries().into_iter().find(|&p| p != from).unwrap();
        let took = cluster.reshard(from, to, 16384 / 3 + 1).wait();
        cluster.wait_ok();
        println!("reshard: {} session keys moved with their slots in {took:?}", moved.len());
        for key in moved {
            assert_eq!(cluster.primary_for_key(key), to, "{key} did not move");
        }
    })
    .await;
}

// A `SENTINEL FAILOVER` lost acknowledged rotations once in a CI run (3 608 `invalid_grant`):
// only the leading sentinel flags a failover, and when it did not answer in time the old master
// counted as "alone" and took writes it later dropped. A write no replica acknowledged is now
// answered only when no sentinel sees a replica up (the one being promoted is up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_and_a_killed_master_under_refresh_load_lose_no_session() {
    let _ = env_logger::builder().is_test(true).try_init();
    let redis =
        tokio::task::spawn_blocking(|| TestRedis::start(RedisMode::Sentinel)).await.unwrap();
    let mut app = spawn_app_on_deployment(redis, unlimited_rotations).await;
    // The old master accepts writes until the sentinels demote it (~10 s) and then drops
    // them: a rotation answered 200 in between would be lost.
    load_through(&mut app, "SENTINEL FAILOVER", |r| {
        r.as_sentinel().unwrap().failover();
    })
    .await;
    load_through(&mut app, "killed sentinel master", |r| {
        r.as_sentinel().unwrap().kill_master();
    })
    .await;
}

/// The case that lost rotations: the leading sentinel does not answer while the other two
/// still name the old master without a flag (they learn of the failover from the leader), and
/// the old master takes writes no replica acknowledges. They must be 503s, not 200s it drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_whose_leader_stops_answering_loses_no_session() {
    let _ = env_logger::builder().is_test(true).try_init();
    // A failover timeout longer than the pause, or the leader would give the failover up.
    let sentinel = || {
        let group = RedisSentinel::builder().failover_timeout(Duration::from_secs(20)).start();
        TestRedis::Sentinel(group)
    };
    let redis = tokio::task::spawn_blocking(sentinel).await.unwrap();
    let mut app = spawn_app_on_deployment(redis, unlimited_rotations).await;
    let (answers, unavailable, _) =
        load_through(&mut app, "SENTINEL FAILOVER, its leader paused 1.5 s", |r| {
            r.as_sentinel().unwrap().failover_pausing_leader(Duration::from_millis(1500));
        })
        .await;
    // The pause is seen: writes on the old master are refused while the leader is silent.
    assert!(unavailable > 0, "no 503 in {answers} answers while the leader was paused");
}

/// The binary (a process: `SSL_CERT_FILE` names the throwaway CA) on `redis`, logging in as the
/// ACL user `auth`; its base URL once ready.
async fn binary_as_acl_user(redis: &TestRedis, keys: &std::path::Path) -> (ChildGuard, String) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auth-server"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AUTH_BIND", format!("127.0.0.1:{port}"))
        .env("AUTH_KEYS_DIR", keys)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in redis.env() {
        let value = if name.starts_with("AUTH_REDIS_") && name.ends_with("URLS") {
            value
                .split(',')
                .map(|u| as_user(u, "auth", "auth-password"))
                .collect::<Vec<_>>()
                .join(",")
        } else if name == "AUTH_REDIS_URL" {
            as_user(&value, "auth", "auth-password")
        } else {
            value
        };
        cmd.env(name, value);
    }
    let child = ChildGuard(cmd.spawn().unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return (child, base);
        }
        assert!(Instant::now() < deadline, "the binary never got ready on {}", redis.mode());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `url` logging in as `user`.
fn as_user(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}:{password}@{host}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_an_acl_user_work_on_cluster_and_sentinel() {
    for mode in [RedisMode::Cluster, RedisMode::Sentinel] {
        let options =
            RedisOptions::new().tls(true).acl_user("auth", "auth-password", "~* &* +@all");
        let redis = tokio::task::spawn_blocking(move || TestRedis::start_with(mode, options))
            .await
            .unwrap();
        assert!(
            redis
                .env()
                .iter()
                .any(|(k, v)| k.starts_with("AUTH_REDIS_") && v.contains("rediss://"))
        );
        let keys = tempfile::tempdir().unwrap();
        let (_server, base) = binary_as_acl_user(&redis, keys.path()).await;
        let client = reqwest::Client::new();
        let body = serde_json::json!({ "username": unique_user("tls"), "password": PASSWORD });
        let post = |path: &str, body: &serde_json::Value| {
            let req = client.post(format!("{base}{path}")).json(body);
            async move { crate::helpers::read(req.send().await.unwrap()).await }
        };
        assert_eq!(post("/register", &body).await.status, 201, "{mode}");
        let login = post("/login", &body).await;
        assert_eq!(login.status, 200, "{mode}: {}", login.text);
        let refresh = serde_json::json!({ "refresh_token": login.refresh_token() });
        let reply = post("/token", &refresh).await;
        assert_eq!(reply.status, 200, "{mode}: {}", reply.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_that_require_a_password_are_logged_in_to_with_their_own_setting() {
    let options = RedisOptions::new().sentinel_password("sentinel-secret");
    let start = move || TestRedis::start_with(RedisMode::Sentinel, options);
    let mut redis = tokio::task::spawn_blocking(start).await.unwrap();
    // The sentinels really require it: asked without, they refuse.
    let port = redis.as_sentinel().unwrap().sentinel_ports()[0];
    let anonymous = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let refused = anonymous
        .get_connection()
        .and_then(|mut c| redis::cmd("SENTINEL").arg("MASTERS").query::<redis::Value>(&mut c));
    let refused = refused.expect_err("a sentinel answered without its password");
    assert_eq!(refused.code(), Some("NOAUTH"), "{refused}");
    assert!(redis.env().iter().any(|(k, _)| k == "AUTH_REDIS_SENTINEL_PASSWORD"));

    // Without the setting the server cannot find the master: 503, never a verdict.
    let keys = tempfile::tempdir().unwrap();
    let mut without = crate::helpers::settings_for(&redis, keys.path());
    if let auth_server::config::RedisSettings::Sentinel { login, .. } = &mut without.redis {
        login.password = None;
    }
    let server = auth_server::Application::build(without).await.unwrap();
    let base = format!("http://127.0.0.1:{}", server.port());
    let handle = tokio::spawn(server.run_until_stopped());
    let client = reqwest::Client::new();
    let body =
        serde_json::json!({ "username": unique_user("sentinel-auth"), "password": PASSWORD });
    let reply = client.post(format!("{base}/register")).json(&body).send().await.unwrap();
    assert_eq!(reply.status(), 503);
    handle.abort();

    // With it, the whole flow works.
    let app = spawn_app_on_deployment(redis, |_| {}).await;
    let username = unique_user("sentinel-auth");
    let login = app.signed_up(&username).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let reply = app.refresh(&login.refresh_token()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// The `kid` in a JWT's header.
fn kid_of(jwt: &str) -> String {
    use base64::Engine as _;
    let header = jwt.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap();
    let header: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_keys_rotate_two_instances_on_one_folder_sign_with_the_new_key_within_seconds() {
    let app = spawn_app().await;
    let other = second_instance(&app, |_| {}).await;
    let username = unique_user("keys");
    let first = app.signed_up(&username).await.tokens();
    let old_kid = kid_of(&first.access_token);
    // One session per instance, each refreshed on its own instance.
    let mut tokens = [first.refresh_token.unwrap(), app.login(&username).await.refresh_token()];
    let bases = [app.address.clone(), other];
    let refresh = async |base: &str, token: &str| {
        let body = serde_json::json!({ "refresh_token": token });
        let req = app.client.post(format!("{base}/token")).json(&body);
        crate::helpers::read(req.send().await.unwrap()).await.tokens()
    };
    for (base, token) in bases.iter().zip(tokens.iter_mut()) {
        let pair = refresh(base, token).await;
        assert_eq!(kid_of(&pair.access_token), old_kid);
        *token = pair.refresh_token.unwrap();
    }

    let new_kid = crate::keys_cli::rotate(app.keys_dir.path());
    assert_ne!(new_kid, old_kid);
    let rotated = Instant::now();
    let mut switched = [None, None];
    while switched.iter().any(Option::is_none) {
        assert!(rotated.elapsed() < Duration::from_secs(5), "not every instance switched in 5 s");
        for (i, base) in bases.iter().enumerate() {
            let pair = refresh(base, &tokens[i]).await;
            tokens[i] = pair.refresh_token.unwrap();
            let kid = kid_of(&pair.access_token);
            match switched[i] {
                None if kid == new_kid => switched[i] = Some(rotated.elapsed()),
                None => assert_eq!(kid, old_kid, "instance {i} signed with an unknown key"),
                Some(_) => assert_eq!(kid, new_kid, "instance {i} went back to the retired key"),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("instances signing with the new key after {switched:?}");
    // From then on, no instance signs with the retired key.
    for _ in 0..10 {
        for (i, base) in bases.iter().enumerate() {
            let pair = refresh(base, &tokens[i]).await;
            assert_eq!(kid_of(&pair.access_token), new_kid, "instance {i}");
            tokens[i] = pair.refresh_token.unwrap();
        }
    }
}

/// p50 and p99 of `samples`.
fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

/// `connections` clients calling `one` back to back for `for_how_long`: req/s, p50, p99.
async fn measure<F, Fut>(
    connections: usize,
    for_how_long: Duration,
    one: F,
) -> (f64, Duration, Duration)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let one = one.clone();
            tokio::spawn(async move {
                let mut times = Vec::new();
                while started.elapsed() < for_how_long {
                    let t = Instant::now();
                    one(c).await;
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(&mut all);
    (rate, p50, p99)
}

/// Not a test: `/token` and `/login` on each mode in one run, and the cost of `WAIT 1` on the
/// primary. `cargo test -p auth-server --test api -- --ignored --nocapture
/// scale::measure_token_and_login_on_every_mode` (numbers in README, "Running at scale").
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, run by hand"]
async fn measure_token_and_login_on_every_mode() {
    let seconds = Duration::from_secs(5);
    let mut base = None;
    for mode in RedisMode::ALL {
        let redis = tokio::task::spawn_blocking(move || TestRedis::start(mode)).await.unwrap();
        let app = Arc::new(spawn_app_on_deployment(redis, unlimited_rotations).await);
        let username = unique_user("bench");
        let first = app.signed_up(&username).await.refresh_token();
        let mut chains = vec![Arc::new(Mutex::new(first))];
        for _ in 1..16 {
            chains.push(Arc::new(Mutex::new(app.login(&username).await.refresh_token())));
        }
        let (token_app, token_chains) = (Arc::clone(&app), chains.clone());
        let token = measure(16, seconds, move |c| {
            let (app, chain) = (Arc::clone(&token_app), Arc::clone(&token_chains[c]));
            async move {
                let mut current = chain.lock().await;
                *current = app.refresh(&current).await.refresh_token();
            }
        })
        .await;
        let login_app = Arc::clone(&app);
        let login = measure(8, seconds, move |_| {
            let (app, username) = (Arc::clone(&login_app), username.clone());
            async move { assert_eq!(app.login(&username).await.status, 200) }
        })
        .await;
        // What WAIT adds to a write: SET alone vs SET + WAIT 1 on the primary of the key.
        let wait = tokio::task::block_in_place(|| {
            let mut conn = app.redis.connection();
            let mut time = |with_wait: bool| {
                let started = Instant::now();
                for i in 0..500 {
                    let () = redis::cmd("SET").arg("{bench}k").arg(i).query(&mut conn).unwrap();
                    if with_wait && mode != RedisMode::Standalone {
                        // In a Cluster the harness's connection asks every primary; those
                        // without a pending write answer at once.
                        let acked: u32 =
                            redis::cmd("WAIT").arg(1).arg(200).query(&mut conn).unwrap();
                        assert_eq!(acked, 1, "{mode}");
                    }
                }
                started.elapsed() / 500
            };
            (time(false), time(true))
        });
        let (rate, p50, p99) = token;
        let ratio = base.map_or(1.0, |b: f64| rate / b);
        base.get_or_insert(rate);
        println!(
            "{mode}: /token {rate:.0} req/s p50 {p50:?} p99 {p99:?} ({ratio:.2} of standalone); \
             /login {:.0} req/s p50 {:?} p99 {:?}; SET {:?} vs SET+WAIT 1 {:?}",
            login.0, login.1, login.2, wait.0, wait.1
        );
    }
}
