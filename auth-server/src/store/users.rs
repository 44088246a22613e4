//! Accounts: `user:{<username>}` hashes (`id`, `username`, `name`, `phc`, `roles` as a JSON
//! array, `created` in Unix seconds, `disabled` = `1` when an operator disabled the user, `ver`
//! bumped by every change a racing login must not outlive: roles, disable, password).

use std::sync::Arc;

use super::{Store, StoreError, lua_script, parse_roles, roles_json};

/// A user as stored.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Stable id (UUID v4), the `sub` claim.
    pub id: String,
    /// Lowercased username.
    pub username: String,
    /// Display name.
    pub name: Option<String>,
    /// argon2id PHC string.
    pub phc: Arc<str>,
    /// Roles, copied into each new session.
    pub roles: Vec<String>,
    /// Disabled by an operator: logins are refused.
    pub disabled: bool,
    /// Bumped by each change of roles, password or the disabled flag (0 before the first).
    pub version: u64,
}

/// A user as `users list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// Lowercased username.
    pub username: String,
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Disabled by an operator.
    pub disabled: bool,
    /// Registration time, Unix seconds (Redis time).
    pub created: u64,
}

/// The fields of a user record that make a [`UserRecord`], in the order every reader asks
/// for them (`HMGET`, also inside scripts) and [`parse_user`] reads them.
pub(super) const USER_FIELDS: [&str; 7] =
    ["id", "username", "name", "phc", "roles", "disabled", "ver"];

pub(super) fn user_key(username: &str) -> String {
    format!("user:{{{username}}}")
}

/// The one parser of a stored user: the values of [`USER_FIELDS`], in order. No `id`: no user.
pub(super) fn parse_user(values: Vec<Option<String>>) -> Result<Option<UserRecord>, StoreError> {
    let Ok([id, username, name, phc, roles, disabled, version]) =
        <[Option<String>; 7]>::try_from(values)
    else {
        return Err(StoreError::Unexpected("user record of the wrong shape".into()));
    };
    let Some(id) = id else { return Ok(None) };
    let missing = |field: &str| StoreError::Unexpected(format!("user record without `{field}`"));
    let username = username.filter(|u| !u.is_empty()).ok_or_else(|| missing("username"))?;
    let phc = phc.filter(|p| !p.is_empty()).ok_or_else(|| missing("phc"))?;
    let roles = parse_roles(&roles.ok_or_else(|| missing("roles"))?)?;
    Ok(Some(UserRecord {
        id,
        username,
        name: name.filter(|n| !n.is_empty()),
        phc: Arc::from(phc),
        roles,
        disabled: disabled.as_deref() == Some("1"),
        version: version.and_then(|v| v.parse().ok()).unwrap_or(0),
    }))
}

impl Store {
    /// Stores a new user (created now, by Redis's clock); `false` when the username is taken.
    pub async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError> {
        let mut invocation = lua_script!("create_user.lua").key(user_key(&user.username));
        invocation
            .arg(&user.id)
            .arg(&user.username)
            .arg(user.name.as_deref().unwrap_or(""))
            .arg(&*user.phc)
            .arg(roles_json(&user.roles)?);
        // Safe to repeat: a repeat finds the user it stored (same id) and says stored again.
        let store = self.pinned().await?;
        let stored: i64 = store.run(&invocation).await?;
        if stored == 1 {
            store.replicate(&user_key(&user.username)).await?;
        }
        Ok(stored == 1)
    }

