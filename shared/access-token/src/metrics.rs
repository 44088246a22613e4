//! The token side's Prometheus series: verification outcomes (`token_verifications_total`), key
//! reloads (`key_reloads_total`, `key_files_skipped_total`) and the live key count
//! (`keys_loaded`), the revocation list's age, size, readiness and fetch errors
//! (`revocation_list_*`, once a service follows one), plus the helpers that register a series in the process-wide default
//! registry ([`register`], [`counter`], [`counter_vec`], [`gauge`], [`gauge_vec`]).
//!
//! Everything is in [`prometheus::default_registry`], so whatever serves `/metrics` for the
//! service (e.g. `prometheus::gather()`) shows these series with no wiring; [`prometheus`] is
//! re-exported so services need no direct dependency on it. A verification costs one atomic
//! add on a pre-resolved counter.

use std::sync::{Arc, LazyLock, Mutex, Weak};

pub use prometheus;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts};

use crate::keyset::{ReloadOutcome, TrustedKeys};
use crate::revocation::RevocationList;
use crate::verify::VerifyError;

// ---------------------------------------------------------------------------------------------
// Registration

/// Registers `collector` in the default registry. A second registration of the same metric
/// (two apps in one test process share the registry) is not an error: the first one stays.
pub fn register<C: Collector + Clone + 'static>(collector: C) -> C {
    if let Err(e) = prometheus::register(Box::new(collector.clone()))
        && !matches!(e, prometheus::Error::AlreadyReg)
    {
        log::error!("metric not registered: {e}");
    }
    collector
}

/// A counter family with `labels`, registered in the default registry.
///
/// A bad name is a programming error caught by the unit tests; should it ever happen, the
/// family is still usable, just not exported.
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| {
        log::error!("bad metric {name}: {e}");
        fallback_counter_vec(labels)
    });
    register(vec)
}

/// A plain counter, registered in the default registry.
pub fn counter(name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).unwrap_or_else(|e| {
        log::error!("bad metric {name}: {e}");
        fallback_counter_vec(&[]).with_label_values::<&str>(&[])
    });
    register(counter)
}

/// A gauge, registered in the default registry.
pub fn gauge(name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).unwrap_or_else(|e| {
        log::error!("bad metric {name}: {e}");
        #[allow(clippy::expect_used)] // a constant, valid name: cannot fail
        IntGauge::new("invalid_metric", "-").expect("constant metric name")
    });
    register(gauge)
}

/// A gauge family with `labels`, registered in the default registry.
pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::IntGaugeVec {
    let vec = prometheus::IntGaugeVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| {
        log::error!("bad metric {name}: {e}");
        #[allow(clippy::expect_used)] // a constant, valid name: cannot fail
        prometheus::IntGaugeVec::new(Opts::new("invalid_metric", "-"), labels)
            .expect("constant metric name")
    });
    register(vec)
}

fn fallback_counter_vec(labels: &[&str]) -> IntCounterVec {
    #[allow(clippy::expect_used)] // a constant, valid name: cannot fail
    IntCounterVec::new(Opts::new("invalid_metric", "-"), labels).expect("constant metric name")
}

// ---------------------------------------------------------------------------------------------
// Token verification

/// Every outcome label of `token_verifications_total`: `ok`, then each [`VerifyError::kind`].
pub const VERIFY_OUTCOMES: &[&str] = &[
    "ok",
    "too_long",
    "malformed",
    "wrong_alg",
    "wrong_typ",
    "missing_kid",
    "unknown_kid",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "wrong_issuer",
    "wrong_audience",
    "missing_claim",
    "insufficient_scope",
    "session_ended",
    "revocation_list_stale",
];

static VERIFICATIONS: LazyLock<Vec<IntCounter>> = LazyLock::new(|| {
    let vec = counter_vec(
        "token_verifications_total",
        "Access tokens verified, by outcome (ok, expired, bad_signature, unknown_kid, ...).",
        &["outcome"],
    );
    VERIFY_OUTCOMES.iter().map(|o| vec.with_label_values(&[*o])).collect()
});

