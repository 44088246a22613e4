//! Black-box tests of the auth server: the real app on port 0, a private redis-server each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;
mod browser;
mod cli;
mod discovery;
mod faults;
mod flood;
mod helpers;
mod http;
mod key_reload;
mod keys_cli;
mod limits;
mod login;
mod logout;
mod observability;
mod openapi;
mod outage;
mod refresh;
mod register;
mod revocation;
mod revocation_process;
mod scale;
mod scheduled_rotation;
mod sessions;
mod shutdown;
mod storage;
mod throttling;
mod timing;
mod users_cli;
