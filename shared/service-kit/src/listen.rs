//! Listeners: binding an address (port 0 picks one), and running a service's main server with
//! its metrics listener (`*_METRICS_BIND`), which stops when the main one does.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use crate::config::BindAddr;

/// Why a server could not start listening. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Binding a listen address (`*_BIND`, `*_METRICS_BIND`).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address, or which listener.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The SIGTERM/SIGINT handlers could not be installed.
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Binds the setting `addr`; a failure names it.
pub fn bind_to(addr: &BindAddr) -> Result<(TcpListener, u16), ListenError> {
    bind(addr.as_str()).map_err(|source| ListenError::Bind { addr: addr.to_string(), source })
}

/// Binds `addr`; returns the listener and the port it got.
pub fn bind(addr: &str) -> std::io::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind(addr)?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

/// The metrics listener: `GET /metrics` from `handler`, a JSON 404 for anything else, under
/// the same limits and HTTP metrics as the API; one worker. It has no signal handling of its
/// own: [`run`] stops it when the main server stops.
pub fn metrics_server<H, Args>(listener: TcpListener, handler: H) -> std::io::Result<Server>
where
    H: actix_web::Handler<Args> + Clone + Send + 'static,
    Args: actix_web::FromRequest + 'static,
    H::Output: actix_web::Responder + 'static,
{
    Ok(HttpServer::new(move || {
        App::new()
            .wrap(crate::limits::Limits::new())
            .wrap(crate::metrics::HttpMetrics)
            .route("/metrics", web::get().to(handler.clone()))
            .default_service(web::to(crate::rejections::not_found))
    })
    .workers(1)
    .client_request_timeout(crate::limits::CLIENT_REQUEST_TIMEOUT)
    .client_disconnect_timeout(crate::limits::CLIENT_DISCONNECT_TIMEOUT)
    .keep_alive(crate::limits::KEEP_ALIVE)
    .disable_signals()
    .listen(listener)?
    .run())
}

/// Runs `main` until it stops (on its shutdown signal), with `metrics` alongside when there is
/// one; the metrics listener is stopped right after the main server.
pub async fn run(main: Server, metrics: Option<Server>) -> std::io::Result<()> {
    let Some(metrics) = metrics else {
        return main.await;
    };
    let handle = metrics.handle();
    let task = tokio::spawn(metrics);
    let result = main.await;
    handle.stop(true).await;
    if let Ok(Err(e)) = task.await {
        log::warn!("metrics listener: {e}");
    }
    result
}
