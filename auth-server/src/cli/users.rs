//! `auth-server users ...`: the operator's commands on user accounts (in Redis). Each command
//! that ends sessions publishes them on the revocation list first (as every end does), so
//! resource servers following the list refuse their access tokens within seconds.

use std::process::ExitCode;

use crate::config::Settings;
use crate::revocations::Publisher;
use crate::sessions::{Inventory, SessionItem, rfc3339};
use crate::store::{Store, UserRecord};
use crate::users;

/// `auth-server users`.
#[derive(Debug, clap::Args)]
#[command(about = "Manage users.")]
pub struct UsersArgs {
    /// The command.
    #[command(subcommand)]
    pub command: UsersCommand,
}

/// The `users` subcommands. Tables are for people (columns aligned, a header line, `-` for
/// nothing, the free-text column last); `--json` is for scripts.
#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// List every user: username, state, roles, registration time, id, display name.
    List {
        /// JSON instead of a table: an array of {username, id, name, roles, disabled, created}.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: end every session (published on the revocation list) and refuse logins
    /// (401 invalid_credentials) and refreshes (400 invalid_grant) until `users enable`.
    Disable {
        /// The username.
        username: String,
    },
    /// Enable a disabled user again (their ended sessions stay ended).
    Enable {
        /// The username.
        username: String,
    },
    /// Replace a user's roles, e.g. `users set-roles alice admin user`, and end the user's
    /// sessions: the new roles apply from the next login.
    SetRoles {
        /// The username.
        username: String,
        /// The roles.
        #[arg(required = true)]
        roles: Vec<String>,
    },
    /// List a user's live sessions, newest first.
    Sessions {
        /// The username.
        username: String,
        /// JSON instead of a table: the items of GET /sessions.
        #[arg(long)]
        json: bool,
    },
    /// End every session of a user (published on the revocation list); they may log in again.
    Logout {
        /// The username.
        username: String,
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
    match runtime.block_on(execute(settings, args.command)) {
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

/// Runs one command; the text to print, or the one-line refusal.
pub async fn execute(settings: &Settings, command: UsersCommand) -> Result<String, String> {
    let store = crate::store_for(settings).map_err(|e| e.to_string())?;
    let inventory = Inventory::new(
        Publisher::new(store.clone(), settings.access_token_ttl),
        settings.session_max_age,
    );
    let ops = Operator { store, inventory };
    match command {
        UsersCommand::List { json } => ops.list(json).await,
        UsersCommand::Disable { username } => ops.disable(&username).await,
        UsersCommand::Enable { username } => ops.enable(&username).await,
        UsersCommand::SetRoles { username, roles } => ops.set_roles(&username, &roles).await,
        UsersCommand::Sessions { username, json } => ops.sessions(&username, json).await,
        UsersCommand::Logout { username } => ops.logout(&username).await,
    }
}

struct Operator {
    store: Store,
    inventory: Inventory,
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Operator {
    /// The user named `raw` (normalized as at login), or the refusal.
    async fn user(&self, raw: &str) -> Result<UserRecord, String> {
        let username = users::normalize_username(raw).map_err(text)?;
        self.store
            .get_user(&username)
            .await
            .map_err(text)?
            .ok_or_else(|| format!("no user `{username}`"))
    }

    async fn list(&self, json: bool) -> Result<String, String> {
        let users = self.store.list_users().await.map_err(text)?;
        if json {
            let items: Vec<_> = users
                .iter()
                .map(|u| {
                    serde_json::json!({
                        "username": u.username,
                        "id": u.id,
                        "name": u.name,
                        "roles": u.roles,
                        "disabled": u.disabled,
                        "created": u.created,
                    })
                })
                .collect();
            return Ok(format!("{:#}\n", serde_json::Value::Array(items)));
        }
        if users.is_empty() {
            return Ok("no users\n".into());
        }
        let width = users.iter().map(|u| u.username.len()).max().unwrap_or(0).max(8);
        let roles_width =
            users.iter().map(|u| u.roles.join(",").len()).max().unwrap_or(0).clamp(5, 40);
        let mut out = format!(
            "{:<width$}  {:<8}  {:<roles_width$}  {:<20}  {:<36}  {}\n",
            "USERNAME", "STATE", "ROLES", "CREATED", "ID", "NAME"
        );
        for u in &users {
            let roles = if u.roles.is_empty() { "-".to_owned() } else { u.roles.join(",") };
            out.push_str(&format!(
                "{:<width$}  {:<8}  {:<roles_width$}  {:<20}  {:<36}  {}\n",
                u.username,
                if u.disabled { "disabled" } else { "enabled" },
                roles,
                rfc3339(u.created.saturating_mul(1000)),
                u.id,
                u.name.as_deref().unwrap_or("-"),
            ));
        }
        Ok(out)
    }

    async fn disable(&self, raw: &str) -> Result<String, String> {
        let user = self.user(raw).await?;
        // The flag first (a racing login sees it, or its session is in the index read next).
        self.store.set_disabled(&user.username, true).await.map_err(text)?;
        let ended = self.inventory.end_all(&user.id, None, "disabled").await.map_err(text)?;
        Ok(format!(
            "{}: disabled; {ended} session(s) ended; logins refused until `users enable {}`\n",
            user.username, user.username
        ))
    }

    async fn enable(&self, raw: &str) -> Result<String, String> {
        let user = self.user(raw).await?;
        self.store.set_disabled(&user.username, false).await.map_err(text)?;
        let was = if user.disabled { "" } else { " (it was not disabled)" };
        Ok(format!("{}: enabled{was}; logins allowed\n", user.username))
    }

    async fn set_roles(&self, raw: &str, roles: &[String]) -> Result<String, String> {
        let username = users::normalize_username(raw).map_err(text)?;
        for role in roles {
            users::check_role(role).map_err(text)?;
        }
        let Some(uid) = self.store.set_roles(&username, roles).await.map_err(text)? else {
            return Err(format!("no user `{username}`"));
        };
        let ended = self.inventory.end_all(&uid, None, "roles").await.map_err(text)?;
        Ok(format!(
            "{username}: roles set to {}; {ended} session(s) ended, the roles apply from the next login\n",
            roles.join(" ")
        ))
    }

    async fn sessions(&self, raw: &str, json: bool) -> Result<String, String> {
        let user = self.user(raw).await?;
        let views = self.inventory.list(&user.id, None).await.map_err(text)?;
        let items: Vec<SessionItem> = views.iter().map(SessionItem::from).collect();
        if json {
            let doc = serde_json::to_value(&items).map_err(text)?;
            return Ok(format!("{doc:#}\n"));
        }
        if items.is_empty() {
            return Ok(format!("{}: no live sessions\n", user.username));
        }
        let mut out = format!(
            "{:<22}  {:<20}  {:<20}  {:<20}  {:<20}  {:<18}  {}\n",
            "SID", "CREATED", "LAST USED", "EXPIRES", "ENDS", "ADDRESS", "USER AGENT"
        );
        for s in &items {
            out.push_str(&format!(
                "{:<22}  {:<20}  {:<20}  {:<20}  {:<20}  {:<18}  {}\n",
                s.sid,
                s.created_at,
                s.last_used_at,
                s.expires_at,
                s.ends_at,
                s.address.as_deref().unwrap_or("-"),
                s.user_agent.as_deref().unwrap_or("-"),
            ));
        }
        Ok(out)
    }

    async fn logout(&self, raw: &str) -> Result<String, String> {
        let user = self.user(raw).await?;
        let ended =
            self.inventory.end_all(&user.id, None, "operator_logout").await.map_err(text)?;
        Ok(format!("{}: {ended} session(s) ended\n", user.username))
    }
}
