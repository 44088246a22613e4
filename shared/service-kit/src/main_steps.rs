//! The steps of a server's `main` after the command line is parsed, the same for both servers:
//! the log set up ([`start`]: `RUST_LOG`, `info` by default), the settings loaded (a bad one is
//! one line on stderr and exit 2), then either the server run ([`serve`]: exit 0 after a
//! graceful stop, 1 when it cannot start) or the Docker probe ([`healthcheck`]: exit 0 when
//! `GET /readyz` on the local port answers 200).
//!
//! ```ignore
//! let settings: Settings = match service_kit::main_steps::start("api-server", cli.config.as_deref()) {
//!     Ok(settings) => settings,
//!     Err(code) => return code,
//! };
//! ```

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use crate::config::Layered;

/// Sets up the log and loads the settings; on a bad setting, prints `name: <the line>` and
/// answers the exit code (2).
pub fn start<S: Layered>(name: &str, config: Option<&Path>) -> Result<S, ExitCode> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    S::load(config).map_err(|e| {
        eprintln!("{name}: {e}");
        ExitCode::from(2)
    })
}

/// Runs `server` (build, listen, serve until stopped) on actix's runtime; an error is one line
/// on stderr and exit 1.
pub fn serve(
    name: &str,
    server: impl Future<Output = Result<(), Box<dyn std::error::Error>>>,
) -> ExitCode {
    match actix_web::rt::System::new().block_on(server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `GET /readyz` on `127.0.0.1:port` ([`crate::healthcheck`]): exit 0 on 200, else 1.
pub fn healthcheck(name: &str, port: u16) -> ExitCode {
    match crate::healthcheck::check_ready(port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
