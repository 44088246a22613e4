//! Login timing does not tell whether a username exists.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{spawn_app_with, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_median_login_time_of_an_unknown_username_is_within_20_percent_of_a_wrong_password() {
    // The real argon2 parameters; only the throttle is raised so 150 failures stay 401s.
    let app = spawn_app_with(|s| {
        s.throttle.max_failures_per_pair = 100_000;
        s.throttle.max_failures_per_address = 100_000;
        s.throttle.max_failures_per_username = 100_000;
    })
    .await;
    let known = unique_user("timing");
    assert_eq!(app.register(&known).await.status, 201);
    let wrong = json!({ "username": known, "password": "a wrong password" });
    // Warm up connections and caches.
    for _ in 0..5 {
        app.post_json("/login", &wrong).await;
    }

    let samples = 150;
    let (mut known_times, mut unknown_times) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let unknown = json!({ "username": unique_user("nobody"), "password": "a wrong password" });
        for (body, times) in [(&wrong, &mut known_times), (&unknown, &mut unknown_times)] {
            let start = Instant::now();
            let reply = app.post_json("/login", body).await;
            times.push(start.elapsed());
            assert_eq!(reply.status, 401, "{}", reply.text);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (k, u) = (median(&mut known_times), median(&mut unknown_times));
    let ratio = u.as_secs_f64() / k.as_secs_f64();
    // Without the dummy hash an unknown user answers in ~1 ms against tens of ms.
    assert!(
        (0.8..=1.2).contains(&ratio),
        "median unknown {u:?} vs wrong password {k:?} (ratio {ratio:.2})"
    );
}
