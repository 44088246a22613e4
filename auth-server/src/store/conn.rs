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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Cmd, ConnectionAddr, IntoConnectionInfo as _, RedisConnectionInfo, RedisError, RedisFuture,
    RedisResult, Value,
};
use secrecy::ExposeSecret as _;

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
        let mut sentinel_settings = RedisConnectionInfo::default();
        if let Some(password) = &sentinel_login.password {
            sentinel_settings = sentinel_settings.set_password(password.expose_secret());
            if let Some(user) = &sentinel_login.username {
                sentinel_settings = sentinel_settings.set_username(user);
            }
        }
        let mut sentinels = Vec::with_capacity(urls.len());
        let mut login = RedisConnectionInfo::default();
        let mut tls = false;
        for url in urls {
            let info = url.into_connection_info()?;
            let redis = info.redis_settings();
            if let Some(user) = redis.username() {
                login = login.set_username(user);
            }
            if let Some(password) = redis.password() {
                login = login.set_password(password);
            }
            tls |= matches!(info.addr(), ConnectionAddr::TcpTls { .. });
            sentinels.push(info.set_redis_settings(sentinel_settings.clone()));
        }
        Ok(Self::Sentinel(Arc::new(SentinelMaster {
            name: master.to_owned(),
            sentinels,
            login,
            tls,
            newest_epoch: tokio::sync::Mutex::new(0),
            current: ArcSwapOption::empty(),
            looked_up: std::sync::atomic::AtomicBool::new(false),
            verdict: std::sync::Mutex::new(None),
        })))
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
        let reply = match self {
            Self::Cluster(conn) => {
                let route = Route::new(slot(key.as_bytes()), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                conn.route_command(cmd, routing).await?
            }
            other => other.req_packed_command(&cmd).await?,
        };
        // An error reply (e.g. the node was demoted by a failover since the write: "WAIT cannot
        // be used with replica instances") is a failure of the call, not a malformed answer.
        Ok(redis::from_redis_value(reply.extract_error()?)?)
    }

    /// `TIME` on the node that serves `key` (routed as [`Self::wait_replicas`]), in ms.
    pub(crate) async fn time_ms(&mut self, key: &str) -> RedisResult<u64> {
        let cmd = redis::cmd("TIME");
        let reply = match &mut *self {
            Self::Cluster(conn) => {
                let route = Route::new(slot(key.as_bytes()), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                conn.route_command(cmd, routing).await?
            }
            other => other.req_packed_command(&cmd).await?,
        };
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
        let reply = match &mut *self {
            Self::Cluster(conn) => {
                let route = Route::new(slot(key.as_bytes()), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                conn.route_command(cmd, routing).await?
            }
            other => other.req_packed_command(&cmd).await?,
        };
        let info: String = redis::from_redis_value(reply.extract_error()?)?;
        let live = has_live_replica(&info);
        if live && let Self::Sentinel(master) | Self::SentinelPinned(master, _) = self {
            master.forget_verdict();
        }
        Ok(live)
    }

    /// After a write no replica acknowledged in time: whether it may be answered anyway. Yes
    /// in a Cluster and on one server (the node that took it is the only copy there is: a
    /// killed primary's promoted replica, a replica that is down). On Sentinel only when the
    /// sentinels still name the master in use and see every one of its replicas down: after a
    /// `SENTINEL FAILOVER` the old master keeps accepting writes until it is demoted (up to
    /// ~10 s) and then drops them, and it is exactly such a write that no replica acknowledges.
    /// A replaced master is dropped, so the next call goes to the new one.
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
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(250))
}

