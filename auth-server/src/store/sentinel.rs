//! [`SentinelMaster`]: the master of a Sentinel group as the store's connection sees it: looked
//! up from every sentinel by the newest configuration epoch, looked up again after it fails,
//! and asked whether a write no replica acknowledged may be answered ([`SentinelMaster::alone`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use redis::{
    ConnectionAddr, IntoConnectionInfo as _, RedisConnectionInfo, RedisError, RedisResult,
};
use secrecy::ExposeSecret as _;

use super::conn::manager_config;
use crate::config::SentinelLogin;

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
    pub(super) current: ArcSwapOption<Master>,
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
    pub(super) addr: String,
    pub(super) conn: ConnectionManager,
}

impl SentinelMaster {
    /// The master named `master` by the sentinels at `urls` (see `Conn::sentinel`).
    pub(super) fn new(
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
        Ok(Self {
            name: master.to_owned(),
            sentinels,
            login,
            tls,
            newest_epoch: tokio::sync::Mutex::new(0),
            current: ArcSwapOption::empty(),
            looked_up: std::sync::atomic::AtomicBool::new(false),
            verdict: std::sync::Mutex::new(None),
        })
    }

    /// The master in use, looked up if there is none.
    pub(super) async fn connection(&self) -> RedisResult<(Arc<Master>, ConnectionManager)> {
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
    pub(super) async fn alone(&self, used: &Arc<Master>) -> RedisResult<bool> {
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
        self.forget(used, format_args!("moved to {}", named.addr));
        Ok(false)
    }

    /// Drops the [`Self::alone`] verdict: a live replica was seen, so the next unreplicated
    /// write (e.g. on a master whose replica was just promoted) asks the sentinels afresh.
    pub(super) fn forget_verdict(&self) {
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
    pub(super) fn check(&self, used: &Arc<Master>, error: Option<&RedisError>) {
        let Some(error) = error else { return };
        if !master_may_have_changed(error) {
            return;
        }
        let code = error.code().unwrap_or("connection");
        self.forget(used, format_args!("failed ({code}); asking the sentinels again"));
    }

    /// Stops using `used` (if it is still the master in use), so that the next call looks the
    /// master up again; logs `why` once, from the call that dropped it.
    fn forget(&self, used: &Arc<Master>, why: std::fmt::Arguments<'_>) {
        let previous = self.current.compare_and_swap(used, None::<Arc<Master>>);
        if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, used)) {
            log::warn!("redis sentinel: master {:?} at {} {why}", self.name, used.addr);
        }
    }
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
