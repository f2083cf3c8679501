//! Capability rules: deny > require_approval > allow; an access to a capability the rules
//! govern that no rule allows is denied.

use std::path::Path;

use super::{Access, Resource};
use crate::policy::{HostPattern, Rule, RuleKind, RuleSet};

/// What the rules say about one access.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RuleVerdict<'r> {
    /// No rule governs this capability: the rules have nothing to say.
    NotGoverned,
    Allowed(&'r Rule),
    Denied(&'r Rule),
    ApprovalRequired(&'r Rule),
    /// Governed, but no allow rule matched.
    NoAllowMatched,
}

pub(crate) fn evaluate<'r>(
    rules: &'r RuleSet,
    access: &Access,
    tool: Option<&str>,
    method: &str,
) -> RuleVerdict<'r> {
    evaluate_with(rules, access, tool, method, &|_, p, r| {
        super::path::is_within(p, r)
    })
}

/// [`evaluate`] with the path-prefix comparison given per rule kind (`check::casefold`: below
/// a case-insensitive directory a `deny` matches in any case).
pub(crate) fn evaluate_with<'r>(
    rules: &'r RuleSet,
    access: &Access,
    tool: Option<&str>,
    method: &str,
    within: &dyn Fn(RuleKind, &Path, &Path) -> bool,
) -> RuleVerdict<'r> {
    if !rules.governs(&access.capability) {
        return RuleVerdict::NotGoverned;
    }
    let matching = |kind: RuleKind| {
        rules
            .rules
            .iter()
            .filter(move |r| r.kind == kind)
            .find(|r| matches_with(r, access, tool, method, &|p, root| within(kind, p, root)))
    };
    if let Some(r) = matching(RuleKind::Deny) {
        return RuleVerdict::Denied(r);
    }
    if let Some(r) = matching(RuleKind::RequireApproval) {
        return RuleVerdict::ApprovalRequired(r);
    }
    if let Some(r) = matching(RuleKind::Allow) {
        return RuleVerdict::Allowed(r);
    }
    RuleVerdict::NoAllowMatched
}

/// Does every condition of `rule` hold for this access (`within` judges path containment)?
fn matches_with(
    rule: &Rule,
    access: &Access,
    tool: Option<&str>,
    method: &str,
    within: &dyn Fn(&Path, &Path) -> bool,
) -> bool {
    if let Some(c) = &rule.capability {
        if !c.matches(&access.capability) {
            return false;
        }
    }
    if let Some(t) = &rule.tool {
        if tool != Some(t.as_str()) {
            return false;
        }
    }
    if let Some(m) = &rule.method {
        if m != method {
            return false;
        }
    }
    if let Some(prefix) = &rule.path_prefix {
        match &access.resource {
            Resource::Path { resolved, .. } => {
                if !within(resolved, prefix) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    if let Some(h) = &rule.host {
        match &access.resource {
            Resource::Url { host, port, .. } => {
                if !host_matches(h, host, *port) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// `allowed_hosts` / rule `host` matching: exact name, or `*.domain` for strict sub-domains;
/// a pattern without a port admits any port.
pub(crate) fn host_matches(pattern: &HostPattern, host: &str, port: u16) -> bool {
    if let Some(p) = pattern.port {
        if p != port {
            return false;
        }
    }
    if pattern.wildcard {
        host.len() > pattern.host.len() + 1
            && host.ends_with(pattern.host.as_str())
            && host.as_bytes()[host.len() - pattern.host.len() - 1] == b'.'
    } else {
        host == pattern.host
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_str, PolicySource};
    use std::path::PathBuf;

    fn read(p: &str) -> Access {
        Access {
            capability: "filesystem.read".into(),
            resource: Resource::Path {
                written: p.into(),
                resolved: PathBuf::from(p),
            },
        }
    }

    const CAPFENCE: &str = "deny:\n- capability: filesystem.read\n  path_prefix: /etc\n- capability: shell.execute\nrequire_approval:\n- capability: database.write\nallow:\n- capability: filesystem.read\n  path_prefix: /proj\n";

    #[test]
    fn precedence_and_default_deny() {
        let p = load_str(CAPFENCE, PolicySource::Inline).unwrap();
        assert!(
            matches!(evaluate(&p.rules, &read("/proj/a"), None, "tools/call"), RuleVerdict::Allowed(r) if r.id() == "allow[0]")
        );
        assert!(
            matches!(evaluate(&p.rules, &read("/etc/passwd"), None, "tools/call"), RuleVerdict::Denied(r) if r.id() == "deny[0]")
        );
        assert!(matches!(
            evaluate(&p.rules, &read("/projx/a"), None, "tools/call"),
            RuleVerdict::NoAllowMatched
        ));
        let db = Access {
            capability: "database.write".into(),
            resource: Resource::None,
        };
        assert!(
            matches!(evaluate(&p.rules, &db, None, "tools/call"), RuleVerdict::ApprovalRequired(r) if r.id() == "require_approval[0]")
        );
        let sh = Access {
            capability: "shell.execute".into(),
            resource: Resource::None,
        };
        assert!(matches!(
            evaluate(&p.rules, &sh, None, "tools/call"),
            RuleVerdict::Denied(_)
        ));
        let net = Access {
            capability: "network.fetch".into(),
            resource: Resource::None,
        };
        assert_eq!(
            evaluate(&p.rules, &net, None, "tools/call"),
            RuleVerdict::NotGoverned
        );
    }

    #[test]
    fn deny_beats_allow_on_overlap() {
        let p = load_str("deny:\n- capability: filesystem.read\n  path_prefix: /proj/secret\nallow:\n- capability: filesystem.*\n  path_prefix: /proj\n", PolicySource::Inline).unwrap();
        assert!(matches!(
            evaluate(&p.rules, &read("/proj/secret/k"), None, "tools/call"),
            RuleVerdict::Denied(_)
        ));
        assert!(matches!(
            evaluate(&p.rules, &read("/proj/ok"), None, "tools/call"),
            RuleVerdict::Allowed(_)
        ));
    }

    #[test]
    fn host_matching() {
        let exact = HostPattern::parse("api.example.com").unwrap();
        let wild = HostPattern::parse("*.example.com:443").unwrap();
        assert!(host_matches(&exact, "api.example.com", 8080));
        assert!(!host_matches(&exact, "x.api.example.com", 80));
        assert!(host_matches(&wild, "a.example.com", 443));
        assert!(host_matches(&wild, "a.b.example.com", 443));
        assert!(!host_matches(&wild, "example.com", 443));
        assert!(!host_matches(&wild, "evilexample.com", 443));
        assert!(!host_matches(&wild, "a.example.com", 80));
    }
}
