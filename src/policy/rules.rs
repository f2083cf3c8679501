//! Capability rules (CapFence's `deny` / `require_approval` / `allow`), compiled.
//!
//! Matching lives in `check::rules`; this file only holds the data.

use std::path::PathBuf;

use super::HostPattern;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum RuleKind {
    Deny,
    RequireApproval,
    Allow,
}

impl RuleKind {
    pub(crate) fn key(self) -> &'static str {
        match self {
            RuleKind::Deny => "deny",
            RuleKind::RequireApproval => "require_approval",
            RuleKind::Allow => "allow",
        }
    }
}

/// A capability pattern: an exact capability (`filesystem.read`), a family (`filesystem.*`),
/// or everything (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CapabilityPattern {
    Exact(String),
    Family(String),
    Any,
}

impl CapabilityPattern {
    pub(crate) fn parse(s: &str) -> CapabilityPattern {
        let s = s.trim();
        if s == "*" {
            CapabilityPattern::Any
        } else if let Some(f) = s.strip_suffix(".*") {
            CapabilityPattern::Family(f.to_string())
        } else {
            CapabilityPattern::Exact(s.to_string())
        }
    }

    pub(crate) fn matches(&self, capability: &str) -> bool {
        match self {
            CapabilityPattern::Any => true,
            CapabilityPattern::Exact(c) => c == capability,
            CapabilityPattern::Family(f) => {
                capability.len() > f.len()
                    && capability.starts_with(f.as_str())
                    && capability.as_bytes()[f.len()] == b'.'
            }
        }
    }

    /// The family (`filesystem` of `filesystem.read`), if the pattern is limited to one.
    pub(crate) fn family(&self) -> Option<&str> {
        match self {
            CapabilityPattern::Any => None,
            CapabilityPattern::Exact(c) => Some(c.split('.').next().unwrap_or(c)),
            CapabilityPattern::Family(f) => Some(f),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    pub(crate) kind: RuleKind,
    /// Position in its list: the rule is named `deny[0]`, `allow[2]`, ...
    pub(crate) index: usize,
    pub(crate) capability: Option<CapabilityPattern>,
    pub(crate) tool: Option<String>,
    /// Expanded, absolute, lexically normalised.
    pub(crate) path_prefix: Option<PathBuf>,
    pub(crate) host: Option<HostPattern>,
    pub(crate) method: Option<String>,
    /// `environment.read` rules: the variables the answer may show (`check::env_read`).
    pub(crate) variables: Option<Vec<String>>,
    pub(crate) reason: Option<String>,
    /// A short human description (`deny[0] capability=filesystem.read path_prefix=/etc`).
    pub(crate) label: String,
}

impl Rule {
    pub(crate) fn id(&self) -> String {
        format!("{}[{}]", self.kind.key(), self.index)
    }
}

/// All rules, in precedence order: every deny, then every require_approval, then every allow.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RuleSet {
    pub(crate) rules: Vec<Rule>,
}

impl RuleSet {
    /// Does any rule speak about this capability? Then it is governed by the rules, and an
    /// access no rule allows is denied.
    pub(crate) fn governs(&self, capability: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.capability.as_ref().is_none_or(|c| c.matches(capability)))
    }

    /// Does any rule name a capability of this family (`filesystem`, `network`, ...)?
    pub(crate) fn governs_family(&self, family: &str) -> bool {
        self.rules.iter().any(|r| match &r.capability {
            None | Some(CapabilityPattern::Any) => true,
            Some(c) => c.family() == Some(family),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_patterns() {
        assert!(CapabilityPattern::parse("filesystem.*").matches("filesystem.read"));
        assert!(!CapabilityPattern::parse("filesystem.*").matches("filesystemx.read"));
        assert!(!CapabilityPattern::parse("filesystem.*").matches("filesystem"));
        assert!(CapabilityPattern::parse("*").matches("shell.execute"));
        assert!(CapabilityPattern::parse("shell.execute").matches("shell.execute"));
        assert!(!CapabilityPattern::parse("shell.execute").matches("shell.executex"));
        assert_eq!(
            CapabilityPattern::parse("network.fetch").family(),
            Some("network")
        );
    }
}
