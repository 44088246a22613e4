//! [`RedisCluster`]: 3 primaries + 3 replicas on loopback, with the faults cluster tests need.
//!
//! Nodes keep a stable index (start order) whatever their current role; roles are always read
//! back from the nodes (`CLUSTER NODES`), since `redis-cli --cluster create` picks the
//! primary/replica pairs itself and failovers swap them.
//!
//! Why one file (~580 lines of code): every fault (failover, kill, restart, reshard, `SCRIPT
//! FLUSH`) ends in [`RedisCluster::wait_ok`], which reads the same `CLUSTER NODES` parse the
//! start-up waits on; the waits and the faults are one state machine of the test cluster.

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access::{Access, Login, RedisOptions};
use crate::node::{Kind, Node};
use crate::standalone::option_setters;
use crate::{info_field, wait_until};

const NODES: usize = 6;
const SLOTS: u32 = 16384;
/// Long enough for a failover on a loaded 2-core machine, short enough to fail loudly.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis Cluster owned by the test; every node is killed (by PID) on drop.
#[derive(Debug)]
pub struct RedisCluster {
    access: Arc<Access>,
    nodes: Vec<Node>,
    ids: Vec<String>,
    node_timeout: Duration,
}

/// Options for [`RedisCluster`]: those of [`RedisOptions`] plus the node timeout.
#[derive(Debug)]
pub struct RedisClusterBuilder {
    options: RedisOptions,
    node_timeout: Duration,
}

impl Default for RedisClusterBuilder {
    fn default() -> Self {
        Self { options: RedisOptions::default(), node_timeout: RedisCluster::DEFAULT_NODE_TIMEOUT }
    }
}

option_setters!(RedisClusterBuilder);

impl RedisClusterBuilder {
    /// `cluster-node-timeout`: how long a primary may be unreachable before its replica takes
    /// over (a killed primary is replaced about this long plus ~1-2 s after its death).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Starts the six nodes in parallel, creates the cluster and waits until it serves every slot.
    pub fn start(self) -> RedisCluster {
        RedisCluster::start_with(self.options, self.node_timeout)
    }
}

/// A node's role as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRole {
    /// Serves these inclusive slot ranges (none for a dead primary that was replaced).
    Primary {
        /// Inclusive `(first, last)` slot ranges.
        slots: Vec<(u16, u16)>,
    },
    /// Replicates the node with this index.
    Replica {
        /// Index of its primary.
        of: usize,
    },
}

/// One node of the cluster, as seen by a running node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// Stable index (start order), the argument of the fault methods.
    pub index: usize,
    /// Client port on 127.0.0.1.
    pub port: u16,
    /// Cluster node ID.
    pub id: String,
    /// Current role.
    pub role: NodeRole,
    /// Whether the harness's process for it is alive.
    pub running: bool,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
struct Entry {
    id: String,
    port: u16,
    myself: bool,
    master: bool,
    /// `fail`, `fail?`, `handshake` or `noaddr`: not a healthy member in this view.
    unhealthy: bool,
    master_id: Option<String>,
    slots: Vec<(u16, u16)>,
    /// A `[slot->-id]` / `[slot-<-id]` migration in progress.
    open_slots: bool,
}

fn parse_nodes(text: &str) -> Result<Vec<Entry>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return Err(format!("short CLUSTER NODES line: {line}"));
            }
            let port = fields[1]
                .split('@')
                .next()
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("no port in CLUSTER NODES line: {line}"))?;
            let flags: Vec<&str> = fields[2].split(',').collect();
            let mut slots = Vec::new();
            let mut open_slots = false;
            for slot in &fields[8..] {
                if slot.starts_with('[') {
                    open_slots = true;
                    continue;
                }
                let (first, last) = slot.split_once('-').unwrap_or((slot, slot));
                let parse = |s: &str| s.parse::<u16>().map_err(|e| format!("slot {slot}: {e}"));
                slots.push((parse(first)?, parse(last)?));
            }
            Ok(Entry {
                id: fields[0].to_owned(),
                port,
                myself: flags.contains(&"myself"),
                master: flags.contains(&"master"),
                unhealthy: flags
                    .iter()
                    .any(|f| matches!(*f, "fail" | "fail?" | "handshake" | "noaddr")),
                master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                slots,
                open_slots,
            })
        })
        .collect()
}

