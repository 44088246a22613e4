//! The api-server's integration tests: one binary, one module per concern.

mod articles;
mod attacks;
mod e2e;
mod helpers;
mod insecure_test_keys;
mod key_reload;