/// The master of a Sentinel group, looked up on first use and again after it fails.
///
/// The lookup asks every sentinel (`SENTINEL MASTER`) and follows the one with the newest
/// configuration epoch, and never goes back to an older epoch. The crate's own lookup takes the
/// first sentinel that names a node calling itself master; during a failover that can be a
/// sentinel that has not heard of it yet, naming the old master, which still calls itself
/// master until it is demoted (~10 s): requests sent there read stale sessions (the fault test
/// saw `invalid_grant`s) and their writes are dropped at the demotion.
pub(crate) struct SentinelMaster {
    /// The monitored master's name.
    name: String,
    /// The sentinels (with their own login, `AUTH_REDIS_SENTINEL_USERNAME`/`_PASSWORD`).
    sentinels: Vec<redis::ConnectionInfo>,
    /// The data nodes' login.
    login: RedisConnectionInfo,
    /// TLS to the data nodes.
    tls: bool,
    /// The newest configuration epoch followed; one lookup at a time.
    newest_epoch: tokio::sync::Mutex<u64>,
    /// The master in use; `None` until looked up, and again after it failed.
    current: ArcSwapOption<Master>,
    /// The last [`Self::alone`] verdict: the master it concerns, when it was asked, the answer.
    /// Reused for [`ALONE_REUSE`] so that a burst of unreplicated writes asks the sentinels
    /// once; forgotten as soon as a write finds a live replica (see [`Conn::replica_live`]).
    verdict: std::sync::Mutex<Option<(String, Instant, bool)>>,
    /// Whether a lookup succeeded before.
    looked_up: std::sync::atomic::AtomicBool,
}

/// What the sentinel with the newest configuration says.
struct Named {
    /// The master's `host:port`.
    addr: String,
    /// Every sentinel answered, all name this master in the same configuration epoch, and none
    /// flags it down or failing over: a write no replica acknowledged is then not about to be
    /// dropped by a demotion. Only the leading sentinel flags a failover (the others name the
    /// old master until its hello messages reach them), so one that does not answer, or answers
    /// differently, is taken to be that leader.
    alone: bool,
}

/// How long an [`SentinelMaster::alone`] verdict is reused: short against a failover that
/// starts meanwhile, which a live replica seen in between also cancels.
const ALONE_REUSE: Duration = Duration::from_millis(200);

/// How long one sentinel may take to connect or answer.
const SENTINEL_TIMEOUT: Duration = Duration::from_millis(300);

/// A master the sentinels named, and the connection to it.
pub(crate) struct Master {
    /// `host:port`, for logs (never the URL: it may hold a password).
    addr: String,
    conn: ConnectionManager,
}

