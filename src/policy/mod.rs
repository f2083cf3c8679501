//! WHAT IS ALLOWED: the policy, as loaded from YAML and compiled into the form the checks use.
//!
//! `schema` is the file as written, `load` finds and parses it (built-in name or path),
//! `compile` turns it into [`Policy`]: paths expanded and made absolute, host patterns parsed,
//! rules numbered so that every denial can name the rule that decided it.

pub mod builtin;
pub mod compile;
pub mod effective;
pub mod expand;
pub mod grants;
mod implicit;
pub mod load;
pub mod proxy_rules;
pub mod rule_id;
pub mod rules;
pub mod schema;
pub mod sections;

use std::path::PathBuf;

pub use compile::compile;
pub use effective::effective_yaml;
pub use load::{load, load_file, load_file_in, load_in, load_str, load_str_in, PolicyError};
pub use rule_id::RuleId;
pub use rules::{Rule, RuleKind, RuleSet};
pub use schema::{MountMode, NetworkMode, PolicyFile, ToolsMode};

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
    pub name: String,
    pub source: PolicySource,
    /// The exact text the policy was loaded from (hashed into the audit log).
    pub text: String,
    /// The file as parsed. Private to this module: only `effective` reads it (for the parts
    /// printed as written); everything else reads the compiled sections below.
    file: PolicyFile,
    pub filesystem: FilesystemPolicy,
    pub network: NetworkPolicy,
    pub tools: ToolPolicy,
    pub rules: RuleSet,
    pub limits: ProxyLimits,
    /// Who answers `require_approval` questions (src/approval).
    pub approval: crate::approval::config::ApprovalPolicy,
    /// `pins:` and `tool_scan:` (tool definitions: pinned, scanned).
    pub trust: crate::trust::settings::TrustPolicy,
    /// `content:` compiled (protective defaults when absent).
    pub content: crate::content::ContentPolicy,
    /// `flows:` compiled (the built-in rules when absent).
    pub flows: crate::content::FlowPolicy,
    /// `kernel:` (and `network.unix_sockets`) compiled.
    pub kernel: sections::KernelPolicy,
    /// `environment:` compiled.
    pub environment: sections::EnvironmentPolicy,
    /// `audit:` compiled.
    pub audit: sections::AuditPolicy,
}

/// How the filesystem is governed.
#[derive(Debug, Clone, PartialEq)]
pub struct FilesystemPolicy {
    /// `Some(mounts)`: only these are reachable (an empty list reaches nothing).
    /// `None`: not restricted by mounts (only capability rules apply).
    pub mounts: Option<Vec<Mount>>,
    /// `filesystem.executes`: patterns of files whose writing is execution.
    pub executes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Absolute, lexically normalised, symlinks resolved where the path exists.
    pub path: PathBuf,
    /// The path as written in the policy (for messages).
    pub written: String,
    pub mode: MountMode,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkPolicy {
    pub mode: NetworkMode,
    pub allowed_hosts: Vec<HostPattern>,
    pub allow_private: bool,
    pub allow_loopback: bool,
    pub allow_link_local: bool,
    /// Resolve names and check every address.
    pub resolve: bool,
}

/// One `allowed_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// As written.
    pub written: String,
    /// Lower-case, no trailing dot; for IP literals the canonical text of the address.
    pub host: String,
    /// `*.domain`: matches strict sub-domains of `host` only.
    pub wildcard: bool,
    /// `None`: any port.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolPolicy {
    pub mode: ToolsMode,
    pub allowed: Vec<String>,
    pub blocked: Vec<String>,
    pub hide_blocked: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyLimits {
    pub max_line_bytes: usize,
    pub max_depth: usize,
    pub grace: std::time::Duration,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
            grace: std::time::Duration::from_secs(2),
        }
    }
}

/// Default longest message line: 16 MiB (the filesystem server itself refuses lines over 10 MB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Default deepest JSON nesting accepted from the client.
pub const DEFAULT_MAX_DEPTH: usize = 64;

impl Policy {
    /// Does the policy restrict the filesystem (mounts or filesystem rules)?
    pub fn restricts_filesystem(&self) -> bool {
        self.filesystem.mounts.is_some() || self.rules.governs_family("filesystem")
    }

    /// Does the policy restrict the network?
    pub fn restricts_network(&self) -> bool {
        self.network.mode != NetworkMode::All
            || !self.network.allow_private
            || !self.network.allow_loopback
            || self.rules.governs_family("network")
    }
}
