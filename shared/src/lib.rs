//! What the auth server and the articles API share.
//!
//! The contract (`CONTRACT.md`) fixes the wire formats both processes speak; this crate
//! defines each of them once so the two servers cannot drift apart:
//! - [`error`]: the RFC 6749-style error envelope and its mapping to HTTP responses;
//! - [`claims`]: the RFC 9068 access-token claims and the token response;
//! - [`keys`]: public keys, their RFC 7638 `kid`, JWKs;
//! - [`keyset`]: immutable key sets by `kid` and the live, hot-swapped [`Keys`];
//! - [`watch`]: keeping [`Keys`] in step with a keys folder (file events, poll, SIGHUP);
//! - [`verify`]: the pinned RS256 access-token [`Verifier`];
//! - [`extract`]: the actix-web [`Authenticated`] extractor answering RFC 6750 challenges;
//! - [`duration`]: the `900` / `15m` / `7d` duration syntax of the configuration;
//! - [`config`]: settings layered defaults → TOML file → environment, one-line errors;
//! - [`metrics`]: Prometheus metrics, the HTTP metrics middleware and `GET /metrics`;
//! - [`request_id`]: the `X-Request-Id` middleware;
//! - [`limits`]: header, target and time limits on every request (slow clients included);
//! - [`shutdown`]: graceful shutdown on SIGTERM and SIGINT;
//! - [`healthcheck`]: the servers' `healthcheck` subcommand (`GET /readyz` on the local port);
//! - [`openapi`]: the OpenAPI pieces both documents share (error envelope, bearer scheme).

pub mod claims;
pub mod config;
pub mod duration;
pub mod error;
pub mod extract;
pub mod healthcheck;
pub mod jwt_provider;
pub mod keys;
pub mod keyset;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod request_id;
pub mod shutdown;
mod token_cache;
pub mod verify;
pub mod watch;

#[cfg(test)]
mod test_keys;

pub use claims::{AccessClaims, TokenResponse};
pub use error::{ApiError, ErrorBody, ErrorCode};
pub use extract::Authenticated;
pub use keyset::{DirSource, KeySet, KeySource, Keys};
pub use verify::{Verifier, VerifierConfig, VerifyError};
