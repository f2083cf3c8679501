//! WHAT IS ALLOWED: the policy, as loaded from YAML and compiled into the form the checks use.
//!
//! `schema` is the file as written, `load` finds and parses it (built-in name or path),
//! `compile` turns it into [`Policy`]: paths expanded and made absolute, host patterns parsed,
//! rules numbered so that every denial can name the rule that decided it.

pub(crate) mod builtin;
pub(crate) mod compile;
pub(crate) mod effective;
pub(crate) mod expand;
pub(crate) mod grants;
mod implicit;
pub(crate) mod load;
pub(crate) mod proxy_rules;
pub(crate) mod rule_id;
pub(crate) mod rules;
pub(crate) mod schema;
pub(crate) mod sections;

use std::path::PathBuf;

pub(crate) use effective::effective_yaml;
#[cfg(test)]
pub(crate) use load::load_str_in;
pub use load::{load, load_str, PolicyError};
pub(crate) use load::{load_file, load_in};
pub use rule_id::RuleId;
pub(crate) use rules::{Rule, RuleKind, RuleSet};
pub(crate) use schema::{MountMode, NetworkMode, PolicyFile, ToolsMode};

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    Builtin(String),
    File(PathBuf),
    Inline,
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::Builtin(n) => write!(f, "built-in policy `{n}`"),
            PolicySource::File(p) => write!(f, "{}", p.display()),
            PolicySource::Inline => write!(f, "<inline policy>"),
        }
    }
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) name: String,
    pub(crate) source: PolicySource,
    /// The exact text the policy was loaded from (hashed into the audit log).
    pub(crate) text: String,
    /// The file as parsed. Private to this module: only `effective` reads it (for the parts
    /// printed as written); everything else reads the compiled sections below.
    file: PolicyFile,
    pub(crate) filesystem: FilesystemPolicy,
    pub(crate) network: NetworkPolicy,
    pub(crate) tools: ToolPolicy,
    pub(crate) rules: RuleSet,
    pub(crate) limits: ProxyLimits,
    /// Who answers `require_approval` questions (src/approval).
    pub(crate) approval: crate::approval::config::ApprovalPolicy,
    /// `pins:` and `tool_scan:` (tool definitions: pinned, scanned).
    pub(crate) trust: crate::trust::settings::TrustPolicy,
    /// `content:` compiled (protective defaults when absent).
    pub(crate) content: crate::content::ContentPolicy,
    /// `flows:` compiled (the built-in rules when absent).
    pub(crate) flows: crate::content::FlowPolicy,
    /// `kernel:` (and `network.unix_sockets`) compiled.
    pub(crate) kernel: sections::KernelPolicy,
    /// `environment:` compiled.
    pub(crate) environment: sections::EnvironmentPolicy,
    /// `audit:` compiled.
    pub(crate) audit: sections::AuditPolicy,
}

/// How the filesystem is governed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FilesystemPolicy {
    /// `Some(mounts)`: only these are reachable (an empty list reaches nothing).
    /// `None`: not restricted by mounts (only capability rules apply).
    pub(crate) mounts: Option<Vec<Mount>>,
    /// `filesystem.executes`: patterns of files whose writing is execution.
    pub(crate) executes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Absolute, lexically normalised, symlinks resolved where the path exists.
    pub(crate) path: PathBuf,
    /// The path as written in the policy (for messages).
    pub(crate) written: String,
    pub(crate) mode: MountMode,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetworkPolicy {
    pub(crate) mode: NetworkMode,
    pub(crate) allowed_hosts: Vec<HostPattern>,
    pub(crate) allow_private: bool,
    pub(crate) allow_loopback: bool,
    pub(crate) allow_link_local: bool,
    /// Resolve names and check every address.
    pub(crate) resolve: bool,
}

/// One `allowed_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    /// As written.
    pub(crate) written: String,
    /// Lower-case, no trailing dot; for IP literals the canonical text of the address.
    pub(crate) host: String,
    /// `*.domain`: matches strict sub-domains of `host` only.
    pub(crate) wildcard: bool,
    /// `None`: any port.
    pub(crate) port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolPolicy {
    pub(crate) mode: ToolsMode,
    pub(crate) allowed: Vec<String>,
    pub(crate) blocked: Vec<String>,
    pub(crate) hide_blocked: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProxyLimits {
    pub(crate) max_line_bytes: usize,
    pub(crate) max_depth: usize,
    /// Client requests forwarded and not yet answered, at most (one more is refused).
    pub(crate) max_in_flight: usize,
    pub(crate) grace: std::time::Duration,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            grace: std::time::Duration::from_secs(2),
        }
    }
}

/// Default longest message line: 16 MiB (the filesystem server itself refuses lines over 10 MB).
pub(crate) const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Default deepest JSON nesting accepted from the client.
pub(crate) const DEFAULT_MAX_DEPTH: usize = 64;
/// Default most client requests in flight at once: far above any client's use (the pipelining
/// benchmark, 200,000 calls as fast as the pipes take them, never has 1,024 in flight), low
/// enough that what capjail keeps for them (~220 bytes each, with the tables' slack) stays
/// about 1 MiB when a server answers nothing.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

impl Policy {
    /// Does the policy restrict the filesystem (mounts or filesystem rules)?
    pub(crate) fn restricts_filesystem(&self) -> bool {
        self.filesystem.mounts.is_some() || self.rules.governs_family("filesystem")
    }

    /// Does the policy restrict the network?
    pub(crate) fn restricts_network(&self) -> bool {
        self.network.mode != NetworkMode::All
            || !self.network.allow_private
            || !self.network.allow_loopback
            || self.rules.governs_family("network")
    }
}
