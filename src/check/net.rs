//! Network destinations: parse a URL the way the server will, find every address it can reach,
//! and judge it against the network policy.
//!
//! The check is fail-closed at every step:
//!
//! 1. **Strict parsing** ([`parse_url`]): only `http`/`https`; no control characters or
//!    whitespace anywhere; no backslash, non-ASCII, percent-encoding in the host, or second `@`
//!    in the authority (the spots where URL parsers disagree). The host is then taken from the
//!    WHATWG parser (`url`), which normalises every IPv4 spelling (`127.1`, `2130706433`,
//!    `0x7f000001`, `0177.0.0.1`, `127.0.0.1.`).
//! 2. **Addresses** ([`classify`]): IPv6 forms that embed an IPv4 address (mapped, compatible,
//!    translated, NAT64, 6to4, Teredo) are judged as that IPv4 address.
//! 3. **Decision** ([`check_url`]): cloud metadata is never reachable; `mode: none` reaches
//!    nothing; `mode: allowlist` needs an `allowed_hosts` match; then every address the host
//!    has must be public unless the user opted in (an exact `allowed_hosts` entry or an
//!    `allow_*` flag).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;
use url::{Host, Url};

use super::rules::host_matches;
use super::World;
use crate::policy::{HostPattern, NetworkMode, NetworkPolicy, RuleId};

/// Parse an IP literal as written in a policy (`1.2.3.4`, `::1`, `[::1]`). Strict: no
/// shorthand forms.
pub(crate) fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.parse().ok()
}

/// A URL the policy admitted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Destination {
    /// Lower-case host, no trailing dot; the canonical text for IP literals.
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) scheme: String,
    /// Every address checked (empty when the host was not resolved).
    pub(crate) addresses: Vec<IpAddr>,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetRefusal {
    /// `network.mode`, `network.allowed_hosts`, `network.metadata`, `network.private`,
    /// `network.url`, `network.resolve`.
    pub(crate) rule: RuleId,
    pub(crate) reason: String,
    /// `host:port` (or the URL as written when it could not be parsed).
    pub(crate) target: String,
}

// ---------------------------------------------------------------------------------------------
// Address classification
// ---------------------------------------------------------------------------------------------

/// What kind of network an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AddressClass {
    /// A cloud instance-metadata endpoint: never reachable.
    CloudMetadata,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `fc00::/7` (admitted with `allow_private`).
    UniqueLocal,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// `100.64/10` shared address space (admitted with `allow_private`).
    Cgnat,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Reserved, documentation and benchmarking ranges, and IPv6 outside `2000::/3`.
    Reserved,
    /// Anything else.
    Public,
}

impl AddressClass {
    /// Short human label for messages.
    pub(crate) fn label(self) -> &'static str {
        match self {
            AddressClass::CloudMetadata => "cloud metadata",
            AddressClass::Loopback => "loopback",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Private => "private",
            AddressClass::UniqueLocal => "unique local",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Cgnat => "shared/CGNAT",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved/documentation",
            AddressClass::Public => "public",
        }
    }

    pub(crate) fn is_public(self) -> bool {
        self == AddressClass::Public
    }

    /// The policy flag that admits this class, if any flag can.
    pub(crate) fn opt_in_flag(self) -> Option<&'static str> {
        match self {
            AddressClass::Loopback => Some("network.allow_loopback"),
            AddressClass::Private | AddressClass::UniqueLocal | AddressClass::Cgnat => {
                Some("network.allow_private")
            }
            AddressClass::LinkLocal => Some("network.allow_link_local"),
            _ => None,
        }
    }

    /// Is this class admitted, given whether the host matched an exact `allowed_hosts` entry
    /// and the policy's opt-in flags? Metadata, unspecified, multicast, broadcast and reserved
    /// are never admitted.
    pub(crate) fn admitted(self, exact_entry: bool, policy: &NetworkPolicy) -> bool {
        match self {
            AddressClass::Public => true,
            AddressClass::Loopback => exact_entry || policy.allow_loopback,
            AddressClass::Private | AddressClass::UniqueLocal | AddressClass::Cgnat => {
                exact_entry || policy.allow_private
            }
            AddressClass::LinkLocal => exact_entry || policy.allow_link_local,
            AddressClass::CloudMetadata
            | AddressClass::Unspecified
            | AddressClass::Multicast
            | AddressClass::Broadcast
            | AddressClass::Reserved => false,
        }
    }
}

const fn v4net(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6net(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
    )
}

/// Cloud metadata endpoints: AWS/GCP/Azure/OpenStack/Oracle, AWS ECS task metadata, Alibaba,
/// Oracle's second endpoint, Azure's WireServer.
const METADATA_V4: [Ipv4Addr; 5] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(192, 0, 0, 192),
    Ipv4Addr::new(168, 63, 129, 16),
];

/// AWS IMDS over IPv6.
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)];

/// Non-public IPv4 ranges; the first match wins (broadcast before `240/4`).
const V4_RANGES: [(Ipv4Net, AddressClass); 16] = [
    (v4net(0, 0, 0, 0, 8), AddressClass::Unspecified),
    (v4net(127, 0, 0, 0, 8), AddressClass::Loopback),
    (v4net(10, 0, 0, 0, 8), AddressClass::Private),
    (v4net(172, 16, 0, 0, 12), AddressClass::Private),
    (v4net(192, 168, 0, 0, 16), AddressClass::Private),
    (v4net(100, 64, 0, 0, 10), AddressClass::Cgnat),
    (v4net(169, 254, 0, 0, 16), AddressClass::LinkLocal),
    (v4net(224, 0, 0, 0, 4), AddressClass::Multicast),
    (v4net(255, 255, 255, 255, 32), AddressClass::Broadcast),
    (v4net(240, 0, 0, 0, 4), AddressClass::Reserved),
    (v4net(192, 0, 0, 0, 24), AddressClass::Reserved),
    (v4net(192, 0, 2, 0, 24), AddressClass::Reserved),
    (v4net(198, 18, 0, 0, 15), AddressClass::Reserved),
    (v4net(198, 51, 100, 0, 24), AddressClass::Reserved),
    (v4net(203, 0, 113, 0, 24), AddressClass::Reserved),
    (v4net(192, 88, 99, 0, 24), AddressClass::Reserved),
];

