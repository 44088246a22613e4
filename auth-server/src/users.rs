//! Accounts: validation, registration, password check.

use std::net::IpAddr;
use std::sync::Arc;

use crate::error::{InvalidField, LoginError, PasswordError, RegisterError};
use crate::passwords::{Hasher, Password};
use crate::store::{Store, UserRecord};
use crate::throttle::{Limits, address_bucket, retry_after_secs};

/// Role every new user gets.
pub const DEFAULT_ROLE: &str = "user";

const USERNAME_MIN: usize = 3;
const USERNAME_MAX: usize = 64;
const PASSWORD_MIN: usize = 8;
const PASSWORD_MAX: usize = 128;
const NAME_MAX: usize = 128;
const ROLE_MAX: usize = 64;

/// Lowercases `raw` and checks it is 3–64 of `a-z 0-9 . _ @ + -`.
pub fn normalize_username(raw: &str) -> Result<String, InvalidField> {
    let username = raw.to_lowercase();
    let len = username.chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&len) {
        return Err(InvalidField(format!(
            "username must be {USERNAME_MIN} to {USERNAME_MAX} characters long"
        )));
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_@+".contains(c))
    {
        return Err(InvalidField(
            "username may only contain letters a-z, digits and . _ @ + -".into(),
        ));
    }
    Ok(username)
}

/// Checks the password length (8–128 characters, NIST SP 800-63B). Never echoes it.
pub fn check_password(password: &Password) -> Result<(), InvalidField> {
    let len = password.expose().chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&len) {
        return Err(InvalidField(format!(
            "password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long"
        )));
    }
    Ok(())
}

/// Trims the display name; empty means none; at most 128 characters, no control characters.
pub fn normalize_name(raw: Option<String>) -> Result<Option<String>, InvalidField> {
    let Some(raw) = raw else { return Ok(None) };
    let name = raw.trim();
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().count() > NAME_MAX {
        return Err(InvalidField(format!("name must be at most {NAME_MAX} characters long")));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidField("name must not contain control characters".into()));
    }
    Ok(Some(name.to_owned()))
}

/// Checks a role name given to the admin CLI: 1–64 of `a-z 0-9 : _ -`.
pub fn check_role(role: &str) -> Result<(), InvalidField> {
    let ok = (1..=ROLE_MAX).contains(&role.len())
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InvalidField(format!("`{role}` is not a role name (a-z 0-9 : _ -)")))
    }
}

/// Checks the lengths of login fields before anything else: a username or password longer
/// than any valid one is refused with 400 (it cannot match, and costs no Redis call nor hash).
pub fn check_login_fields(username: &str, password: &Password) -> Result<(), InvalidField> {
    if username.chars().count() > USERNAME_MAX {
        return Err(InvalidField(format!(
            "username must be at most {USERNAME_MAX} characters long"
        )));
    }
    if password.expose().chars().count() > PASSWORD_MAX {
        return Err(InvalidField(format!(
            "password must be at most {PASSWORD_MAX} characters long"
        )));
    }
    Ok(())
}

/// A registration request, before validation.
#[derive(Debug)]
pub struct NewUser {
    /// As sent.
    pub username: String,
    /// As sent.
    pub password: Password,
    /// As sent.
    pub name: Option<String>,
}

/// Accounts: registration and password checks, throttled and with bounded hashing.
#[derive(Debug, Clone)]
pub struct Accounts {
    store: Store,
    hasher: Hasher,
    dummy_phc: Arc<str>,
    limits: Limits,
}

impl Accounts {
    /// Accounts in `store`; unknown users are verified against `dummy_phc` (made by `hasher`).
    pub fn new(store: Store, hasher: Hasher, dummy_phc: Arc<str>, limits: Limits) -> Self {
        Self { store, hasher, dummy_phc, limits }
    }

    /// Validates, hashes and stores a new user with the role `user`. Every valid request
    /// counts towards the per-address registration limit (a taken name tells whether it
    /// exists, so the limit also bounds that probing).
    pub async fn register(
        &self,
        new: NewUser,
        client: IpAddr,
    ) -> Result<UserRecord, RegisterError> {
        let username = normalize_username(&new.username)?;
        check_password(&new.password)?;
        let name = normalize_name(new.name)?;
        if let Some(wait_ms) =
            self.store.register_attempt(&address_bucket(client), &self.limits).await?
        {
            log::info!("registration from {client} rate-limited");
            return Err(RegisterError::RateLimited { retry_after_secs: retry_after_secs(wait_ms) });
        }
        // Cheap early answer for a taken name; the script below is what guarantees uniqueness.
        if self.store.get_user(&username).await?.is_some() {
            return Err(RegisterError::Taken);
        }
        let phc = self.hasher.hash(new.password).await?;
        let user = UserRecord {
            id: uuid::Uuid::new_v4().to_string(),
            username,
            name,
            phc: Arc::from(phc),
            roles: vec![DEFAULT_ROLE.to_owned()],
            disabled: false,
            version: 0,
        };
        if self.store.create_user(&user).await? {
            log::info!("registered user {} ({})", user.username, user.id);
            Ok(user)
        } else {
            Err(RegisterError::Taken)
        }
    }

