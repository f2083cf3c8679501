//! The built-in policies, compiled into the binary from `policies/`.

const BUILTIN: &[(&str, &str, &str)] = &[
    ("strict", include_str!("../../policies/strict.yaml"), "MCP Jail's strict: /tmp read-write, no network, shell tools blocked (the default)"),
    ("readonly", include_str!("../../policies/readonly.yaml"), "MCP Jail's readonly: $CAPJAIL_WORKSPACE (default /workspace) read-only, read tools only, no network"),
    ("workspace", include_str!("../../policies/workspace.yaml"), "$CAPJAIL_WORKSPACE (default: the current directory, never / or ~) read-write, no network, shell tools blocked"),
    ("capfence", include_str!("../../policies/capfence.yaml"), "CapFence's MCP host sandboxing rules, with the workspace at $CAPJAIL_WORKSPACE"),
];

/// The policy used when `--policy` is not given.
pub(crate) const DEFAULT: &str = "strict";

pub(crate) fn get(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, _)| *t)
}

pub(crate) fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _, _)| *n).collect()
}

/// (name, one-line summary)
pub(crate) fn summaries() -> Vec<(&'static str, &'static str)> {
    BUILTIN.iter().map(|(n, _, s)| (*n, *s)).collect()
}
