//! `auth-server`: parse the command line, load the settings, run.

use std::path::PathBuf;
use std::process::ExitCode;

use auth_server::{Application, Settings};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "auth-server",
    version,
    about = "Accounts, RS256 access tokens, rotating refresh tokens."
)]
struct Cli {
    /// TOML settings file (environment variables `AUTH_*` override it).
    #[arg(long, global = true, env = "AUTH_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Exit 0 when the local server answers GET /readyz with 200, else 1 (for Docker).
    Healthcheck,
    /// Manage the signing keys: list, add, activate, rotate, retire, prune.
    Keys(auth_server::cli::keys::KeysArgs),
    /// Manage users.
    Users(auth_server::cli::users::UsersArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("auth-server: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Healthcheck => healthcheck(&settings),
        Command::Keys(args) => auth_server::cli::keys::run(&settings, args),
        Command::Users(args) => auth_server::cli::users::run(&settings, args),
    }
}

fn serve(settings: Settings) -> ExitCode {
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        log::info!("listening on port {}", app.port());
        app.run_until_stopped().await.map_err(|e| auth_server::StartError::Other(e.to_string()))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auth-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// GET /readyz on the local port (`service_kit::healthcheck`).
fn healthcheck(settings: &Settings) -> ExitCode {
    match service_kit::healthcheck::check_ready(settings.bind.port().unwrap_or(5000)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("auth-server: {e}");
            ExitCode::FAILURE
        }
    }
}
