//! The HTTP side of the Prometheus metrics: the request middleware ([`HttpMetrics`]) and the
//! `GET /metrics` exposition ([`metrics_handler`], [`render`]).
//!
//! Everything lives in the process-wide default registry ([`prometheus::default_registry`]),
//! so any crate can add its own series (the auth server does; `access-token` adds the
//! verification and key series) and one scrape shows them all. The registration helpers
//! ([`register`], [`counter`], [`counter_vec`], [`gauge`], [`gauge_vec`]) are `access-token`'s, re-exported
//! here: that crate needs them for its own series and does not depend on this one.
//!
//! Cost on the hot path: two hash-map lookups in per-worker caches (no lock, no allocation once
//! warm): the request path's route label (what [`HttpRequest::match_pattern`] answers, matched
//! once per distinct path instead of on every request), then the resolved series of (route,
//! method, status); a few atomic adds; no boxed future.
//!
//! [`HttpRequest::match_pattern`]: actix_web::HttpRequest::match_pattern
//!
//! Label values are bounded by construction: `route` is the matched route *pattern*
//! (`/articles/{id}`, never the raw path) or `unmatched`; `method` is one of the standard
//! methods or `other`; `status` is the numeric code. A client cannot create new series.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{Future, Ready, ready};
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

pub use access_token::metrics::{counter, counter_vec, gauge, gauge_vec, prometheus, register};
use actix_web::HttpResponse;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::{Method, StatusCode};
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, TextEncoder,
};

/// Latency buckets, seconds: from 250 µs (a cached verification) to 10 s (a stuck Redis).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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
        ready(Ok(HttpMetricsService { service, cache: Rc::default() }))
    }
}

/// A resolved pair of series for one (route, method, status).
struct Series {
    count: IntCounter,
    duration: Histogram,
}

/// A route label by its index in [`SeriesCache::routes`].
type RouteId = u16;

type SeriesKey = (RouteId, &'static str, StatusCode);

/// The series cache's hasher: a multiply-rotate hash (FxHash's), a few instructions per key
/// where SipHash takes a hundred. Fine here: the keys are a route index, one of our method
/// labels and a status, none of them text a client chooses. (Request paths, which are, keep
/// std's SipHash.)
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.add(u64::from(byte));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// One worker's resolved labels and series.
#[derive(Default)]
struct SeriesCache {
    /// Request path → its route label, as `match_pattern` answered it (a pure function of the
    /// path for a given app, so it is asked once per distinct path).
    paths: HashMap<Box<str>, RouteId>,
    /// The distinct route labels seen: route patterns, or [`UNMATCHED_ROUTE`].
    routes: Vec<Box<str>>,
    series: HashMap<SeriesKey, Series, BuildHasherDefault<KeyHasher>>,
}

/// The per-worker service of [`HttpMetrics`].
pub struct HttpMetricsService<S> {
    service: S,
    cache: Rc<RefCell<SeriesCache>>,
}

impl<S> std::fmt::Debug for HttpMetricsService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpMetricsService")
    }
}

/// At most this many series per worker in the cache (patterns × methods × statuses is small;
/// this only bounds memory should that ever stop being true).
const MAX_CACHED_SERIES: usize = 1024;

/// At most this many request paths per worker in the cache. Paths are the client's (e.g.
/// `/articles/1`, `/articles/2`, ...): past the bound the cache starts again, so a client
/// sending ever new paths costs a `match_pattern` per request, as without the cache.
const MAX_CACHED_PATHS: usize = 1024;

impl SeriesCache {
    /// The route label of `req`'s path.
    fn route(&mut self, req: &ServiceRequest) -> RouteId {
        if let Some(&route) = self.paths.get(req.path()) {
            return route;
        }
        let pattern = req.match_pattern();
        let label = pattern.as_deref().unwrap_or(UNMATCHED_ROUTE);
        let route = match self.routes.iter().position(|known| **known == *label) {
            Some(i) => i,
            None => {
                if self.routes.len() > usize::from(RouteId::MAX) {
                    // Unreachable with route patterns; bounds memory all the same.
                    *self = Self::default();
                }
                self.routes.push(label.into());
                self.routes.len() - 1
            }
        };
        let route = RouteId::try_from(route).unwrap_or(RouteId::MAX);
        if self.paths.len() >= MAX_CACHED_PATHS {
            self.paths.clear();
        }
        self.paths.insert(req.path().into(), route);
        route
    }

