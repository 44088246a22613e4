//! [`Conn`]: the store's one connection type, whatever the deployment. Commands, pipelines and
//! scripts (`ScriptInvocation::invoke_async`, which loads a script again after `NOSCRIPT`) go
//! through it as through any `redis::aio::ConnectionLike`; the store never asks which mode runs.
//!
//! - standalone: the crate's `ConnectionManager` (one multiplexed connection, re-made when it
//!   breaks);
//! - Cluster: the crate's async `ClusterConnection` (`cluster-async`: slot map, `MOVED`/`ASK`,
//!   reconnects and a new slot map after a failover);
//! - Sentinel: a `ConnectionManager` on the master named by the sentinel with the newest
//!   configuration epoch ([`SentinelMaster`] says why not the crate's `sentinel` lookup). Nothing
//!   follows `+switch-master`, so the master is looked up again whenever a call finds the
//!   connection dead or the node refusing writes (`READONLY`, `MASTERDOWN`), or a write gets no
//!   replica while the sentinels name another master: the next call goes there.
//!
//! TLS (`rediss://`) and ACL credentials (`user:password@` in the URLs) work in every mode; a
//! URL, which may hold a password, is never logged: only `host:port`.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, RedisFuture, RedisResult, Value};

use super::sentinel::{Master, SentinelMaster};
use crate::config::SentinelLogin;

/// How long connecting to one node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one command may wait for its answer inside the crate: a little under the store's
/// deadline, so that a hung Sentinel master is noticed (and looked up again) by the call itself.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(700);

/// The deployment a [`Conn`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// One server.
    Standalone,
    /// Redis Cluster.
    Cluster,
    /// A Sentinel-watched master.
    Sentinel,
}

/// The store's connection: cheap to clone, clones share the underlying connections.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server.
    Single(ConnectionManager),
    /// Redis Cluster.
    Cluster(ClusterConnection),
    /// The master a Sentinel group names.
    Sentinel(Arc<SentinelMaster>),
    /// One master of a Sentinel group, whatever the group names later ([`Conn::pinned`]).
    SentinelPinned(Arc<SentinelMaster>, Arc<Master>),
}

