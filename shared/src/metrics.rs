//! Prometheus metrics both servers share: the HTTP middleware ([`HttpMetrics`]), token
//! verification outcomes, key reloads, and the `GET /metrics` handler ([`metrics_handler`]).
//!
//! Everything lives in the process-wide default registry ([`prometheus::default_registry`]),
//! so any crate can add its own series (the auth server does) and one scrape shows them all.
//! [`prometheus`] is re-exported so services need no direct dependency on it.
//!
//! Cost on the hot path: a request does one hash-map lookup in a per-worker cache of resolved
//! series (no lock, no allocation once warm) and a few atomic adds; a verification one atomic
//! add on a pre-resolved counter.
//!
//! Label values are bounded by construction: `route` is the matched route *pattern*
//! (`/articles/{id}`, never the raw path) or `unmatched`; `method` is one of the standard
//! methods or `other`; `status` is the numeric code. A client cannot create new series.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};
pub use prometheus;
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, TextEncoder,
};

use crate::keyset::{DirLoad, KeySource, KeySourceError, Keys, LoadFuture};
use crate::verify::VerifyError;

/// Latency buckets, seconds: from 250 µs (a cached verification) to 10 s (a stuck Redis).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Registers `collector` in the default registry. A second registration of the same metric
/// (two apps in one test process share the registry) is not an error: the first one stays.
fn register<C: prometheus::core::Collector + Clone + 'static>(collector: C) -> C {
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
// HTTP

static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "http_requests_total",
        "HTTP requests answered, by route pattern, method and status.",
        &["route", "method", "status"],
    )
});

static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "http_request_duration_seconds",
        "Time from the request reaching the app to its response head, by route pattern, method and status.",
    )
    .buckets(LATENCY_BUCKETS.to_vec());
    let vec = HistogramVec::new(opts, &["route", "method", "status"]).unwrap_or_else(|e| {
        log::error!("bad metric http_request_duration_seconds: {e}");
        #[allow(clippy::expect_used)] // a constant, valid name: cannot fail
        HistogramVec::new(HistogramOpts::new("invalid_metric", "-"), &["route", "method", "status"])
            .expect("constant metric name")
    });
    register(vec)
});

/// The `method` label: a standard method, or `other` (extension methods would let a client
/// mint series).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The `route` label of requests that matched no route (the default service).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Actix middleware counting requests and timing them by route pattern, method and status
/// (`http_requests_total`, `http_request_duration_seconds`). Wrap it inside the access log.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpMetrics;

impl<S, B> Transform<S, ServiceRequest> for HttpMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = HttpMetricsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        // One per worker thread: the series cache needs no lock.
        ready(Ok(HttpMetricsService { service: Rc::new(service), series: Rc::default() }))
    }
}

/// A resolved pair of series for one (route, method, status).
#[derive(Clone)]
struct Series {
    count: IntCounter,
    duration: Histogram,
}

type SeriesKey = (Option<String>, &'static str, StatusCode);

/// The per-worker service of [`HttpMetrics`].
pub struct HttpMetricsService<S> {
    service: Rc<S>,
    series: Rc<RefCell<HashMap<SeriesKey, Series>>>,
}

impl<S> std::fmt::Debug for HttpMetricsService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpMetricsService")
    }
}

/// At most this many series per worker in the cache (patterns × methods × statuses is small;
/// this only bounds memory should that ever stop being true).
const MAX_CACHED_SERIES: usize = 1024;

fn record(cache: &RefCell<HashMap<SeriesKey, Series>>, key: SeriesKey, seconds: f64) {
    let mut cache = cache.borrow_mut();
    if let Some(series) = cache.get(&key) {
        series.count.inc();
        series.duration.observe(seconds);
        return;
    }
    let labels = [key.0.as_deref().unwrap_or(UNMATCHED_ROUTE), key.1, key.2.as_str()];
    let series = Series {
        count: HTTP_REQUESTS.with_label_values(&labels),
        duration: HTTP_DURATION.with_label_values(&labels),
    };
    series.count.inc();
    series.duration.observe(seconds);
    if cache.len() >= MAX_CACHED_SERIES {
        cache.clear();
    }
    cache.insert(key, series);
}

impl<S, B> Service<ServiceRequest> for HttpMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<ServiceResponse<B>, actix_web::Error>>>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let start = Instant::now();
        let method = method_label(req.method());
        let route = req.match_pattern();
        let series = Rc::clone(&self.series);
        let fut = self.service.call(req);
        Box::pin(async move {
            let result = fut.await;
            let status = match &result {
                Ok(res) => res.status(),
                // An error that escaped every handler: actix answers it with its own status.
                Err(e) => e.as_response_error().status_code(),
            };
            record(&series, (route, method, status), start.elapsed().as_secs_f64());
            result
        })
    }
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
    "wrong_issuer",
    "wrong_audience",
    "missing_claim",
    "insufficient_scope",
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
        "Reads of the public key source (poll, SIGHUP, unknown kid), by outcome: ok, or failed (source unreadable or no usable key).",
        &["outcome"],
    )
});

