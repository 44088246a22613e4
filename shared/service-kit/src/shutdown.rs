//! Graceful shutdown on SIGTERM **and** SIGINT.
//!
//! actix-web's own signal handling drains in-flight requests on SIGTERM but drops them at once
//! on SIGINT (Ctrl-C, or `docker stop` with `STOPSIGNAL SIGINT`). A server built with
//! `.disable_signals().shutdown_signal(shutdown::signal()?)` treats both the same: stop
//! accepting, let the requests in flight finish within the server's `shutdown_timeout`, return
//! (so `main` exits 0).

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal as unix_signal};

/// A future that resolves on the first SIGTERM or SIGINT (logged at info).
///
/// The handlers are installed when this is called, not when the future is first polled, so a
/// signal that arrives between start-up and the first poll still stops the server gracefully.
/// Must be called inside a Tokio runtime (actix's `System` is one).
pub fn signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = unix_signal(SignalKind::terminate())?;
    let mut int = unix_signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        log::info!(
            "{name} received: no longer accepting connections, finishing requests in flight"
        );
    })
}