    /// Checks a username and password from `client`. Unknown users are verified against the
    /// dummy hash and counted like a wrong password, so both take the same time, give the
    /// same error and move the same counters. A login refused by a lockout (see
    /// [`crate::throttle`]) is refused before any check, whether the user exists or not. A
    /// disabled user is refused like a wrong password, after the same check (the same time,
    /// and a failure counted either way: no oracle for a disabled account's password).
    pub async fn authenticate(
        &self,
        username: &str,
        password: Password,
        client: IpAddr,
    ) -> Result<UserRecord, LoginError> {
        check_login_fields(username, &password)?;
        let normalized = normalize_username(username).ok();
        let address = address_bucket(client);
        let state = self.store.login_state(normalized.as_deref(), &address).await?;
        if let Some(wait_ms) = state.locks.refusal() {
            log::info!("login from {client} rate-limited");
            return Err(LoginError::RateLimited { retry_after_secs: retry_after_secs(wait_ms) });
        }
        let phc = state.user.as_ref().map_or_else(|| self.dummy_phc.clone(), |u| u.phc.clone());
        // Nothing was counted yet: a refused hash (503) costs the client nothing.
        let matches = self.hasher.verify(password, phc).await?;
        match (state.user, normalized) {
            (Some(user), Some(name)) if matches && !user.disabled => {
                self.store.login_succeeded(&name, &address).await?;
                Ok(user)
            }
            (_, name) => {
                self.store.login_failed(name.as_deref(), &address, &self.limits).await?;
                Err(LoginError::InvalidCredentials)
            }
        }
    }
}

impl Accounts {
    /// `POST /password`: checks the new password's rules, then `current` exactly like a login
    /// of `username` from `client` (the same throttle and lockouts), then stores `new` for user
    /// `uid`, bumping the user's version so that a login with the old password racing this
    /// drops its session. Returns when (Redis time, ms); the caller then ends the user's other
    /// sessions logged in by then.
    pub async fn change_password(
        &self,
        username: &str,
        uid: &str,
        current: Password,
        new: Password,
        client: IpAddr,
    ) -> Result<u64, PasswordError> {
        check_password(&new)?;
        let user = self.authenticate(username, current, client).await?;
        if user.id != uid {
            return Err(LoginError::InvalidCredentials.into());
        }
        let phc = self.hasher.hash(new).await?;
        let Some(changed_ms) = self.store.set_password(&user.username, uid, &phc).await? else {
            return Err(LoginError::InvalidCredentials.into());
        };
        log::info!("user {uid}: password changed");
        Ok(changed_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lowercased_and_checked() {
        assert_eq!(
            normalize_username("Alice.Smith+1@Example-X_Y").unwrap(),
            "alice.smith+1@example-x_y"
        );
        assert_eq!(normalize_username("abc").unwrap(), "abc");
        assert_eq!(normalize_username(&"a".repeat(64)).unwrap(), "a".repeat(64));
        for bad in ["ab", "", "has space", "sémi", "a/b", "a:b", "x\u{0}y", &"a".repeat(65)] {
            let err = normalize_username(bad).unwrap_err();
            assert!(err.0.contains("username"), "{bad}: {err}");
        }
    }

    #[test]
    fn passwords_are_8_to_128_characters_and_never_echoed() {
        assert!(check_password(&Password::new("12345678".into())).is_ok());
        assert!(check_password(&Password::new("ü".repeat(128))).is_ok());
        for bad in ["1234567".to_owned(), "x".repeat(129), String::new()] {
            let err = check_password(&Password::new(bad.clone())).unwrap_err();
            assert!(err.0.contains("password"), "{err}");
            assert!(bad.is_empty() || !err.0.contains(&bad), "{err}");
        }
    }

    #[test]
    fn login_fields_longer_than_any_valid_one_are_refused() {
        assert!(check_login_fields("alice", &Password::new("x".repeat(128))).is_ok());
        assert!(check_login_fields("!", &Password::new(String::new())).is_ok());
        let err = check_login_fields(&"a".repeat(65), &Password::new("x".into())).unwrap_err();
        assert!(err.0.contains("username"), "{err}");
        let err = check_login_fields("alice", &Password::new("x".repeat(129))).unwrap_err();
        assert!(err.0.contains("password"), "{err}");
    }

    #[test]
    fn names_are_optional_trimmed_and_bounded() {
        assert_eq!(normalize_name(None).unwrap(), None);
        assert_eq!(normalize_name(Some("  ".into())).unwrap(), None);
        assert_eq!(
            normalize_name(Some(" Ada Lovelace ".into())).unwrap().as_deref(),
            Some("Ada Lovelace")
        );
        assert!(normalize_name(Some("x".repeat(129))).unwrap_err().0.contains("name"));
        assert!(normalize_name(Some("a\nb".into())).is_err());
    }

    #[test]
    fn roles_are_simple_names() {
        assert!(check_role("admin").is_ok());
        assert!(check_role("articles:write").is_ok());
        assert!(check_role("").is_err());
        assert!(check_role("Admin").is_err());
        assert!(check_role("a b").is_err());
    }
}
