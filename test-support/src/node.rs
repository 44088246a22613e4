//! One `redis-server` process (data node or sentinel) in its own temp dir, killed by PID on drop.
//!
//! Ports come from [`crate::free_ports`], so another process may grab one before Redis binds it;
//! a node is only "ready" when the server answering on its port reports *our* child's PID, and a
//! fresh node that lost such a race is started again on new ports.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access::{Access, Login};

/// How long one node may take to accept commands (AOF loading included).
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the harness retries a fresh node that lost its port to another process.
const PORT_ATTEMPTS: usize = 3;

/// What kind of process a node runs; decides the config file and the start flags.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A data node; `extra` is appended to its config (cluster, `replicaof`, ...).
    Data { cluster: bool, extra: String },
    /// A sentinel (`redis-server <conf> --sentinel`); `monitor` holds its `sentinel ...` lines.
    Sentinel { monitor: String },
}

/// Why a start failed.
#[derive(Debug)]
pub(crate) enum StartError {
    /// Something else holds one of our ports.
    PortTaken,
    /// The process exited or never answered; the message carries its log tail.
    Failed(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PortTaken => f.write_str("a port was taken by another process"),
            Self::Failed(why) => f.write_str(why),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Node {
    access: Arc<Access>,
    kind: Kind,
    dir: tempfile::TempDir,
    port: u16,
    /// Cluster bus port, chosen explicitly: the default `port + 10000` may be taken or > 65535.
    bus_port: Option<u16>,
    child: Option<Child>,
}

impl Node {
    /// A node with fresh ports and its config written; not started.
    pub(crate) fn new(access: Arc<Access>, kind: Kind) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for a redis node");
        let cluster = matches!(kind, Kind::Data { cluster: true, .. });
        let ports = crate::free_ports(if cluster { 2 } else { 1 });
        let mut node = Self {
            access,
            kind,
            dir,
            port: ports[0],
            bus_port: ports.get(1).copied(),
            child: None,
        };
        node.write_conf();
        node
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join(match self.kind {
            Kind::Data { .. } => "redis.conf",
            Kind::Sentinel { .. } => "sentinel.conf",
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// (Re)writes the config file. Sentinels rewrite theirs while running (known replicas and
    /// peers), so this is only called before their first start.
    pub(crate) fn write_conf(&mut self) {
        let mut conf = self.access.listen_conf(self.port);
        conf.push_str(&format!(
            "bind 127.0.0.1\ndir {}\nlogfile {}\ndaemonize no\nprotected-mode no\nsave \"\"\n",
            crate::access::quote(&self.dir.path().to_string_lossy()),
            crate::access::quote(&self.log_path().to_string_lossy()),
        ));
        match &self.kind {
            Kind::Data { cluster, extra } => {
                conf.push_str(&self.access.data_conf());
                // A replica's first sync would otherwise wait 5 s for more replicas to join.
                conf.push_str("repl-diskless-sync-delay 0\n");
                if *cluster {
                    let bus = self.bus_port.expect("a cluster node has a bus port");
                    conf.push_str(&format!("cluster-enabled yes\ncluster-port {bus}\n"));
                }
                conf.push_str(extra);
            }
            Kind::Sentinel { monitor } => conf.push_str(monitor),
        }
        std::fs::write(self.conf_path(), conf).expect("write redis config");
    }

    /// Replaces the role-specific config lines (e.g. `replicaof`) for the next start.
    pub(crate) fn set_extra_conf(&mut self, new_extra: String) {
        if let Kind::Data { extra, .. } = &mut self.kind {
            *extra = new_extra;
        }
        self.write_conf();
    }

    pub(crate) fn spawn(&mut self) {
        assert!(self.child.is_none(), "node on port {} is already running", self.port);
        let mut cmd = Command::new("redis-server");
        cmd.arg(self.conf_path());
        if matches!(self.kind, Kind::Sentinel { .. }) {
            cmd.arg("--sentinel");
        }
        let child = cmd
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)");
        self.child = Some(child);
    }

    /// Waits until the server on our port is our child and answers commands.
    pub(crate) fn wait_ready(&mut self) -> Result<(), StartError> {
        let login = match self.kind {
            Kind::Data { .. } => Login::Admin,
            Kind::Sentinel { .. } => Login::Sentinel,
        };
        let client = self.access.client(&self.access.url(self.port, login));
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            let Some(child) = self.child.as_mut() else {
                return Err(StartError::Failed(format!(
                    "node on port {} is not running",
                    self.port
                )));
            };
            let pid = child.id();
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let log = self.log_tail();
                return Err(if log.contains("Address already in use") {
                    StartError::PortTaken
                } else {
                    StartError::Failed(format!(
                        "redis-server on port {} exited ({status}):\n{log}",
                        self.port
                    ))
                });
            }
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(500)) {
                let info: redis::RedisResult<String> =
                    redis::cmd("INFO").arg("server").query(&mut conn);
                if let Ok(info) = info
                    && crate::info_field(&info, "process_id") == Some(pid.to_string().as_str())
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(StartError::Failed(format!(
            "redis-server on port {} did not get ready in {READY_TIMEOUT:?}:\n{}",
            self.port,
            self.log_tail()
        )))
    }

    /// Starts again on the same ports and files (a node other nodes know by its address).
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
        if let Err(e) = self.wait_ready() {
            panic!("restarting the node on port {}: {e}", self.port);
        }
    }

    /// SIGKILL (by PID) and reap; a no-op when not running.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP (`stop`) or SIGCONT by PID: a stopped node keeps its sockets open (the kernel
    /// still accepts connections) but answers nothing, like a node stuck under load.
    pub(crate) fn signal_stop(&self, stop: bool) {
        let Some(child) = self.child.as_ref() else { panic!("node {} is not running", self.port) };
        let signal = if stop { "-STOP" } else { "-CONT" };
        let status = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} on the node on port {}", self.port);
    }

