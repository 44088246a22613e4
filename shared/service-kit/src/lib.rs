//! Service plumbing for the actix-web servers of this system: what every service needs around
//! its handlers, whatever it serves.
//!
//! - [`access_log`]: the access log, installed only when its target logs at `info`;
//! - [`config`]: settings layered defaults → TOML file → environment, one-line errors;
//! - [`cors`]: CORS for browser clients from the listed origins (`actix-cors`, and the answers
//!   the contract asks of it);
//! - [`duration`]: the `900` / `15m` / `7d` duration syntax of the configuration;
//! - [`json`]: JSON bodies whose errors name the field (`serde_path_to_error`);
//! - [`limits`]: header, target, body and time limits on every request (slow clients included);
//! - [`rejections`]: the contract's answers for bad bodies, paths and queries (extractor
//!   configs) and for a known path asked with another method (405);
//! - [`listen`]: binding, and the metrics listener (`*_METRICS_BIND`) run beside the main one;
//! - [`metrics`]: the HTTP metrics middleware and `GET /metrics`;
//! - [`request_id`]: the `X-Request-Id` middleware;
//! - [`server`]: the middleware chain in its order and the HTTP server around a service's routes;
//! - [`shutdown`]: graceful shutdown on SIGTERM and SIGINT;
//! - [`main_steps`]: a server's `main` after the command line: log, settings, serve or probe;
//! - [`healthcheck`]: the servers' `healthcheck` subcommand (`GET /readyz` on the local port);
//! - [`openapi`]: the OpenAPI pieces both documents share (error envelope, bearer scheme).
//!
//! What is not: anything about tokens or keys (the `access-token` crate). This crate depends
//! on `access-token` only for the error envelope ([`access_token::ApiError`]), which is wire
//! contract, and for the metric registration helpers its series share.

pub mod access_log;
pub mod config;
pub mod cors;
pub mod duration;
pub mod healthcheck;
pub mod json;
pub mod limits;
pub mod listen;
pub mod main_steps;
pub mod metrics;
pub mod openapi;
pub mod rejections;
pub mod request_id;
pub mod server;
pub mod shutdown;
