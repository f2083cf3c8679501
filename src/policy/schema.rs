//! The policy file as written: serde types, nothing else.
//!
//! One schema reads both seed formats and the native one: MCP Jail's `name` / `network` /
//! `filesystem` / `tools` sections and CapFence's top-level `policy_name` / `version` /
//! `deny` / `require_approval` / `allow` rule lists. Unknown keys are an error everywhere.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyFile {
    /// Policy name (MCP Jail spelling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// Policy name (CapFence spelling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_version"
    )]
    pub(crate) version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) filesystem: Option<FilesystemSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) network: Option<NetworkSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tools: Option<ToolsSection>,

    /// Capability rules. Precedence: deny > require_approval > allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) deny: Vec<RuleFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) require_approval: Vec<RuleFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) allow: Vec<RuleFile>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) proxy: Option<ProxySection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kernel: Option<KernelSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) environment: Option<EnvironmentSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) audit: Option<AuditSection>,
    /// Who is asked when a call matches `require_approval` (src/approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) approval: Option<ApprovalSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pins: Option<PinsSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tool_scan: Option<ToolScanSection>,
    /// Content checks (secrets leaving, secrets and instructions coming back): src/content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) content: Option<crate::content::schema::ContentSection>,
    /// Rules over sequences of calls: src/content/flows.rs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) flows: Option<crate::content::schema::FlowsSection>,
}

/// CapFence writes `version: 1.0.0`, which YAML reads as a string; a bare `1` or `1.0` is a number.
fn de_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<serde_yaml::Value> = Option::deserialize(d)?;
    Ok(match v {
        None | Some(serde_yaml::Value::Null) => None,
        Some(serde_yaml::Value::String(s)) => Some(s),
        Some(serde_yaml::Value::Number(n)) => Some(n.to_string()),
        Some(serde_yaml::Value::Bool(b)) => Some(b.to_string()),
        Some(_) => {
            return Err(serde::de::Error::custom(
                "version must be a string or a number",
            ))
        }
    })
}