/// Counts one verification (`token_verifications_total{outcome}`): one atomic add.
pub fn record_verification<T>(result: &Result<T, VerifyError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    if let Some(i) = VERIFY_OUTCOMES.iter().position(|o| *o == outcome)
        && let Some(counter) = VERIFICATIONS.get(i)
    {
        counter.inc();
    }
}

// ---------------------------------------------------------------------------------------------
// Key reloads

static KEY_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "key_reloads_total",
        "Reads of the public key source (file change, poll, SIGHUP, timer, unknown kid), by outcome: ok, or failed (source unreadable: the last good set stays).",
        &["outcome"],
    )
});

static KEY_FILES_SKIPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "key_files_skipped_total",
        "Key files or JWKs skipped on a read because they could not be used.",
    )
});

/// The live keys `keys_loaded` reports, read at each gather (the latest [`observe_keys`] call
/// wins; weak, so it never keeps a stopped app's keys alive).
static OBSERVED_KEYS: Mutex<Option<Weak<TrustedKeys>>> = Mutex::new(None);

/// `keys_loaded`: the size of the observed live set, read when the registry is gathered, so a
/// scrape always shows the set of that moment without any hook in the `/metrics` handler.
#[derive(Clone)]
struct KeysLoaded(IntGauge);

impl Collector for KeysLoaded {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let live = OBSERVED_KEYS.lock().ok().and_then(|k| k.as_ref().and_then(Weak::upgrade));
        if let Some(keys) = live {
            self.0.set(i64::try_from(keys.current().len()).unwrap_or(i64::MAX));
        }
        self.0.collect()
    }
}

static KEYS_LOADED: LazyLock<KeysLoaded> = LazyLock::new(|| {
    let gauge = IntGauge::new("keys_loaded", "Public keys in the live verification set.")
        .unwrap_or_else(|e| {
            log::error!("bad metric keys_loaded: {e}");
            #[allow(clippy::expect_used)] // a constant, valid name: cannot fail
            IntGauge::new("invalid_metric", "-").expect("constant metric name")
        });
    register(KeysLoaded(gauge))
});

/// Makes `keys_loaded` report the size of `keys`' live set at every scrape.
pub fn observe_keys(keys: &Arc<TrustedKeys>) {
    LazyLock::force(&KEYS_LOADED);
    if let Ok(mut observed) = OBSERVED_KEYS.lock() {
        *observed = Some(Arc::downgrade(keys));
    }
}

/// Counts one reload of a [`TrustedKeys`] (`key_reloads_total{outcome}`: `ok`, or `failed`
/// when the source could not be read and the last good set stayed) and the keys it skipped.
pub(crate) fn record_reload(outcome: &ReloadOutcome) {
    match outcome {
        ReloadOutcome::Loaded { skipped, .. } => {
            KEY_RELOADS.with_label_values(&["ok"]).inc();
            KEY_FILES_SKIPPED.inc_by(skipped.len() as u64);
        }
        ReloadOutcome::KeptPrevious { .. } => KEY_RELOADS.with_label_values(&["failed"]).inc(),
    }
}

/// Registers the key series, so each shows (at 0) from the first scrape on.
pub(crate) fn init_key_series() {
    for outcome in ["ok", "failed"] {
        KEY_RELOADS.with_label_values(&[outcome]);
    }
    LazyLock::force(&KEY_FILES_SKIPPED);
}

// ---------------------------------------------------------------------------------------------
// The revocation list (a follower of the auth server's `GET /revocations`)

/// The list the revocation series report, read at each gather (the latest
/// [`observe_revocations`] call wins; weak, like the keys).
static OBSERVED_REVOCATIONS: Mutex<Option<Weak<RevocationList>>> = Mutex::new(None);

