//! The articles API: a resource server that verifies RS256 access tokens with public keys
//! alone (a folder or the auth server's JWKS). No Redis, and no call to the auth server on
//! the request path, so it keeps answering valid tokens while either is down.
//!
//! [`Application::build`] wires everything from [`Settings`]; `main` and the tests both start
//! the server that way (tests on port 0).

pub mod articles;
pub mod config;
pub mod jwks;
pub mod routes;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServiceRequest};
use actix_web::middleware::Logger;
use actix_web::{App, HttpServer, web};
use shared::claims::ARTICLES_READ_SCOPE;
use shared::keyset::{DirSource, Keys};
use shared::{Verifier, VerifierConfig};

use crate::articles::{Articles, ArticlesError};
pub use crate::config::{KeysFrom, Settings};
use crate::jwks::JwksSource;

/// How often the key source is re-read in the background, so added and removed keys are
/// picked up without a restart even when no token names them (at most this far behind).
pub const KEY_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The JWKS is polled less often: it is a network call, and unknown kids refresh it anyway.
pub const JWKS_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// Why the server could not start. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `API_ARTICLES_FILE` could not be loaded.
    #[error("API_ARTICLES_FILE: {0}")]
    Articles(#[from] ArticlesError),
    /// Binding the listen address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// `API_BIND`.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The JWKS HTTP client could not be built.
    #[error("API_JWKS_URL: {0}")]
    Jwks(String),
}

/// A built server, listening, not yet running.
pub struct Application {
    port: u16,
    server: Server,
    keys: Arc<Keys>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Application {
    /// Loads the articles and the public keys (an empty or missing key folder is not fatal:
    /// the server starts, `/readyz` says 503 until a key appears), starts the background key
    /// poll and SIGHUP reload, and binds `settings.bind`.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let articles = Articles::load(settings.articles_file.as_deref())?;
        log::info!("serving {} articles", articles.len());

        let (keys, poll) = match &settings.keys {
            KeysFrom::Dir(dir) => (Keys::load(DirSource::new(dir)).await, KEY_POLL_INTERVAL),
            KeysFrom::Jwks(url) => {
                let source = JwksSource::new(url).map_err(StartError::Jwks)?;
                (Keys::load(source).await, JWKS_POLL_INTERVAL)
            }
        };
        let keys = Arc::new(keys);
        let loaded = keys.current().len();
        if loaded == 0 {
            log::warn!(
                "no public key loaded from {} yet; not ready until one appears",
                keys.source_description()
            );
        } else {
            log::info!("{loaded} public key(s) loaded from {}", keys.source_description());
        }
        spawn_key_refresh(Arc::clone(&keys), poll);

        let verifier = web::Data::new(Verifier::new(
            VerifierConfig::new(&settings.issuer, &settings.audience)
                .leeway(settings.leeway)
                .required_scope(ARTICLES_READ_SCOPE)
                .realm("articles"),
            Arc::clone(&keys),
        ));
        let articles = web::Data::new(articles);
        let keys_data = web::Data::new(Arc::clone(&keys));

        let listener = TcpListener::bind(&settings.bind)
            .map_err(|source| StartError::Bind { addr: settings.bind.clone(), source })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr: settings.bind.clone(), source })?
            .port();

        let server = HttpServer::new(move || {
            App::new()
                .wrap(access_log())
                .app_data(verifier.clone())
                .app_data(articles.clone())
                .app_data(keys_data.clone())
                .app_data(shared::error::path_config())
                .app_data(shared::error::query_config())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .listen(listener)
        .map_err(|source| StartError::Bind { addr: "listener".into(), source })?
        .run();
        Ok(Self { port, server, keys })
    }

    /// The port the server listens on (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The live public keys (tests trigger reloads through it).
    pub fn keys(&self) -> Arc<Keys> {
        Arc::clone(&self.keys)
    }

    /// Serves until the process gets SIGINT/SIGTERM.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Re-reads the keys every `every`, and at once on SIGHUP. A failed re-read keeps the last
/// good set (see `Keys::reload`).
fn spawn_key_refresh(keys: Arc<Keys>, every: Duration) {
    // tokio::spawn (not actix's spawn_local) so the app also runs under a plain tokio runtime.
    let polled = Arc::clone(&keys);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; the set was just loaded
        loop {
            tick.tick().await;
            polled.reload().await;
        }
    });
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            log::warn!("cannot listen for SIGHUP; keys reload on the poll only");
            return;
        };
        while hup.recv().await.is_some() {
            log::info!("SIGHUP: reloading the public keys");
            keys.reload().await;
        }
    });
}

/// The access log: method, path (never the query string), status, size, time. Never the
/// `Authorization` header or a token.
fn access_log() -> Logger {
    Logger::new(r#"%a "%{method}xi %{path}xi" %s %b %Dms"#)
        .custom_request_replace("method", |req: &ServiceRequest| req.method().to_string())
        .custom_request_replace("path", |req: &ServiceRequest| req.path().to_owned())
        .log_target("api_server::access")
}