    fn record(&mut self, key: SeriesKey, seconds: f64) {
        if let Some(series) = self.series.get(&key) {
            series.count.inc();
            series.duration.observe(seconds);
            return;
        }
        let route = self.routes.get(usize::from(key.0)).map_or(UNMATCHED_ROUTE, |r| &**r);
        let labels = [route, key.1, key.2.as_str()];
        let series = Series {
            count: HTTP_REQUESTS.with_label_values(&labels),
            duration: HTTP_DURATION.with_label_values(&labels),
        };
        series.count.inc();
        series.duration.observe(seconds);
        if self.series.len() >= MAX_CACHED_SERIES {
            self.series.clear();
        }
        self.series.insert(key, series);
    }
}

pin_project_lite::pin_project! {
    /// The future of [`HttpMetricsService`]: the inner service's, then the request counted.
    pub struct HttpMetricsFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        route: RouteId,
        method: &'static str,
        cache: Rc<RefCell<SeriesCache>>,
    }
}

impl<F> std::fmt::Debug for HttpMetricsFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpMetricsFuture")
    }
}

impl<F, B> Future for HttpMetricsFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Poll::Ready(result) = this.inner.poll(cx) else {
            return Poll::Pending;
        };
        let status = match &result {
            Ok(res) => res.status(),
            // An error that escaped every handler: actix answers it with its own status.
            Err(e) => e.as_response_error().status_code(),
        };
        this.cache
            .borrow_mut()
            .record((*this.route, this.method, status), this.start.elapsed().as_secs_f64());
        Poll::Ready(result)
    }
}

impl<S, B> Service<ServiceRequest> for HttpMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = HttpMetricsFuture<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let start = Instant::now();
        let method = method_label(req.method());
        let route = self.cache.borrow_mut().route(&req);
        HttpMetricsFuture {
            inner: self.service.call(req),
            start,
            route,
            method,
            cache: Rc::clone(&self.cache),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Exposition

/// The Prometheus text exposition of every registered metric.
pub fn render() -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::{TestRequest, call_service, init_service, read_body};
    use actix_web::{App, web};

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
                .route("/metrics", web::get().to(metrics_handler)),
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

    fn count(body: &str, series: &str) -> u64 {
        body.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
    }

    async fn refuse_teapots(
        req: ServiceRequest,
        next: actix_web::middleware::Next<impl MessageBody>,
    ) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
        if req.path() == "/cached/teapot" {
            return Err(actix_web::error::ErrorImATeapot("no"));
        }
        next.call(req).await
    }

    #[actix_web::test]
    async fn more_paths_than_the_cache_holds_still_count_by_pattern_and_errors_too() {
        let app = init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(refuse_teapots))
                .wrap(HttpMetrics)
                .route("/cached/{id}", web::get().to(HttpResponse::Ok))
                .route("/metrics", web::get().to(metrics_handler)),
        )
        .await;
        let paths = MAX_CACHED_PATHS as u64 * 2 + 10;
        for id in 0..paths {
            let req = TestRequest::get().uri(&format!("/cached/{id}")).to_request();
            assert!(call_service(&app, req).await.status().is_success());
        }
        for _ in 0..3 {
            let req = TestRequest::get().uri("/cached/teapot").to_request();
            assert!(app.call(req).await.is_err());
        }
        let req = TestRequest::get().uri("/metrics").to_request();
        let body =
            String::from_utf8(read_body(call_service(&app, req).await).await.to_vec()).unwrap();
        let ok = r#"http_requests_total{method="GET",route="/cached/{id}",status="200"}"#;
        let teapot = r#"http_requests_total{method="GET",route="/cached/{id}",status="418"}"#;
        assert_eq!(count(&body, ok), paths, "{body}");
        assert_eq!(count(&body, teapot), 3, "{body}");
    }
}
