//! How nodes are reached: the options a test asks for (AOF, passwords, ACL users, TLS) and what
//! follows from them for every harness — config lines, URLs, clients, `redis-cli` flags.

use std::path::Path;
use std::process::Command;
use std::sync::Once;

use crate::tls::TlsFiles;

/// The user the harness itself connects as (readiness checks, inspection, replication, sentinel
/// monitoring, `redis-cli --cluster`), so tests can restrict `default` and their own users freely.
pub(crate) const ADMIN_USER: &str = "harness";

/// What a test wants from its Redis nodes; shared by [`crate::RedisServer::builder`],
/// [`crate::RedisCluster::builder`], [`crate::RedisSentinel::builder`] and
/// [`crate::TestRedis::start_with`].
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    pub(crate) aof: bool,
    pub(crate) requirepass: Option<String>,
    pub(crate) users: Vec<AclUser>,
    pub(crate) tls: bool,
    pub(crate) sentinel_password: Option<String>,
}

/// An ACL user created in every data node's config (`user <name> reset on ><password> <rules>`).
#[derive(Debug, Clone)]
pub(crate) struct AclUser {
    /// User name, as in `AUTH <name> <password>`.
    pub(crate) name: String,
    /// Its password.
    pub(crate) password: String,
    /// ACL rules after `reset on >password`, e.g. `~app:* +@all -@dangerous`.
    pub(crate) rules: String,
}

impl RedisOptions {
    /// No persistence, no passwords, plain TCP.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append-only persistence with `appendfsync always`, so a restarted node has every
    /// acknowledged write.
    pub fn aof(mut self, on: bool) -> Self {
        self.aof = on;
        self
    }

    /// A password for the `default` user (Redis' `requirepass`); the harness URLs then carry it.
    pub fn requirepass(mut self, password: impl Into<String>) -> Self {
        self.requirepass = Some(password.into());
        self
    }

    /// Adds an ACL user; reach it with `url_as(name)` / `client_as(name)` on the harness.
    pub fn acl_user(
        mut self,
        name: impl Into<String>,
        password: impl Into<String>,
        rules: impl Into<String>,
    ) -> Self {
        self.users.push(AclUser {
            name: name.into(),
            password: password.into(),
            rules: rules.into(),
        });
        self
    }

    /// A password the sentinels themselves require (their `requirepass`, and `sentinel
    /// sentinel-pass` among them); data nodes are unaffected. The sentinel URLs stay without
    /// it: it reaches the server as `AUTH_REDIS_SENTINEL_PASSWORD`.
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(password.into());
        self
    }

    /// TLS only (`port 0` + `tls-port`), with a throwaway CA: clients need
    /// the harness's `ca_pem()` / `ca_path()` to connect; replication and the cluster bus use TLS too.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }
}

/// Who a URL or client logs in as.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Login<'a> {
    /// The harness's own all-powerful user.
    Admin,
    /// The `default` user: with its `requirepass` password if one was set, else no credentials.
    Default,
    /// An ACL user from [`RedisOptions::acl_user`].
    User(&'a str),
    /// No credentials at all (to test that auth is required).
    Anonymous,
    /// A sentinel's login: its password if [`RedisOptions::sentinel_password`] set one.
    Sentinel,
}

/// Options turned into what every node of one harness shares: generated files and passwords.
#[derive(Debug)]
pub(crate) struct Access {
    options: RedisOptions,
    admin_password: String,
    tls: Option<TlsFiles>,
}

impl Access {
    pub(crate) fn new(options: RedisOptions) -> Self {
        let tls = options.tls.then(TlsFiles::generate);
        let admin_password = uuid::Uuid::new_v4().simple().to_string();
        Self { options, admin_password, tls }
    }

    pub(crate) fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// `port` (or `port 0` + `tls-port` with TLS) plus the TLS file lines.
    pub(crate) fn listen_conf(&self, port: u16) -> String {
        match &self.tls {
            None => format!("port {port}\n"),
            Some(tls) => format!(
                "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients no\ntls-replication yes\n",
                quote(&tls.cert_path().to_string_lossy()),
                quote(&tls.key_path().to_string_lossy()),
                quote(&tls.ca_path().to_string_lossy()),
            ),
        }
    }

    /// Lines every data node (not sentinels) gets: persistence, users, replication credentials.
    pub(crate) fn data_conf(&self) -> String {
        let mut conf = String::new();
        if self.options.aof {
            conf.push_str("appendonly yes\nappendfsync always\n");
        } else {
            conf.push_str("appendonly no\n");
        }
        conf.push_str(&format!(
            "user {ADMIN_USER} reset on {} ~* &* +@all\n",
            quote(&format!(">{}", self.admin_password))
        ));
        for user in &self.options.users {
            conf.push_str(&format!(
                "user {} reset on {} {}\n",
                quote(&user.name),
                quote(&format!(">{}", user.password)),
                user.rules
            ));
        }
        if let Some(password) = &self.options.requirepass {
            conf.push_str(&format!("requirepass {}\n", quote(password)));
        }
        // Any node may become a replica (failover), so every node knows how to authenticate.
        conf.push_str(&format!(
            "masteruser {ADMIN_USER}\nmasterauth {}\n",
            quote(&self.admin_password)
        ));
        conf
    }

