//! The app and the HTTP server every service of this system runs, so that both servers wrap the
//! same middleware in the same order and stop the same way: [`Plumbing`] says what differs
//! (the input limits, the CORS origins and whether cookies go with them, the access log's
//! target, the unrouted answers), [`start`] builds the server around a service's own routes and
//! data.
//!
//! The middleware chain, outermost first (each sees what the ones inside it answer):
//!
//! 1. the access log ([`crate::access_log`]), installed only when its target logs;
//! 2. the request id ([`crate::request_id::RequestIds`]), so the log sees the header;
//! 3. the CORS answers ([`crate::cors::finish`]) and CORS itself ([`crate::cors::cors`]), neither
//!    in the chain when no origin is listed;
//! 4. the HTTP metrics ([`crate::metrics::HttpMetrics`]);
//! 5. the input limits ([`crate::limits::Limits`]), innermost, so every refusal is counted,
//!    logged and carries the request id.
//!
//! Then the extractor configs ([`crate::rejections`]), the service's routes, and the 404/405
//! answers of [`crate::rejections::unrouted`] for what no route takes.

use std::future::Future;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpServer, web};

use crate::config::Origins;
use crate::cors::Credentials;
use crate::limits::{self, Limits};
use crate::listen::ListenError;
use crate::rejections::Unrouted;

/// What a service's middleware chain is made of (see the [module](self) for the order).
#[derive(Debug, Clone)]
pub struct Plumbing {
    /// The input limits (a resource server exempts `Authorization` and refuses bodies).
    pub limits: Limits,
    /// `*_CORS_ORIGINS`; none listed, no CORS layer at all.
    pub cors_origins: Origins,
    /// Whether cross-origin requests may carry cookies.
    pub credentials: Credentials,
    /// The access log's target, e.g. `api_server::access`.
    pub access_log: &'static str,
    /// The known paths and their methods, for the 405s (from the service's OpenAPI document).
    pub unrouted: web::Data<Unrouted>,
}

impl Plumbing {
    /// A new app with the whole chain, the extractor configs and the unrouted answers; the
    /// service adds its routes and data.
    pub fn app(
        &self,
    ) -> App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody + use<>>,
            Error = actix_web::Error,
            InitError = (),
        > + use<>,
    > {
        let cors = !self.cors_origins.is_empty();
        App::new()
            .wrap(self.limits)
            .wrap(crate::metrics::HttpMetrics)
            .wrap(crate::cors::cors(&self.cors_origins, self.credentials))
            // Not in the chain without origins: it would only cost every request two boxed
            // futures and a boxed body to strip headers nothing set.
            .wrap(Condition::new(cors, from_fn(crate::cors::finish)))
            .wrap(crate::request_id::RequestIds)
            .wrap(crate::access_log::logger(self.access_log))
            .app_data(crate::rejections::json_config())
            .app_data(crate::rejections::form_config())
            .app_data(crate::rejections::path_config())
            .app_data(crate::rejections::query_config())
            .app_data(self.unrouted.clone())
            .default_service(web::to(crate::rejections::unrouted))
    }
}

/// The main server of a service on `listener`: [`Plumbing::app`] with what `configure` adds
/// (routes, data), the client time limits of [`crate::limits`], and on `shutdown` (usually
/// [`crate::shutdown::signal`]) a graceful stop: no new connections, the requests in flight
/// finish for at most `shutdown_timeout`, then the server's future returns. (actix's own signal
/// handling is off: it would drop in-flight requests on SIGINT.)
pub fn start<C>(
    plumbing: Plumbing,
    configure: C,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    shutdown_timeout: Duration,
) -> Result<Server, ListenError>
where
    C: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    Ok(HttpServer::new(move || plumbing.app().configure(configure.clone()))
        .client_request_timeout(limits::CLIENT_REQUEST_TIMEOUT)
        .client_disconnect_timeout(limits::CLIENT_DISCONNECT_TIMEOUT)
        .keep_alive(limits::KEEP_ALIVE)
        .disable_signals()
        .shutdown_signal(shutdown)
        .shutdown_timeout(shutdown_timeout.as_secs())
        .listen(listener)
        .map_err(|source| ListenError::Bind { addr: "listener".into(), source })?
        .run())
}

#[cfg(test)]
mod tests {
    use actix_web::dev::Service as _;
    use actix_web::http::{Method, StatusCode, header};
    use actix_web::test::{TestRequest, call_service, init_service, read_body};
    use actix_web::{HttpResponse, web};

    use super::*;

    fn plumbing(origins: &str) -> Plumbing {
        Plumbing {
            limits: Limits::new(),
            cors_origins: origins.parse().unwrap(),
            credentials: Credentials::Omitted,
            access_log: "service_kit::server::tests",
            unrouted: web::Data::new(Unrouted::default()),
        }
    }

    #[actix_web::test]
    async fn every_answer_carries_a_request_id_and_unrouted_paths_get_the_envelope() {
        let app = init_service(
            plumbing("").app().route("/x", web::get().to(|| async { HttpResponse::Ok().finish() })),
        )
        .await;
        let res = call_service(&app, TestRequest::get().uri("/x").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().contains_key("x-request-id"));

        let res = call_service(&app, TestRequest::get().uri("/nope").to_request()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert!(res.headers().contains_key("x-request-id"));
        let body: serde_json::Value = serde_json::from_slice(&read_body(res).await).unwrap();
        assert_eq!(body["error"], "not_found");

        let long = format!("/x?{}", "q".repeat(crate::limits::MAX_URI_BYTES));
        // A refusal of the limits is an error (the server turns it into its response).
        let err = app.call(TestRequest::get().uri(&long).to_request()).await.err().unwrap();
        let res = err.error_response();
        assert_eq!(res.status(), StatusCode::URI_TOO_LONG);
        assert!(res.headers().contains_key("x-request-id"));
    }

    #[actix_web::test]
    async fn the_cors_layers_answer_only_when_origins_are_listed() {
        let preflight = || {
            TestRequest::default()
                .method(Method::OPTIONS)
                .uri("/x")
                .insert_header((header::ORIGIN, "https://app.example"))
                .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "GET"))
                .to_request()
        };
        let route = || web::get().to(|| async { HttpResponse::Ok().finish() });

        let app = init_service(plumbing("https://app.example").app().route("/x", route())).await;
        let res = call_service(&app, preflight()).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert!(res.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

        let app = init_service(plumbing("").app().route("/x", route())).await;
        let res = call_service(&app, preflight()).await;
        assert_ne!(res.status(), StatusCode::NO_CONTENT);
        assert!(res.headers().keys().all(|k| !k.as_str().starts_with("access-control-")));
        assert!(res.headers().get(header::VARY).is_none());
    }
}
