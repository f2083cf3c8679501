//! What the PROXY layer checks for a policy, as `capjail policy explain` prints it next to the
//! kernel plan: mounts, network, tools, rules and limits, with paths expanded.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::{NetworkMode, Policy, ToolsMode};

fn host_line(h: &super::HostPattern) -> String {
    match h.port {
        Some(p) => format!("{} (port {p})", h.written),
        None => format!("{} (ports 80 and 443)", h.written),
    }
}

/// The proxy's rules as text.
pub(crate) fn text(p: &Policy) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "PROXY LAYER (--mode proxy / full): every message is checked against `{}` ({})",
        p.name, p.source
    );
    match &p.filesystem.mounts {
        Some(m) if m.is_empty() => {
            let _ = writeln!(o, "  filesystem: no path is reachable (no mounts)");
        }
        Some(m) => {
            let _ = writeln!(
                o,
                "  filesystem: only inside these mounts (rule filesystem.mounts[PATH]):"
            );
            for m in m {
                let _ = writeln!(
                    o,
                    "    {:?} {}   (written: {})",
                    m.mode,
                    m.path.display(),
                    m.written
                );
            }
        }
        None => {
            let _ = writeln!(
                o,
                "  filesystem: not restricted by mounts; the rules below decide"
            );
        }
    }
    let n = &p.network;
    let mode = match n.mode {
        NetworkMode::None => "none: every URL is refused (network.mode)".to_string(),
        NetworkMode::All => "all public hosts".to_string(),
        NetworkMode::Allowlist => format!(
            "only network.allowed_hosts: {}",
            n.allowed_hosts
                .iter()
                .map(host_line)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let _ = writeln!(o, "  network: {mode}");
    let _ = writeln!(
        o,
        "    private {}, loopback {}, link-local {}, names resolved and every address checked: {}; cloud metadata never",
        yes(n.allow_private),
        yes(n.allow_loopback),
        yes(n.allow_link_local),
        yes(n.resolve)
    );
    let t = &p.tools;
    let tools = match t.mode {
        ToolsMode::All => "every tool (arguments still checked)".to_string(),
        ToolsMode::Allowlist => format!("only {}", t.allowed.join(", ")),
        ToolsMode::Blocklist => format!("all but {}", t.blocked.join(", ")),
    };
    let _ = writeln!(
        o,
        "  tools: {tools}{}",
        if t.hide_blocked {
            " (blocked tools hidden from tools/list)"
        } else {
            ""
        }
    );
    if p.rules.rules.is_empty() {
        let _ = writeln!(o, "  rules: none");
    } else {
        let _ = writeln!(o, "  rules (deny, then require_approval, then allow):");
        for r in &p.rules.rules {
            let reason = r
                .reason
                .as_deref()
                .map(|x| format!("  # {x}"))
                .unwrap_or_default();
            let _ = writeln!(o, "    {}{reason}", r.label);
        }
    }
    let _ = writeln!(
        o,
        "  limits: messages up to {} bytes, JSON nesting up to {}, {} requests in flight",
        p.limits.max_line_bytes, p.limits.max_depth, p.limits.max_in_flight
    );
    o
}

fn yes(b: bool) -> &'static str {
    if b {
        "allowed"
    } else {
        "refused"
    }
}

/// The proxy's rules as JSON.
pub(crate) fn json(p: &Policy) -> Value {
    json!({
        "policy": p.name,
        "source": p.source.to_string(),
        "mounts": p.filesystem.mounts.as_ref().map(|m| m.iter().map(|m| json!({
            "path": m.path.display().to_string(), "written": m.written, "mode": format!("{:?}", m.mode).to_lowercase(),
        })).collect::<Vec<_>>()),
        "network": {
            "mode": format!("{:?}", p.network.mode).to_lowercase(),
            "allowed_hosts": p.network.allowed_hosts.iter().map(host_line).collect::<Vec<_>>(),
            "allow_private": p.network.allow_private,
            "allow_loopback": p.network.allow_loopback,
            "allow_link_local": p.network.allow_link_local,
            "resolve": p.network.resolve,
        },
        "tools": {
            "mode": format!("{:?}", p.tools.mode).to_lowercase(),
            "allowed": p.tools.allowed,
            "blocked": p.tools.blocked,
            "hide_blocked": p.tools.hide_blocked,
        },
        "rules": p.rules.rules.iter().map(|r| r.label.clone()).collect::<Vec<_>>(),
        "max_line_bytes": p.limits.max_line_bytes,
        "max_depth": p.limits.max_depth,
        "max_in_flight": p.limits.max_in_flight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_str, PolicySource};

    #[test]
    fn names_mounts_hosts_tools_and_rules() {
        let p = load_str(
            "filesystem:\n  mounts:\n    - path: /srv/ws\n      mode: rw\nnetwork:\n  mode: allowlist\n  allowed_hosts: [a.test, \"b.test:8443\"]\ntools:\n  mode: blocklist\n  blocked: [shell]\ndeny:\n  - capability: filesystem.read\n    path_prefix: /srv/ws/.git\n    reason: no git internals\n",
            PolicySource::Inline,
        )
        .unwrap();
        let t = text(&p);
        for needle in [
            "/srv/ws",
            "a.test (ports 80 and 443)",
            "b.test:8443 (port 8443)",
            "all but shell",
            "deny[0]",
            "no git internals",
        ] {
            assert!(t.contains(needle), "{needle} missing:\n{t}");
        }
        assert_eq!(json(&p)["mounts"][0]["path"], "/srv/ws");
    }
}