/// `revocation_list_age_seconds`, `revocation_list_entries`, `revocation_list_ready`: read from
/// the observed list when the registry is gathered, so the age a scrape shows is the age at
/// that moment (a gauge set by the follower would freeze while the follower is stuck).
#[derive(Clone)]
struct RevocationSeries {
    age: Gauge,
    entries: IntGauge,
    ready: IntGauge,
}

impl Collector for RevocationSeries {
    fn desc(&self) -> Vec<&Desc> {
        [self.age.desc(), self.entries.desc(), self.ready.desc()].concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let live =
            OBSERVED_REVOCATIONS.lock().ok().and_then(|l| l.as_ref().and_then(Weak::upgrade));
        let Some(list) = live else { return Vec::new() };
        // Before the first answer: how long the process has gone without one.
        let age = list.age().unwrap_or_else(|| list.created().elapsed());
        self.age.set(age.as_secs_f64());
        self.entries.set(i64::try_from(list.len()).unwrap_or(i64::MAX));
        self.ready.set(i64::from(list.is_ready()));
        [self.age.collect(), self.entries.collect(), self.ready.collect()].concat()
    }
}

static REVOCATION_SERIES: LazyLock<RevocationSeries> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // constant, valid names: cannot fail
    let series = RevocationSeries {
        age: Gauge::new(
            "revocation_list_age_seconds",
            "Seconds since the revocation list's feed last answered (before the first answer: since start).",
        )
        .expect("constant metric name"),
        entries: IntGauge::new(
            "revocation_list_entries",
            "Ended sessions on the revocation list held in memory.",
        )
        .expect("constant metric name"),
        ready: IntGauge::new(
            "revocation_list_ready",
            "1 once a full revocation list has arrived, else 0.",
        )
        .expect("constant metric name"),
    };
    register(series)
});

static REVOCATION_FETCH_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "revocation_list_fetch_errors_total",
        "Failed fetches of the revocation list (unreachable, timed out, bad answer); the list held stays in force.",
    )
});

/// Makes the revocation series report `list` at every scrape.
pub fn observe_revocations(list: &Arc<RevocationList>) {
    LazyLock::force(&REVOCATION_SERIES);
    LazyLock::force(&REVOCATION_FETCH_ERRORS);
    if let Ok(mut observed) = OBSERVED_REVOCATIONS.lock() {
        *observed = Some(Arc::downgrade(list));
    }
}

/// Counts one failed fetch of the revocation list.
pub fn record_revocation_fetch_error() {
    REVOCATION_FETCH_ERRORS.inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verify_error_kind_has_an_outcome_label() {
        let errors = [
            VerifyError::TooLong,
            VerifyError::Malformed("x"),
            VerifyError::WrongAlg,
            VerifyError::WrongTyp,
            VerifyError::MissingKid,
            VerifyError::UnknownKid,
            VerifyError::BadSignature,
            VerifyError::Expired,
            VerifyError::NotYetValid,
            VerifyError::IssuedInFuture,
            VerifyError::WrongIssuer,
            VerifyError::WrongAudience,
            VerifyError::MissingClaim("sub"),
            VerifyError::InsufficientScope("s".into()),
            VerifyError::SessionEnded,
            VerifyError::RevocationListStale,
        ];
        for e in errors {
            assert!(VERIFY_OUTCOMES.contains(&e.kind()), "{}", e.kind());
        }
    }

    #[test]
    fn a_verification_moves_its_outcome_series() {
        let series = |o: &str| {
            prometheus::gather()
                .iter()
                .find(|f| f.name() == "token_verifications_total")
                .and_then(|f| {
                    f.get_metric().iter().find(|m| {
                        m.get_label().iter().any(|l| l.name() == "outcome" && l.value() == o)
                    })
                })
                .map_or(0.0, |m| m.get_counter().get_value())
        };
        let before = series("wrong_typ");
        record_verification::<()>(&Err(VerifyError::WrongTyp));
        assert_eq!(series("wrong_typ"), before + 1.0);
    }
}
