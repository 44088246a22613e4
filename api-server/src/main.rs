//! `api-server`: parse the command line, load the settings, run.

use std::path::PathBuf;
use std::process::ExitCode;

use api_server::{Application, Settings};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "api-server", version, about = "The articles API: verifies RS256 access tokens.")]
struct Cli {
    /// TOML settings file (environment variables `API_*` override it).
    #[arg(long, global = true, env = "API_CONFIG", value_name = "PATH")]
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
}

/// The name in the one-line errors.
const NAME: &str = "api-server";

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
            service_kit::main_steps::healthcheck(NAME, settings.port().unwrap_or(4000))
        }
    }
}
