//! The auth server's own Prometheus series, beside the shared HTTP ones
//! ([`service_kit::metrics`]); all in the process's default registry, served by `GET /metrics`.
//!
//! | series | labels | what |
//! |---|---|---|
//! | `auth_logins_total` | `outcome`: `success` or the error code (`invalid_credentials`, `rate_limited`, `unavailable`, ...) | `POST /login` answers |
//! | `auth_refresh_total` | `outcome`: `rotated`, `replay`, `limited` (the session's rotation limit), `reuse`, `unknown`, `expired`, `error` | `POST /token` rotations |
//! | `auth_refresh_reuse_detected_total` | | spent refresh tokens presented again: **a security signal** (a stolen token, or a buggy client) |
//! | `auth_sessions_revoked_total` | `reason`: `logout`, `logout_all`, `reuse`, `max_age`, `evicted` (a login past the user's session limit), `session_delete` (`DELETE /sessions/{sid}`), `others` (`DELETE /sessions/others`), `revoke` (`POST /revoke`), `password` (the other sessions at a password change), `disabled`, `roles`, `operator_logout` (the `users` commands) | sessions ended (for all but `max_age`: published on the revocation list and deleted) |
//! | `auth_revocation_list_entries` | | entries on the revocation list (sessions whose access tokens could still pass), as last read or published by this instance |
//! | `auth_revocation_waiters` | | `GET /revocations` long polls waiting now |
//! | `auth_revocation_publish_errors_total` | `step`: `publish`, `delete` | ends of marked sessions that failed (retried in the background; the sessions refuse their tokens meanwhile) |
//! | `auth_throttled_total` | `limit`: which limit answered 429 | throttled requests |
//! | `auth_argon2_queue_depth` | | password checks waiting for a hashing slot |
//! | `auth_argon2_running` | | password checks hashing right now |
//! | `auth_redis_errors_total` | | Redis commands that failed or timed out |
//! | `auth_redis_retries_total` | | calls repeated once on a fresh connection after the first found it dead |
//! | `auth_redis_master_changes_total` | | Sentinel mode: times the master was looked up again (after a failover, `READONLY` or a dead connection) |
//! | `auth_redis_unreplicated_writes_total` | | writes that must not be lost answered without a replica's acknowledgement (`WAIT` got none in time, or skipped while none answers) |
//! | `auth_signing_key_info` | `kid` | 1 for the key signing new tokens |
//! | `auth_key_reloads_total` | `outcome`: `ok`, `failed` | re-reads of the keys folder (file change, poll, SIGHUP) |
//! | `auth_key_rotations_total` | `step`: `add`, `activate`, `prune`; `outcome`: `ok`, `failed` | steps of scheduled key rotation (`AUTH_KEY_ROTATION_INTERVAL`) this instance ran |
//! | `auth_key_reload_failing` | | 1 while the last re-read failed: the server signs with the previous key, not the state's active one |
//!
//! Every update is one atomic operation on a series resolved once.

use std::sync::LazyLock;

use service_kit::metrics::prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use service_kit::metrics::{counter, counter_vec, gauge, gauge_vec};

static LOGINS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "auth_logins_total",
        "POST /login answers, by outcome: success, or the error code answered.",
        &["outcome"],
    )
});

static REFRESHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "auth_refresh_total",
        "POST /token refresh-token rotations, by outcome: rotated, replay (within the reuse grace), limited (the session's rotation limit), reuse (spent token: session revoked), unknown, expired, error.",
        &["outcome"],
    )
});

static REUSE_DETECTED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "auth_refresh_reuse_detected_total",
        "Spent refresh tokens presented again after the grace (RFC 9700 reuse detection): a stolen token or a broken client. Each revoked its session.",
    )
});

static SESSIONS_REVOKED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "auth_sessions_revoked_total",
        "Sessions ended, by reason: logout, logout_all, reuse, max_age, evicted (a login past the user's session limit), session_delete, others, revoke, password, disabled, roles, operator_logout.",
        &["reason"],
    )
});

static REVOCATION_LIST: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "auth_revocation_list_entries",
        "Entries on the session revocation list (sessions whose access tokens could still be accepted), as last read or published by this instance.",
    )
});