/// IPv6 ranges checked after embedded IPv4 forms; the first match wins. An address that
/// matches none of them is [`AddressClass::Reserved`].
const V6_RANGES: [(Ipv6Net, AddressClass); 11] = [
    (
        v6net([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        AddressClass::UniqueLocal,
    ),
    (
        v6net([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        AddressClass::LinkLocal,
    ),
    (
        v6net([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        AddressClass::Reserved,
    ), // deprecated site-local
    (
        v6net([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        AddressClass::Multicast,
    ),
    (
        v6net([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        AddressClass::Reserved,
    ),
    (
        v6net([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        AddressClass::Reserved,
    ),
    (
        v6net([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48),
        AddressClass::Reserved,
    ),
    (
        v6net([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28),
        AddressClass::Reserved,
    ),
    (
        v6net([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28),
        AddressClass::Reserved,
    ),
    (
        v6net([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        AddressClass::Reserved,
    ),
    (
        v6net([0x2000, 0, 0, 0, 0, 0, 0, 0], 3),
        AddressClass::Public,
    ),
];

/// IPv6 prefixes whose last 32 bits are an IPv4 address.
const EMBED_LAST32: [Ipv6Net; 4] = [
    v6net([0, 0, 0, 0, 0, 0, 0, 0], 96), // IPv4-compatible (deprecated)
    v6net([0, 0, 0, 0, 0xffff, 0, 0, 0], 96), // IPv4-translated (SIIT)
    v6net([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96), // NAT64 well-known prefix
    v6net([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), // NAT64 local-use (judged by its last 32 bits)
];
const SIX_TO_FOUR: Ipv6Net = v6net([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);
const TEREDO: Ipv6Net = v6net([0x2001, 0, 0, 0, 0, 0, 0, 0], 32);

/// The IPv4 address an IPv6 address stands for, if it embeds one: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, not `::` or `::1`), IPv4-translated,
/// NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`), 6to4 (`2002:AABB:CCDD::/48`) and Teredo (client
/// address = last 32 bits XOR `0xffffffff`).
pub(crate) fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if v6.is_unspecified() || v6.is_loopback() {
        return None;
    }
    let o = v6.octets();
    let last32 = u32::from_be_bytes([o[12], o[13], o[14], o[15]]);
    if EMBED_LAST32.iter().any(|n| n.contains(&v6)) {
        return Some(Ipv4Addr::from(last32));
    }
    if SIX_TO_FOUR.contains(&v6) {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    if TEREDO.contains(&v6) {
        return Some(Ipv4Addr::from(last32 ^ 0xffff_ffff));
    }
    None
}

/// The one address that stands for `ip` when comparing: IPv4-mapped IPv6 addresses become
/// their IPv4 address (they reach the same socket); everything else is unchanged. (NAT64,
/// 6to4, Teredo are distinct addresses routed through a gateway; they are only *classified*
/// as their embedded IPv4 address.)
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Classify an address; IPv6 addresses embedding an IPv4 address are judged as that address.
pub(crate) fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    if METADATA_V4.contains(&ip) {
        return AddressClass::CloudMetadata;
    }
    V4_RANGES
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map_or(AddressClass::Public, |(_, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if METADATA_V6.contains(&ip) {
        return AddressClass::CloudMetadata;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if let Some(v4) = embedded_ipv4(ip) {
        return classify_v4(v4);
    }
    V6_RANGES
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map_or(AddressClass::Reserved, |(_, class)| *class)
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// Names of cloud metadata services (refused before any resolution).
const METADATA_NAMES: [&str; 5] = [
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Names that are loopback without asking a resolver (RFC 6761 and common `/etc/hosts`).
const LOOPBACK_NAMES: [&str; 4] = [
    "localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "ip6-loopback",
];

/// Lower-case, without trailing dots.
pub(crate) fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Is `host` (normalised) a cloud metadata service name?
pub(crate) fn is_metadata_name(host: &str) -> bool {
    METADATA_NAMES.contains(&host)
}

/// Is `host` (normalised) `localhost`, a sub-domain of it, or another loopback name?
pub(crate) fn is_loopback_name(host: &str) -> bool {
    LOOPBACK_NAMES.contains(&host) || host.ends_with(".localhost")
}

// ---------------------------------------------------------------------------------------------
// Strict URL parsing
// ---------------------------------------------------------------------------------------------

/// What a URL's host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// An IP literal, as the URL parser read it (any IPv4 spelling already normalised).
    Ip(IpAddr),
    /// A host name: lower-case, no trailing dot, ASCII.
    Name(String),
}

impl Target {
    /// Canonical host text: the name, or the canonical address without brackets.
    pub(crate) fn host_text(&self) -> String {
        match self {
            Target::Ip(ip) => canonical_ip(*ip).to_string(),
            Target::Name(n) => n.clone(),
        }
    }

    /// The host for messages; an IPv6 literal standing for an IPv4 address shows both.
    fn describe(&self) -> String {
        match self {
            Target::Ip(ip) => describe_ip(*ip),
            Target::Name(n) => n.clone(),
        }
    }
}

/// An address for messages: `127.0.0.1`, or `64:ff9b::7f00:1 (= 127.0.0.1)`.
fn describe_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some(v4) => format!("{v6} (= {v4})"),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// A URL that passed strict parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    /// `http` or `https`.
    pub(crate) scheme: String,
    pub(crate) target: Target,
    /// Explicit port, or 80/443.
    pub(crate) port: u16,
}

/// Parse a URL strictly; `Err` is a readable reason. Refuses control characters and
/// whitespace anywhere, schemes other than http(s), a missing `//`, and in the authority: a
/// backslash, non-ASCII, more than one `@`, or `%` in the host. Userinfo is accepted and
/// ignored. The host and port then come from the WHATWG parser.
pub(crate) fn parse_url(written: &str) -> Result<ParsedUrl, String> {
    if written.is_empty() {
        return Err("empty URL".into());
    }
    if let Some(c) = written
        .chars()
        .find(|c| c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "contains a control or whitespace character (U+{:04X})",
            c as u32
        ));
    }
    let (scheme, rest) = written
        .split_once(':')
        .ok_or("not an absolute URL (no scheme)")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "scheme `{}` is not allowed (only http and https)",
            shown(&scheme)
        ));
    }
    let after = rest
        .strip_prefix("//")
        .ok_or("expected `//` after the scheme")?;
    let authority = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
    check_authority(authority)?;
    let url = Url::parse(written).map_err(|e| format!("not a valid URL ({e})"))?;
    let port = match url.port_or_known_default() {
        Some(0) | None => return Err("port 0 is not a destination".into()),
        Some(p) => p,
    };
    let target = match url.host() {
        Some(Host::Ipv4(v4)) => Target::Ip(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => Target::Ip(IpAddr::V6(v6)),
        Some(Host::Domain(d)) => Target::Name(normalize_name(d)),
        None => return Err("empty host".into()),
    };
    if target == Target::Name(String::new()) {
        return Err("empty host".into());
    }
    Ok(ParsedUrl {
        scheme,
        target,
        port,
    })
}

/// The authority checks where URL parsers disagree (WHATWG turns `\` into `/`, Python does
/// not; parsers split `a@b@c` differently; WHATWG percent-decodes and IDNA-maps hosts).
fn check_authority(authority: &str) -> Result<(), String> {
    if authority.contains('\\') {
        return Err("backslash in the authority (URL parsers disagree on `\\`)".into());
    }
    if !authority.is_ascii() {
        return Err("non-ASCII characters in the host (write the punycode `xn--` form)".into());
    }
    if authority.matches('@').count() > 1 {
        return Err("more than one `@` in the authority".into());
    }
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    if host_port.contains('%') {
        return Err("percent-encoding in the host".into());
    }
    if host_port.is_empty() || host_port.starts_with(':') {
        return Err("empty host".into());
    }
    Ok(())
}

/// A string for messages: control characters escaped, at most 200 characters.
fn shown(s: &str) -> String {
    const MAX: usize = 200;
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Allowlist
// ---------------------------------------------------------------------------------------------

/// How a host matched `allowed_hosts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostMatch {
    /// An entry naming exactly this host (or IP): the user's explicit choice.
    Exact,
    /// Only a `*.domain` entry.
    Wildcard,
}

/// Match a target against `allowed_hosts`; an exact entry wins over a wildcard. Names use
/// [`host_matches`]; IP literals only match entries that are the same address (compared after
/// [`canonical_ip`]), never name or wildcard entries.
pub(crate) fn allowlist_match(
    patterns: &[HostPattern],
    target: &Target,
    port: u16,
) -> Option<HostMatch> {
    let mut found = None;
    for p in patterns {
        let hit = entry_admits_port(p, port)
            && match target {
                Target::Ip(ip) => pattern_names_ip(p, *ip, port),
                Target::Name(n) => host_matches(p, n, port),
            };
        if hit && !p.wildcard {
            return Some(HostMatch::Exact);
        }
        if hit {
            found = Some(HostMatch::Wildcard);
        }
    }
    found
}

/// The ports an `allowed_hosts` entry without a port stands for: the web's default ports, and
/// the only ones the kernel layer opens for it (sandbox/plan.rs). One meaning in both layers.
pub(crate) const PORTLESS_ENTRY_PORTS: [u16; 2] = [80, 443];

/// Does entry `p` admit `port`? `host:port` admits that port; a bare `host` 80 and 443 only.
pub(crate) fn entry_admits_port(p: &HostPattern, port: u16) -> bool {
    match p.port {
        Some(pp) => pp == port,
        None => PORTLESS_ENTRY_PORTS.contains(&port),
    }
}

/// The refusal text for a destination no entry admits: when an entry names the host on other
/// ports, say so and show the entry to write.
fn allowlist_refusal(patterns: &[HostPattern], target: &Target, host: &str, port: u16) -> String {
    let hp = host_port(host, port);
    let same_host: Vec<&HostPattern> = patterns
        .iter()
        .filter(|p| {
            let any = HostPattern {
                port: None,
                ..(*p).clone()
            };
            match target {
                Target::Ip(ip) => pattern_names_ip(&any, *ip, port),
                Target::Name(n) => host_matches(&any, n, port),
            }
        })
        .collect();
    match same_host.first() {
        None => format!("{hp} is not in network.allowed_hosts"),
        Some(p) => {
            let covers = match p.port {
                Some(pp) => format!("port {pp} only"),
                None => "ports 80 and 443 only".to_string(),
            };
            let bare = if p.wildcard {
                format!("*.{}", p.host)
            } else {
                p.host.clone()
            };
            format!(
                "{hp} is not in network.allowed_hosts: the entry `{}` stands for {covers}; \
                 add `{}` to allow this port",
                p.written,
                host_port(&bare, port)
            )
        }
    }
}

/// Is `p` an entry for this IP address (and port)?
fn pattern_names_ip(p: &HostPattern, ip: IpAddr, port: u16) -> bool {
    !p.wildcard
        && p.port.is_none_or(|pp| pp == port)
        && parse_ip_literal(&p.host).is_some_and(|pip| canonical_ip(pip) == canonical_ip(ip))
}

// ---------------------------------------------------------------------------------------------
// The decision
// ---------------------------------------------------------------------------------------------

/// Judge a URL against the network policy.
///
/// Order: strict parsing (`network.url`); a metadata name or address (`network.metadata`,
/// always); `mode: none` (`network.private` for an internal literal or loopback name, else
/// `network.mode`); `mode: allowlist` match (`network.allowed_hosts`); then every address —
/// the literal, loopback for `localhost`, or everything `world.resolve_host` returns when
/// `policy.resolve` (`network.resolve` when that fails or is empty) — must be public, or
/// admitted by an exact `allowed_hosts` entry or an `allow_*` flag (`network.private`,
/// `network.metadata`).
pub(crate) fn check_url(
    written: &str,
    policy: &NetworkPolicy,
    world: &dyn World,
) -> Result<Destination, NetRefusal> {
    let parsed = parse_url(written).map_err(|reason| NetRefusal {
        rule: RuleId::NetworkUrl,
        reason: format!("{reason}: {}", shown(written)),
        target: shown(written),
    })?;
    let host = parsed.target.host_text();
    let port = parsed.port;
    let refuse = |rule: RuleId, reason: String| NetRefusal {
        rule,
        reason,
        target: host_port(&host, port),
    };

    let static_class = static_class(&parsed.target);
    if static_class == Some(AddressClass::CloudMetadata) {
        return Err(refuse(
            RuleId::NetworkMetadata,
            metadata_reason(&parsed.target.describe(), None),
        ));
    }
    if policy.mode == NetworkMode::None {
        return Err(match static_class {
            Some(class) if !class.is_public() => refuse(
                RuleId::NetworkPrivate,
                internal_reason(&parsed.target.describe(), None, class),
            ),
            _ => refuse(
                RuleId::NetworkMode,
                format!("network access disabled (network.mode: none): {host}"),
            ),
        });
    }
    let matched = match policy.mode {
        NetworkMode::Allowlist => allowlist_match(&policy.allowed_hosts, &parsed.target, port),
        _ => None,
    };
    if policy.mode == NetworkMode::Allowlist && matched.is_none() {
        let reason = allowlist_refusal(&policy.allowed_hosts, &parsed.target, &host, port);
        return Err(refuse(RuleId::NetworkAllowedHosts, reason));
    }
    let addresses = addresses_to_check(&parsed.target, port, policy, world)
        .map_err(|r| refuse(RuleId::NetworkResolve, r))?;
    let exact = matched == Some(HostMatch::Exact);
    for &ip in &addresses {
        judge_address(&parsed.target, ip, exact, policy)
            .map_err(|(rule, reason)| refuse(rule, reason))?;
    }
    Ok(Destination {
        host,
        port,
        scheme: parsed.scheme,
        addresses,
    })
}

/// The class known without resolving: IP literals, metadata names, loopback names.
fn static_class(target: &Target) -> Option<AddressClass> {
    match target {
        Target::Ip(ip) => Some(classify(*ip)),
        Target::Name(n) if is_metadata_name(n) => Some(AddressClass::CloudMetadata),
        Target::Name(n) if is_loopback_name(n) => Some(AddressClass::Loopback),
        Target::Name(_) => None,
    }
}

/// Every address to judge: the literal; `127.0.0.1` and `::1` for loopback names; the
/// resolver's answer when `policy.resolve` (an error or no address is a refusal reason);
/// nothing otherwise.
fn addresses_to_check(
    target: &Target,
    port: u16,
    policy: &NetworkPolicy,
    world: &dyn World,
) -> Result<Vec<IpAddr>, String> {
    match target {
        Target::Ip(ip) => Ok(vec![*ip]),
        Target::Name(n) if is_loopback_name(n) => {
            Ok(vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()])
        }
        Target::Name(n) if policy.resolve => match world.resolve_host(n, port) {
            Ok(addrs) if addrs.is_empty() => {
                Err(format!("{n} resolves to no address (refused: fail closed)"))
            }
            Ok(mut addrs) => {
                addrs.dedup();
                Ok(addrs)
            }
            Err(e) => Err(format!("cannot resolve {n}: {e} (refused: fail closed)")),
        },
        Target::Name(_) => Ok(Vec::new()),
    }
}

/// Judge one address of the target: `Err((rule, reason))` when it may not be reached.
fn judge_address(
    target: &Target,
    ip: IpAddr,
    exact: bool,
    policy: &NetworkPolicy,
) -> Result<(), (RuleId, String)> {
    let class = classify(ip);
    let via = match target {
        Target::Name(_) => Some(ip),
        Target::Ip(_) => None,
    };
    match class {
        AddressClass::CloudMetadata => Err((
            RuleId::NetworkMetadata,
            metadata_reason(&target.describe(), via),
        )),
        c if c.admitted(exact, policy) => Ok(()),
        c => Err((
            RuleId::NetworkPrivate,
            internal_reason(&target.describe(), via, c),
        )),
    }
}

/// `cloud metadata endpoint is never reachable: 169.254.169.254`.
fn metadata_reason(host: &str, via: Option<IpAddr>) -> String {
    match via {
        Some(ip) => format!(
            "cloud metadata endpoint is never reachable: {host} resolves to {}",
            describe_ip(ip)
        ),
        None => format!("cloud metadata endpoint is never reachable: {host}"),
    }
}

/// `SSRF attempt to internal network: 127.0.0.1 (loopback; allow with ...)`.
fn internal_reason(host: &str, via: Option<IpAddr>, class: AddressClass) -> String {
    let what = match via {
        Some(ip) => format!("{host} resolves to {}", describe_ip(ip)),
        None => host.to_string(),
    };
    let how = match class.opt_in_flag() {
        Some(flag) => format!(
            "{}; allow with {flag} or an exact network.allowed_hosts entry",
            class.label()
        ),
        None => format!("{}; never allowed", class.label()),
    };
    format!("SSRF attempt to internal network: {what} ({how})")
}

/// `host:port`, with brackets around IPv6 addresses.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::io;

    /// A resolver that knows a few names and records every lookup.
    #[derive(Default)]
    struct FakeWorld {
        names: HashMap<String, Vec<IpAddr>>,
        lookups: RefCell<Vec<String>>,
    }

    impl FakeWorld {
        fn new(entries: &[(&str, &[&str])]) -> FakeWorld {
            let names = entries
                .iter()
                .map(|(n, addrs)| {
                    (
                        n.to_string(),
                        addrs.iter().map(|a| a.parse().unwrap()).collect(),
                    )
                })
                .collect();
            FakeWorld {
                names,
                lookups: RefCell::default(),
            }
        }
        fn lookups(&self) -> Vec<String> {
            self.lookups.borrow().clone()
        }
    }

    impl World for FakeWorld {
        fn resolve_host(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
            self.lookups.borrow_mut().push(host.to_string());
            self.names
                .get(host)
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
        }
    }

    fn world() -> FakeWorld {
        FakeWorld::new(&[
            ("example.com", &["93.184.216.34"]),
            ("api.example.com", &["93.184.216.35", "2606:2800:220:1::1"]),
            ("allowed.test", &["93.184.216.36"]),
            ("127.0.0.1.nip.io", &["127.0.0.1"]),
            ("10.0.0.5.nip.io", &["10.0.0.5"]),
            ("mixed.test", &["93.184.216.34", "192.168.1.10"]),
            ("empty.test", &[]),
            ("zero.test", &["0.0.0.0"]),
            ("imds.test", &["169.254.169.254"]),
            ("mapped.test", &["::ffff:10.0.0.1"]),
        ])
    }

    fn policy(mode: NetworkMode, hosts: &[&str]) -> NetworkPolicy {
        NetworkPolicy {
            mode,
            allowed_hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            allow_private: false,
            allow_loopback: false,
            allow_link_local: false,
            resolve: true,
        }
    }

    fn all() -> NetworkPolicy {
        policy(NetworkMode::All, &[])
    }

    fn all_opt_ins() -> NetworkPolicy {
        NetworkPolicy {
            allow_private: true,
            allow_loopback: true,
            allow_link_local: true,
            ..all()
        }
    }

    /// The rule that refused `url`, or `"ok"` (compared as text) when it was admitted.
    fn rule(url: &str, p: &NetworkPolicy) -> RuleId {
        match check_url(url, p, &world()) {
            Ok(_) => RuleId::Policy("ok".into()),
            Err(r) => r.rule,
        }
    }

    fn ok(url: &str, p: &NetworkPolicy) -> Destination {
        check_url(url, p, &world()).unwrap_or_else(|r| panic!("{url} refused: {r:?}"))
    }

    fn refused(url: &str, p: &NetworkPolicy) -> NetRefusal {
        check_url(url, p, &world()).expect_err(url)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    // ---- parse_ip_literal --------------------------------------------------------------------

    #[test]
    fn parse_ip_literal_is_strict() {
        assert_eq!(parse_ip_literal("1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_ip_literal("::1"), Some(ip("::1")));
        assert_eq!(parse_ip_literal("[::1]"), Some(ip("::1")));
        for s in [
            "127.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "127.0.0.1.",
            "[::1",
            "example.com",
            "",
        ] {
            assert_eq!(parse_ip_literal(s), None, "{s}");
        }
    }

    // ---- classification ----------------------------------------------------------------------

    #[test]
    fn classify_ipv4() {
        use AddressClass::*;
        for (a, c) in [
            ("169.254.169.254", CloudMetadata),
            ("169.254.170.2", CloudMetadata),
            ("100.100.100.200", CloudMetadata),
            ("192.0.0.192", CloudMetadata),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("10.0.0.1", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", Cgnat),
            ("100.127.255.255", Cgnat),
            ("169.254.1.1", LinkLocal),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.2.1", Reserved),
            ("198.18.0.1", Reserved),
            ("198.19.255.255", Reserved),
            ("198.51.100.7", Reserved),
            ("203.0.113.9", Reserved),
            ("8.8.8.8", Public),
            ("172.32.0.1", Public),
            ("100.128.0.1", Public),
            ("93.184.216.34", Public),
        ] {
            assert_eq!(classify(ip(a)), c, "{a}");
        }
    }

    #[test]
    fn classify_ipv6() {
        use AddressClass::*;
        for (a, c) in [
            ("::1", Loopback),
            ("::", Unspecified),
            ("fd00:ec2::254", CloudMetadata),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fe80::1", LinkLocal),
            ("ff02::1", Multicast),
            ("2001:db8::1", Reserved),
            ("3fff::1", Reserved),
            ("fec0::1", Reserved),
            ("100::1", Reserved),
            ("4000::1", Reserved),
            ("2606:4700:4700::1111", Public),
            // Embedded IPv4 forms are judged as the IPv4 address.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:7f00:1", Loopback),
            ("::ffff:169.254.169.254", CloudMetadata),
            ("::ffff:8.8.8.8", Public),
            ("::127.0.0.1", Loopback),
            ("::10.0.0.1", Private),
            ("::ffff:0:10.0.0.1", Private),
            ("64:ff9b::7f00:1", Loopback),
            ("64:ff9b::a9fe:a9fe", CloudMetadata),
            ("64:ff9b::808:808", Public),
            ("64:ff9b:1::a00:1", Private),
            ("2002:7f00:1::", Loopback),
            ("2002:a9fe:a9fe::1", CloudMetadata),
            ("2002:808:808::1", Public),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", Loopback), // Teredo, client 127.0.0.1
            ("2001:0:4136:e378:8000:63bf:f5ff:fffe", Private),  // Teredo, client 10.0.0.1
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", Public),   // Teredo, client 8.8.8.8
        ] {
            assert_eq!(classify(ip(a)), c, "{a}");
        }
    }

    #[test]
    fn embedded_and_canonical() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(embedded_ipv4(v6("::1")), None);
        assert_eq!(embedded_ipv4(v6("::")), None);
        assert_eq!(embedded_ipv4(v6("2606:4700::1")), None);
        assert_eq!(
            embedded_ipv4(v6("2002:c000:0201::")),
            Some(Ipv4Addr::new(192, 0, 2, 1))
        );
        assert_eq!(canonical_ip(ip("::ffff:7f00:1")), ip("127.0.0.1"));
        assert_eq!(canonical_ip(ip("64:ff9b::7f00:1")), ip("64:ff9b::7f00:1"));
        assert_eq!(canonical_ip(ip("::1")), ip("::1"));
    }

    #[test]
    fn opt_ins_admit_only_their_class() {
        use AddressClass::*;
        let none = all();
        let every = all_opt_ins();
        for c in [CloudMetadata, Unspecified, Multicast, Broadcast, Reserved] {
            assert!(!c.admitted(true, &every), "{c:?}");
        }
        for c in [Loopback, Private, UniqueLocal, Cgnat, LinkLocal] {
            assert!(!c.admitted(false, &none), "{c:?}");
            assert!(c.admitted(true, &none), "{c:?}");
            assert!(c.admitted(false, &every), "{c:?}");
        }
        let lo = NetworkPolicy {
            allow_loopback: true,
            ..all()
        };
        assert!(
            Loopback.admitted(false, &lo)
                && !Private.admitted(false, &lo)
                && !LinkLocal.admitted(false, &lo)
        );
        let pr = NetworkPolicy {
            allow_private: true,
            ..all()
        };
        assert!(
            Private.admitted(false, &pr)
                && UniqueLocal.admitted(false, &pr)
                && Cgnat.admitted(false, &pr)
        );
        assert!(!Loopback.admitted(false, &pr) && !LinkLocal.admitted(false, &pr));
        assert!(Public.admitted(false, &none));
    }

    // ---- every spelling of an internal address -----------------------------------------------

    #[test]
    fn ipv4_spellings_are_loopback() {
        let lo = NetworkPolicy {
            allow_loopback: true,
            ..all()
        };
        for url in [
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.0.0.1./",
            "http://0x7f.0.0.1/",
            "http://127.0.1/",
        ] {
            let r = refused(url, &all());
            assert_eq!(r.rule, RuleId::NetworkPrivate, "{url}");
            assert_eq!(r.target, "127.0.0.1:80", "{url}");
            assert!(
                r.reason
                    .contains("SSRF attempt to internal network: 127.0.0.1 (loopback"),
                "{url}: {}",
                r.reason
            );
            let d = ok(url, &lo);
            assert_eq!(
                (d.host.as_str(), d.port, d.addresses.clone()),
                ("127.0.0.1", 80, vec![ip("127.0.0.1")]),
                "{url}"
            );
        }
    }

    #[test]
    fn ipv6_spellings_are_judged_as_their_ipv4() {
        for url in [
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[64:ff9b::127.0.0.1]/",
            "http://[2002:7f00:1::]/",
            "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
        ] {
            assert_eq!(rule(url, &all()), RuleId::NetworkPrivate, "{url}");
            let lo = NetworkPolicy {
                allow_loopback: true,
                ..all()
            };
            assert_eq!(rule(url, &lo), "ok", "{url}");
        }
        // A mapped address is the IPv4 address itself; NAT64 keeps its own text.
        let lo = NetworkPolicy {
            allow_loopback: true,
            ..all()
        };
        assert_eq!(ok("http://[::ffff:7f00:1]:8080/", &lo).host, "127.0.0.1");
        assert_eq!(ok("http://[64:ff9b::7f00:1]/", &lo).host, "64:ff9b::7f00:1");
        let r = refused("http://[64:ff9b::7f00:1]/", &all());
        assert_eq!(r.target, "[64:ff9b::7f00:1]:80");
        assert!(
            r.reason.contains("64:ff9b::7f00:1 (= 127.0.0.1)"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn unspecified_is_never_admitted() {
        let exact = NetworkPolicy {
            allow_private: true,
            allow_loopback: true,
            allow_link_local: true,
            ..policy(NetworkMode::Allowlist, &["0.0.0.0", "::", "zero.test"])
        };
        for url in [
            "http://0.0.0.0/",
            "http://[::]/",
            "http://0/",
            "http://zero.test/",
        ] {
            assert_eq!(rule(url, &all()), RuleId::NetworkPrivate, "{url}");
            assert_eq!(rule(url, &all_opt_ins()), RuleId::NetworkPrivate, "{url}");
            let r = refused(url, &exact);
            assert_eq!(r.rule, RuleId::NetworkPrivate, "{url}");
            assert!(r.reason.contains("never allowed"), "{}", r.reason);
        }
    }

    #[test]
    fn reserved_multicast_broadcast_never_admitted() {
        let exact = policy(
            NetworkMode::Allowlist,
            &[
                "192.0.2.1",
                "224.0.0.1",
                "255.255.255.255",
                "240.0.0.1",
                "2001:db8::1",
            ],
        );
        for url in [
            "http://192.0.2.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://240.0.0.1/",
            "http://[2001:db8::1]/",
        ] {
            assert_eq!(rule(url, &all_opt_ins()), RuleId::NetworkPrivate, "{url}");
            assert_eq!(rule(url, &exact), RuleId::NetworkPrivate, "{url}");
        }
    }

    #[test]
    fn cgnat_needs_allow_private() {
        assert_eq!(rule("http://100.64.0.1/", &all()), RuleId::NetworkPrivate);
        assert_eq!(
            rule(
                "http://100.64.0.1/",
                &NetworkPolicy {
                    allow_loopback: true,
                    allow_link_local: true,
                    ..all()
                }
            ),
            RuleId::NetworkPrivate
        );
        assert_eq!(
            rule(
                "http://100.64.0.1/",
                &NetworkPolicy {
                    allow_private: true,
                    ..all()
                }
            ),
            "ok"
        );
    }

    #[test]
    fn unique_local_needs_allow_private() {
        assert_eq!(rule("http://[fd12::1]/", &all()), RuleId::NetworkPrivate);
        assert_eq!(
            rule(
                "http://[fd12::1]/",
                &NetworkPolicy {
                    allow_private: true,
                    ..all()
                }
            ),
            "ok"
        );
    }

    #[test]
    fn link_local_needs_allow_link_local() {
        assert_eq!(rule("http://169.254.1.1/", &all()), RuleId::NetworkPrivate);
        assert_eq!(rule("http://[fe80::1]/", &all()), RuleId::NetworkPrivate);
        assert_eq!(
            rule(
                "http://169.254.1.1/",
                &NetworkPolicy {
                    allow_private: true,
                    ..all()
                }
            ),
            RuleId::NetworkPrivate
        );
        let ll = NetworkPolicy {
            allow_link_local: true,
            ..all()
        };
        assert_eq!(rule("http://169.254.1.1/", &ll), "ok");
        assert_eq!(rule("http://[fe80::1]/", &ll), "ok");
    }

    // ---- cloud metadata ----------------------------------------------------------------------

    #[test]
    fn metadata_addresses_always_refused() {
        let every = all_opt_ins();
        let exact = NetworkPolicy {
            allow_link_local: true,
            ..policy(
                NetworkMode::Allowlist,
                &["169.254.169.254", "fd00:ec2::254", "imds.test"],
            )
        };
        let off = policy(NetworkMode::None, &[]);
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://0xa9fea9fe/",
            "http://169.254.170.2/v2/credentials",
            "http://100.100.100.200/",
            "http://192.0.0.192/",
            "http://imds.test/",
        ] {
            for p in [&all(), &every, &exact, &off] {
                if url.contains("imds.test") && p.mode == NetworkMode::None {
                    continue; // a name is not resolved with mode: none
                }
                let r = refused(url, p);
                assert_eq!(r.rule, RuleId::NetworkMetadata, "{url} {:?}", p.mode);
                assert!(
                    r.reason
                        .starts_with("cloud metadata endpoint is never reachable"),
                    "{}",
                    r.reason
                );
            }
        }
    }

    #[test]
    fn metadata_names_refused_before_resolution() {
        let exact = policy(
            NetworkMode::Allowlist,
            &["metadata.google.internal", "metadata", "instance-data"],
        );
        for url in [
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./",
            "http://metadata.goog/",
            "http://metadata/",
            "http://instance-data/",
            "http://instance-data.ec2.internal/",
        ] {
            for p in [all_opt_ins(), exact.clone(), policy(NetworkMode::None, &[])] {
                let w = world();
                let r = check_url(url, &p, &w).expect_err(url);
                assert_eq!(r.rule, RuleId::NetworkMetadata, "{url}");
                assert!(w.lookups().is_empty(), "{url} was resolved");
            }
        }
    }

    // ---- URL parsing -------------------------------------------------------------------------

    #[test]
    fn userinfo_is_ignored_for_the_host() {
        let p = policy(NetworkMode::Allowlist, &["allowed.test"]);
        let r = refused("http://allowed.test@127.0.0.1:8080/", &p);
        assert_eq!(r.rule, RuleId::NetworkAllowedHosts);
        assert_eq!(r.target, "127.0.0.1:8080");
        let r = refused("http://allowed.test@127.0.0.1:8080/", &all());
        assert_eq!(r.rule, RuleId::NetworkPrivate);
        assert!(r.reason.contains("127.0.0.1"), "{}", r.reason);
        let r = refused("http://allowed.test:pw@127.0.0.1/", &all());
        assert_eq!(r.rule, RuleId::NetworkPrivate);
        let r = refused("http://allowed.test%2f@127.0.0.1/", &all());
        assert_eq!(
            (r.rule, r.target.as_str()),
            (RuleId::NetworkPrivate, "127.0.0.1:80")
        );
        // And the other way round: userinfo naming an internal host changes nothing.
        let d = ok("https://127.0.0.1:80@allowed.test/", &p);
        assert_eq!((d.host.as_str(), d.port), ("allowed.test", 443));
    }

    #[test]
    fn scheme_is_case_insensitive() {
        let lo = NetworkPolicy {
            allow_loopback: true,
            ..all()
        };
        let d = ok("HTTP://127.0.0.1/", &lo);
        assert_eq!(
            (d.scheme.as_str(), d.host.as_str(), d.port),
            ("http", "127.0.0.1", 80)
        );
        assert_eq!(rule("HTTP://127.0.0.1/", &all()), RuleId::NetworkPrivate);
        assert_eq!(ok("HtTpS://Example.COM./x", &all()).host, "example.com");
    }

    #[test]
    fn default_ports() {
        assert_eq!(ok("http://example.com", &all()).port, 80);
        assert_eq!(ok("https://example.com/", &all()).port, 443);
        assert_eq!(ok("https://example.com:8443/", &all()).port, 8443);
        assert_eq!(ok("http://example.com:/", &all()).port, 80);
    }

    #[test]
    fn backslash_in_authority_refused() {
        for url in [
            "http://allowed.test\\@127.0.0.1/",
            "http:\\\\127.0.0.1/",
            "http://127.0.0.1\\.allowed.test/",
            "https://allowed.test\\\\evil/",
        ] {
            let r = refused(url, &all_opt_ins());
            assert_eq!(r.rule, RuleId::NetworkUrl, "{url}");
        }
        assert!(refused("http://allowed.test\\@127.0.0.1/", &all())
            .reason
            .contains("backslash"));
        // After the authority a backslash is only a path character.
        assert_eq!(rule("http://example.com/a\\b", &all()), "ok");
    }

    #[test]
    fn other_schemes_refused() {
        for (url, scheme) in [
            ("file:///etc/passwd", "file"),
            ("ftp://example.com/x", "ftp"),
            ("gopher://127.0.0.1:6379/_INFO", "gopher"),
            ("FILE:///etc/passwd", "file"),
            ("dict://127.0.0.1:11211/", "dict"),
            ("javascript:alert(1)", "javascript"),
            ("ws://example.com/", "ws"),
        ] {
            let r = refused(url, &all_opt_ins());
            assert_eq!(r.rule, RuleId::NetworkUrl, "{url}");
            assert!(
                r.reason
                    .contains(&format!("scheme `{scheme}` is not allowed")),
                "{}",
                r.reason
            );
        }
    }

    #[test]
    fn malformed_urls_refused() {
        for url in [
            "",
            "example.com",
            "//example.com/",
            "http:/example.com/",
            "http:example.com",
            "http://",
            "http:///",
            "http:///example.com/",
            "https://:443/",
            "http://user@/",
            "http://./",
            "http://../",
            "http://exa mple.com/",
            " http://example.com/",
            "http://example.com/ x",
            "http://example.com\t/",
            "http://exam\nple.com/",
            "http://example.com/\r\n",
            "http://\u{0}example.com/",
            "http://example.com\u{7f}/",
            "http://examp\u{85}le.com/",
            "http://ex\u{a0}ample.com/",
            "http://bücher.example/",
            "http://ｅxample.com/",
            "http://127。0。0。1/",
            "http://a@b@127.0.0.1/",
            "http://%31%32%37.0.0.1/",
            "http://[fe80::1%25eth0]/",
            "http://example.com:0/",
            "http://example.com:65536/",
            "http://example.com:-1/",
            "http://[::1/",
            "http://1.2.3.4.5/",
            "http://256.0.0.1/",
        ] {
            let w = world();
            let r = check_url(url, &all_opt_ins(), &w).expect_err(url);
            assert_eq!(r.rule, RuleId::NetworkUrl, "{url:?}");
            assert!(
                !r.target.contains('\n') && !r.target.contains('\t'),
                "{url:?}"
            );
            assert!(w.lookups().is_empty(), "{url:?}");
        }
    }

    #[test]
    fn userinfo_may_be_percent_encoded() {
        assert_eq!(rule("http://us%40er:p%3Ass@example.com/", &all()), "ok");
    }

    #[test]
    fn empty_host_reason() {
        for url in ["http:///", "https://:443/", "http://user@/", "http://./"] {
            let r = refused(url, &all());
            assert_eq!(r.rule, RuleId::NetworkUrl, "{url}");
            assert!(r.reason.contains("empty host"), "{url}: {}", r.reason);
        }
    }

    // ---- mode: none --------------------------------------------------------------------------

    #[test]
    fn mode_none() {
        let p = policy(NetworkMode::None, &[]);
        let w = world();
        let r = check_url("https://example.com/", &p, &w).unwrap_err();
        assert_eq!(r.rule, RuleId::NetworkMode);
        assert_eq!(
            r.reason,
            "network access disabled (network.mode: none): example.com"
        );
        assert_eq!(r.target, "example.com:443");
        assert!(w.lookups().is_empty(), "mode none must not resolve");
        assert_eq!(refused("http://8.8.8.8/", &p).rule, RuleId::NetworkMode);
        // A name that resolves to an internal address is still just "disabled" (not resolved).
        assert_eq!(
            refused("http://127.0.0.1.nip.io/", &p).rule,
            RuleId::NetworkMode
        );

        let r = refused("http://127.0.0.1/", &p);
        assert_eq!(r.rule, RuleId::NetworkPrivate);
        assert!(
            r.reason
                .starts_with("SSRF attempt to internal network: 127.0.0.1"),
            "{}",
            r.reason
        );
        for url in [
            "http://10.0.0.1/",
            "http://[::1]/",
            "http://localhost:3000/",
            "http://0.0.0.0/",
        ] {
            assert_eq!(refused(url, &p).rule, RuleId::NetworkPrivate, "{url}");
        }
        // Opt-ins do not open anything with mode: none.
        let p = NetworkPolicy {
            allow_private: true,
            allow_loopback: true,
            allow_link_local: true,
            ..p
        };
        assert_eq!(refused("http://10.0.0.1/", &p).rule, RuleId::NetworkPrivate);
    }

    // ---- mode: all ---------------------------------------------------------------------------

    #[test]
    fn mode_all() {
        let d = ok("http://93.184.216.34/", &all());
        assert_eq!(
            (d.host.as_str(), d.addresses.clone()),
            ("93.184.216.34", vec![ip("93.184.216.34")])
        );
        let r = refused("http://10.0.0.1/", &all());
        assert_eq!(r.rule, RuleId::NetworkPrivate);
        assert!(
            r.reason.contains("allow with network.allow_private"),
            "{}",
            r.reason
        );
        assert_eq!(
            rule(
                "http://10.0.0.1/",
                &NetworkPolicy {
                    allow_loopback: true,
                    ..all()
                }
            ),
            RuleId::NetworkPrivate
        );
        assert_eq!(
            rule(
                "http://10.0.0.1/",
                &NetworkPolicy {
                    allow_private: true,
                    ..all()
                }
            ),
            "ok"
        );
        let d = ok("https://api.example.com/v1", &all());
        assert_eq!(
            d.addresses,
            vec![ip("93.184.216.35"), ip("2606:2800:220:1::1")]
        );
    }

    #[test]
    fn names_resolving_inside_are_refused() {
        assert_eq!(
            rule("http://127.0.0.1.nip.io/", &all()),
            RuleId::NetworkPrivate
        );
        assert_eq!(rule("http://mapped.test/", &all()), RuleId::NetworkPrivate);
        assert_eq!(
            rule(
                "http://mapped.test/",
                &NetworkPolicy {
                    allow_private: true,
                    ..all()
                }
            ),
            "ok"
        );
        let r = refused("http://127.0.0.1.nip.io/", &all());
        assert!(
            r.reason
                .contains("127.0.0.1.nip.io resolves to 127.0.0.1 (loopback"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn every_resolved_address_is_checked() {
        let r = refused("http://mixed.test/", &all());
        assert_eq!(r.rule, RuleId::NetworkPrivate);
        assert!(r.reason.contains("192.168.1.10"), "{}", r.reason);
        let wild = policy(NetworkMode::Allowlist, &["*.test"]);
        assert_eq!(rule("http://mixed.test/", &wild), RuleId::NetworkPrivate);
    }

    #[test]
    fn resolution_fails_closed() {
        let r = refused("http://nowhere.invalid/", &all());
        assert_eq!(r.rule, RuleId::NetworkResolve);
        assert!(r.reason.contains("nowhere.invalid"), "{}", r.reason);
        assert_eq!(rule("http://empty.test/", &all()), RuleId::NetworkResolve);
        let p = policy(NetworkMode::Allowlist, &["nowhere.invalid"]);
        assert_eq!(rule("http://nowhere.invalid/", &p), RuleId::NetworkResolve);
    }

    #[test]
    fn resolve_off_skips_lookups() {
        let p = NetworkPolicy {
            resolve: false,
            ..all()
        };
        let w = world();
        let d = check_url("http://127.0.0.1.nip.io/", &p, &w).unwrap();
        assert!(d.addresses.is_empty());
        assert!(w.lookups().is_empty());
        // Literals, loopback and metadata names are still judged without a resolver.
        assert_eq!(rule("http://127.0.0.1/", &p), RuleId::NetworkPrivate);
        assert_eq!(rule("http://localhost/", &p), RuleId::NetworkPrivate);
        assert_eq!(
            rule("http://metadata.google.internal/", &p),
            RuleId::NetworkMetadata
        );
    }

    #[test]
    fn localhost_is_loopback_without_resolving() {
        for url in [
            "http://localhost/",
            "http://LOCALHOST.:8080/",
            "http://api.localhost/",
            "http://ip6-localhost/",
        ] {
            let w = world();
            let r = check_url(url, &all(), &w).expect_err(url);
            assert_eq!(r.rule, RuleId::NetworkPrivate, "{url}");
            assert!(w.lookups().is_empty(), "{url}");
        }
        let d = ok(
            "http://localhost:3000/",
            &NetworkPolicy {
                allow_loopback: true,
                ..all()
            },
        );
        assert_eq!(d.addresses, vec![ip("127.0.0.1"), ip("::1")]);
        let d = ok(
            "http://localhost:3000/",
            &policy(NetworkMode::Allowlist, &["localhost:3000"]),
        );
        assert_eq!((d.host.as_str(), d.port), ("localhost", 3000));
        assert_eq!(
            rule(
                "http://evil.localhost/",
                &policy(NetworkMode::Allowlist, &["*.localhost"])
            ),
            RuleId::NetworkPrivate
        );
    }

    // ---- mode: allowlist ---------------------------------------------------------------------

    #[test]
    fn allowlist_requires_a_match() {
        let p = policy(
            NetworkMode::Allowlist,
            &["api.example.com:443", "*.example.org", "allowed.test"],
        );
        let w = FakeWorld::new(&[
            ("a.example.org", &["93.184.216.40"]),
            ("api.example.com", &["93.184.216.35"]),
        ]);
        assert!(check_url("https://api.example.com/", &p, &w).is_ok());
        assert!(check_url("https://a.example.org/", &p, &w).is_ok());
        let r = check_url("https://example.org/", &p, &w).unwrap_err();
        assert_eq!(r.rule, RuleId::NetworkAllowedHosts);
        assert_eq!(r.reason, "example.org:443 is not in network.allowed_hosts");
        assert_eq!(
            rule("https://example.com/", &p),
            RuleId::NetworkAllowedHosts
        );
        assert_eq!(
            rule("https://api.example.com.evil.test/", &p),
            RuleId::NetworkAllowedHosts
        );
    }

    #[test]
    fn portless_entry_means_80_and_443_and_the_refusal_shows_the_entry() {
        let p = policy(NetworkMode::Allowlist, &["api.example.com", "*.cdn.test"]);
        assert_eq!(rule("http://api.example.com/", &p), "ok");
        assert_eq!(rule("https://api.example.com/", &p), "ok");
        let r = refused("https://api.example.com:8443/x", &p);
        assert_eq!(r.rule, RuleId::NetworkAllowedHosts);
        assert!(r.reason.contains("`api.example.com:8443`"), "{}", r.reason);
        assert!(r.reason.contains("ports 80 and 443 only"), "{}", r.reason);
        let r = refused("http://a.cdn.test:8080/", &p);
        assert!(r.reason.contains("`*.cdn.test:8080`"), "{}", r.reason);
        let explicit = policy(NetworkMode::Allowlist, &["api.example.com:8443"]);
        assert_eq!(rule("https://api.example.com:8443/", &explicit), "ok");
        let r = refused("https://api.example.com/", &explicit);
        assert!(r.reason.contains("port 8443 only"), "{}", r.reason);
        let r = refused("https://other.test:8443/", &explicit);
        assert_eq!(r.reason, "other.test:8443 is not in network.allowed_hosts");
    }

    #[test]
    fn allowlist_port_mismatch() {
        let p = policy(NetworkMode::Allowlist, &["api.example.com:443"]);
        let r = refused("http://api.example.com/", &p);
        assert_eq!(r.rule, RuleId::NetworkAllowedHosts);
        assert_eq!(r.target, "api.example.com:80");
        assert_eq!(
            rule("https://api.example.com:8443/", &p),
            RuleId::NetworkAllowedHosts
        );
        assert_eq!(rule("http://api.example.com:443/", &p), "ok");
    }

    #[test]
    fn wildcard_never_admits_internal_exact_does() {
        let wild = policy(NetworkMode::Allowlist, &["*.nip.io"]);
        let r = refused("http://127.0.0.1.nip.io/", &wild);
        assert_eq!(r.rule, RuleId::NetworkPrivate);
        assert!(
            r.reason.contains("127.0.0.1.nip.io resolves to 127.0.0.1"),
            "{}",
            r.reason
        );
        assert_eq!(
            rule("http://10.0.0.5.nip.io/", &wild),
            RuleId::NetworkPrivate
        );
        assert_eq!(
            rule(
                "http://10.0.0.5.nip.io/",
                &NetworkPolicy {
                    allow_private: true,
                    ..wild.clone()
                }
            ),
            "ok"
        );

        let exact = policy(NetworkMode::Allowlist, &["127.0.0.1.nip.io"]);
        let d = ok("http://127.0.0.1.nip.io/", &exact);
        assert_eq!(
            (d.host.as_str(), d.addresses.clone()),
            ("127.0.0.1.nip.io", vec![ip("127.0.0.1")])
        );
        // Exact wins even when a wildcard also matches.
        let both = policy(NetworkMode::Allowlist, &["*.nip.io", "127.0.0.1.nip.io"]);
        assert_eq!(rule("http://127.0.0.1.nip.io/", &both), "ok");
        assert_eq!(
            rule("http://10.0.0.5.nip.io/", &both),
            RuleId::NetworkPrivate
        );
        // An exact entry on another port is no match at all.
        let other_port = policy(
            NetworkMode::Allowlist,
            &["*.nip.io", "127.0.0.1.nip.io:8080"],
        );
        assert_eq!(
            rule("http://127.0.0.1.nip.io/", &other_port),
            RuleId::NetworkPrivate
        );
    }

    #[test]
    fn allowlist_ip_literals() {
        let p = policy(
            NetworkMode::Allowlist,
            &["127.0.0.1:8080", "[::1]:9000", "10.0.0.1"],
        );
        for url in [
            "http://127.0.0.1:8080/",
            "http://0x7f000001:8080/",
            "http://127.1:8080/",
            "http://[::ffff:127.0.0.1]:8080/",
            "http://[::1]:9000/",
            "http://10.0.0.1/",
        ] {
            assert_eq!(rule(url, &p), "ok", "{url}");
        }
        for url in [
            "http://127.0.0.1/",
            "http://127.0.0.2:8080/",
            "http://[::1]:8080/",
            "http://[64:ff9b::7f00:1]:8080/",
            // A bare entry stands for ports 80 and 443 only.
            "http://10.0.0.1:1234/",
        ] {
            assert_eq!(rule(url, &p), RuleId::NetworkAllowedHosts, "{url}");
        }
        // A name-shaped wildcard never matches an IP literal.
        let wild = policy(NetworkMode::Allowlist, &["*.0.0.1"]);
        assert_eq!(
            rule("http://127.0.0.1/", &wild),
            RuleId::NetworkAllowedHosts
        );
    }

    #[test]
    fn allowlist_match_kinds() {
        let pats: Vec<HostPattern> = ["*.example.com", "api.example.com", "1.2.3.4:80"]
            .iter()
            .map(|h| HostPattern::parse(h).unwrap())
            .collect();
        let name = |n: &str| Target::Name(n.into());
        assert_eq!(
            allowlist_match(&pats, &name("api.example.com"), 443),
            Some(HostMatch::Exact)
        );
        assert_eq!(
            allowlist_match(&pats, &name("x.example.com"), 443),
            Some(HostMatch::Wildcard)
        );
        assert_eq!(allowlist_match(&pats, &name("example.com"), 443), None);
        assert_eq!(
            allowlist_match(&pats, &Target::Ip(ip("1.2.3.4")), 80),
            Some(HostMatch::Exact)
        );
        assert_eq!(
            allowlist_match(&pats, &Target::Ip(ip("::ffff:1.2.3.4")), 80),
            Some(HostMatch::Exact)
        );
        assert_eq!(allowlist_match(&pats, &Target::Ip(ip("1.2.3.4")), 81), None);
    }

    // ---- robustness --------------------------------------------------------------------------

    #[test]
    fn odd_inputs_never_panic() {
        let pieces = [
            "",
            "http",
            "HTTP",
            "https",
            "file",
            ":",
            "//",
            "/",
            "\\",
            "@",
            "@@",
            "[",
            "]",
            "[::1]",
            "[::ffff:",
            "%",
            "%00",
            "%zz",
            "?",
            "#",
            ":80",
            ":65535",
            ":99999",
            ":",
            "127.1",
            "0x",
            "0x7f000001",
            "09",
            "1.2.3.4.5",
            "..",
            ".",
            "é",
            "\u{0}",
            "\u{202e}",
            "xn--",
            "xn--nxasmq6b",
            "localhost",
            "metadata",
            "a.b",
            " ",
            "\t",
            "*",
            "[v1.x]",
            "2130706433",
        ];
        let mut inputs: Vec<String> = Vec::new();
        for a in &pieces {
            for b in &pieces {
                inputs.push(format!("http://{a}{b}/"));
                inputs.push(format!("{a}://{b}"));
                inputs.push(format!("https://u@{a}:{b}"));
            }
        }
        // A few hundred pseudo-random strings over an alphabet of troublemakers.
        let alphabet: Vec<char> = "htps:/\\@[]%.0123456789abcdefx?#: \u{0}é\u{ff0e}-_*"
            .chars()
            .collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..500 {
            let mut s = String::from("http://");
            for _ in 0..(seed % 24) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            inputs.push(s);
        }
        inputs.push("x".repeat(100_000));
        inputs.push(format!("http://{}/", "a.".repeat(5000)));
        let policies = [
            all(),
            all_opt_ins(),
            policy(NetworkMode::None, &[]),
            policy(NetworkMode::Allowlist, &["*.b", "a.b", "127.0.0.1"]),
        ];
        let w = world();
        for s in &inputs {
            for p in &policies {
                if let Ok(d) = check_url(s, p, &w) {
                    assert!(d.scheme == "http" || d.scheme == "https", "{s:?}");
                    assert!(!d.host.is_empty() && d.port != 0, "{s:?}");
                }
                let _ = parse_ip_literal(s);
            }
        }
        assert!(inputs.len() > 500);
    }
}
