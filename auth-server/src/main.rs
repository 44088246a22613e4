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

/// The name in the one-line errors.
const NAME: &str = "auth-server";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings: Settings = match service_kit::main_steps::start(NAME, cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => service_kit::main_steps::serve(NAME, async move {
            let app = Application::build(settings).await?;
            log::info!("listening on port {}", app.port());
            Ok(app.run_until_stopped().await?)
        }),
        Command::Healthcheck => {
            service_kit::main_steps::healthcheck(NAME, settings.bind.port().unwrap_or(5000))
        }
        Command::Keys(args) => auth_server::cli::keys::run(&settings, args),
        Command::Users(args) => auth_server::cli::users::run(&settings, args),
    }
}
