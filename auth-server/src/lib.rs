//! The auth server: registers users, logs them in, signs RS256 access tokens and rotates
//! refresh tokens kept (hashed) in Redis.
//!
//! [`Application::build`] wires everything from [`Settings`]; `main` and the tests both start
//! the server that way (tests on port 0).

pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod introspection;
pub mod key_folder;
pub mod metrics;
pub mod openapi;
pub mod passwords;
pub mod refresh_cookie;
pub mod revocations;
pub mod rotation;
pub mod routes;
pub mod session_routes;
pub mod sessions;
pub mod signing_keys;
pub mod store;
pub mod throttle;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use access_token::{FolderSource, KeySet, TrustedKeys, Verifier, VerifierConfig};
use actix_web::dev::Server;
use actix_web::web;
use service_kit::cors::Credentials;
use service_kit::listen::ListenError;
use service_kit::rejections::Unrouted;
use service_kit::server::Plumbing;
use utoipa_actix_web::service_config::ServiceConfig;

pub use crate::config::Settings;
use crate::key_folder::{KeyFolder, KeyFolderError};
use crate::passwords::Hasher;
use crate::routes::{AppState, Serve};
use crate::sessions::{Policy, Sessions};
use crate::signing_keys::LiveSigningKeys;
use crate::store::{Store, StoreError};
use crate::users::Accounts;

/// The `realm` of the `WWW-Authenticate` challenges of the routes that take a bearer token.
pub const VERIFIER_REALM: &str = "auth";

