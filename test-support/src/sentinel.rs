//! [`RedisSentinel`]: a primary, a replica and three sentinels (quorum 2) on loopback.
//!
//! The two data nodes keep their index (0 started as the master, 1 as its replica) whatever
//! their role; the current master is always read back from the sentinels.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::access::{Access, Login, RedisOptions};
use crate::node::{Kind, Node};
use crate::standalone::option_setters;
use crate::{info_field, wait_until};

const SENTINELS: usize = 3;
const QUORUM: usize = 2;
/// Above the 10-20 s Redis takes to demote a stale master, with room for a loaded machine.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(40);

/// A Sentinel group owned by the test; every process is killed (by PID) on drop.
#[derive(Debug)]
pub struct RedisSentinel {
    access: Arc<Access>,
    master_name: String,
    data: Vec<Node>,
    sentinels: Vec<Node>,
    /// The data node [`RedisSentinel::kill_master`] killed, until it is restarted.
    killed: Option<usize>,
    down_after: Duration,
    failover_timeout: Duration,
}

/// Options for [`RedisSentinel`]: those of [`RedisOptions`] (applied to the data nodes; the
/// sentinels speak TLS when asked and require only [`RedisOptions::sentinel_password`]) plus
/// sentinel timings.
#[derive(Debug)]
pub struct RedisSentinelBuilder {
    options: RedisOptions,
    master_name: String,
    down_after: Duration,
    failover_timeout: Duration,
}

impl Default for RedisSentinelBuilder {
    fn default() -> Self {
        Self {
            options: RedisOptions::default(),
            master_name: RedisSentinel::DEFAULT_MASTER_NAME.to_owned(),
            down_after: RedisSentinel::DEFAULT_DOWN_AFTER,
            failover_timeout: RedisSentinel::DEFAULT_FAILOVER_TIMEOUT,
        }
    }
}

option_setters!(RedisSentinelBuilder);

impl RedisSentinelBuilder {
    /// The name the sentinels monitor the master under (`AUTH_REDIS_SENTINEL_MASTER`).
    pub fn master_name(mut self, name: impl Into<String>) -> Self {
        self.master_name = name.into();
        self
    }

    /// `down-after-milliseconds`: silence after which a sentinel deems the master down.
    pub fn down_after(mut self, after: Duration) -> Self {
        self.down_after = after;
        self
    }

    /// `failover-timeout`: also how long a sentinel waits before retrying a failed failover
    /// (twice this) and before demoting a restarted stale master.
    pub fn failover_timeout(mut self, timeout: Duration) -> Self {
        self.failover_timeout = timeout;
        self
    }

    /// Starts master, replica and sentinels and waits until the sentinels agree.
    pub fn start(self) -> RedisSentinel {
        RedisSentinel::start_with(self)
    }
}

type Fields = HashMap<String, String>;

impl RedisSentinel {
    /// The monitored master's default name.
    pub const DEFAULT_MASTER_NAME: &str = "auth-redis";
    /// 1 s: the master is deemed down quickly, so a killed master is replaced in ~3 s here.
    pub const DEFAULT_DOWN_AFTER: Duration = Duration::from_millis(1000);
    /// 3 s: enough for a promotion on loopback; keeps retries and stale-master demotion short.
    pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_millis(3000);

    /// Starts a group with the default options.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Options: AOF, passwords, ACL users, TLS, master name, timings.
    pub fn builder() -> RedisSentinelBuilder {
        RedisSentinelBuilder::default()
    }

    fn start_with(builder: RedisSentinelBuilder) -> Self {
        let access = Arc::new(Access::new(builder.options));
        let data_kind = Kind::Data { cluster: false, extra: String::new() };
        let mut master = Node::new(Arc::clone(&access), data_kind.clone());
        crate::node::start_all(&mut [&mut master]);
        let mut replica = Node::new(Arc::clone(&access), data_kind);
        replica.set_extra_conf(format!("replicaof 127.0.0.1 {}\n", master.port()));
        crate::node::start_all(&mut [&mut replica]);
        // Sentinels learn replicas from the master's INFO, which they ask for at once and then
        // only every 10 s: let the replica connect first so the first answer lists it.
        wait_until("the replica to sync", SETTLE_TIMEOUT, || replica_of(&replica, master.port()));

        let name = &builder.master_name;
        let monitor = format!(
            "sentinel monitor {name} 127.0.0.1 {} {QUORUM}\n\
             sentinel down-after-milliseconds {name} {}\n\
             sentinel failover-timeout {name} {}\n\
             sentinel parallel-syncs {name} 1\n{}{}",
            master.port(),
            builder.down_after.as_millis(),
            builder.failover_timeout.as_millis(),
            access.sentinel_auth_conf(name),
            access.sentinel_own_auth_conf(),
        );
        let mut sentinels: Vec<Node> = (0..SENTINELS)
            .map(|_| Node::new(Arc::clone(&access), Kind::Sentinel { monitor: monitor.clone() }))
            .collect();
        crate::node::start_all(&mut sentinels.iter_mut().collect::<Vec<_>>());
        let mut group = Self {
            access,
            master_name: builder.master_name,
            data: vec![master, replica],
            sentinels,
            killed: None,
            down_after: builder.down_after,
            failover_timeout: builder.failover_timeout,
        };
        group.wait_ready();
        group
    }

