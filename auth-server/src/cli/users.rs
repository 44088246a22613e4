//! `auth-server users ...`: the operator's commands on user accounts (in Redis).

use std::process::ExitCode;

use crate::config::Settings;
use crate::revocations::Publisher;
use crate::sessions::Inventory;
use crate::users;

/// `auth-server users`.
#[derive(Debug, clap::Args)]
#[command(about = "Manage users.")]
pub struct UsersArgs {
    /// The command.
    #[command(subcommand)]
    pub command: UsersCommand,
}

/// The `users` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// Replace a user's roles, e.g. `users set-roles alice admin user`. Sessions get the new
    /// roles at their next login.
    SetRoles {
        /// The username.
        username: String,
        /// The roles.
        #[arg(required = true)]
        roles: Vec<String>,
    },
}

/// Runs a `users` command on a runtime of its own; prints the outcome, returns the exit code.
pub fn run(settings: &Settings, args: UsersArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("auth-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            UsersCommand::SetRoles { username, roles } => {
                set_roles(settings, &username, &roles).await.map(|ended| {
                    format!(
                        "{username}: roles set to {}; {ended} session(s) ended, the roles apply from the next login\n",
                        roles.join(" ")
                    )
                })
            }
        }
    });
    match result {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("auth-server: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Sets a user's roles and ends the user's sessions, so that the new roles apply from the
/// next login. Returns how many sessions ended.
pub async fn set_roles(
    settings: &Settings,
    username: &str,
    roles: &[String],
) -> Result<usize, String> {
    let username = users::normalize_username(username).map_err(|e| e.to_string())?;
    for role in roles {
        users::check_role(role).map_err(|e| e.to_string())?;
    }
    let store = crate::store_for(settings).map_err(|e| e.to_string())?;
    let uid = match store.set_roles(&username, roles).await {
        Ok(Some(uid)) => uid,
        Ok(None) => return Err(format!("no user `{username}`")),
        Err(e) => return Err(e.to_string()),
    };
    let publisher = Publisher::new(store, settings.access_token_ttl);
    let inventory = Inventory::new(publisher, settings.session_max_age);
    inventory.end_all(&uid, None, "roles").await.map_err(|e| e.to_string())
}