    /// The user named `username` (already lowercased), if any.
    pub async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(user_key(username)).arg(&USER_FIELDS[..]);
        let values: Vec<Option<String>> = self.query(&cmd).await?;
        parse_user(values)
    }

    /// Replaces a user's roles and bumps the user's version; returns the user's id, `None`
    /// when there is no such user.
    pub async fn set_roles(
        &self,
        username: &str,
        roles: &[String],
    ) -> Result<Option<String>, StoreError> {
        let mut invocation = lua_script!("set_roles.lua").key(user_key(username));
        invocation.arg(roles_json(roles)?);
        self.run(&invocation).await
    }

    /// Disables (refuses logins) or enables a user and bumps its version; returns the user's
    /// id, `None` when there is no such user.
    pub async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
    ) -> Result<Option<String>, StoreError> {
        let mut invocation = lua_script!("set_disabled.lua").key(user_key(username));
        invocation.arg(if disabled { "1" } else { "0" });
        self.run(&invocation).await
    }

    /// Replaces the password hash of user `uid` (named `username`) and bumps its version;
    /// returns when (Redis time, ms), `None` when there is no such user.
    pub async fn set_password(
        &self,
        username: &str,
        uid: &str,
        phc: &str,
    ) -> Result<Option<u64>, StoreError> {
        let mut invocation = lua_script!("set_password.lua").key(user_key(username));
        invocation.arg(uid).arg(phc);
        let done: Option<String> = self.run(&invocation).await?;
        done.map(|ms| ms.parse().map_err(|_| StoreError::Unexpected("malformed time".into())))
            .transpose()
    }

    /// Whether user `username` is still as a login read it: there, enabled, at `version`.
    pub async fn user_unchanged(&self, username: &str, version: u64) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(user_key(username)).arg(&["id", "disabled", "ver"]);
        let [id, disabled, ver]: [Option<String>; 3] = self.query(&cmd).await?;
        let ver: u64 = ver.and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(id.is_some() && disabled.is_none() && ver == version)
    }

    /// Every user, sorted by username (operator command: a `SCAN` of every user key).
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, StoreError> {
        let keys = self.scan_match("user:{*}").await?;
        let reads = keys.iter().map(|key| async move {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(key).arg(&["id", "username", "name", "roles", "disabled", "created"]);
            let values: [Option<String>; 6] = self.query(&cmd).await?;
            Ok::<_, StoreError>(values)
        });
        let mut users = Vec::with_capacity(keys.len());
        for values in futures_util::future::try_join_all(reads).await? {
            let [Some(id), Some(username), name, Some(roles), disabled, created] = values else {
                continue; // not a user record (or deleted meanwhile)
            };
            users.push(UserSummary {
                username,
                id,
                name: name.filter(|n| !n.is_empty()),
                roles: parse_roles(&roles)?,
                disabled: disabled.as_deref() == Some("1"),
                created: created.and_then(|c| c.parse().ok()).unwrap_or(0),
            });
        }
        users.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util;

    fn alice() -> UserRecord {
        UserRecord {
            id: "6f1c0d9e-0000-4000-8000-000000000001".into(),
            username: "alice".into(),
            name: Some("Alice A.".into()),
            phc: Arc::from("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            roles: vec!["user".into()],
            disabled: false,
            version: 0,
        }
    }

    #[tokio::test]
    async fn a_user_is_stored_once_and_read_back_whole() {
        let (_redis, store) = test_util::store();
        assert!(store.get_user("alice").await.unwrap().is_none());
        assert!(store.create_user(&alice()).await.unwrap());
        // A repeat of the same registration (a retry on a fresh connection) is not a conflict.
        assert!(store.create_user(&alice()).await.unwrap(), "the same id again: stored");
        let mut again = alice();
        again.id = "someone else".into();
        assert!(!store.create_user(&again).await.unwrap(), "the name is taken");

        let got = store.get_user("alice").await.unwrap().unwrap();
        assert_eq!(got.id, alice().id);
        assert_eq!(got.username, "alice");
        assert_eq!(got.name.as_deref(), Some("Alice A."));
        assert_eq!(&*got.phc, &*alice().phc);
        assert_eq!(got.roles, ["user"]);

        let nameless = UserRecord { username: "bob".into(), name: None, ..alice() };
        assert!(store.create_user(&nameless).await.unwrap());
        assert_eq!(store.get_user("bob").await.unwrap().unwrap().name, None);
    }

    #[tokio::test]
    async fn roles_are_replaced_only_for_an_existing_user() {
        let (_redis, store) = test_util::store();
        assert_eq!(store.set_roles("alice", &["admin".into()]).await.unwrap(), None);
        assert!(store.get_user("alice").await.unwrap().is_none(), "set_roles creates no user");
        store.create_user(&alice()).await.unwrap();
        let id = store.set_roles("alice", &["admin".into(), "user".into()]).await.unwrap();
        assert_eq!(id.as_deref(), Some(alice().id.as_str()));
        let got = store.get_user("alice").await.unwrap().unwrap();
        assert_eq!(got.roles, ["admin", "user"]);
        assert_eq!(got.version, 1, "a racing login must see the change");
    }

    #[tokio::test]
    async fn disable_password_and_roles_each_bump_the_version_a_login_re_checks() {
        let (_redis, store) = test_util::store();
        store.create_user(&alice()).await.unwrap();
        assert!(store.user_unchanged("alice", 0).await.unwrap());
        assert_eq!(store.set_disabled("nobody", true).await.unwrap(), None);

        store.set_disabled("alice", true).await.unwrap().unwrap();
        let got = store.get_user("alice").await.unwrap().unwrap();
        assert!(got.disabled);
        assert!(!store.user_unchanged("alice", 0).await.unwrap());
        assert!(!store.user_unchanged("alice", 1).await.unwrap(), "disabled is never unchanged");
        store.set_disabled("alice", false).await.unwrap().unwrap();
        assert!(store.user_unchanged("alice", 2).await.unwrap());

        assert_eq!(
            store.set_password("alice", "someone else", "$argon2id$new").await.unwrap(),
            None
        );
        let when = store.set_password("alice", &alice().id, "$argon2id$new").await.unwrap();
        assert!(when.unwrap() > 1_700_000_000_000);
        let got = store.get_user("alice").await.unwrap().unwrap();
        assert_eq!(&*got.phc, "$argon2id$new");
        assert_eq!(got.version, 3);
        assert!(!store.user_unchanged("bob", 0).await.unwrap(), "no user");
    }

    #[tokio::test]
    async fn users_are_listed_by_name_with_their_state() {
        let (_redis, store) = test_util::store();
        assert!(store.list_users().await.unwrap().is_empty());
        store.create_user(&UserRecord { username: "zed".into(), ..alice() }).await.unwrap();
        store.create_user(&alice()).await.unwrap();
        store.set_disabled("zed", true).await.unwrap();
        let users = store.list_users().await.unwrap();
        let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["alice", "zed"]);
        assert!(!users[0].disabled && users[1].disabled);
        assert_eq!(users[0].name.as_deref(), Some("Alice A."));
        assert!(users[0].created > 1_700_000_000, "{}", users[0].created);
    }

    #[test]
    fn the_parser_refuses_half_records() {
        let full = || {
            vec![
                Some("id".into()),
                Some("alice".into()),
                Some(String::new()),
                Some("$argon2id$x".into()),
                Some("[\"user\"]".into()),
                None,
                None,
            ]
        };
        assert!(parse_user(vec![None; 7]).unwrap().is_none());
        assert_eq!(parse_user(full()).unwrap().unwrap().name, None, "'' is no name");
        for missing in [1, 3, 4] {
            let mut values = full();
            values[missing] = None;
            assert!(parse_user(values).is_err(), "field {missing}");
        }
        let mut bad_roles = full();
        bad_roles[4] = Some("user".into());
        assert!(parse_user(bad_roles).is_err());
        assert!(parse_user(vec![None; 5]).is_err());
        let mut disabled = full();
        disabled[5] = Some("1".into());
        disabled[6] = Some("4".into());
        let user = parse_user(disabled).unwrap().unwrap();
        assert!(user.disabled);
        assert_eq!(user.version, 4);
    }
}
