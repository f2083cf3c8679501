//! Network destinations: parse a URL the way the server will, find every address it can reach,
//! and judge it against the network policy. (Stub: being written.)

use std::net::IpAddr;

use serde::Serialize;

use super::World;
use crate::policy::NetworkPolicy;

/// Parse an IP literal as written in a policy (`1.2.3.4`, `::1`, `[::1]`). Strict: no
/// shorthand forms.
pub fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    let h = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    h.parse().ok()
}

/// A URL the policy admitted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Destination {
    /// Lower-case host, no trailing dot; the canonical text for IP literals.
    pub host: String,
    pub port: u16,
    pub scheme: String,
    /// Every address checked (empty when the host was not resolved).
    pub addresses: Vec<IpAddr>,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRefusal {
    /// `network.mode`, `network.allowed_hosts`, `network.metadata`, `network.private`,
    /// `network.url`, `network.resolve`.
    pub rule: &'static str,
    pub reason: String,
    /// `host:port` (or the URL as written when it could not be parsed).
    pub target: String,
}

/// Judge a URL against the network policy.
pub fn check_url(_written: &str, _policy: &NetworkPolicy, _world: &dyn World) -> Result<Destination, NetRefusal> {
    Err(NetRefusal { rule: "network.url", reason: "network checks are not implemented yet".into(), target: String::new() })
}