static KEY_FILES_SKIPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "key_files_skipped_total",
        "Key files or JWKs skipped on a read because they could not be used.",
    )
});

static KEYS_LOADED: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("keys_loaded", "Public keys in the live verification set."));

/// Sets the `keys_loaded` gauge.
pub fn set_keys_loaded(count: usize) {
    KEYS_LOADED.set(i64::try_from(count).unwrap_or(i64::MAX));
}

/// The live keys `keys_loaded` reports, read at each scrape (the latest call wins; weak, so
/// it never keeps a stopped app's keys alive).
static OBSERVED_KEYS: Mutex<Option<Weak<Keys>>> = Mutex::new(None);

/// Makes `keys_loaded` report the size of `keys`' live set at every scrape.
pub fn observe_keys(keys: &Arc<Keys>) {
    LazyLock::force(&KEYS_LOADED);
    if let Ok(mut observed) = OBSERVED_KEYS.lock() {
        *observed = Some(Arc::downgrade(keys));
    }
}

/// A [`KeySource`] that counts the reads of the source it wraps in `key_reloads_total`, so
/// every reload path (poll, SIGHUP, unknown `kid`) is counted without touching them.
#[derive(Debug)]
pub struct ObservedSource<S> {
    inner: S,
}

impl<S: KeySource> ObservedSource<S> {
    /// Counts the reads of `inner`.
    pub fn new(inner: S) -> Self {
        // Both outcomes show up from the start (a rate over a missing series is empty).
        for outcome in ["ok", "failed"] {
            KEY_RELOADS.with_label_values(&[outcome]);
        }
        LazyLock::force(&KEY_FILES_SKIPPED);
        Self { inner }
    }
}

impl<S: KeySource> KeySource for ObservedSource<S> {
    fn load(&self) -> LoadFuture<'_> {
        Box::pin(async move {
            let result: Result<DirLoad, KeySourceError> = self.inner.load().await;
            let ok = matches!(&result, Ok(load) if !load.set.is_empty());
            KEY_RELOADS.with_label_values(&[if ok { "ok" } else { "failed" }]).inc();
            if let Ok(load) = &result {
                KEY_FILES_SKIPPED.inc_by(load.skipped.len() as u64);
            }
            result
        })
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

// ---------------------------------------------------------------------------------------------
// Exposition

/// The Prometheus text exposition of every registered metric.
pub fn render() -> String {
    let live = OBSERVED_KEYS.lock().ok().and_then(|k| k.as_ref().and_then(Weak::upgrade));
    if let Some(keys) = live {
        set_keys_loaded(keys.current().len());
    }
    let families = prometheus::gather();
    let mut out = Vec::with_capacity(16 * 1024);
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        log::error!("cannot encode metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// `GET /metrics`: the Prometheus text format (version 0.0.4) of the default registry.
pub async fn metrics_handler() -> HttpResponse {
    metrics_response()
}

/// The `/metrics` response; for services that set gauges before answering.
pub fn metrics_response() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(render())
}

/// Registers `GET /metrics` with [`metrics_handler`] (for services with no gauge to set).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics_handler));
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::App;
    use actix_web::test::{TestRequest, call_service, init_service, read_body};

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
            VerifyError::WrongIssuer,
            VerifyError::WrongAudience,
            VerifyError::MissingClaim("sub"),
            VerifyError::InsufficientScope("s".into()),
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

    #[test]
    fn extension_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }

    #[actix_web::test]
    async fn requests_are_counted_by_route_pattern_not_path() {
        let app = init_service(
            App::new()
                .wrap(HttpMetrics)
                .route("/items/{id}", web::get().to(HttpResponse::Ok))
                .configure(configure),
        )
        .await;
        for id in ["1", "2", "3"] {
            let req = TestRequest::get().uri(&format!("/items/{id}")).to_request();
            assert!(call_service(&app, req).await.status().is_success());
        }
        let req = TestRequest::get().uri("/nowhere/42").to_request();
        assert_eq!(call_service(&app, req).await.status(), StatusCode::NOT_FOUND);

        let req = TestRequest::get().uri("/metrics").to_request();
        let res = call_service(&app, req).await;
        assert!(res.status().is_success());
        let body = String::from_utf8(read_body(res).await.to_vec()).unwrap();
        assert!(
            body.contains(
                r#"http_requests_total{method="GET",route="/items/{id}",status="200"} 3"#
            ),
            "{body}"
        );
        assert!(body.contains(r#"route="unmatched",status="404""#), "{body}");
        assert!(!body.contains("/items/1"), "{body}");
        assert!(body.contains("http_request_duration_seconds_bucket"), "{body}");
    }
}
