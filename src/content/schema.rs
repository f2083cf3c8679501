//! The `content:` and `flows:` policy sections as written (serde types; unknown keys rejected).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentSection {
    /// Content checks on (default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing: Option<OutgoingSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<ResultsSection>,
    /// Paths whose contents are secret (added to the defaults: `~/.ssh`, `~/.aws`, `.env`, ...).
    /// An entry with a `/` (or `~`) is a path prefix; one without is a file name pattern with an
    /// optional trailing `*` (`.env*`, `id_rsa*`, `*.pem` is written `.pem` suffix: `*.pem`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    /// Keep the built-in sensitive paths (default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive_defaults: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutgoingSection {
    /// Action for every class not listed in `classes` (default: refuse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Per class: `refuse`, `approval`, `record` or `off`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<String, String>,
    /// Hosts (same syntax as `network.allowed_hosts`) whose URLs are not scanned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt_hosts: Vec<String>,
    /// Tools whose arguments are not scanned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt_tools: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultsSection {
    /// `redact` (default), `refuse`, `record` or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<String>,
    /// Text addressed to the model: `wrap` (default), `strip`, `refuse`, `record` or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<String>,
    /// Invisible characters: `strip` (default), `refuse`, `record` or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_unicode: Option<String>,
    /// Tools whose results are not scanned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt_tools: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowsSection {
    /// Keep the built-in flow rules (default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<FlowRuleFile>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowRuleFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub after: FlowAfterFile,
    pub then: FlowThenFile,
    /// `approval` (default) or `refuse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// How long the rule stays armed after the event (default: the rest of the session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowAfterFile {
    /// `sensitive_read`, `read`, `env_read` or `secret_in_result`.
    pub event: String,
    /// For `read` / `sensitive_read`: only reads below this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowThenFile {
    /// A capability or family wildcard (`network.*`, `shell.execute`, `filesystem.write`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Only accesses to paths outside this directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside: Option<String>,
}
