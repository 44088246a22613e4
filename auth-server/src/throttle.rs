//! Login and registration throttling, and the client address it is keyed on.
//!
//! The counters live in Redis (see [`crate::store::throttle`]), so every auth-server instance
//! sees the same ones. Only a *verified* wrong password counts as a failure (an unknown
//! username counts exactly like one: the same answer, the same time, the same counters);
//! nothing is counted before the password check, so concurrent correct logins never refuse
//! each other. Three counters, each with its own limit within `AUTH_LOGIN_FAILURE_WINDOW`:
//!
//! - **the pair** (username, client address): past `AUTH_LOGIN_MAX_FAILURES` failures, a hard
//!   lockout of `AUTH_LOGIN_LOCKOUT`, doubled at each further one up to
//!   `AUTH_LOGIN_LOCKOUT_MAX`: every login of that username from that address is refused,
//!   even with the right password, before any check. An attacker locks only their own pair.
//! - **the address** (across usernames): past `AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS`, the same
//!   doubling lockout for the attacker's address, for every username that has not logged in
//!   from it before.
//! - **the username** (across addresses): past `AUTH_LOGIN_MAX_FAILURES_PER_USERNAME` (a much
//!   higher limit), the same doubling lockout, but only for addresses that have not logged this
//!   user in before: a distributed guesser is slowed down, the owner at a known address never is.
//!
//! A successful login remembers its address bucket for the user (at most
//! [`KNOWN_ADDRESSES_PER_USER`], each for [`KNOWN_ADDRESS_LIFETIME`] after its last login) and
//! clears its pair's failures, not the address's or the username's (an attacker logging into
//! an account of their own must not reset them). A burst of concurrent guesses is counted when
//! each hash ends: it can overshoot a limit by the guesses in flight (bounded by
//! `AUTH_HASH_CONCURRENCY + AUTH_HASH_QUEUE` per instance), and then each further `max`
//! failures doubles the lockout again, so a burst goes to the cap at once.
//!
//! Registration: at most `AUTH_REGISTER_MAX_PER_ADDRESS` attempts per client address per
//! `AUTH_REGISTER_WINDOW`.
//!
//! IPv6 clients are counted per /64 (one customer's network), IPv4 per address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use ipnet::IpNet;
use ipnet::Ipv4Net;

/// How many addresses a user's successful logins are remembered from (the most recent).
pub const KNOWN_ADDRESSES_PER_USER: u32 = 16;
/// How long an address stays known after its last successful login of the user.
pub const KNOWN_ADDRESS_LIFETIME: Duration = Duration::from_secs(90 * 86_400);

/// The throttling thresholds (from the settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Failures allowed per (username, address) pair within the window (hard lockout).
    pub max_failures_per_pair: u32,
    /// Failures allowed per client address within the window, across usernames.
    pub max_failures_per_address: u32,
    /// Failures allowed per username within the window, across addresses (locks out only
    /// addresses that have not logged the user in before).
    pub max_failures_per_username: u32,
    /// How long failures are remembered after the last one.
    pub failure_window: Duration,
    /// The first lockout; each further one doubles it.
    pub lockout: Duration,
    /// The longest lockout.
    pub lockout_max: Duration,
    /// Registrations allowed per client address within [`Self::register_window`].
    pub max_registrations_per_address: u32,
    /// The registration window.
    pub register_window: Duration,
}

/// What Redis says about a login before its password is checked (ms left of each lockout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginLocks {
    /// The (username, address) pair's lockout.
    pub pair_ms: u64,
    /// The address's lockout.
    pub address_ms: u64,
    /// The username-wide lockout.
    pub username_ms: u64,
    /// Whether this address has logged this user in before.
    pub known_address: bool,
}

impl LoginLocks {
    /// `Some(ms to wait)` when the login must be refused before its password is checked: the
    /// pair's lockout always; the address's and the username's only for an address that has
    /// not logged this user in before.
    pub fn refusal(&self) -> Option<u64> {
        let mut wait = self.pair_ms;
        if !self.known_address {
            wait = wait.max(self.address_ms).max(self.username_ms);
        }
        (wait > 0).then_some(wait)
    }
}

/// Whole seconds for `Retry-After`, rounded up, at least 1.
pub fn retry_after_secs(wait_ms: u64) -> u64 {
    wait_ms.div_ceil(1000).max(1)
}

/// Parses an IP network of `AUTH_TRUSTED_PROXIES`: `addr/prefix` or a bare address (one host).
/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is its IPv4 network, as peers are
/// compared in canonical form.
pub fn parse_net(text: &str) -> Option<IpNet> {
    let net = if text.contains('/') {
        text.parse::<IpNet>().ok()?
    } else {
        IpNet::from(text.parse::<IpAddr>().ok()?)
    };
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
    {
        return Ipv4Net::new(v4, v6.prefix_len() - 96).ok().map(IpNet::V4);
    }
    Some(net)
}