impl SentinelMaster {
    /// The master in use, looked up if there is none.
    async fn connection(&self) -> RedisResult<(Arc<Master>, ConnectionManager)> {
        if let Some(master) = self.current.load_full() {
            let conn = master.conn.clone();
            return Ok((master, conn));
        }
        let mut newest = self.newest_epoch.lock().await;
        // Another call may have looked it up while this one waited for the lock.
        if let Some(master) = self.current.load_full() {
            let conn = master.conn.clone();
            return Ok((master, conn));
        }
        crate::metrics::redis_master_change();
        let named = self.ask(&mut newest).await?;
        let addr = named.addr;
        let scheme = if self.tls { "rediss" } else { "redis" };
        let info = format!("{scheme}://{addr}")
            .into_connection_info()?
            .set_redis_settings(self.login.clone());
        let client = redis::Client::open(info)?;
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config())?;
        // The first lookup is routine (and the `users` commands print warnings and above only
        // to their operator); a later one follows a failure: worth an info line.
        if self.looked_up.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::info!("redis sentinel: master {:?} is now at {addr}", self.name);
        } else {
            log::debug!("redis sentinel: master {:?} is at {addr}", self.name);
        }
        let master = Arc::new(Master { addr, conn: conn.clone() });
        self.current.store(Some(Arc::clone(&master)));
        Ok((master, conn))
    }

    /// After a write on `used` that no replica acknowledged: whether `used` is still the master
    /// (by the newest configuration), a majority of the sentinels answer, and none sees a
    /// failover under way or a replica up (during a failover the old master is still named
    /// until its replica is promoted, and drops what it took since; only the leading sentinel
    /// flags it, but every sentinel sees the replica being promoted as up).
    /// When another node is named, `used` is forgotten (if still in use) so the next call goes
    /// there.
    async fn alone(&self, used: &Arc<Master>) -> RedisResult<bool> {
        let recent = || {
            let verdict = self.verdict.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            verdict.as_ref().and_then(|(addr, at, alone)| {
                (*addr == used.addr && at.elapsed() < ALONE_REUSE).then_some(*alone)
            })
        };
        if let Some(alone) = recent() {
            return Ok(alone);
        }
        let named = {
            let mut newest = self.newest_epoch.lock().await;
            // One lookup at a time: the calls that waited take the verdict it left.
            if let Some(alone) = recent() {
                return Ok(alone);
            }
            let asked = Instant::now();
            let named = self.ask(&mut newest).await?;
            let alone = named.addr == used.addr && named.alone;
            *self.verdict.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((used.addr.clone(), asked, alone));
            named
        };
        if named.addr == used.addr {
            return Ok(named.alone);
        }
        let previous = self.current.compare_and_swap(used, None::<Arc<Master>>);
        if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, used)) {
            log::warn!(
                "redis sentinel: master {:?} moved from {} to {}",
                self.name,
                used.addr,
                named.addr
            );
        }
        Ok(false)
    }

    /// Drops the [`Self::alone`] verdict: a live replica was seen, so the next unreplicated
    /// write (e.g. on a master whose replica was just promoted) asks the sentinels afresh.
    fn forget_verdict(&self) {
        *self.verdict.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Asks every sentinel about the master and follows the newest configuration epoch (never
    /// one older than `newest`).
    async fn ask(&self, newest: &mut u64) -> RedisResult<Named> {
        let answers = futures_util::future::join_all(self.sentinels.iter().map(|sentinel| async {
            let client = redis::Client::open(sentinel.clone())?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(SENTINEL_TIMEOUT))
                .set_response_timeout(Some(SENTINEL_TIMEOUT));
            let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
            let master: HashMap<String, String> =
                redis::cmd("SENTINEL").arg("MASTER").arg(&self.name).query_async(&mut conn).await?;
            Ok::<_, RedisError>(master)
        }))
        .await;
        let mut last_error = None;
        let mut best: Option<(u64, String)> = None;
        let mut seen = HashSet::new();
        let mut alone = true;
        for answer in answers {
            match answer {
                Ok(master) => {
                    let epoch =
                        master.get("config-epoch").and_then(|e| e.parse().ok()).unwrap_or(0);
                    let flags = master.get("flags").map(String::as_str).unwrap_or_default();
                    alone &= !flags.split(',').any(|f| {
                        matches!(f, "failover_in_progress" | "s_down" | "o_down" | "promoted")
                    });
                    let (Some(ip), Some(port)) = (master.get("ip"), master.get("port")) else {
                        alone = false;
                        continue;
                    };
                    let addr = format!("{ip}:{port}");
                    seen.insert((epoch, addr.clone()));
                    if best.as_ref().is_none_or(|(e, _)| epoch > *e) {
                        best = Some((epoch, addr));
                    }
                }
                Err(e) => {
                    alone = false;
                    last_error = Some(e);
                }
            }
        }
        alone &= seen.len() == 1;
        let Some((epoch, addr)) = best else {
            return Err(last_error.unwrap_or_else(|| {
                RedisError::from((redis::ErrorKind::Client, "no sentinel knows the master"))
            }));
        };
        if epoch < *newest {
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "the reachable sentinels have an older configuration than the one followed",
            )));
        }
        *newest = epoch;
        Ok(Named { addr, alone })
    }

    /// After a call on `used`: forgets it if `error` says it may no longer be the master, so the
    /// next call asks the sentinels again.
    fn check(&self, used: &Arc<Master>, error: Option<&RedisError>) {
        let Some(error) = error else { return };
        if !master_may_have_changed(error) {
            return;
        }
        let previous = self.current.compare_and_swap(used, None::<Arc<Master>>);
        if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, used)) {
            log::warn!(
                "redis sentinel: master {:?} at {} failed ({}); asking the sentinels again",
                self.name,
                used.addr,
                error.code().unwrap_or("connection")
            );
        }
    }
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

/// Whether an error means the node may not be the master any more: a dead or refused
/// connection, no answer, or a node that refuses writes as a replica.
fn master_may_have_changed(error: &RedisError) -> bool {
    matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
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