/// Why the server could not start. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The signing keys.
    #[error("signing keys: {0}")]
    Keys(#[from] KeyFolderError),
    /// The Redis client could not be set up.
    #[error("redis: {0}")]
    Store(#[from] StoreError),
    /// Binding a listen address, or installing the signal handlers.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// Anything else at start-up (hashing, a crashed blocking task).
    #[error("{0}")]
    Other(String),
}

/// A built server, listening, not yet running.
pub struct Application {
    port: u16,
    server: Server,
    metrics: Option<(Server, u16)>,
    keys: Arc<LiveSigningKeys>,
    rotation: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Application {
    /// Loads (or on first start generates) the signing keys, sets up Redis (lazily: the server
    /// starts while Redis is down) and binds `settings.bind`.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let key_store = KeyFolder::new(&settings.keys_dir);
        let ring = tokio::task::spawn_blocking(move || key_store.load_or_init())
            .await
            .map_err(|e| StartError::Other(format!("loading keys: {e}")))??;
        log::info!("signing with key {}", ring.signer().kid());
        // `/logout/all` verifies bearer tokens with the shared verifier, over the same public
        // keys (re-read from `keys/public` on an unknown kid).
        let verifier = web::Data::new(Verifier::new(
            VerifierConfig::new(&settings.issuer, &settings.audience).realm(VERIFIER_REALM),
            Arc::new(TrustedKeys::new(
                FolderSource::new(KeyFolder::new(&settings.keys_dir).public_dir()),
                KeySet::from_keys(ring.public_keys().iter().cloned()),
            )),
        ));
        // Key changes (the `keys` commands, SIGHUP) reach the signer, the JWKS and the
        // verifier without a restart.
        let keys = Arc::new(LiveSigningKeys::new(
            KeyFolder::new(&settings.keys_dir),
            ring,
            Arc::clone(verifier.keys()),
        ));
        keys.spawn();

        for name in settings.not_yet_in_effect() {
            log::warn!("{name} is set but not in effect in this build yet");
        }
        let store = store_for(&settings)?;
        // `AUTH_KEY_ROTATION_INTERVAL`: every instance checks, one at a time acts.
        let rotation = settings.key_rotation_interval.map(|interval| {
            log::info!(
                "scheduled key rotation: when the active key is {} old",
                humantime::format_duration(interval)
            );
            rotation::Rotator::new(
                KeyFolder::new(&settings.keys_dir),
                store.clone(),
                interval,
                settings.key_rotation_timing,
                settings.access_token_ttl,
            )
            .spawn()
        });
        let probe = store.clone();
        tokio::spawn(async move {
            match probe.ping().await {
                Ok(()) => log::info!("redis reachable"),
                Err(e) => log::warn!("redis not reachable yet, will keep trying: {e}"),
            }
        });

        metrics::init();
        let hasher = Hasher::new(settings.hash_concurrency, settings.hash_queue);
        let dummy_phc = hasher.dummy_hash().await.map_err(|e| StartError::Other(e.to_string()))?;
        let accounts = Accounts::new(store.clone(), hasher, dummy_phc, settings.throttle.clone());
        let policy = Policy {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            access_ttl: settings.access_token_ttl,
            refresh_ttl: settings.refresh_token_ttl,
            max_age: settings.session_max_age,
            grace: settings.refresh_reuse_grace,
            max_rotations: settings.refresh_max_rotations,
            rotation_window: settings.refresh_rotation_window,
        };
        let hub = revocations::Hub::new(store.clone(), settings.revocations_max_waiters);
        hub.spawn();
        let publisher = revocations::Publisher::new(store.clone(), settings.access_token_ttl)
            .with_hub(hub.clone())
            .with_background_retries();
        let sessions = Sessions::new(store.clone(), keys.clone(), policy, publisher);

        let (listener, port) = service_kit::listen::bind_to(&settings.bind)?;
        // `AUTH_METRICS_BIND`: `/metrics` on its own listener, and not on the API's.
        let (serve, metrics_listener) = match &settings.metrics_bind {
            Some(addr) => {
                let bound = service_kit::listen::bind_to(addr)?;
                (Serve::Api, Some(bound))
            }
            None => (Serve::ApiAndMetrics, None),
        };

        let signal = service_kit::shutdown::signal().map_err(ListenError::Signals)?;
        // Long polls answer at once on shutdown, rather than holding it for up to 30 s.
        let closing = hub.clone();
        let shutdown_signal = async move {
            signal.await;
            closing.close();
        };
        let shutdown_timeout = settings.shutdown_timeout;
        // The routes' own document: served, and the source of the 405s' `Allow`.
        let doc = openapi::document(serve);
        let introspection = introspection::Clients::from(&settings.introspection_clients);
        let refresh_cookie = routes::RefreshCookie::new(&settings);
        let state = web::Data::new(AppState {
            metadata: routes::metadata_json(&settings.issuer),
            openapi: service_kit::openapi::to_json(&doc),
            settings: Arc::new(settings),
            store,
            sessions,
            accounts,
            keys: keys.clone(),
            revocations: hub,
            introspection,
            refresh_cookie,
        });
        let metrics = match metrics_listener {
            Some((listener, port)) => {
                let state = state.clone();
                let server = service_kit::listen::metrics_server(listener, move || {
                    let state = state.clone();
                    async move { routes::metrics_response(&state) }
                })
                .map_err(|source| ListenError::Bind { addr: "metrics listener".into(), source })?;
                Some((server, port))
            }
            None => None,
        };
        let plumbing = Plumbing {
            limits: service_kit::limits::Limits::new(),
            // `AUTH_CORS_ORIGINS`; credentials for the refresh cookie.
            cors_origins: state.settings.cors_origins.clone(),
            credentials: Credentials::Allowed,
            access_log: ACCESS_LOG,
            unrouted: web::Data::new(Unrouted::from_openapi(&doc)),
        };
        let configure = move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(state.clone()).app_data(verifier.clone());
            routes::configure(&mut ServiceConfig::new(cfg), serve);
        };
        // SIGTERM and SIGINT alike (actix's own handling drops in-flight requests on SIGINT):
        // stop accepting, let in-flight requests finish for at most `AUTH_SHUTDOWN_TIMEOUT`,
        // then `run_until_stopped` returns (exit 0).
        let server = service_kit::server::start(
            plumbing,
            configure,
            listener,
            shutdown_signal,
            shutdown_timeout,
        )?;
        Ok(Self { port, server, metrics, keys, rotation })
    }

    /// The port the server listens on (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the metrics listener, when `AUTH_METRICS_BIND` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    /// Serves until the process gets SIGTERM or SIGINT; then stops accepting, lets in-flight
    /// requests finish (at most `AUTH_SHUTDOWN_TIMEOUT`), stops the metrics listener and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stopped =
            service_kit::listen::run(self.server, self.metrics.map(|(server, _)| server)).await;
        // A step cut short leaves the folder consistent (each write is atomic) and the lock
        // goes with its TTL.
        if let Some(rotation) = self.rotation {
            rotation.abort();
        }
        // It signs nothing any more: `keys prune` need not wait for its status to go stale.
        self.keys.remove_status();
        stopped
    }
}

/// The access log's target: method, path (never the query string), status, size, time. Never
/// the `Authorization` header, cookies or bodies. Only installed when it logs (see
/// [`service_kit::access_log`]).
const ACCESS_LOG: &str = "auth_server::access";

/// The Redis store of `settings.redis`: one server, a Cluster or a Sentinel-watched master.
pub fn store_for(settings: &Settings) -> Result<Store, StartError> {
    Ok(Store::connect(&settings.redis)?)
}
