//! [`RedisServer`]: one private `redis-server`, optionally with AOF, passwords, ACL users, TLS.

use std::path::Path;
use std::sync::Arc;

use crate::access::{Access, Login, RedisOptions};
use crate::node::{Kind, Node};

/// A `redis-server` owned by the test; killed (by PID) on drop.
#[derive(Debug)]
pub struct RedisServer {
    access: Arc<Access>,
    node: Node,
}

/// Options for [`RedisServer`]; see [`RedisOptions`] for what each one means.
#[derive(Debug, Default)]
pub struct RedisServerBuilder {
    options: RedisOptions,
}

macro_rules! option_setters {
    ($builder:ty) => {
        impl $builder {
            /// See [`RedisOptions::aof`].
            pub fn aof(mut self, on: bool) -> Self {
                self.options = self.options.aof(on);
                self
            }

            /// See [`RedisOptions::requirepass`].
            pub fn requirepass(mut self, password: impl Into<String>) -> Self {
                self.options = self.options.requirepass(password);
                self
            }

            /// See [`RedisOptions::acl_user`].
            pub fn acl_user(
                mut self,
                name: impl Into<String>,
                password: impl Into<String>,
                rules: impl Into<String>,
            ) -> Self {
                self.options = self.options.acl_user(name, password, rules);
                self
            }

            /// See [`RedisOptions::tls`].
            pub fn tls(mut self, on: bool) -> Self {
                self.options = self.options.tls(on);
                self
            }

            /// Replaces all options at once.
            pub fn options(mut self, options: RedisOptions) -> Self {
                self.options = options;
                self
            }
        }
    };
}
pub(crate) use option_setters;

option_setters!(RedisServerBuilder);

impl RedisServerBuilder {
    /// Starts the server and waits until it answers.
    pub fn start(self) -> RedisServer {
        RedisServer::start_with_options(self.options)
    }
}

impl RedisServer {
    /// Starts a Redis without persistence.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Starts a Redis with append-only persistence (`appendfsync always`) in its temp dir.
    pub fn start_with_aof() -> Self {
        Self::builder().aof(true).start()
    }

    /// Options beyond the defaults: AOF, `requirepass`, ACL users, TLS.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// Starts a server with `options`.
    pub fn start_with_options(options: RedisOptions) -> Self {
        let access = Arc::new(Access::new(options));
        let mut node =
            Node::new(Arc::clone(&access), Kind::Data { cluster: false, extra: String::new() });
        crate::node::start_all(&mut [&mut node]);
        Self { access, node }
    }

    /// `redis[s]://[:requirepass@]127.0.0.1:<port>`: the `default` user, as a server under test
    /// would be configured (`AUTH_REDIS_URL`).
    pub fn url(&self) -> String {
        self.node.url(Login::Default)
    }

    /// The URL logging in as the ACL user `name` (credentials percent-encoded).
    pub fn url_as(&self, name: &str) -> String {
        self.node.url(Login::User(name))
    }

    /// The URL without any credentials (to check that auth is required).
    pub fn anonymous_url(&self) -> String {
        self.node.url(Login::Anonymous)
    }

    /// The port it listens on (the TLS port with TLS; there is no plain port then).
    pub fn port(&self) -> u16 {
        self.node.port()
    }

    /// The temp dir holding its data, config and log.
    pub fn dir(&self) -> &Path {
        self.node.dir()
    }

    /// Whether it was started with TLS.
    pub fn is_tls(&self) -> bool {
        self.access.tls().is_some()
    }

    /// The throwaway CA certificate (PEM file) clients must trust, with TLS.
    pub fn ca_path(&self) -> Option<&Path> {
        self.access.ca_path()
    }

    /// The throwaway CA certificate as PEM bytes, with TLS.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.access.ca_pem()
    }

    /// A client for [`Self::url`] that trusts the CA when TLS is on.
    pub fn client(&self) -> redis::Client {
        self.node.client(Login::Default)
    }

    /// A client for [`Self::url_as`] that trusts the CA when TLS is on.
    pub fn client_as(&self, name: &str) -> redis::Client {
        self.node.client(Login::User(name))
    }

    /// What a server under test needs: `AUTH_REDIS_URL`, plus `SSL_CERT_FILE` with TLS.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("AUTH_REDIS_URL".to_owned(), self.url())];
        env.extend(self.access.tls_env());
        env
    }

    /// Kills the server (SIGKILL) and waits for it; the port stays reserved for [`Self::restart`].
    pub fn stop(&mut self) {
        self.node.kill();
    }

    /// Starts it again on the same port and data dir (with AOF, the data comes back).
    pub fn restart(&mut self) {
        self.node.restart();
    }

    /// A synchronous connection as the harness's admin user (works whatever the ACL rules),
    /// for tests that inspect what the servers stored.
    pub fn connection(&self) -> redis::Connection {
        self.node.connection()
    }
}