static REVOCATION_WAITERS: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("auth_revocation_waiters", "GET /revocations long polls waiting now."));

static REVOCATION_PUBLISH_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "auth_revocation_publish_errors_total",
        "Ends of sessions marked revoked that failed at a step (publish, delete); they are retried and the sessions refuse their tokens meanwhile.",
        &["step"],
    )
});

static THROTTLED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "auth_throttled_total",
        "Requests answered 429 rate_limited, by the limit that refused them.",
        &["limit"],
    )
});

static ARGON2_QUEUED: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge("auth_argon2_queue_depth", "Password hashings waiting for a free hashing slot.")
});

static ARGON2_RUNNING: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("auth_argon2_running", "Password hashings running now."));

static REDIS_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter("auth_redis_errors_total", "Redis commands that failed or got no answer in time.")
});

static REDIS_RETRIES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "auth_redis_retries_total",
        "Redis calls repeated once on a fresh connection after the first found it dead.",
    )
});

static REDIS_MASTER_CHANGES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "auth_redis_master_changes_total",
        "Sentinel mode: lookups of the master after a failover, READONLY or a dead connection.",
    )
});

static REDIS_UNREPLICATED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "auth_redis_unreplicated_writes_total",
        "Writes that must not be lost answered without a replica's acknowledgement.",
    )
});

static SIGNING_KEY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "auth_signing_key_info",
        "1 for the key (kid) that signs new access tokens.",
        &["kid"],
    )
});

static KEY_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "auth_key_reloads_total",
        "Re-reads of the keys folder (file change, poll, SIGHUP), by outcome: ok, or failed (the last good keys stay).",
        &["outcome"],
    )
});

static KEY_RELOAD_FAILING: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "auth_key_reload_failing",
        "1 while the last re-read of the keys folder failed: new tokens are signed with the previous key, not the one the key state names.",
    )
});

static KEY_ROTATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "auth_key_rotations_total",
        "Steps of scheduled key rotation this instance ran, by step (add, activate, prune) and outcome (ok, failed).",
        &["step", "outcome"],
    )
});

/// Registers every series, so each shows (at 0) from the first scrape on.
pub fn init() {
    for outcome in ["success", "invalid_credentials", "rate_limited", "unavailable"] {
        LOGINS.with_label_values(&[outcome]);
    }
    for outcome in ["rotated", "replay", "limited", "reuse", "unknown", "expired", "error"] {
        REFRESHES.with_label_values(&[outcome]);
    }
    for reason in SESSION_END_REASONS {
        SESSIONS_REVOKED.with_label_values(&[reason]);
    }
    for step in ["publish", "delete"] {
        REVOCATION_PUBLISH_ERRORS.with_label_values(&[step]);
    }
    LazyLock::force(&REVOCATION_LIST);
    LazyLock::force(&REVOCATION_WAITERS);
    LazyLock::force(&THROTTLED);
    LazyLock::force(&REUSE_DETECTED);
    LazyLock::force(&ARGON2_QUEUED);
    LazyLock::force(&ARGON2_RUNNING);
    LazyLock::force(&REDIS_ERRORS);
    LazyLock::force(&REDIS_RETRIES);
    LazyLock::force(&REDIS_MASTER_CHANGES);
    LazyLock::force(&REDIS_UNREPLICATED);
    LazyLock::force(&SIGNING_KEY);
    for outcome in ["ok", "failed"] {
        KEY_RELOADS.with_label_values(&[outcome]);
    }
    LazyLock::force(&KEY_RELOAD_FAILING);
    for step in ["add", "activate", "prune"] {
        for outcome in ["ok", "failed"] {
            KEY_ROTATIONS.with_label_values(&[step, outcome]);
        }
    }
}

/// A step of scheduled key rotation (`add`, `activate`, `prune`): whether it worked.
pub fn key_rotation(step: &'static str, ok: bool) {
    KEY_ROTATIONS.with_label_values(&[step, if ok { "ok" } else { "failed" }]).inc();
}

/// A re-read of the keys folder: whether it worked.
pub fn key_reload(ok: bool) {
    KEY_RELOADS.with_label_values(&[if ok { "ok" } else { "failed" }]).inc();
    KEY_RELOAD_FAILING.set(i64::from(!ok));
}

