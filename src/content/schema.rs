//! The `content:` and `flows:` policy sections as written (serde types; unknown keys rejected).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContentSection {
    /// Content checks on (default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) outgoing: Option<OutgoingSection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) results: Option<ResultsSection>,
    /// Paths whose contents are secret (added to the defaults: `~/.ssh`, `~/.aws`, `.env`, ...).
    /// An entry with a `/` (or `~`) is a path prefix; one without is a file name pattern with an
    /// optional trailing `*` (`.env*`, `id_rsa*`, `*.pem` is written `.pem` suffix: `*.pem`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) sensitive: Vec<String>,
    /// Keep the built-in sensitive paths (default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sensitive_defaults: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutgoingSection {
    /// Action for every class not listed in `classes` (default: refuse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) default: Option<String>,
    /// Per class: `refuse`, `approval`, `record` or `off`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) classes: BTreeMap<String, String>,
    /// Hosts (same syntax as `network.allowed_hosts`) whose URLs are not scanned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) exempt_hosts: Vec<String>,
    /// Tools whose arguments are not scanned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) exempt_tools: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultsSection {
    /// `redact` (default), `refuse`, `record` or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secrets: Option<String>,
    /// Text addressed to the model: `wrap` (default), `strip`, `refuse`, `record` or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) injection: Option<String>,
    /// Invisible characters: `strip` (default), `refuse`, `record` or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hidden_unicode: Option<String>,
    /// Tools whose results are not scanned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) exempt_tools: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlowsSection {
    /// Keep the built-in flow rules (default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) defaults: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) rules: Vec<FlowRuleFile>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlowRuleFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    pub(crate) after: FlowAfterFile,
    pub(crate) then: FlowThenFile,
    /// `approval` (default) or `refuse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) action: Option<String>,
    /// How long the rule stays armed after the event (default: the rest of the session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) window_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlowAfterFile {
    /// `sensitive_read`, `read`, `env_read` or `secret_in_result`.
    pub(crate) event: String,
    /// For `read` / `sensitive_read`: only reads below this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) path_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlowThenFile {
    /// A capability or family wildcard (`network.*`, `shell.execute`, `filesystem.write`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) capability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tool: Option<String>,
    /// Only accesses to paths outside this directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) outside: Option<String>,
}