    /// Lines that make a sentinel require its own password, if one was asked for.
    pub(crate) fn sentinel_own_auth_conf(&self) -> String {
        self.options.sentinel_password.as_deref().map_or_else(String::new, |password| {
            format!("requirepass {password}\nsentinel sentinel-pass {password}\n")
        })
    }

    /// Lines a sentinel needs to monitor `master` when the data nodes require auth.
    pub(crate) fn sentinel_auth_conf(&self, master: &str) -> String {
        format!(
            "sentinel auth-user {master} {ADMIN_USER}\nsentinel auth-pass {master} {}\n",
            quote(&self.admin_password)
        )
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "rediss" } else { "redis" }
    }

    /// The URL of `127.0.0.1:port` for `login`; passwords are percent-encoded as URLs need.
    pub(crate) fn url(&self, port: u16, login: Login<'_>) -> String {
        let credentials = match login {
            Login::Admin => Some((ADMIN_USER, self.admin_password.as_str())),
            Login::Default => self.options.requirepass.as_deref().map(|p| ("", p)),
            Login::User(name) => {
                let user = self
                    .options
                    .users
                    .iter()
                    .find(|u| u.name == name)
                    .unwrap_or_else(|| panic!("no ACL user {name:?} was configured"));
                Some((user.name.as_str(), user.password.as_str()))
            }
            Login::Anonymous => None,
            Login::Sentinel => self.options.sentinel_password.as_deref().map(|p| ("", p)),
        };
        let auth = match credentials {
            Some((user, password)) => {
                format!("{}:{}@", percent_encode(user), percent_encode(password))
            }
            None => String::new(),
        };
        format!("{}://{auth}127.0.0.1:{port}", self.scheme())
    }

    /// A client for `url` that trusts the harness's CA when TLS is on.
    pub(crate) fn client(&self, url: &str) -> redis::Client {
        match &self.tls {
            None => redis::Client::open(url).expect("a valid redis url"),
            Some(tls) => {
                install_crypto_provider();
                redis::Client::build_with_tls(url, tls.certificates())
                    .expect("a valid rediss url and CA")
            }
        }
    }

    /// `redis-cli` with the TLS and admin-login flags the nodes need; the password goes through
    /// `REDISCLI_AUTH` so it is neither on the command line nor warned about.
    pub(crate) fn redis_cli(&self) -> Command {
        let mut cmd = Command::new("redis-cli");
        if let Some(tls) = &self.tls {
            cmd.arg("--tls").arg("--cacert").arg(tls.ca_path());
        }
        cmd.args(["--user", ADMIN_USER]).env("REDISCLI_AUTH", &self.admin_password);
        cmd
    }

    /// `SSL_CERT_FILE` for a server binary under test, so a rustls client that loads the
    /// platform roots (`rustls-native-certs`) trusts the throwaway CA; empty without TLS.
    pub(crate) fn tls_env(&self) -> Vec<(String, String)> {
        self.tls
            .iter()
            .map(|tls| ("SSL_CERT_FILE".to_owned(), tls.ca_path().to_string_lossy().into_owned()))
            .collect()
    }

    pub(crate) fn ca_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(TlsFiles::ca_path)
    }

    pub(crate) fn sentinel_password(&self) -> Option<&str> {
        self.options.sentinel_password.as_deref()
    }

    pub(crate) fn ca_pem(&self) -> Option<&[u8]> {
        self.tls.as_ref().map(TlsFiles::ca_pem)
    }
}

/// The redis crate's rustls config asks for the process-wide provider; pick aws-lc-rs (the one
/// the workspace already builds) once, keeping any provider the test installed itself.
pub(crate) fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// A config-file token in double quotes; Redis' parser (`sdssplitargs`) reads `\xHH` escapes, so
/// any byte outside plain printable ASCII (and `"`/`\`) is written that way.
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for byte in value.bytes() {
        match byte {
            b'"' | b'\\' => out.push_str(&format!("\\x{byte:02x}")),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out.push('"');
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters (URL user info).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_quotes_backslashes_and_non_ascii() {
        assert_eq!(quote(r#"a "b"\c é"#), r#""a \x22b\x22\x5cc \xc3\xa9""#);
    }

    #[test]
    fn urls_percent_encode_credentials() {
        let access = Access::new(RedisOptions::new().acl_user("app", "p@ss:w/rd", "+@all"));
        assert_eq!(
            access.url(7000, Login::User("app")),
            "redis://app:p%40ss%3Aw%2Frd@127.0.0.1:7000"
        );
        assert_eq!(access.url(7000, Login::Default), "redis://127.0.0.1:7000");
    }
}
