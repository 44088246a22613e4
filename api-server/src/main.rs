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

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("api-server: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Healthcheck => healthcheck(&settings),
    }
}

fn serve(settings: Settings) -> ExitCode {
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await.map_err(|e| e.to_string())?;
        log::info!("listening on port {}", app.port());
        app.run_until_stopped().await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// GET /readyz on the local port (`service_kit::healthcheck`).
fn healthcheck(settings: &Settings) -> ExitCode {
    match service_kit::healthcheck::check_ready(settings.port().unwrap_or(4000)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api-server: {e}");
            ExitCode::FAILURE
        }
    }
}