/// A `POST /login` answer: `success`, or the contract's error code (`invalid_credentials`,
/// `rate_limited`, `unavailable`, `invalid_request`, `internal_error`).
pub fn login(outcome: &'static str) {
    LOGINS.with_label_values(&[outcome]).inc();
}

/// A refresh-token rotation: `rotated`, `replay`, `reuse`, `unknown`, `expired` or `error`.
pub fn refresh(outcome: &'static str) {
    REFRESHES.with_label_values(&[outcome]).inc();
    if outcome == "reuse" {
        REUSE_DETECTED.inc();
    }
}

/// Every `reason` of `auth_sessions_revoked_total`.
pub const SESSION_END_REASONS: [&str; 12] = [
    "logout",
    "logout_all",
    "reuse",
    "max_age",
    "evicted",
    "session_delete",
    "others",
    "revoke",
    "password",
    "disabled",
    "roles",
    "operator_logout",
];

/// `count` sessions ended for `reason` (one of [`SESSION_END_REASONS`]).
pub fn sessions_revoked(reason: &'static str, count: u64) {
    SESSIONS_REVOKED.with_label_values(&[reason]).inc_by(count);
}

/// The revocation list holds `entries`.
pub fn revocation_list_size(entries: u64) {
    REVOCATION_LIST.set(i64::try_from(entries).unwrap_or(i64::MAX));
}

/// `count` long polls wait now.
pub fn revocation_waiters(count: usize) {
    REVOCATION_WAITERS.set(i64::try_from(count).unwrap_or(i64::MAX));
}

/// Ending marked sessions failed at `step` (`publish` or `delete`).
pub fn revocation_publish_error(step: &'static str) {
    REVOCATION_PUBLISH_ERRORS.with_label_values(&[step]).inc();
}

/// A request refused with 429 by `limit` (e.g. `login_username`, `login_address`,
/// `register_address`): for the throttling code to call.
pub fn throttled(limit: &'static str) {
    THROTTLED.with_label_values(&[limit]).inc();
}

/// A Redis command failed or timed out.
pub fn redis_error() {
    REDIS_ERRORS.inc();
}

/// A Redis call was repeated on a fresh connection.
pub fn redis_retry() {
    REDIS_RETRIES.inc();
}

/// The Sentinel master was looked up again.
pub fn redis_master_change() {
    REDIS_MASTER_CHANGES.inc();
}

/// A write that must not be lost was answered without a replica's acknowledgement.
pub fn redis_unreplicated_write() {
    REDIS_UNREPLICATED.inc();
}

/// Sets `auth_signing_key_info` to `kid` alone.
pub fn signing_key(kid: &str) {
    if SIGNING_KEY.with_label_values(&[kid]).get() != 1 {
        SIGNING_KEY.reset();
        SIGNING_KEY.with_label_values(&[kid]).set(1);
    }
}

/// Held while a hashing waits for a slot: counts it in `auth_argon2_queue_depth`, also when
/// the waiting request goes away.
#[derive(Debug)]
pub struct Argon2Queued(());

impl Argon2Queued {
    /// Counts one more waiting hashing until dropped.
    pub fn enter() -> Self {
        ARGON2_QUEUED.inc();
        Self(())
    }
}

impl Drop for Argon2Queued {
    fn drop(&mut self) {
        ARGON2_QUEUED.dec();
    }
}

/// Held while a hashing runs: counts it in `auth_argon2_running`.
#[derive(Debug)]
pub struct Argon2Running(());

impl Argon2Running {
    /// Counts one more running hashing until dropped.
    pub fn enter() -> Self {
        ARGON2_RUNNING.inc();
        Self(())
    }
}

impl Drop for Argon2Running {
    fn drop(&mut self) {
        ARGON2_RUNNING.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_key_series_names_one_kid() {
        signing_key("kid-a");
        signing_key("kid-b");
        assert_eq!(SIGNING_KEY.with_label_values(&["kid-b"]).get(), 1);
        let text = service_kit::metrics::render();
        assert!(!text.contains("kid=\"kid-a\""), "{text}");
    }

    #[test]
    fn a_reuse_is_also_a_detection() {
        let before = REUSE_DETECTED.get();
        refresh("reuse");
        assert!(REUSE_DETECTED.get() > before);
    }
}
