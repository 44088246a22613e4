//! The articles API: a resource server that verifies RS256 access tokens with public keys
//! alone (a folder or the auth server's JWKS). No Redis, and no call to the auth server on
//! the request path, so it keeps answering valid tokens while either is down. With
//! `API_REVOCATIONS_URL` it also follows the auth server's session revocation list in the
//! background and refuses tokens of ended sessions (`access_token::revocation`).
//!
//! [`Application::build`] wires everything from [`Settings`]; `main` and the tests both start
//! the server that way (tests on port 0).

pub mod articles;
pub mod config;
pub mod jwks;
pub mod limits;
pub mod openapi;
pub mod routes;

use std::sync::Arc;

use access_token::keyset::{FolderSource, TrustedKeys};
use access_token::revocation::RevocationList;
use access_token::watch::spawn_folder_reload;
use access_token::{Verifier, VerifierConfig};
use actix_web::dev::Server;
use actix_web::web;
use service_kit::cors::Credentials;
use service_kit::listen::ListenError;
use service_kit::rejections::Unrouted;
use service_kit::server::Plumbing;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::articles::{Articles, ArticlesError};
pub use crate::config::{KeysFrom, Settings};
use crate::jwks::JwksSource;
use crate::routes::Serve;

/// The scope every request's token must carry (the contract's articles scope).
pub const REQUIRED_SCOPE: &str = "articles:read";

/// The `realm` of this API's `WWW-Authenticate` challenges.
pub const REALM: &str = "articles";

/// Why the server could not start. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `API_ARTICLES_FILE` could not be loaded.
    #[error("API_ARTICLES_FILE: {0}")]
    Articles(#[from] ArticlesError),
    /// Binding a listen address, or installing the signal handlers.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The JWKS HTTP client could not be built.
    #[error("API_JWKS_URL: {0}")]
    Jwks(String),
    /// The revocation list's follower could not be built.
    #[error("API_REVOCATIONS_URL: {0}")]
    Revocations(String),
}

/// A built server, listening, not yet running.
pub struct Application {
    port: u16,
    server: Server,
    metrics: Option<(Server, u16)>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Application {
    /// Loads the articles and the public keys (an empty or missing key folder, or an
    /// unreachable JWKS, is not fatal: the server starts, `/readyz` says 503 until a key is
    /// loaded), starts the background key refresh (folder: watch + 1 s poll + SIGHUP, see
    /// [`access_token::watch`]; JWKS: `max-age` timer + retries + SIGHUP, see [`jwks`]), and binds
    /// `settings.bind`.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let articles = Articles::load(settings.articles_file.as_deref())?;
        log::info!("serving {} articles", articles.len());

        let keys = match &settings.keys {
            KeysFrom::Dir(dir) => {
                let keys = Arc::new(TrustedKeys::load(FolderSource::new(dir)).await);
                spawn_folder_reload(Arc::clone(&keys), dir);
                keys
            }
            KeysFrom::Jwks(url) => {
                let source = JwksSource::new(url).map_err(StartError::Jwks)?;
                let keys = Arc::new(TrustedKeys::load(source.clone()).await);
                jwks::spawn_refresh(Arc::clone(&keys), source);
                keys
            }
        };
        access_token::metrics::observe_keys(&keys);
        let loaded = keys.current().len();
        if loaded == 0 {
            log::warn!(
                "no public key loaded from {} yet; not ready until one appears",
                keys.source_description()
            );
        } else {
            log::info!("{loaded} public key(s) loaded from {}", keys.source_description());
        }
        let mut verifier = Verifier::new(
            VerifierConfig::new(&settings.issuer, &settings.audience)
                .leeway(settings.leeway)
                .required_scope(REQUIRED_SCOPE)
                .realm(REALM)
                .token_cache(settings.token_cache),
            Arc::clone(&keys),
        );
        if let Some(url) = &settings.revocations_url {
            // The generic part (the list, the check after the cache, the long-poll follower) is
            // access_token's; see `access_token::revocation` and `access_token::follow`.
            let list = Arc::new(RevocationList::new(settings.revocations_max_staleness));
            access_token::follow::spawn(Arc::clone(&list), url).map_err(StartError::Revocations)?;
            log::info!(
                "following the revocation list at {url} (staleness limit: {})",
                settings
                    .revocations_max_staleness
                    .map_or_else(|| "none".to_owned(), |d| format!("{}s", d.as_secs()))
            );
            verifier = verifier.with_revocations(list);
        }
        let verifier = web::Data::new(verifier);
        let articles = web::Data::new(articles);
        let keys_data = web::Data::new(Arc::clone(&keys));
        // The routes' own document: served, and the source of the 405s' `Allow`.
        let serve = if settings.metrics_bind.is_some() { Serve::Api } else { Serve::ApiAndMetrics };
        let doc = openapi::document(serve);
        let openapi = web::Data::new(openapi::OpenApiJson::new(&doc));
        let shutdown_signal = service_kit::shutdown::signal().map_err(ListenError::Signals)?;

        let (listener, port) = service_kit::listen::bind_to(&settings.bind)?;
        // `API_METRICS_BIND`: `/metrics` on its own listener, and not on the API's.
        let metrics = match &settings.metrics_bind {
            Some(addr) => {
                let (listener, port) = service_kit::listen::bind_to(addr)?;
                let server = service_kit::listen::metrics_server(
                    listener,
                    service_kit::metrics::metrics_handler,
                )
                .map_err(|source| ListenError::Bind { addr: addr.to_string(), source })?;
                Some((server, port))
            }
            None => None,
        };

        let plumbing = Plumbing {
            limits: limits::LIMITS,
            // `API_CORS_ORIGINS`: bearer tokens only, no credentials.
            cors_origins: settings.cors_origins.clone(),
            credentials: Credentials::Omitted,
            access_log: ACCESS_LOG,
            unrouted: web::Data::new(Unrouted::from_openapi(&doc)),
        };
        let configure = move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(verifier.clone())
                .app_data(articles.clone())
                .app_data(keys_data.clone())
                .app_data(openapi.clone());
            routes::configure(&mut ServiceConfig::new(cfg), serve);
        };
        // SIGTERM and SIGINT alike: stop accepting, let in-flight requests finish for at most
        // `API_SHUTDOWN_TIMEOUT`, then `run_until_stopped` returns (exit 0).
        let server = service_kit::server::start(
            plumbing,
            configure,
            listener,
            shutdown_signal,
            settings.shutdown_timeout,
        )?;
        Ok(Self { port, server, metrics })
    }

    /// The port the server listens on (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the metrics listener, when `API_METRICS_BIND` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    /// Serves until the process gets SIGTERM or SIGINT; then stops accepting, lets in-flight
    /// requests finish (at most `API_SHUTDOWN_TIMEOUT`), stops the metrics listener and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        service_kit::listen::run(self.server, self.metrics.map(|(server, _)| server)).await
    }
}

/// The access log's target: method, path (never the query string), status, size, time,
/// request id; never the `Authorization` header or a token. Only installed when it logs (see
/// [`service_kit::access_log`]).
const ACCESS_LOG: &str = "api_server::access";
