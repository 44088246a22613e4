//! Black-box tests of the auth server: the real app on port 0, a private redis-server each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod discovery;
mod helpers;
mod http;
mod key_reload;
mod keys_cli;
mod login;
mod logout;
mod outage;
mod refresh;
mod register;
mod storage;
