//! The operator's commands (`auth-server keys ...`, `auth-server users ...`): each parses its
//! arguments with clap, runs against the same settings as the server, prints what it did on
//! stdout and answers an exit code; a refusal is one line on stderr. `main` only dispatches.

pub mod keys;
pub mod users;
