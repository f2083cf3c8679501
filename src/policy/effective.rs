//! The effective policy as YAML: what `capjail policy show` prints. Defaults are written out
//! and paths expanded, so the output is itself a valid policy that means the same thing.

use super::rules::{CapabilityPattern, RuleKind};
use super::schema::{
    FilesystemMode, FilesystemSection, MountFile, NetworkSection, PolicyFile, ProxySection,
    RuleFile, ToolsSection,
};
use super::Policy;

fn executes(p: &Policy) -> Vec<String> {
    p.filesystem.executes.clone()
}

pub(crate) fn effective_file(p: &Policy) -> PolicyFile {
    let filesystem = Some(match &p.filesystem.mounts {
        Some(mounts) => FilesystemSection {
            mode: FilesystemMode::Explicit,
            mounts: mounts
                .iter()
                .map(|m| MountFile {
                    path: m.path.display().to_string(),
                    mode: m.mode,
                })
                .collect(),
            executes: executes(p),
        },
        None => FilesystemSection {
            mode: FilesystemMode::Any,
            mounts: vec![],
            executes: executes(p),
        },
    });
    let network = Some(NetworkSection {
        mode: p.network.mode,
        allowed_hosts: p
            .network
            .allowed_hosts
            .iter()
            .map(|h| h.written.clone())
            .collect(),
        allow_private: p.network.allow_private,
        allow_loopback: p.network.allow_loopback,
        allow_link_local: p.network.allow_link_local,
        resolve: Some(p.network.resolve),
        unix_sockets: p
            .kernel
            .unix_sockets
            .iter()
            .map(|u| u.written.clone())
            .collect(),
    });
    let tools = Some(ToolsSection {
        mode: p.tools.mode,
        allowed: p.tools.allowed.clone(),
        blocked: p.tools.blocked.clone(),
        hide_blocked: Some(p.tools.hide_blocked),
    });
    let mut deny = vec![];
    let mut require_approval = vec![];
    let mut allow = vec![];
    for r in &p.rules.rules {
        let rf = RuleFile {
            capability: r.capability.as_ref().map(|c| match c {
                CapabilityPattern::Any => "*".to_string(),
                CapabilityPattern::Exact(s) => s.clone(),
                CapabilityPattern::Family(f) => format!("{f}.*"),
            }),
            tool: r.tool.clone(),
            path_prefix: r.path_prefix.as_ref().map(|x| x.display().to_string()),
            host: r.host.as_ref().map(|h| h.written.clone()),
            method: r.method.clone(),
            variables: r.variables.clone(),
            reason: r.reason.clone(),
        };
        match r.kind {
            RuleKind::Deny => deny.push(rf),
            RuleKind::RequireApproval => require_approval.push(rf),
            RuleKind::Allow => allow.push(rf),
        }
    }
    let (pins, tool_scan) = crate::trust::settings::effective_sections(&p.trust);
    PolicyFile {
        pins: Some(pins),
        tool_scan: Some(tool_scan),
        name: Some(p.name.clone()),
        policy_name: None,
        version: p.file.version.clone(),
        description: p.file.description.clone(),
        filesystem,
        network,
        tools,
        deny,
        require_approval,
        allow,
        proxy: Some(ProxySection {
            max_line_bytes: Some(p.limits.max_line_bytes),
            max_depth: Some(p.limits.max_depth),
            max_in_flight: Some(p.limits.max_in_flight),
            grace_seconds: Some(p.limits.grace.as_secs_f64()),
        }),
        // Every section, with its defaults written out.
        kernel: Some(p.kernel.section()),
        environment: Some(p.environment.section()),
        audit: Some(p.audit.section()),
        approval: p.file.approval.clone(),
        content: p.file.content.clone(),
        flows: p.file.flows.clone(),
    }
}

pub(crate) fn effective_yaml(p: &Policy) -> String {
    let body = serde_yaml::to_string(&effective_file(p)).expect("a policy serialises");
    format!("# effective policy, from {}\n{body}", p.source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{builtin, load_str, PolicySource};

    #[test]
    fn effective_policy_round_trips() {
        for name in builtin::names() {
            let p = crate::policy::load_str_in(
                builtin::get(name).unwrap(),
                PolicySource::Builtin(name.into()),
                Some(std::path::Path::new("/srv/ws")),
            )
            .unwrap();
            let text = effective_yaml(&p);
            let again = load_str(&text, PolicySource::Inline)
                .unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            let mounts = |p: &Policy| {
                p.filesystem.mounts.as_ref().map(|m| {
                    m.iter()
                        .map(|m| (m.path.clone(), m.mode))
                        .collect::<Vec<_>>()
                })
            };
            assert_eq!(mounts(&again), mounts(&p), "{name}");
            assert_eq!(again.network, p.network, "{name}");
            assert_eq!(again.tools, p.tools, "{name}");
            assert_eq!(again.trust, p.trust, "{name}");
            assert_eq!(again.rules.rules.len(), p.rules.rules.len(), "{name}");
            for section in [
                "\nkernel:",
                "\nenvironment:",
                "\naudit:",
                "\nproxy:",
                "max_bytes:",
            ] {
                assert!(text.contains(section), "{name}: no {section}\n{text}");
            }
        }
    }
}
