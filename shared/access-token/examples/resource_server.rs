//! A third service trusting the auth server's access tokens: a photos API whose routes need a
//! token with the `photos:read` scope. Everything token-related is the few lines of [`serve`].
//!
//! Run it beside the auth server (`PHOTOS_KEYS_DIR` is the auth server's `keys/public`, read
//! only; `PHOTOS_BIND`, `PHOTOS_ISSUER` and `PHOTOS_AUDIENCE` default to the local setup;
//! `PHOTOS_REVOCATIONS_URL`, the auth server's `/revocations`, makes it refuse tokens of ended
//! sessions too):
//!
//! ```sh
//! PHOTOS_KEYS_DIR=keys/public cargo run -p access-token --example resource_server
//! ```
//!
//! `shared/access-token/tests/resource_server_example.rs` starts it and checks its answers.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use access_token::revocation::RevocationList;
use access_token::{Authenticated, FolderSource, TrustedKeys, Verifier, VerifierConfig};
use actix_web::{App, HttpResponse, HttpServer, dev::Server, web};

/// `GET /photos`: runs only for a verified token with the scope (else 401/403 with the
/// RFC 6750 challenge, from the extractor).
async fn photos(user: Authenticated) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "owner": user.preferred_username, "photos": [] }))
}

/// The service on `listener`, trusting the public keys in `keys_dir` (re-read when they change)
/// and, with `revocations_url`, following the auth server's session revocation list.
pub async fn serve(
    listener: TcpListener,
    keys_dir: PathBuf,
    issuer: &str,
    audience: &str,
    revocations_url: Option<&str>,
) -> std::io::Result<Server> {
    let keys = Arc::new(TrustedKeys::load(FolderSource::new(&keys_dir)).await);
    access_token::watch::spawn_folder_reload(Arc::clone(&keys), keys_dir);
    let config =
        VerifierConfig::new(issuer, audience).realm("photos").required_scope("photos:read");
    let mut verifier = Verifier::new(config, keys);
    if let Some(url) = revocations_url {
        // No staleness limit: keep serving on the list held while the auth server is down.
        let list = Arc::new(RevocationList::new(None));
        access_token::follow::spawn(Arc::clone(&list), url).map_err(std::io::Error::other)?;
        verifier = verifier.with_revocations(list);
    }
    let verifier = web::Data::new(verifier);
    Ok(HttpServer::new(move || {
        App::new().app_data(verifier.clone()).route("/photos", web::get().to(photos))
    })
    .listen(listener)?
    .run())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let listener = TcpListener::bind(env("PHOTOS_BIND", "127.0.0.1:4100"))?;
    let keys_dir = PathBuf::from(env("PHOTOS_KEYS_DIR", "keys/public"));
    let issuer = env("PHOTOS_ISSUER", "http://localhost:5000");
    let audience = env("PHOTOS_AUDIENCE", "photos-api");
    let revocations = std::env::var("PHOTOS_REVOCATIONS_URL").ok();
    serve(listener, keys_dir, &issuer, &audience, revocations.as_deref()).await?.await
}