#[derive(
    Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FilesystemMode {
    /// Only the listed mounts are reachable (MCP Jail's `explicit`).
    #[default]
    Explicit,
    /// The filesystem is not restricted by mounts (capability rules still apply).
    Any,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilesystemSection {
    #[serde(default)]
    pub(crate) mode: FilesystemMode,
    #[serde(default)]
    pub(crate) mounts: Vec<MountFile>,
    /// Patterns of files whose writing is execution, added to the built-in list
    /// (`check::exec_writes`): `**/deploy/*.sh`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) executes: Vec<String>,
}

#[derive(
    Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MountMode {
    #[default]
    Ro,
    Rw,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MountFile {
    /// `~` and `$VAR` / `${VAR}` are expanded.
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) mode: MountMode,
}

#[derive(
    Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NetworkMode {
    #[default]
    None,
    Allowlist,
    All,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkSection {
    #[serde(default)]
    pub(crate) mode: NetworkMode,
    /// `host`, `host:port`, `*.domain`, `*.domain:port`, IP literals, `[v6]:port`.
    #[serde(default)]
    pub(crate) allowed_hosts: Vec<String>,
    /// Opt-ins for address ranges that are refused by default (cloud metadata never is).
    #[serde(default)]
    pub(crate) allow_private: bool,
    #[serde(default)]
    pub(crate) allow_loopback: bool,
    #[serde(default)]
    pub(crate) allow_link_local: bool,
    /// Resolve host names and check every address (default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resolve: Option<bool>,
    /// Pathname unix sockets the server may connect to (absolute; `~` and variables
    /// expanded). Empty (the default): `socket(AF_UNIX)` is refused by the kernel layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) unix_sockets: Vec<String>,
}

#[derive(
    Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ToolsMode {
    #[default]
    All,
    Allowlist,
    Blocklist,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToolsSection {
    #[serde(default)]
    pub(crate) mode: ToolsMode,
    #[serde(default)]
    pub(crate) allowed: Vec<String>,
    #[serde(default)]
    pub(crate) blocked: Vec<String>,
    /// Hide tools the policy blocks from `tools/list` responses (default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hide_blocked: Option<bool>,
}

/// One capability rule. Every condition given must match; an absent condition matches anything.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    /// `filesystem.read`, `filesystem.write`, `network.fetch`, `shell.execute`, ... or a
    /// family wildcard such as `filesystem.*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) capability: Option<String>,
    /// Exact tool name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tool: Option<String>,
    /// Path containment by whole components (`/a/b` covers `/a/b` and `/a/b/c`, never `/a/bc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) path_prefix: Option<String>,
    /// Host name (`example.com`, `*.example.com`) of a URL resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<String>,
    /// JSON-RPC method (`tools/call`, `resources/read`, `prompts/get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) method: Option<String>,
    /// With `capability: environment.read` only: the variables a tool that reads the server's
    /// environment may show (names, `PREFIX_*`, `*`); every other value is cut from its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) variables: Option<Vec<String>>,
    /// Free text shown in denials and the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProxySection {
    /// Longest accepted message line in bytes (default 16 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_line_bytes: Option<usize>,
    /// Deepest accepted JSON nesting (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_depth: Option<usize>,
    /// Most client requests in flight (forwarded, not yet answered or cancelled) at once;
    /// one more is refused with `protocol.in_flight` (default 4096). The server's requests
    /// to the client unanswered are bounded the same way (one more is not relayed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_in_flight: Option<usize>,
    /// Seconds between closing the server's stdin and SIGTERM, and between SIGTERM and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) grace_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KernelSection {
    /// Refuse to start the server unless every part of the kernel layer is enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) require: Option<bool>,
    /// Extra paths the server may read and execute (interpreters, libraries) beyond the mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) extra_read: Vec<String>,
    /// Extra paths the server may write (caches) beyond the mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) extra_write: Vec<String>,
    /// Give the server a world of its own (mount, PID, IPC, UTS, network, user namespaces;
    /// default true). `false` keeps only Landlock + seccomp in the host's world (the fallback
    /// used where namespaces cannot be created; tests force it with this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) namespaces: Option<bool>,
    /// Resource limits of the server.
    #[serde(default, skip_serializing_if = "RlimitsSection::is_empty")]
    pub(crate) rlimits: RlimitsSection,
}

/// `kernel.rlimits`: resource limits of the server (core dumps are always off).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RlimitsSection {
    /// Open files (RLIMIT_NOFILE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nofile: Option<u64>,
    /// Processes of the real uid (RLIMIT_NPROC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nproc: Option<u64>,
    /// Address space in bytes (RLIMIT_AS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) as_bytes: Option<u64>,
    /// Largest file written, in bytes (RLIMIT_FSIZE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fsize_bytes: Option<u64>,
    /// CPU time in seconds (RLIMIT_CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cpu_seconds: Option<u64>,
}

impl RlimitsSection {
    pub(crate) fn is_empty(&self) -> bool {
        self == &RlimitsSection::default()
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvironmentSection {
    /// Variables passed to the server (names or `PREFIX_*` patterns), added to the defaults.
    #[serde(default)]
    pub(crate) allow: Vec<String>,
    /// Variables set for the server (after expansion).
    #[serde(default)]
    pub(crate) set: std::collections::BTreeMap<String, String>,
    /// Pass the whole environment through (not recommended).
    #[serde(default)]
    pub(crate) inherit_all: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditSection {
    /// Audit log file (`~` and `$VAR` expanded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    /// May the user turn auditing off with `--audit off`? (default: true)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) allow_off: Option<bool>,
    /// fsync after every record (default: false; every record is flushed regardless).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fsync: Option<bool>,
    /// Argument names whose values are redacted in the log (a digest of the original is kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) redact: Vec<String>,
    /// Rotate the log when it reaches this many bytes (default 64 MiB; 0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_bytes: Option<u64>,
    /// Rotated files kept besides the live one (default 4; older ones are deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keep: Option<usize>,
}

/// `approval:`: who is asked when a call matches `require_approval`, and for how long.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalSection {
    /// Approvers tried in this order: `client` (elicitation), `command`, `terminal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) approvers: Option<Vec<ApproverKind>>,
    /// How long a question waits for its answer before the call is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_seconds: Option<f64>,
    /// `session`: "approve for the rest of this session" may be offered; `never`: every call asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) remember: Option<RememberMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) command: Option<ApprovalCommandSection>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ApproverKind {
    Client,
    Command,
    Terminal,
}

#[derive(
    Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RememberMode {
    #[default]
    Session,
    Never,
}

/// The approver command: one JSON document on stdin, the answer on stdout.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalCommandSection {
    pub(crate) argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_seconds: Option<f64>,
}

/// `pins:` tool definitions pinned per server (trust on first use, or from a committed file).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PinsSection {
    /// Pin definitions at all (default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) enabled: Option<bool>,
    /// The pin file (`~` and `$VAR` expanded) [default: $XDG_STATE_HOME/capjail/pins.json].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<String>,
    /// Never pin anything new: a tool without a pin is treated as changed (default: false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) frozen: Option<bool>,
    /// A definition that differs from its pin: `refuse` (default), `hide` or `approve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) on_change: Option<crate::trust::settings::OnChange>,
}

/// `tool_scan:` what capjail does with tool definitions that talk to the model.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToolScanSection {
    /// Scan definitions at all (default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) enabled: Option<bool>,
    /// Per severity: `hide`, `refuse`, `approve` or `record` (defaults: hide, record, record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) high: Option<crate::trust::settings::ScanAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) medium: Option<crate::trust::settings::ScanAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) low: Option<crate::trust::settings::ScanAction>,
    /// Scanner rule ids never reported (`scan.credential_word`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) ignore: Vec<String>,
}