    /// The name the master is monitored under (`AUTH_REDIS_SENTINEL_MASTER`).
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// The configured `down-after-milliseconds`.
    pub fn down_after(&self) -> Duration {
        self.down_after
    }

    /// The configured `failover-timeout`.
    pub fn failover_timeout(&self) -> Duration {
        self.failover_timeout
    }

    /// `redis[s]://127.0.0.1:<port>` of every sentinel, without credentials (their own
    /// password, if any, is [`Self::env`]'s `AUTH_REDIS_SENTINEL_PASSWORD`).
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| s.url(Login::Anonymous)).collect()
    }

    /// [`Self::sentinel_urls`] comma-separated, the text of `AUTH_REDIS_SENTINEL_URLS`.
    pub fn sentinel_urls_csv(&self) -> String {
        self.sentinel_urls().join(",")
    }

    /// What a server under test needs: `AUTH_REDIS_SENTINEL_URLS`, `AUTH_REDIS_SENTINEL_MASTER`,
    /// plus `SSL_CERT_FILE` with TLS.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("AUTH_REDIS_SENTINEL_URLS".to_owned(), self.sentinel_urls_csv()),
            ("AUTH_REDIS_SENTINEL_MASTER".to_owned(), self.master_name.clone()),
        ];
        if let Some(password) = self.access.sentinel_password() {
            env.push(("AUTH_REDIS_SENTINEL_PASSWORD".to_owned(), password.to_owned()));
        }
        env.extend(self.access.tls_env());
        env
    }

    /// The throwaway CA certificate (PEM file) clients must trust, with TLS.
    pub fn ca_path(&self) -> Option<&std::path::Path> {
        self.access.ca_path()
    }

    /// The throwaway CA certificate as PEM bytes, with TLS.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.access.ca_pem()
    }

    /// The master's address according to the first sentinel that answers
    /// (`SENTINEL get-master-addr-by-name`).
    pub fn master_addr(&self) -> (String, u16) {
        self.sentinels
            .iter()
            .find_map(|s| self.master_addr_from(s).ok())
            .expect("a sentinel that knows the master")
    }

    fn master_addr_from(&self, sentinel: &Node) -> Result<(String, u16), String> {
        let addr: Option<(String, u16)> = sentinel
            .query(redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(&self.master_name))
            .map_err(|e| format!("sentinel on port {}: {e}", sentinel.port()))?;
        addr.ok_or_else(|| format!("sentinel on port {} knows no master", sentinel.port()))
    }

    /// The current master's port.
    pub fn master_port(&self) -> u16 {
        self.master_addr().1
    }

    /// The ports of the two data nodes (index 0 started as the master).
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(Node::port).collect()
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(Node::port).collect()
    }

    fn master_index(&self) -> usize {
        let port = self.master_port();
        self.data
            .iter()
            .position(|n| n.port() == port)
            .unwrap_or_else(|| panic!("the sentinels name port {port}, not one of ours"))
    }

    /// The current master's URL for the `default` user.
    pub fn master_url(&self) -> String {
        self.data[self.master_index()].url(Login::Default)
    }

    /// The current master's URL for the ACL user `name`.
    pub fn master_url_as(&self, name: &str) -> String {
        self.data[self.master_index()].url(Login::User(name))
    }

    /// An admin connection to the current master.
    pub fn master_connection(&self) -> redis::Connection {
        self.data[self.master_index()].connection()
    }

    /// An admin connection to data node `i` (0 or 1), whatever its role.
    pub fn data_connection(&self, i: usize) -> redis::Connection {
        self.data[i].connection()
    }

    /// A connection to sentinel `i` (0..3).
    pub fn sentinel_connection(&self, i: usize) -> redis::Connection {
        self.sentinels[i].connection()
    }

    /// Waits (up to 30 s) until the group is ready for clients and for a failover: every
    /// sentinel names the same running master, sees it healthy (no down flag, no failover in
    /// progress) with both other sentinels, and lists every running replica as healthy and in
    /// sync with that master — which the replica's own `INFO` confirms. Returns the master's port.
    pub fn wait_ready(&mut self) -> u16 {
        wait_until("the sentinel group to settle", SETTLE_TIMEOUT, || self.check_ready())
    }

    fn check_ready(&mut self) -> Result<u16, String> {
        let mut master_port = None;
        for sentinel in &self.sentinels {
            let (_, port) = self.master_addr_from(sentinel)?;
            if master_port.is_some_and(|p| p != port) {
                return Err("the sentinels disagree about the master".to_owned());
            }
            master_port = Some(port);
        }
        let master_port = master_port.ok_or("no sentinels")?;
        let master = self
            .data
            .iter()
            .position(|n| n.port() == master_port)
            .ok_or_else(|| format!("the sentinels name port {master_port}, not one of ours"))?;
        if !self.data[master].is_running() {
            return Err(format!("the sentinels still name the dead node {master}"));
        }
        let replication: String = self.data[master]
            .query(redis::cmd("INFO").arg("replication"))
            .map_err(|e| format!("INFO on the master: {e}"))?;
        if info_field(&replication, "role") != Some("master") {
            return Err(format!("node {master} is not a master yet"));
        }
        let replicas: Vec<usize> =
            (0..self.data.len()).filter(|&i| i != master && self.data[i].is_running()).collect();
        for &r in &replicas {
            replica_of(&self.data[r], master_port)?;
        }
        for sentinel in &self.sentinels {
            let port = sentinel.port();
            let seen: Fields = sentinel
                .query(redis::cmd("SENTINEL").arg("MASTER").arg(&self.master_name))
                .map_err(|e| format!("SENTINEL MASTER on {port}: {e}"))?;
            let field = |name: &str| seen.get(name).map(String::as_str);
            if field("flags") != Some("master") {
                return Err(format!("sentinel {port} sees master flags {:?}", field("flags")));
            }
            if field("num-other-sentinels") != Some(&(SENTINELS - 1).to_string()) {
                return Err(format!("sentinel {port} does not know the other sentinels yet"));
            }
            let listed: Vec<Fields> = sentinel
                .query(redis::cmd("SENTINEL").arg("REPLICAS").arg(&self.master_name))
                .map_err(|e| format!("SENTINEL REPLICAS on {port}: {e}"))?;
            for &r in &replicas {
                let replica_port = self.data[r].port().to_string();
                let entry = listed
                    .iter()
                    .find(|e| e.get("port") == Some(&replica_port))
                    .ok_or_else(|| format!("sentinel {port} does not list replica {r} yet"))?;
                let healthy = entry.get("flags").map(String::as_str) == Some("slave")
                    && entry.get("role-reported").map(String::as_str) == Some("slave")
                    && entry.get("master-link-status").map(String::as_str) == Some("ok")
                    && entry.get("master-port") == Some(&master_port.to_string());
                if !healthy {
                    return Err(format!("sentinel {port} does not see replica {r} in sync yet"));
                }
            }
        }
        Ok(master_port)
    }

    /// Waits until every sentinel names data node `i` and it acts as master.
    fn wait_promoted(&mut self, i: usize) {
        let port = self.data[i].port();
        wait_until("the sentinels to promote the replica", SETTLE_TIMEOUT, || {
            for sentinel in &self.sentinels {
                if self.master_addr_from(sentinel)?.1 != port {
                    return Err(format!("sentinel {} still names the old master", sentinel.port()));
                }
            }
            let replication: String = self.data[i]
                .query(redis::cmd("INFO").arg("replication"))
                .map_err(|e| format!("INFO on node {i}: {e}"))?;
            match info_field(&replication, "role") {
                Some("master") => Ok(()),
                role => Err(format!("node {i} reports role {role:?}")),
            }
        });
    }

    /// Kills the master (SIGKILL), waits until the sentinels promoted the replica (about
    /// `down_after` plus 1-2 s) and the group is settled; returns the new master's port.
    pub fn kill_master(&mut self) -> u16 {
        assert!(self.killed.is_none(), "restart the old master before killing the new one");
        self.wait_ready();
        let old = self.master_index();
        let new = 1 - old;
        self.data[old].kill();
        self.killed = Some(old);
        self.wait_promoted(new);
        self.wait_ready()
    }

    /// `SENTINEL FAILOVER` (no agreement needed); waits until the replica is master, every
    /// sentinel names it, and the old master was demoted and replicates it in sync. Returns the
    /// new master's port.
    ///
    /// Redis itself makes this slow (~12 s): the old master keeps acting as a master, accepting
    /// writes, until the leading sentinel's next 10 s `INFO` poll demotes it; writes a client
    /// still sends there in that window are lost when it resyncs. The other sentinels see the
    /// demoted node as a healthy replica only at their own next poll, so [`Self::wait_ready`]
    /// (which a second failover starts with) may take up to 10 s more.
    pub fn failover(&mut self) -> u16 {
        self.failover_with(None)
    }

    /// [`Self::failover`] whose leading sentinel (the one asked) stops answering for `pause`
    /// from the moment the replica acts as master: the other sentinels, which only learn of a
    /// failover from the leader, keep naming the old master with no flag, while it still takes
    /// writes that it drops when demoted. Returns the new master's port.
    pub fn failover_pausing_leader(&mut self, pause: Duration) -> u16 {
        self.failover_with(Some(pause))
    }

    fn failover_with(&mut self, leader_pause: Option<Duration>) -> u16 {
        self.wait_ready();
        let old = self.master_index();
        let new = 1 - old;
        wait_until("SENTINEL FAILOVER to be accepted", SETTLE_TIMEOUT, || {
            self.sentinels[0]
                .query::<String>(redis::cmd("SENTINEL").arg("FAILOVER").arg(&self.master_name))
                .map_err(|e| format!("SENTINEL FAILOVER: {e}"))
        });
        if let Some(pause) = leader_pause {
            wait_until("the replica to act as master", SETTLE_TIMEOUT, || {
                let replication: String = self.data[new]
                    .query(redis::cmd("INFO").arg("replication"))
                    .map_err(|e| format!("INFO on node {new}: {e}"))?;
                match info_field(&replication, "role") {
                    Some("master") => Ok(()),
                    role => Err(format!("node {new} reports role {role:?}")),
                }
            });
            self.sentinels[0].signal_stop(true);
            std::thread::sleep(pause);
            self.sentinels[0].signal_stop(false);
        }
        self.wait_promoted(new);
        let new_port = self.data[new].port();
        wait_until("the sentinels to demote the old master", SETTLE_TIMEOUT, || {
            replica_of(&self.data[old], new_port)
        });
        new_port
    }

    /// Restarts the master [`Self::kill_master`] killed as a replica of the current master —
    /// the config a sentinel would have rewritten had the node been reachable — and waits until
    /// the sentinels see it in sync.
    pub fn restart_old_master(&mut self) {
        let old = self.killed.take().expect("kill_master first");
        let master_port = self.master_port();
        self.data[old].set_extra_conf(format!("replicaof 127.0.0.1 {master_port}\n"));
        self.data[old].restart();
        self.wait_ready();
    }

    /// Restarts the killed master with its old config, so it comes back believing it is the
    /// master (with whatever data it had; none without AOF), and waits until the sentinels
    /// demoted it to a replica of the current master, in sync. Redis makes this slow (10-20 s:
    /// the sentinels re-read a replica's role every 10 s and demote it at the second look); a
    /// client that writes there meanwhile loses the write. As after [`Self::failover`],
    /// [`Self::wait_ready`] may take up to 10 s more.
    pub fn restart_old_master_stale(&mut self) {
        let old = self.killed.take().expect("kill_master first");
        let master_port = self.master_port();
        self.data[old].set_extra_conf(String::new());
        self.data[old].restart();
        wait_until("the sentinels to demote the stale master", SETTLE_TIMEOUT, || {
            replica_of(&self.data[old], master_port)
        });
    }
}

/// `Ok` when `node` replicates the master on `master_port` with its link up.
fn replica_of(node: &Node, master_port: u16) -> Result<(), String> {
    let info: String = node
        .query(redis::cmd("INFO").arg("replication"))
        .map_err(|e| format!("INFO replication on port {}: {e}", node.port()))?;
    if info_field(&info, "role") == Some("slave")
        && info_field(&info, "master_port") == Some(&master_port.to_string())
        && info_field(&info, "master_link_status") == Some("up")
    {
        Ok(())
    } else {
        Err(format!("port {} is not an in-sync replica of {master_port}", node.port()))
    }
}