impl Conn {
    /// A standalone server at `url`. Connects lazily.
    pub(crate) fn standalone(url: &str) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        Ok(Self::Single(ConnectionManager::new_lazy_with_config(client, manager_config())?))
    }

    /// A Cluster from its seed nodes. Connects lazily (in the background).
    pub(crate) fn cluster(urls: &[&str]) -> RedisResult<Self> {
        let client = ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            // A few quick retries inside the crate (a `MOVED` after a failover, a node that is
            // reconnecting); the store's deadline bounds them all.
            .retries(3)
            .min_retry_wait(20)
            .max_retry_wait(200)
            .build()?;
        let config = ClusterConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        Ok(Self::Cluster(client.get_pending_async_connection_with_config(config)))
    }

    /// The master named `master` by the sentinels at `urls`. The user and password in the URLs
    /// are the data nodes' login; the sentinels themselves are logged in to with
    /// `sentinel_login` (none by default); TLS (`rediss://`) applies to the sentinels and the
    /// data nodes alike. Connects lazily.
    pub(crate) fn sentinel(
        urls: &[&str],
        master: &str,
        sentinel_login: &SentinelLogin,
    ) -> RedisResult<Self> {
        Ok(Self::Sentinel(Arc::new(SentinelMaster::new(urls, master, sentinel_login)?)))
    }

    /// Which deployment this is.
    pub(crate) fn deployment(&self) -> Deployment {
        match self {
            Self::Single(_) => Deployment::Standalone,
            Self::Cluster(_) => Deployment::Cluster,
            Self::Sentinel(_) | Self::SentinelPinned(..) => Deployment::Sentinel,
        }
    }

    /// A connection that stays on the node it starts on, for a write and its `WAIT` (and the
    /// checks after it): on Sentinel, the master in use now, even if another call replaces it
    /// meanwhile; the other modes route by key and need no pinning.
    pub(crate) async fn pinned(&mut self) -> RedisResult<Self> {
        match self {
            Self::Sentinel(master) => {
                let (used, _) = master.connection().await?;
                Ok(Self::SentinelPinned(Arc::clone(master), used))
            }
            other => Ok(other.clone()),
        }
    }

    /// The node a pinned connection is on (`host:port`), else `None`.
    pub(crate) fn node(&self) -> Option<&str> {
        match self {
            Self::SentinelPinned(_, used) => Some(&used.addr),
            _ => None,
        }
    }

    /// `WAIT replicas timeout` on the connection (the node) that ran the last write to `key`:
    /// how many replicas acknowledged every write this connection sent so far. In a Cluster it
    /// goes to the primary of `key`'s slot (the crate would otherwise send `WAIT` to every
    /// primary and keep the smallest answer).
    pub(crate) async fn wait_replicas(
        &mut self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<u32> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        let reply = self.on_node_of(key, cmd).await?;
        // An error reply (e.g. the node was demoted by a failover since the write: "WAIT cannot
        // be used with replica instances") is a failure of the call, not a malformed answer.
        Ok(redis::from_redis_value(reply.extract_error()?)?)
    }

    /// `cmd` on the node that serves `key`: in a Cluster the primary of its slot (the crate
    /// would route a keyless command to any node), else the one connection.
    async fn on_node_of(&mut self, key: &str, cmd: Cmd) -> RedisResult<Value> {
        match self {
            Self::Cluster(conn) => {
                let route = Route::new(slot(key.as_bytes()), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                conn.route_command(cmd, routing).await
            }
            other => other.req_packed_command(&cmd).await,
        }
    }

    /// `TIME` on the node that serves `key` (routed as [`Self::wait_replicas`]), in ms.
    pub(crate) async fn time_ms(&mut self, key: &str) -> RedisResult<u64> {
        let cmd = redis::cmd("TIME");
        let reply = self.on_node_of(key, cmd).await?;
        let (secs, micros): (u64, u64) = redis::from_redis_value(reply.extract_error()?)?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// Whether the node that ran the last write to `key` (routed as [`Self::wait_replicas`])
    /// has a replica that is online and acknowledged its stream within the last second
    /// (`INFO replication`: `state=online`, `lag` ≤ 1): one that is alive but behind, which a
    /// failover right now could promote without the write.
    pub(crate) async fn replica_live(&mut self, key: &str) -> RedisResult<bool> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("replication");
        let reply = self.on_node_of(key, cmd).await?;
        let info: String = redis::from_redis_value(reply.extract_error()?)?;
        let live = has_live_replica(&info);
        if live && let Self::Sentinel(master) | Self::SentinelPinned(master, _) = self {
            master.forget_verdict();
        }
        Ok(live)
    }

    /// After a write no replica acknowledged in time: whether it may be answered anyway. Yes
    /// in a Cluster and on one server (the node that took it is the only copy there is: a
    /// killed primary's promoted replica, a replica that is down). On Sentinel only when every
    /// sentinel answers, all name the master in use in one epoch and none flags a failover
    /// ([`SentinelMaster::alone`]): after a `SENTINEL FAILOVER` the old master keeps accepting
    /// writes until it is demoted (up to ~10 s) and then drops them, and it is exactly such a
    /// write that no replica acknowledges. A replaced master is dropped, so the next call goes
    /// to the new one.
    pub(crate) async fn may_answer_unreplicated(&mut self) -> RedisResult<bool> {
        match self {
            Self::Sentinel(master) => match master.current.load_full() {
                Some(used) => master.alone(&used).await,
                None => Ok(false),
            },
            Self::SentinelPinned(master, used) => master.alone(used).await,
            Self::Single(_) | Self::Cluster(_) => Ok(true),
        }
    }

    /// Where a whole-keyspace command (`SCAN`) must run: every primary of a Cluster (by
    /// address, from `CLUSTER NODES`), else the one server (`None`).
    pub(crate) async fn scan_nodes(&mut self) -> RedisResult<Vec<Option<(String, u16)>>> {
        let Self::Cluster(conn) = self else { return Ok(vec![None]) };
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
        let reply = conn.route_command(redis::cmd("CLUSTER").arg("NODES").clone(), routing).await?;
        let text: String = redis::from_redis_value(reply)?;
        Ok(cluster_primaries(&text).into_iter().map(Some).collect())
    }

    /// `cmd` on `node` (an address of [`Self::scan_nodes`]), or as routed by default.
    pub(crate) async fn query_on<T: redis::FromRedisValue>(
        &mut self,
        node: Option<&(String, u16)>,
        cmd: &Cmd,
    ) -> RedisResult<T> {
        match (self, node) {
            (Self::Cluster(conn), Some((host, port))) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let reply = conn.route_command(cmd.clone(), routing).await?;
                Ok(redis::from_redis_value(reply.extract_error()?)?)
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }
}

/// The addresses of the primaries that serve slots, from `CLUSTER NODES` text (`<id>
/// <ip:port@cport[,hostname]> <flags> <primary> <ping> <pong> <epoch> <link> <slots>...`).
fn cluster_primaries(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let serving = flags.split(',').any(|f| f == "master")
                && !flags.split(',').any(|f| f == "fail" || f == "noaddr")
                && fields.len() > 8;
            if !serving {
                return None;
            }
            let addr = fields.get(1)?.split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
            Self::Sentinel(master) => {
                let master = Arc::clone(master);
                Box::pin(async move {
                    let (current, mut conn) = master.connection().await?;
                    let result = conn.req_packed_command(cmd).await;
                    master.check(&current, result.as_ref().err());
                    result
                })
            }
            Self::SentinelPinned(master, used) => {
                let (master, used) = (Arc::clone(master), Arc::clone(used));
                Box::pin(async move {
                    let result = used.conn.clone().req_packed_command(cmd).await;
                    master.check(&used, result.as_ref().err());
                    result
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(master) => {
                let master = Arc::clone(master);
                Box::pin(async move {
                    let (current, mut conn) = master.connection().await?;
                    let result = conn.req_packed_commands(pipeline, offset, count).await;
                    master.check(&current, result.as_ref().err());
                    result
                })
            }
            Self::SentinelPinned(master, used) => {
                let (master, used) = (Arc::clone(master), Arc::clone(used));
                Box::pin(async move {
                    let result =
                        used.conn.clone().req_packed_commands(pipeline, offset, count).await;
                    master.check(&used, result.as_ref().err());
                    result
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
            Self::Sentinel(_) | Self::SentinelPinned(..) => 0,
        }
    }
}

/// The `ConnectionManager` settings of the standalone and Sentinel modes: quick reconnects,
/// bounded by the store's deadline.
pub(super) fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(250))
}

/// Whether an `INFO replication` text lists a replica line (`slave0:ip=…,state=online,…,lag=0`)
/// that is online with a lag of at most one second.
fn has_live_replica(info: &str) -> bool {
    info.lines().filter(|l| l.starts_with("slave")).filter_map(|l| l.split_once(':')).any(
        |(name, fields)| {
            name[5..].bytes().all(|b| b.is_ascii_digit()) && {
                let field =
                    |k: &str| fields.split(',').find_map(|f| f.strip_prefix(k)?.strip_prefix('='));
                field("state") == Some("online")
                    && field("lag").and_then(|l| l.parse::<u64>().ok()).is_some_and(|l| l <= 1)
            }
        },
    )
}

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag (the part between the
/// first `{` and the next `}`, if not empty) or of the whole key, modulo 16384.
fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 { crc << 1 } else { (crc << 1) ^ 0x1021 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters_with_hash_tags() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"sess:{abc}"), slot(b"spent:{abc}"));
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(slot(b"{}x"), crc16(b"{}x") % 16384);
    }

    #[test]
    fn the_primaries_serving_slots_are_read_from_cluster_nodes() {
        let text = "\
a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:7001@17001,host master - 0 0 2 connected 5461-10922
c 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected
d 127.0.0.1:7003@17003 slave a 0 0 1 connected
e 127.0.0.1:7004@17004 master - 0 0 4 connected
";
        assert_eq!(
            cluster_primaries(text),
            [("127.0.0.1".to_owned(), 7000), ("127.0.0.1".to_owned(), 7001)]
        );
    }

    #[test]
    fn a_live_replica_is_online_with_a_lag_of_at_most_one_second() {
        let info = |line: &str| {
            format!(
                "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n{line}\r\nslave_read_repl_offset:5\r\n"
            )
        };
        assert!(has_live_replica(&info(
            "slave0:ip=127.0.0.1,port=7001,state=online,offset=9,lag=0"
        )));
        assert!(has_live_replica(&info("slave1:ip=::1,port=7001,state=online,offset=9,lag=1")));
        assert!(!has_live_replica(&info(
            "slave0:ip=127.0.0.1,port=7001,state=online,offset=9,lag=4"
        )));
        assert!(!has_live_replica(&info(
            "slave0:ip=127.0.0.1,port=7001,state=wait_bgsave,offset=0,lag=0"
        )));
        assert!(!has_live_replica(&info("slave0:ip=127.0.0.1,port=7001,state=online,offset=9")));
        // `slave_read_repl_offset` and friends are not replica lines.
        assert!(!has_live_replica("role:slave\r\nslave_repl_offset:5\r\nslave_priority:100\r\n"));
    }
}
