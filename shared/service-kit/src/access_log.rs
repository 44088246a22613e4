//! The access log: one line per request, `%a "METHOD PATH" STATUS SIZE TIMEms REQUEST-ID`, at
//! `info` under the service's log target. Never the query string, the `Authorization` header,
//! cookies or bodies.
//!
//! It is actix-web's [`Logger`], which prepares the line's parts for every request whatever
//! the log level (the client address, method and path copied into strings, its format cloned,
//! the response body wrapped) and only skips the final write. So it is installed only when its
//! target logs at `info`: with `RUST_LOG=warn` a request pays nothing for it. The level is the
//! one set at start-up (env_logger's filter does not change while the process runs).

use actix_web::dev::ServiceRequest;
use actix_web::middleware::{Condition, Logger};

/// The access-log middleware for `target` (e.g. `api_server::access`): actix-web's [`Logger`]
/// when `target` logs at `info`, else nothing. Wrap it outside the request id
/// ([`crate::request_id::RequestIds`]) so the line shows the id.
pub fn logger(target: &'static str) -> Condition<Logger> {
    let enabled = log::log_enabled!(target: target, log::Level::Info);
    Condition::new(
        enabled,
        Logger::new(r#"%a "%{method}xi %{path}xi" %s %b %Dms %{x-request-id}o"#)
            .custom_request_replace("method", |req: &ServiceRequest| req.method().to_string())
            .custom_request_replace("path", |req: &ServiceRequest| req.path().to_owned())
            .log_target(target),
    )
}
