//! [`TestRedis`]: one Redis deployment of the mode a test run asks for, so the same integration
//! tests run against standalone, Cluster and Sentinel (`TEST_REDIS_MODE`).

use std::fmt;
use std::str::FromStr;

use crate::{RedisCluster, RedisOptions, RedisSentinel, RedisServer};

/// The three deployments of the contract's "Redis deployments" section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedisMode {
    /// One server (`AUTH_REDIS_URL`).
    Standalone,
    /// Redis Cluster (`AUTH_REDIS_CLUSTER_URLS`).
    Cluster,
    /// Sentinel (`AUTH_REDIS_SENTINEL_URLS` + `AUTH_REDIS_SENTINEL_MASTER`).
    Sentinel,
}

impl RedisMode {
    /// The variable naming the mode of a test run.
    pub const ENV: &str = "TEST_REDIS_MODE";

    /// Every mode, for tests that loop over them.
    pub const ALL: [Self; 3] = [Self::Standalone, Self::Cluster, Self::Sentinel];

    /// The mode in `TEST_REDIS_MODE` (`standalone`, `cluster`, `sentinel`); standalone when
    /// unset. Panics on any other value, so a typo never silently tests the wrong mode.
    pub fn from_env() -> Self {
        match std::env::var(Self::ENV) {
            Ok(value) if !value.trim().is_empty() => {
                value.parse().unwrap_or_else(|e| panic!("{}={value:?}: {e}", Self::ENV))
            }
            _ => Self::Standalone,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Cluster => "cluster",
            Self::Sentinel => "sentinel",
        }
    }
}

impl FromStr for RedisMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| "expected standalone, cluster or sentinel".to_owned())
    }
}

impl fmt::Display for RedisMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A running deployment of one mode.
#[derive(Debug)]
pub enum TestRedis {
    /// One server.
    Standalone(RedisServer),
    /// 3 primaries + 3 replicas.
    Cluster(RedisCluster),
    /// Primary, replica, 3 sentinels.
    Sentinel(RedisSentinel),
}

impl TestRedis {
    /// Starts a deployment of `mode` with default options.
    pub fn start(mode: RedisMode) -> Self {
        Self::start_with(mode, RedisOptions::default())
    }

    /// Starts a deployment of `mode` with `options` (AOF, passwords, ACL users, TLS).
    pub fn start_with(mode: RedisMode, options: RedisOptions) -> Self {
        match mode {
            RedisMode::Standalone => Self::Standalone(RedisServer::start_with_options(options)),
            RedisMode::Cluster => Self::Cluster(RedisCluster::builder().options(options).start()),
            RedisMode::Sentinel => {
                Self::Sentinel(RedisSentinel::builder().options(options).start())
            }
        }
    }

    /// Starts the deployment `TEST_REDIS_MODE` names (standalone by default).
    pub fn from_env() -> Self {
        Self::start(RedisMode::from_env())
    }

    /// Which mode this is.
    pub fn mode(&self) -> RedisMode {
        match self {
            Self::Standalone(_) => RedisMode::Standalone,
            Self::Cluster(_) => RedisMode::Cluster,
            Self::Sentinel(_) => RedisMode::Sentinel,
        }
    }

    /// The variables an auth-server needs to use this deployment: `AUTH_REDIS_URL`, or
    /// `AUTH_REDIS_CLUSTER_URLS`, or `AUTH_REDIS_SENTINEL_URLS` + `AUTH_REDIS_SENTINEL_MASTER`;
    /// plus `SSL_CERT_FILE` (the throwaway CA) with TLS.
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Self::Standalone(r) => r.env(),
            Self::Cluster(r) => r.env(),
            Self::Sentinel(r) => r.env(),
        }
    }

    /// The standalone server, if that is the mode.
    pub fn as_standalone(&mut self) -> Option<&mut RedisServer> {
        match self {
            Self::Standalone(r) => Some(r),
            _ => None,
        }
    }

    /// The cluster, if that is the mode.
    pub fn as_cluster(&mut self) -> Option<&mut RedisCluster> {
        match self {
            Self::Cluster(r) => Some(r),
            _ => None,
        }
    }

    /// The sentinel group, if that is the mode.
    pub fn as_sentinel(&mut self) -> Option<&mut RedisSentinel> {
        match self {
            Self::Sentinel(r) => Some(r),
            _ => None,
        }
    }

    /// An admin connection that reaches every key: the server, a cluster connection (follows
    /// redirects), or the current Sentinel master (resolved now). Open a new one after any
    /// failover: neither kind follows a failover by itself.
    pub fn connection(&self) -> TestConnection {
        match self {
            Self::Standalone(r) => TestConnection::Single(r.connection()),
            Self::Cluster(r) => TestConnection::Cluster(Box::new(r.cluster_connection())),
            Self::Sentinel(r) => TestConnection::Single(r.master_connection()),
        }
    }

    /// Runs `cmd` on a fresh [`Self::connection`], panicking on an error reply.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query(&mut self.connection()).unwrap_or_else(|e| panic!("{} redis: {e}", self.mode()))
    }

    /// Deletes every key (`FLUSHALL` on the server, every cluster primary, or the master).
    pub fn flushall(&mut self) {
        match self {
            Self::Cluster(r) => r.flushall(),
            other => other.query::<()>(&redis::cmd("FLUSHALL")),
        }
    }

    /// Empties the Lua script cache everywhere a script could run (every node in a cluster).
    pub fn script_flush(&mut self) {
        match self {
            Self::Cluster(r) => r.script_flush_all(),
            Self::Sentinel(r) => {
                for i in 0..2 {
                    let _: () = redis::cmd("SCRIPT")
                        .arg("FLUSH")
                        .query(&mut r.data_connection(i))
                        .unwrap_or_else(|e| panic!("SCRIPT FLUSH on data node {i}: {e}"));
                }
            }
            other => other.query::<()>(redis::cmd("SCRIPT").arg("FLUSH")),
        }
    }

    /// Keys matching `pattern` (`KEYS`; on every primary in a cluster), sorted.
    pub fn keys(&mut self, pattern: &str) -> Vec<String> {
        match self {
            Self::Cluster(r) => r.keys(pattern),
            other => {
                let mut keys: Vec<String> = other.query(redis::cmd("KEYS").arg(pattern));
                keys.sort();
                keys
            }
        }
    }
}

/// A synchronous connection of whichever kind the mode needs; use it as any
/// [`redis::ConnectionLike`] (`cmd.query(&mut conn)`).
pub enum TestConnection {
    /// A single server (standalone, or the Sentinel master).
    Single(redis::Connection),
    /// A cluster connection that follows MOVED/ASK.
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl fmt::Debug for TestConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "TestConnection::Single",
            Self::Cluster(_) => "TestConnection::Cluster",
        })
    }
}

impl redis::ConnectionLike for TestConnection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    /// Delegated so the cluster connection routes by the command, not by re-parsing bytes.
    fn req_command(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            Self::Single(c) => c.req_command(cmd),
            Self::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }

    fn supports_pipelining(&self) -> bool {
        match self {
            Self::Single(c) => c.supports_pipelining(),
            Self::Cluster(c) => c.supports_pipelining(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Self::Single(c) => c.check_connection(),
            Self::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Self::Single(c) => c.is_open(),
            Self::Cluster(c) => c.is_open(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_case_insensitively_and_reject_typos() {
        assert_eq!("Cluster".parse::<RedisMode>(), Ok(RedisMode::Cluster));
        assert_eq!(" sentinel ".parse::<RedisMode>(), Ok(RedisMode::Sentinel));
        assert!("clustr".parse::<RedisMode>().is_err());
    }
}
