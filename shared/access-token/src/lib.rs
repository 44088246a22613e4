//! RS256 access tokens (RFC 9068) for actix-web services: everything a resource server needs
//! to accept the auth server's tokens, and the wire formats the auth server issues them in.
//!
//! A service adds a [`Verifier`] (what it accepts: issuer, audience, scope, realm) over live
//! [`TrustedKeys`] (a keys folder kept in step by [`watch`], or any [`KeySource`] such as a JWKS
//! client) to its app data, and takes [`Authenticated`] in its handlers:
//! `examples/resource_server.rs` is a whole third service in a few lines (its test starts it).
//! Nothing here names the articles API: realm and scope are the service's settings.
//!
//! What is here:
//! - [`claims`]: the RFC 9068 access-token claims and the token response;
//! - [`error`]: the contract's error envelope (`{"error", "error_description"}`) and its one
//!   mapping to HTTP responses, which the extractor and every handler answer with;
//! - [`public_key`]: one public key, its RFC 7638 `kid`, its JWK;
//! - [`keyset`]: what verifies: an immutable [`KeySet`] by `kid`, the live, hot-swapped
//!   [`TrustedKeys`] behind every [`Verifier`], and where they come from ([`KeySource`]:
//!   a folder, [`FolderSource`], or the service's own, e.g. a JWKS client);
//! - [`watch`]: keeping [`TrustedKeys`] in step with a keys folder (file events, poll, SIGHUP);
//! - [`verify`]: the pinned RS256 [`Verifier`] (policy checks, then `jsonwebtoken::decode`,
//!   and a bounded cache of verified tokens);
//! - [`jwt_provider`]: the `jsonwebtoken` crypto provider that reuses parsed keys;
//! - [`extract`]: the actix-web [`Authenticated`] extractor answering RFC 6750 challenges;
//! - [`revocation`]: the session revocation list a [`Verifier`] consults after every
//!   verification and cache hit (`sid` digest → `until`, lock-free reads, a staleness limit);
//! - [`follow`]: keeping a [`revocation::RevocationList`] in step with the auth server's
//!   `GET /revocations` (long poll, backoff with jitter, full list after an outage);
//! - [`metrics`]: the verification and key series in the Prometheus default registry.
//!
//! What is not: service plumbing (settings, HTTP limits, the metrics middleware and
//! `/metrics`, request ids, shutdown) is the `service-kit` crate's, which depends on this one
//! (for the error envelope), never the other way round. Signing is the auth server's.

pub mod claims;
pub mod error;
pub mod extract;
pub mod follow;
pub mod jwt_provider;
pub mod keyset;
pub mod metrics;
pub mod public_key;
pub mod revocation;
mod token_cache;
pub mod verify;
pub mod watch;

#[cfg(test)]
mod test_keys;

pub use claims::{AccessClaims, Audience, TokenResponse};
pub use error::{ApiError, ErrorBody, ErrorCode};
pub use extract::Authenticated;
pub use keyset::{FolderSource, KeySet, KeySource, TrustedKeys};
pub use verify::{Verifier, VerifierConfig, VerifyError};