    /// Whether our process is alive (reaps it if it died).
    pub(crate) fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    pub(crate) fn url(&self, login: Login<'_>) -> String {
        self.access.url(self.port, login)
    }

    pub(crate) fn client(&self, login: Login<'_>) -> redis::Client {
        self.access.client(&self.url(login))
    }

    /// An admin connection (for sentinels: their own login, if any) with timeouts, so a poll never hangs.
    pub(crate) fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        let login = match self.kind {
            Kind::Data { .. } => Login::Admin,
            Kind::Sentinel { .. } => Login::Sentinel,
        };
        let conn = self.client(login).get_connection_with_timeout(Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        conn.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(conn)
    }

    pub(crate) fn connection(&self) -> redis::Connection {
        self.try_connection()
            .unwrap_or_else(|e| panic!("connection to the node on port {}: {e}", self.port))
    }

    /// Runs `cmd` on this node as the admin.
    pub(crate) fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        cmd.query(&mut self.try_connection()?)
    }

    /// The end of the node's log, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// New ports after losing a port race; only for a node nobody knows yet.
    fn reallocate_ports(&mut self) {
        let ports = crate::free_ports(if self.bus_port.is_some() { 2 } else { 1 });
        self.port = ports[0];
        self.bus_port = ports.get(1).copied();
        self.write_conf();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts fresh nodes in parallel (spawn all, then wait for each), moving any that lost a port
/// race to new ports. Nodes that fail are killed on drop by their owner.
pub(crate) fn start_all(nodes: &mut [&mut Node]) {
    let mut pending: Vec<usize> = (0..nodes.len()).collect();
    for attempt in 1..=PORT_ATTEMPTS {
        for &i in &pending {
            nodes[i].spawn();
        }
        let mut retry = Vec::new();
        for &i in &pending {
            match nodes[i].wait_ready() {
                Ok(()) => {}
                Err(StartError::PortTaken) if attempt < PORT_ATTEMPTS => {
                    nodes[i].reallocate_ports();
                    retry.push(i);
                }
                Err(e) => panic!("starting redis-server: {e}"),
            }
        }
        if retry.is_empty() {
            return;
        }
        pending = retry;
    }
}
