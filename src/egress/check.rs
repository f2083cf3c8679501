//! The egress point's decision (pure, given a resolver): the same check the proxy makes on a
//! URL in a tool's arguments (`check::net::check_url`: strict parsing, `allowed_hosts` with the
//! policy's port semantics, every address classified), with resolution always on — at the point
//! of connection capjail is the resolver, and the addresses it returns are the only ones the
//! connection may use.

use crate::check::decide::{Decision, Verdict};
use crate::check::net::{check_url, Destination, NetRefusal};
use crate::check::{Access, Denial, Resource, World};
use crate::policy::{NetworkMode, NetworkPolicy, RuleId};

/// Judge a destination (`https://host:port/` for CONNECT, the absolute URL for plain HTTP).
/// `Ok` carries every address the host has, all checked: connect only to one of them.
pub(crate) fn judge(
    url: &str,
    policy: &NetworkPolicy,
    world: &dyn World,
) -> Result<Destination, NetRefusal> {
    let mut at_connect = policy.clone();
    at_connect.resolve = true;
    let dest = check_url(url, &at_connect, world)?;
    if dest.addresses.is_empty() {
        // check_url resolves every name when `resolve` is on; an empty list would mean a path
        // that connects without a checked address. Fail closed.
        return Err(NetRefusal {
            rule: RuleId::NetworkResolve,
            reason: format!("{}: no checked address", dest.host),
            target: dest.host,
        });
    }
    Ok(dest)
}

/// The rule that admitted a destination (for the audit record).
pub(crate) fn allowing_rule(policy: &NetworkPolicy) -> RuleId {
    match policy.mode {
        NetworkMode::Allowlist => RuleId::NetworkAllowedHosts,
        _ => RuleId::NetworkMode,
    }
}

/// The audit decision for one connection or request: `method` is `egress/CONNECT` or
/// `egress/<HTTP method>`.
pub(crate) fn decision(
    method: &str,
    written: &str,
    outcome: &Result<Destination, NetRefusal>,
    policy: &NetworkPolicy,
) -> Decision {
    let (host, port) = match outcome {
        Ok(d) => (d.host.clone(), d.port),
        Err(r) => (r.target.clone(), 0),
    };
    let accesses: crate::check::decide::Accesses = smallvec::smallvec![Access {
        capability: "network.connect".into(),
        resource: Resource::Url {
            written: written.into(),
            host,
            port,
        },
    }];
    match outcome {
        Ok(_) => Decision {
            verdict: Verdict::Allow,
            method: format!("egress/{method}").into(),
            tool: None,
            accesses,
            rule: allowing_rule(policy),
            denial: None,
        },
        Err(r) => refused(method, accesses, r.rule.clone(), &r.reason),
    }
}

/// A refusal decision.
pub(crate) fn refused(
    method: &str,
    accesses: crate::check::decide::Accesses,
    rule: RuleId,
    reason: &str,
) -> Decision {
    Decision {
        verdict: Verdict::Deny,
        method: format!("egress/{method}").into(),
        tool: None,
        accesses,
        rule: rule.clone(),
        denial: Some(Denial {
            reason: reason.into(),
            rule,
            capability: Some("network.connect".into()),
            resource: None,
            approval_required: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RuleId;
    use crate::policy::{load_str, PolicySource};
    use std::cell::RefCell;
    use std::io;
    use std::net::IpAddr;

    struct Fake(Vec<(&'static str, Vec<IpAddr>)>, RefCell<u32>);
    impl World for Fake {
        fn resolve_host(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
            *self.1.borrow_mut() += 1;
            self.0
                .iter()
                .find(|(n, _)| *n == host)
                .map(|(_, a)| a.clone())
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "nxdomain"))
        }
    }
    fn world(entries: &[(&'static str, &[&str])]) -> Fake {
        Fake(
            entries
                .iter()
                .map(|(n, a)| (*n, a.iter().map(|s| s.parse().unwrap()).collect()))
                .collect(),
            RefCell::new(0),
        )
    }
    fn net(hosts: &str) -> NetworkPolicy {
        let y = format!(
            "name: t\nnetwork:\n  mode: allowlist\n  resolve: false\n  allowed_hosts: {hosts}\n"
        );
        load_str(&y, PolicySource::Inline).unwrap().network
    }

    #[test]
    fn resolves_even_when_the_policy_does_not_and_checks_every_address() {
        let p = net("[\"*.example.com\", \"127.0.0.1:8000\"]");
        let w = world(&[
            ("api.example.com", &["93.184.216.34"]),
            ("rebind.example.com", &["93.184.216.34", "127.0.0.1"]),
            ("meta.example.com", &["169.254.169.254"]),
            ("nat64.example.com", &["64:ff9b::7f00:1"]),
            ("inner.example.com", &["10.0.0.1"]),
        ]);
        let d = judge("https://api.example.com:443/", &p, &w).unwrap();
        assert_eq!(
            d.addresses,
            vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
        );
        let rule = |u: &str| judge(u, &p, &w).unwrap_err().rule;
        assert_eq!(
            rule("https://rebind.example.com:443/"),
            RuleId::NetworkPrivate
        );
        assert_eq!(
            rule("https://meta.example.com:443/"),
            RuleId::NetworkMetadata
        );
        assert_eq!(
            rule("https://nat64.example.com:443/"),
            RuleId::NetworkPrivate
        );
        assert_eq!(rule("http://inner.example.com/x"), RuleId::NetworkPrivate);
        assert_eq!(
            rule("https://gone.example.com:443/"),
            RuleId::NetworkResolve
        );
        assert_eq!(rule("https://other.org:443/"), RuleId::NetworkAllowedHosts);
        assert_eq!(*w.1.borrow(), 6, "not-allowed hosts are never resolved");
    }

    #[test]
    fn an_explicit_loopback_entry_admits_that_port_only() {
        let p = net("[\"127.0.0.1:8000\"]");
        let w = world(&[]);
        assert!(judge("http://127.0.0.1:8000/a", &p, &w).is_ok());
        let r = judge("http://127.0.0.1:8001/a", &p, &w).unwrap_err();
        assert_eq!(r.rule, RuleId::NetworkAllowedHosts);
        let r = judge("https://[::ffff:127.0.0.1]:8001/", &p, &w).unwrap_err();
        assert_eq!(r.rule, RuleId::NetworkAllowedHosts);
        assert_eq!(
            judge("http://localhost:8000/", &p, &w).unwrap_err().rule,
            RuleId::NetworkAllowedHosts
        );
    }

    #[test]
    fn decisions_name_the_rule() {
        let p = net("[\"a.example.com\"]");
        let w = world(&[]);
        let out = judge("https://b.example.com:443/", &p, &w);
        let d = decision("CONNECT", "b.example.com:443", &out, &p);
        assert!(!d.is_allowed());
        assert_eq!(d.rule, RuleId::NetworkAllowedHosts);
        assert_eq!(d.method, "egress/CONNECT");
    }
}
