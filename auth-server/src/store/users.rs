//! Accounts: `user:{<username>}` hashes (`id`, `username`, `name`, `phc`, `roles` as a JSON
//! array, `created` in Unix seconds).

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
}

/// The fields of a user record that make a [`UserRecord`], in the order every reader asks
/// for them (`HMGET`, also inside scripts) and [`parse_user`] reads them.
pub(super) const USER_FIELDS: [&str; 5] = ["id", "username", "name", "phc", "roles"];

pub(super) fn user_key(username: &str) -> String {
    format!("user:{{{username}}}")
}

/// The one parser of a stored user: the values of [`USER_FIELDS`], in order. No `id`: no user.
pub(super) fn parse_user(values: Vec<Option<String>>) -> Result<Option<UserRecord>, StoreError> {
    let Ok([id, username, name, phc, roles]) = <[Option<String>; 5]>::try_from(values) else {
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
        let stored: i64 = self.run(&invocation).await?;
        Ok(stored == 1)
    }

    /// The user named `username` (already lowercased), if any.
    pub async fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(user_key(username)).arg(&USER_FIELDS[..]);
        let mut conn = self.conn();
        let values: Vec<Option<String>> = self.call(cmd.query_async(&mut conn)).await?;
        parse_user(values)
    }

    /// Replaces a user's roles; `false` when there is no such user.
    pub async fn set_roles(&self, username: &str, roles: &[String]) -> Result<bool, StoreError> {
        let mut invocation = lua_script!("set_roles.lua").key(user_key(username));
        invocation.arg(roles_json(roles)?);
        let done: i64 = self.run(&invocation).await?;
        Ok(done == 1)
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
        }
    }

    #[tokio::test]
    async fn a_user_is_stored_once_and_read_back_whole() {
        let (_redis, store) = test_util::store();
        assert!(store.get_user("alice").await.unwrap().is_none());
        assert!(store.create_user(&alice()).await.unwrap());
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
        assert!(!store.set_roles("alice", &["admin".into()]).await.unwrap());
        assert!(store.get_user("alice").await.unwrap().is_none(), "set_roles creates no user");
        store.create_user(&alice()).await.unwrap();
        assert!(store.set_roles("alice", &["admin".into(), "user".into()]).await.unwrap());
        assert_eq!(store.get_user("alice").await.unwrap().unwrap().roles, ["admin", "user"]);
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
            ]
        };
        assert!(parse_user(vec![None; 5]).unwrap().is_none());
        assert_eq!(parse_user(full()).unwrap().unwrap().name, None, "'' is no name");
        for missing in [1, 3, 4] {
            let mut values = full();
            values[missing] = None;
            assert!(parse_user(values).is_err(), "field {missing}");
        }
        let mut bad_roles = full();
        bad_roles[4] = Some("user".into());
        assert!(parse_user(bad_roles).is_err());
        assert!(parse_user(vec![None; 4]).is_err());
    }
}
