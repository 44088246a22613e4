//! The HTTP side of the Prometheus metrics: the request middleware ([`HttpMetrics`]) and the
//! `GET /metrics` exposition ([`metrics_handler`], [`render`]).
//!
//! Everything lives in the process-wide default registry ([`prometheus::default_registry`]),
//! so any crate can add its own series (the auth server does; `access-token` adds the
//! verification and key series) and one scrape shows them all. The registration helpers
//! ([`register`], [`counter`], [`counter_vec`], [`gauge`], [`gauge_vec`]) are `access-token`'s, re-exported
//! here: that crate needs them for its own series and does not depend on this one.
//!
//! Cost on the hot path: a request does one hash-map lookup in a per-worker cache of resolved
//! series (no lock, no allocation once warm) and a few atomic adds.
//!
//! Label values are bounded by construction: `route` is the matched route *pattern*
//! (`/articles/{id}`, never the raw path) or `unmatched`; `method` is one of the standard
//! methods or `other`; `status` is the numeric code. A client cannot create new series.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::LazyLock;
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
}
