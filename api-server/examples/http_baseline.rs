//! The two baselines `scripts/bench --overhead` measures the api-server against: minimal
//! actix-web apps with the api-server's worker settings (default worker count, the same
//! client timeouts and keep-alive) and none of its middleware (metrics, request id, input
//! limits, access log), so the ratio to them is what the server's plumbing costs.
//!
//! ```sh
//! http_baseline bare   127.0.0.1:PORT                       # GET any path: {"status":"ok"}
//! http_baseline verify 127.0.0.1:PORT KEY.pem [ISS] [AUD]   # + jsonwebtoken::decode of the bearer token
//! ```
//!
//! `verify` runs `jsonwebtoken::decode` on every request (no token cache) with the same
//! validation as the api-server's `Verifier` (RS256 pinned, `exp`/`iss`/`aud`/`sub` required,
//! 30 s leeway) and the same crypto provider (the key parsed once when loaded, see
//! `access_token::jwt_provider`), so it does the crypto and JWT work the server cannot avoid
//! and nothing else: no `kid` lookup, no `typ`/scope policy, no error envelope. It answers a
//! fixed JSON body; a refused token gets a bare 401. Both stop on SIGTERM/SIGINT.

use std::process::ExitCode;

use access_token::AccessClaims;
use access_token::public_key::PublicKey;
use actix_web::http::header::{AUTHORIZATION, ContentType};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use api_server::limits::{CLIENT_DISCONNECT_TIMEOUT, CLIENT_REQUEST_TIMEOUT, KEEP_ALIVE};
use jsonwebtoken::{Algorithm, Validation};

const BODY: &str = r#"{"status":"ok"}"#;

async fn bare() -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::json()).body(BODY)
}

/// What the `verify` app needs per request.
struct Decode {
    key: PublicKey,
    validation: Validation,
}

async fn verify(req: HttpRequest, decode: web::Data<Decode>) -> HttpResponse {
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let verified = token.is_some_and(|token| {
        jsonwebtoken::decode::<AccessClaims>(token, decode.key.decoding_key(), &decode.validation)
            .is_ok()
    });
    if verified {
        HttpResponse::Ok().content_type(ContentType::json()).body(BODY)
    } else {
        HttpResponse::Unauthorized().finish()
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, decode) = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["bare", addr] => (addr.to_string(), None),
        ["verify", addr, key, rest @ ..] if rest.len() <= 2 => {
            let pem = match std::fs::read(key) {
                Ok(pem) => pem,
                Err(e) => return fail(&format!("{key}: {e}")),
            };
            let key = match PublicKey::from_pem(&pem) {
                Ok(key) => key,
                Err(e) => return fail(&format!("{key}: {e}")),
            };
            let issuer = rest.first().copied().unwrap_or("http://localhost:5000");
            let audience = rest.get(1).copied().unwrap_or("articles-api");
            let mut validation = Validation::new(Algorithm::RS256);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.set_issuer(&[issuer]);
            validation.set_audience(&[audience]);
            validation.leeway = 30;
            validation.validate_nbf = true;
            (addr.to_string(), Some(web::Data::new(Decode { key, validation })))
        }
        _ => {
            return fail(
                "usage: http_baseline bare ADDR | verify ADDR KEY.pem [ISSUER] [AUDIENCE]",
            );
        }
    };
    let result = actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let app = App::new();
            match &decode {
                None => app.default_service(web::to(bare)),
                Some(decode) => app.app_data(decode.clone()).default_service(web::to(verify)),
            }
        })
        .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        .keep_alive(KEEP_ALIVE)
        .bind(&addr)?
        .run()
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("http_baseline: {message}");
    ExitCode::FAILURE
}
