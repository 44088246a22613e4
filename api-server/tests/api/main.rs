//! Black-box tests of the api-server: the app on port 0 with its own temp keys folder, and
//! the real binaries end to end. Tests may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod articles;
mod attacks;
mod cors;
mod e2e;
mod helpers;
mod insecure_test_keys;
mod jwks_mode;
mod key_reload;
mod limits;
mod observability;
mod openapi;
mod revocation;
mod revocation_faults;
mod rotation;
mod shutdown;