/// `AUTH_TRUSTED_PROXIES`: the reverse proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a list of IPs and CIDRs separated by commas or spaces; empty trusts nobody.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()) {
            nets.push(parse_net(item).ok_or_else(|| format!("`{item}` is not an IP or CIDR"))?);
        }
        Ok(Self(nets))
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }

    /// The client address of a request from `peer` carrying the `X-Forwarded-For` header
    /// values `forwarded_for` (in the order received). The header is read only when the peer
    /// is a trusted proxy; then the client is the right-most address that is not a trusted
    /// proxy (each proxy appends the address it got the request from, so addresses left of
    /// an untrusted hop may be forged). An entry that does not parse stops the walk at the
    /// last trusted hop.
    pub fn client_addr<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            let mut forwarded_for = forwarded_for;
            if forwarded_for.next().is_some() {
                warn_untrusted_forwarding(client);
            }
            return client;
        }
        for value in forwarded_for.rev() {
            for item in value.rsplit(',') {
                let Some(ip) = parse_forwarded_item(item) else {
                    return client;
                };
                client = ip;
                if !self.trusts(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

/// Logs, once per process, that `X-Forwarded-For` came from a peer that is not trusted: behind
/// a reverse proxy that is not in `AUTH_TRUSTED_PROXIES`, every client shares the proxy's
/// throttling buckets (one lockout for everyone). The header itself is ignored.
fn warn_untrusted_forwarding(peer: IpAddr) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "X-Forwarded-For from {peer}, which is not in AUTH_TRUSTED_PROXIES, is ignored: if a \
             reverse proxy forwards requests from there, every client behind it shares one \
             throttling bucket (one lockout for all of them); set AUTH_TRUSTED_PROXIES to the \
             proxy's address or network (e.g. AUTH_TRUSTED_PROXIES={peer}); see \
             docs/hardening.md. Logged once."
        );
    }
}

/// One `X-Forwarded-For` entry: an IP, `[v6]`, `[v6]:port` or `v4:port`.
fn parse_forwarded_item(item: &str) -> Option<IpAddr> {
    let item = item.trim();
    if let Ok(ip) = item.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = item.parse::<SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    let inner = item.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(|ip| IpAddr::V6(ip).to_canonical())
}

/// The throttling bucket of a client address: the address for IPv4, its /64 for IPv6.
pub fn address_bucket(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let trusts = |nets: &str, addr: &str| TrustedProxies::parse(nets).unwrap().trusts(ip(addr));
        assert!(trusts("10.1.0.0/16", "10.1.200.3"));
        assert!(!trusts("10.1.0.0/16", "10.2.0.1"));
        assert!(trusts("10.1.0.0/16", "::ffff:10.1.0.9"), "IPv4-mapped IPv6 is the IPv4 address");
        assert!(trusts("::ffff:10.1.0.0/112", "10.1.0.9"), "and a mapped network its IPv4 one");
        assert!(trusts("0.0.0.0/0", "8.8.8.8"));
        assert!(trusts("::1", "::1"));
        assert!(trusts("192.0.2.7", "192.0.2.7"));
        assert!(!trusts("192.0.2.7", "192.0.2.8"));
        assert!(trusts("fd00::/8", "fd12::1"));
        assert!(!trusts("fd00::/8", "10.0.0.1"));
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0.1/", "10.0.0.1/-1", "x", "10.0.0.1/+8"] {
            assert!(parse_net(bad).is_none(), "{bad}");
        }
        assert!(TrustedProxies::parse("10.0.0.1, 172.16.0.0/12 ::1").unwrap().nets().len() == 3);
        assert!(TrustedProxies::parse("10.0.0.1,nope").unwrap_err().contains("nope"));
        assert!(TrustedProxies::parse("").unwrap().nets().is_empty());
    }

    #[test]
    fn forwarded_for_is_read_only_from_a_trusted_peer() {
        let none = TrustedProxies::default();
        assert_eq!(none.client_addr(ip("10.0.0.1"), ["1.2.3.4"].into_iter()), ip("10.0.0.1"));

        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // The right-most untrusted address, not the left-most (forgeable) one.
        let got = trusted.client_addr(ip("10.0.0.1"), ["6.6.6.6, 1.2.3.4, 10.0.0.2"].into_iter());
        assert_eq!(got, ip("1.2.3.4"));
        // Several headers are one list, in order.
        let got = trusted.client_addr(ip("10.0.0.1"), ["6.6.6.6", "1.2.3.4"].into_iter());
        assert_eq!(got, ip("1.2.3.4"));
        // Only proxies: the left-most of them.
        let got = trusted.client_addr(ip("10.0.0.1"), ["10.0.0.9, 10.0.0.8"].into_iter());
        assert_eq!(got, ip("10.0.0.9"));
        // Garbage stops at the last trusted hop.
        let got = trusted.client_addr(ip("10.0.0.1"), ["1.2.3.4, garbage"].into_iter());
        assert_eq!(got, ip("10.0.0.1"));
        // Ports and brackets.
        let got = trusted.client_addr(ip("10.0.0.1"), ["[2001:db8::1]:443"].into_iter());
        assert_eq!(got, ip("2001:db8::1"));
        let got = trusted.client_addr(ip("10.0.0.1"), ["192.0.2.1:8080"].into_iter());
        assert_eq!(got, ip("192.0.2.1"));
        // No header: the peer.
        assert_eq!(trusted.client_addr(ip("10.0.0.1"), std::iter::empty()), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        assert_eq!(address_bucket(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(address_bucket(ip("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(address_bucket(ip("192.0.2.1")), "192.0.2.1");
    }

    #[test]
    fn only_the_pair_lock_refuses_a_known_address() {
        let none = LoginLocks::default();
        assert_eq!(none.refusal(), None);
        let pair = LoginLocks { pair_ms: 5, known_address: true, ..none };
        assert_eq!(pair.refusal(), Some(5), "the pair lock is hard");
        let wide = LoginLocks { address_ms: 7, username_ms: 9, ..none };
        assert_eq!(wide.refusal(), Some(9), "the longest lock of an unknown address");
        assert_eq!(LoginLocks { known_address: true, ..wide }.refusal(), None);
        assert_eq!(LoginLocks { pair_ms: 3, known_address: true, ..wide }.refusal(), Some(3));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1001), 2);
        assert_eq!(retry_after_secs(60_000), 60);
    }
}