impl RedisCluster {
    /// 2 s: a killed primary is replaced in about 4-5 s here, and the loaded 2-core test machine
    /// has never stalled a node that long (which would cause a spurious failover).
    pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_millis(2000);

    /// Starts a cluster with the default options.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Options: AOF, passwords, ACL users, TLS, node timeout.
    pub fn builder() -> RedisClusterBuilder {
        RedisClusterBuilder::default()
    }

    fn start_with(options: RedisOptions, node_timeout: Duration) -> Self {
        let access = Arc::new(Access::new(options));
        let mut extra = format!(
            "cluster-config-file nodes.conf\ncluster-node-timeout {}\n\
             cluster-announce-ip 127.0.0.1\n\
             cluster-replica-validity-factor 0\n",
            node_timeout.as_millis()
        );
        if access.tls().is_some() {
            extra.push_str("tls-cluster yes\n");
        }
        let mut nodes: Vec<Node> = (0..NODES)
            .map(|_| {
                Node::new(Arc::clone(&access), Kind::Data { cluster: true, extra: extra.clone() })
            })
            .collect();
        crate::node::start_all(&mut nodes.iter_mut().collect::<Vec<_>>());

        let out = access
            .redis_cli()
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli on PATH");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ids = nodes
            .iter()
            .map(|n| n.query::<String>(redis::cmd("CLUSTER").arg("MYID")).expect("CLUSTER MYID"))
            .collect();
        let mut cluster = Self { access, nodes, ids, node_timeout };
        cluster.wait_ok();
        cluster
    }

    /// The configured `cluster-node-timeout`.
    pub fn node_timeout(&self) -> Duration {
        self.node_timeout
    }

    /// How many nodes (6); indices run from 0 to this.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never: a cluster always has its nodes (for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Seed URLs of every node for the `default` user (with its `requirepass` if set).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url(Login::Default)).collect()
    }

    /// Seed URLs logging in as the ACL user `name`.
    pub fn urls_as(&self, name: &str) -> Vec<String> {
        self.nodes.iter().map(|n| n.url(Login::User(name))).collect()
    }

    /// [`Self::urls`] comma-separated, the text of `AUTH_REDIS_CLUSTER_URLS`.
    pub fn urls_csv(&self) -> String {
        self.urls().join(",")
    }

    /// What a server under test needs: `AUTH_REDIS_CLUSTER_URLS`, plus `SSL_CERT_FILE` with TLS.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("AUTH_REDIS_CLUSTER_URLS".to_owned(), self.urls_csv())];
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

    /// The client port of node `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port()
    }

    /// Node `i`'s cluster ID (stable across restarts: it lives in the node's `nodes.conf`).
    pub fn id(&self, i: usize) -> &str {
        &self.ids[i]
    }

    /// Whether node `i`'s process is alive.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// An admin connection to node `i` alone (no redirects followed).
    pub fn connection(&self, i: usize) -> redis::Connection {
        self.nodes[i].connection()
    }

    /// A cluster client (admin login, every node as a seed, the CA with TLS).
    pub fn client(&self) -> redis::cluster::ClusterClient {
        self.client_for(Login::Admin)
    }

    /// A cluster client logging in as the ACL user `name`.
    pub fn client_as(&self, name: &str) -> redis::cluster::ClusterClient {
        self.client_for(Login::User(name))
    }

    fn client_for(&self, login: Login<'_>) -> redis::cluster::ClusterClient {
        let mut builder = redis::cluster::ClusterClient::builder(
            self.nodes.iter().map(|n| n.url(login)).collect::<Vec<_>>(),
        );
        if let Some(tls) = self.access.tls() {
            crate::access::install_crypto_provider();
            builder = builder.tls(redis::cluster::TlsMode::Secure).certs(tls.certificates());
        }
        builder.build().expect("cluster client")
    }

    /// A synchronous cluster connection (follows MOVED/ASK), for tests that inspect data.
    ///
    /// Open a new one after a primary was killed: redis 1.8's sync cluster connection keeps
    /// answering `Connection refused` for the dead node's slots even after its replica took over
    /// (the async one retries until the new primary answers).
    pub fn cluster_connection(&self) -> redis::cluster::ClusterConnection {
        self.client().get_connection().expect("cluster connection")
    }

    /// Every node with its role, as the first running node sees them.
    pub fn nodes(&mut self) -> Vec<ClusterNode> {
        let viewer = (0..self.nodes.len())
            .find(|&i| self.nodes[i].is_running())
            .expect("a running cluster node");
        let entries = self.view(viewer).unwrap_or_else(|e| panic!("{e}"));
        let mut nodes: Vec<ClusterNode> = entries
            .iter()
            .filter_map(|e| {
                let index = self.index_of_port(e.port)?;
                let role = match &e.master_id {
                    Some(master) if !e.master => {
                        NodeRole::Replica { of: self.ids.iter().position(|id| id == master)? }
                    }
                    _ => NodeRole::Primary { slots: e.slots.clone() },
                };
                Some(ClusterNode { index, port: e.port, id: e.id.clone(), role, running: false })
            })
            .collect();
        for node in &mut nodes {
            node.running = self.nodes[node.index].is_running();
        }
        nodes.sort_by_key(|n| n.index);
        nodes
    }

    /// Indices of the nodes currently serving slots.
    pub fn primaries(&mut self) -> Vec<usize> {
        self.nodes()
            .into_iter()
            .filter(|n| matches!(&n.role, NodeRole::Primary { slots } if !slots.is_empty()))
            .map(|n| n.index)
            .collect()
    }

    /// The running replica of primary `i`, if it has one.
    pub fn replica_of(&mut self, i: usize) -> Option<usize> {
        self.nodes()
            .into_iter()
            .find(|n| n.running && n.role == NodeRole::Replica { of: i })
            .map(|n| n.index)
    }

    /// The index of the primary serving `key`'s slot.
    pub fn primary_for_key(&mut self, key: &str) -> usize {
        let viewer = (0..self.nodes.len())
            .find(|&i| self.nodes[i].is_running())
            .expect("a running cluster node");
        let slot: u16 = self.nodes[viewer]
            .query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .expect("CLUSTER KEYSLOT");
        self.nodes()
            .into_iter()
            .find(|n| {
                matches!(&n.role, NodeRole::Primary { slots }
                    if slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
            })
            .map(|n| n.index)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    fn index_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port() == port)
    }

    fn view(&self, i: usize) -> Result<Vec<Entry>, String> {
        let text: String = self.nodes[i]
            .query(redis::cmd("CLUSTER").arg("NODES"))
            .map_err(|e| format!("CLUSTER NODES on node {i}: {e}"))?;
        parse_nodes(&text)
    }

    /// Waits (up to 30 s) until the cluster is settled: every running node says
    /// `cluster_state:ok` with all 16384 slots served, knows all six nodes, sees no running node
    /// as failing and no slot migrating; all running nodes agree on which primary serves which
    /// slot and on every running node's role (as that node states it); every running node is a
    /// primary with slots or a replica whose link to its primary is up.
    pub fn wait_ok(&mut self) {
        wait_until("the cluster to settle", SETTLE_TIMEOUT, || self.check_ok());
    }

    fn check_ok(&mut self) -> Result<(), String> {
        let running: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].is_running()).collect();
        let known = self.nodes.len().to_string();
        let slots = SLOTS.to_string();
        let mut views = Vec::new();
        for &i in &running {
            let info: String = self.nodes[i]
                .query(redis::cmd("CLUSTER").arg("INFO"))
                .map_err(|e| format!("CLUSTER INFO on node {i}: {e}"))?;
            for (field, want) in [
                ("cluster_state", "ok"),
                ("cluster_slots_assigned", slots.as_str()),
                ("cluster_slots_ok", slots.as_str()),
                ("cluster_known_nodes", known.as_str()),
            ] {
                let got = info_field(&info, field);
                if got != Some(want) {
                    return Err(format!("node {i} says {field}:{got:?}, want {want}"));
                }
            }
            views.push((i, self.view(i)?));
        }
        // What each running node says about itself: primary, or replica of which node ID.
        let mut own_roles = Vec::new();
        for (i, view) in &views {
            let me = view
                .iter()
                .find(|e| e.myself)
                .ok_or_else(|| format!("node {i} has no myself line"))?;
            if me.master {
                if me.slots.is_empty() {
                    return Err(format!("node {i} is a primary without slots"));
                }
            } else {
                let master = me
                    .master_id
                    .as_ref()
                    .and_then(|id| view.iter().find(|e| &e.id == id))
                    .ok_or_else(|| format!("node {i} replicates an unknown node"))?;
                let replication: String = self.nodes[*i]
                    .query(redis::cmd("INFO").arg("replication"))
                    .map_err(|e| format!("INFO replication on node {i}: {e}"))?;
                if info_field(&replication, "master_link_status") != Some("up")
                    || info_field(&replication, "master_port") != Some(&master.port.to_string())
                {
                    return Err(format!("replica {i}'s link to port {} is not up", master.port));
                }
            }
            own_roles.push((me.port, me.master, me.master_id.clone()));
        }
        let mut agreed: Option<Vec<(u16, u16, String)>> = None;
        for (i, view) in &views {
            let mut slot_map = Vec::new();
            for e in view {
                let index = self.index_of_port(e.port);
                let alive = index.is_some_and(|j| running.contains(&j));
                if e.open_slots {
                    return Err(format!("node {i} sees a slot migration on port {}", e.port));
                }
                if e.unhealthy && alive {
                    return Err(format!("node {i} sees running node on port {} failing", e.port));
                }
                if e.master && !e.slots.is_empty() && !alive {
                    return Err(format!(
                        "node {i} sees dead node on port {} serving slots",
                        e.port
                    ));
                }
                if let Some((_, master, master_id)) = own_roles.iter().find(|r| r.0 == e.port)
                    && (e.master != *master || (!e.master && e.master_id != *master_id))
                {
                    return Err(format!("node {i} has a stale view of port {}'s role", e.port));
                }
                slot_map.extend(e.slots.iter().map(|&(a, b)| (a, b, e.id.clone())));
            }
            slot_map.sort();
            match &agreed {
                None => agreed = Some(slot_map),
                Some(first) if *first != slot_map => {
                    return Err(format!(
                        "node {i} disagrees about which primary serves which slot"
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Whether node `i` serves slots, in its own view.
    fn serves_slots(&self, i: usize) -> Result<(), String> {
        let view = self.view(i)?;
        match view.iter().find(|e| e.myself) {
            Some(me) if me.master && !me.slots.is_empty() => Ok(()),
            _ => Err(format!("node {i} does not serve slots yet")),
        }
    }

    fn running_replica_of(&mut self, primary: usize) -> usize {
        self.wait_ok();
        match self.nodes().iter().find(|n| n.index == primary).map(|n| &n.role) {
            Some(NodeRole::Primary { slots }) if !slots.is_empty() => {}
            role => panic!("node {primary} is not a primary serving slots: {role:?}"),
        }
        self.replica_of(primary)
            .unwrap_or_else(|| panic!("primary {primary} has no running replica"))
    }

    /// Manual failover (`CLUSTER FAILOVER` on primary `i`'s replica, which first catches up on
    /// the primary's writes, so nothing acknowledged is lost); waits until the replica serves the
    /// slots, `i` replicates it and the cluster is settled. Returns the new primary's index.
    pub fn failover(&mut self, i: usize) -> usize {
        let replica = self.running_replica_of(i);
        for attempt in 1..=3 {
            // A manual failover gives up after 5 s if the replica cannot catch up; ask again.
            let _: String = self.nodes[replica]
                .query(redis::cmd("CLUSTER").arg("FAILOVER"))
                .unwrap_or_else(|e| panic!("CLUSTER FAILOVER on node {replica}: {e}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if self.serves_slots(replica).is_ok() {
                    self.wait_ok();
                    let old = self.nodes().into_iter().find(|n| n.index == i).map(|n| n.role);
                    assert_eq!(old, Some(NodeRole::Replica { of: replica }), "after failover");
                    return replica;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("manual failover of node {i} to {replica}: attempt {attempt} timed out");
        }
        panic!("node {replica} did not take over from {i} after 3 manual failovers");
    }

    /// Kills primary `i` (SIGKILL) and waits until its replica has taken over (after about the
    /// node timeout plus an election) and the cluster is settled again. Returns the new
    /// primary's index; bring `i` back with [`Self::restart_node`].
    pub fn kill_primary(&mut self, i: usize) -> usize {
        let replica = self.running_replica_of(i);
        self.nodes[i].kill();
        let timeout = SETTLE_TIMEOUT + self.node_timeout * 2;
        wait_until("the replica to take over", timeout, || self.serves_slots(replica));
        self.wait_ok();
        replica
    }

    /// Kills node `i` (SIGKILL) without waiting for anything.
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again on its port with its `nodes.conf`; a replaced primary rejoins as a
    /// replica of its successor. Waits until the cluster is settled.
    pub fn restart_node(&mut self, i: usize) {
        self.nodes[i].restart();
        self.wait_ok();
    }

    /// `SCRIPT FLUSH` on every running node (as after a restart or failover to an empty cache).
    pub fn script_flush_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_running() {
                let _: () = self.nodes[i]
                    .query(redis::cmd("SCRIPT").arg("FLUSH"))
                    .unwrap_or_else(|e| panic!("SCRIPT FLUSH on node {i}: {e}"));
            }
        }
    }

    /// `FLUSHALL` on every running primary (replicas follow).
    pub fn flushall(&mut self) {
        for i in self.primaries() {
            let _: () = self.nodes[i]
                .query(&redis::cmd("FLUSHALL"))
                .unwrap_or_else(|e| panic!("FLUSHALL on node {i}: {e}"));
        }
    }

    /// Keys matching `pattern` on every primary (`KEYS`, fine for test-sized data).
    pub fn keys(&mut self, pattern: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for i in self.primaries() {
            let found: Vec<String> = self.nodes[i]
                .query(redis::cmd("KEYS").arg(pattern))
                .unwrap_or_else(|e| panic!("KEYS on node {i}: {e}"));
            keys.extend(found);
        }
        keys.sort();
        keys
    }

    /// Starts moving `slots` slots (with their keys) from primary `from` to primary `to` with
    /// `redis-cli --cluster reshard`, in the background so clients can keep sending traffic;
    /// [`Reshard::wait`] for it, then [`Self::wait_ok`].
    pub fn reshard(&mut self, from: usize, to: usize, slots: u16) -> Reshard {
        self.wait_ok();
        let primaries = self.primaries();
        assert!(primaries.contains(&from) && primaries.contains(&to), "reshard between primaries");
        let log = tempfile::NamedTempFile::new().expect("reshard log file");
        let child = self
            .access
            .redis_cli()
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{}", self.nodes[from].port()))
            .args(["--cluster-from", &self.ids[from], "--cluster-to", &self.ids[to]])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("reshard log"))
            .stderr(log.reopen().expect("reshard log"))
            .spawn()
            .expect("redis-cli on PATH");
        Reshard {
            child: Some(child),
            log,
            started: Instant::now(),
            what: format!("{slots} slots from node {from} to node {to}"),
        }
    }
}

/// A running `redis-cli --cluster reshard`; killed (by PID) if dropped before it finished.
#[derive(Debug)]
pub struct Reshard {
    child: Option<Child>,
    log: tempfile::NamedTempFile,
    started: Instant,
    what: String,
}

impl Reshard {
    /// Whether `redis-cli` has exited.
    pub fn is_finished(&mut self) -> bool {
        !matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Waits for `redis-cli` to exit, panicking with its output if it failed; returns how long
    /// the reshard took.
    pub fn wait(mut self) -> Duration {
        let mut child = self.child.take().expect("a reshard runs until waited for");
        let status = child.wait().expect("wait for redis-cli");
        let took = self.started.elapsed();
        if !status.success() {
            let output = std::fs::read_to_string(self.log.path()).unwrap_or_default();
            let tail: Vec<&str> = output.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!("reshard of {} failed ({status}):\n{}", self.what, tail.join("\n"));
        }
        took
    }
}

impl Drop for Reshard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_are_parsed_with_ranges_single_slots_and_migrations() {
        let text = "\
a1 127.0.0.1:7000@17000,host myself,master - 0 0 1 connected 0-5460 7000 [93->-b2]
b2 127.0.0.1:7001@17001 slave a1 0 0 1 connected
c3 127.0.0.1:7002@17002 master,fail - 0 0 2 disconnected
";
        let entries = parse_nodes(text).expect("parses");
        assert_eq!(entries.len(), 3);
        assert!(entries[0].myself && entries[0].master && entries[0].open_slots);
        assert_eq!(entries[0].slots, vec![(0, 5460), (7000, 7000)]);
        assert_eq!(entries[1].master_id.as_deref(), Some("a1"));
        assert_eq!(entries[1].port, 7001);
        assert!(entries[2].unhealthy && entries[2].slots.is_empty());
    }
}
