//! PolicyFile (as written) -> Policy (as checked).

use std::path::{Path, PathBuf};

use super::expand::{expand_tracked, ExpandError};
use super::rules::{CapabilityPattern, Rule, RuleKind, RuleSet};
use super::schema::{FilesystemMode, NetworkMode, PolicyFile, RuleFile, ToolsMode};
use super::{
    FilesystemPolicy, HostPattern, Mount, NetworkPolicy, Policy, PolicySource, ProxyLimits,
    ToolPolicy,
};
use crate::check::path::{canonicalize_lenient, lexical_normalize};

/// A semantic error in a policy, with the dotted key path of the offending value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{key}: {message}")]
pub(crate) struct CompileError {
    pub(crate) key: String,
    /// The offending value as written (used to locate it in the file).
    pub(crate) value: Option<String>,
    pub(crate) message: String,
}

fn err(key: impl Into<String>, value: Option<&str>, message: impl Into<String>) -> CompileError {
    CompileError {
        key: key.into(),
        value: value.map(str::to_string),
        message: message.into(),
    }
}

/// Compile with the process environment, `${CAPJAIL_WORKSPACE}` standing for `workspace`
/// when one is given (`--workspace DIR`): the workspace is a parameter, never set on the process.
pub(crate) fn compile_in(
    file: PolicyFile,
    text: String,
    source: PolicySource,
    workspace: Option<&Path>,
) -> Result<Policy, CompileError> {
    let env = workspace_env(workspace, &process_env);
    compile_with(file, text, source, &env)
}

/// `env` with `CAPJAIL_WORKSPACE` answered by `workspace` when given.
pub(crate) fn workspace_env<'a>(
    workspace: Option<&'a Path>,
    env: &'a dyn Fn(&str) -> Option<String>,
) -> impl Fn(&str) -> Option<String> + 'a {
    move |k: &str| match workspace {
        Some(w) if k == WORKSPACE_VAR => Some(w.to_string_lossy().into_owned()),
        _ => env(k),
    }
}

/// The variable `--workspace` stands for in policies.
pub(crate) const WORKSPACE_VAR: &str = "CAPJAIL_WORKSPACE";

/// The process environment, except that `PWD` is the real working directory: a client that
/// starts capjail without a shell leaves a stale or missing `PWD`.
fn process_env(k: &str) -> Option<String> {
    if k == "PWD" {
        if let Ok(d) = std::env::current_dir() {
            return Some(d.to_string_lossy().into_owned());
        }
    }
    std::env::var(k).ok()
}

pub(crate) fn compile_with(
    file: PolicyFile,
    text: String,
    source: PolicySource,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Policy, CompileError> {
    let name = file
        .name
        .clone()
        .or_else(|| file.policy_name.clone())
        .unwrap_or_else(|| match &source {
            PolicySource::Builtin(n) => n.clone(),
            PolicySource::File(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            PolicySource::Inline => "inline".into(),
        });

    let rules = compile_rules(&file, env)?;

    let filesystem = match &file.filesystem {
        Some(fs) => {
            let mut mounts = Vec::new();
            for (i, m) in fs.mounts.iter().enumerate() {
                let key = format!("filesystem.mounts[{i}].path");
                let path = absolute_path(&m.path, env).map_err(|e| err(&key, Some(&m.path), e))?;
                mounts.push(Mount {
                    path: canonicalize_lenient(&path),
                    written: m.path.clone(),
                    mode: m.mode,
                });
            }
            match fs.mode {
                FilesystemMode::Explicit => FilesystemPolicy {
                    mounts: Some(mounts),
                    executes: fs.executes.clone(),
                },
                FilesystemMode::Any if mounts.is_empty() => FilesystemPolicy {
                    mounts: None,
                    executes: fs.executes.clone(),
                },
                FilesystemMode::Any => {
                    return Err(err(
                        "filesystem.mode",
                        Some("any"),
                        "mode `any` does not restrict the filesystem, so `mounts` would be ignored: use mode `explicit` or remove the mounts",
                    ))
                }
            }
        }
        // No section: governed by the rules if they speak about the filesystem, else nothing is reachable.
        None if rules.governs_family("filesystem") => FilesystemPolicy {
            mounts: None,
            executes: Vec::new(),
        },
        None => FilesystemPolicy {
            mounts: Some(Vec::new()),
            executes: Vec::new(),
        },
    };

    let network = match &file.network {
        Some(n) => {
            let mut allowed_hosts = Vec::new();
            for (i, h) in n.allowed_hosts.iter().enumerate() {
                allowed_hosts.push(
                    HostPattern::parse(h)
                        .map_err(|e| err(format!("network.allowed_hosts[{i}]"), Some(h), e))?,
                );
            }
            if n.mode != NetworkMode::Allowlist && !allowed_hosts.is_empty() {
                return Err(err(
                    "network.allowed_hosts",
                    None,
                    "allowed_hosts only applies with `mode: allowlist`",
                ));
            }
            NetworkPolicy {
                mode: n.mode,
                allowed_hosts,
                allow_private: n.allow_private,
                allow_loopback: n.allow_loopback,
                allow_link_local: n.allow_link_local,
                resolve: n.resolve.unwrap_or(true),
            }
        }
        None => NetworkPolicy {
            // Without a section the rules govern the network if they name it; otherwise none.
            mode: if rules.governs_family("network") {
                NetworkMode::All
            } else {
                NetworkMode::None
            },
            allowed_hosts: Vec::new(),
            allow_private: false,
            allow_loopback: false,
            allow_link_local: false,
            resolve: true,
        },
    };

    let tools = match &file.tools {
        Some(t) => {
            if t.mode == ToolsMode::Allowlist && !t.blocked.is_empty() {
                return Err(err(
                    "tools.blocked",
                    None,
                    "`blocked` is ignored with `mode: allowlist`; remove it",
                ));
            }
            if t.mode == ToolsMode::Blocklist && !t.allowed.is_empty() {
                return Err(err(
                    "tools.allowed",
                    None,
                    "`allowed` is ignored with `mode: blocklist`; remove it",
                ));
            }
            if t.mode == ToolsMode::All && (!t.allowed.is_empty() || !t.blocked.is_empty()) {
                return Err(err("tools.mode", Some("all"), "mode `all` ignores `allowed` and `blocked`; set mode `allowlist` or `blocklist`"));
            }
            ToolPolicy {
                mode: t.mode,
                allowed: t.allowed.clone(),
                blocked: t.blocked.clone(),
                hide_blocked: t.hide_blocked.unwrap_or(true),
            }
        }
        None => ToolPolicy {
            mode: ToolsMode::All,
            allowed: vec![],
            blocked: vec![],
            hide_blocked: true,
        },
    };

    let mut limits = ProxyLimits::default();
    if let Some(p) = &file.proxy {
        if let Some(n) = p.max_line_bytes {
            if n < 1024 {
                return Err(err("proxy.max_line_bytes", None, "must be at least 1024"));
            }
            limits.max_line_bytes = n;
        }
        if let Some(d) = p.max_depth {
            if !(2..=128).contains(&d) {
                return Err(err("proxy.max_depth", None, "must be between 2 and 128"));
            }
            limits.max_depth = d;
        }
        if let Some(n) = p.max_in_flight {
            if !(1..=1_000_000).contains(&n) {
                return Err(err(
                    "proxy.max_in_flight",
                    None,
                    "must be between 1 and 1000000",
                ));
            }
            limits.max_in_flight = n;
        }
        if let Some(g) = p.grace_seconds {
            if !(0.0..=600.0).contains(&g) {
                return Err(err(
                    "proxy.grace_seconds",
                    None,
                    "must be between 0 and 600",
                ));
            }
            limits.grace = std::time::Duration::from_secs_f64(g);
        }
    }

    let approval = crate::approval::config::compile(file.approval.as_ref())
        .map_err(|(key, message)| err(key, None, message))?;
    let trust = compile_trust(&file, env)?;

    let content = crate::content::config::compile_content(file.content.as_ref(), env)?;
    let flows = crate::content::config::compile_flows(file.flows.as_ref(), env)?;

    let path = |w: &str| absolute_path(w, env);
    let kernel = super::sections::compile_kernel(&file, &path)?;
    let environment = super::sections::compile_environment(file.environment.as_ref(), env)?;
    let audit = super::sections::compile_audit(file.audit.as_ref(), &path)?;

    Ok(Policy {
        kernel,
        environment,
        audit,
        trust,
        content,
        flows,
        name,
        source,
        text,
        file,
        filesystem,
        network,
        tools,
        rules,
        limits,
        approval,
    })
}

fn compile_rules(
    file: &PolicyFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RuleSet, CompileError> {
    let mut rules = Vec::new();
    for (kind, list) in [
        (RuleKind::Deny, &file.deny),
        (RuleKind::RequireApproval, &file.require_approval),
        (RuleKind::Allow, &file.allow),
    ] {
        for (index, r) in list.iter().enumerate() {
            rules.push(compile_rule(kind, index, r, env)?);
        }
    }
    Ok(RuleSet { rules })
}

fn compile_rule(
    kind: RuleKind,
    index: usize,
    r: &RuleFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Rule, CompileError> {
    let key = format!("{}[{index}]", kind.key());
    if r.capability.is_none()
        && r.tool.is_none()
        && r.path_prefix.is_none()
        && r.host.is_none()
        && r.method.is_none()
    {
        return Err(err(
            &key,
            None,
            "a rule needs at least one condition (capability, tool, path_prefix, host, method)",
        ));
    }
    let capability = r.capability.as_deref().map(CapabilityPattern::parse);
    if let Some(CapabilityPattern::Exact(c)) = &capability {
        if !c.contains('.') {
            return Err(err(
                format!("{key}.capability"),
                Some(c),
                "a capability is `family.action`, e.g. `filesystem.read`, or `family.*`",
            ));
        }
    }
    let path_prefix = match &r.path_prefix {
        Some(p) => {
            Some(absolute_path(p, env).map_err(|e| err(format!("{key}.path_prefix"), Some(p), e))?)
        }
        None => None,
    };
    let host = match &r.host {
        Some(h) => Some(HostPattern::parse(h).map_err(|e| err(format!("{key}.host"), Some(h), e))?),
        None => None,
    };
    if let Some(vars) = &r.variables {
        crate::check::env_read::validate_rule(capability.as_ref(), vars)
            .map_err(|e| err(format!("{key}.variables"), None, e))?;
    }
    let mut label = key.clone();
    for (k, v) in [
        ("capability", r.capability.as_deref()),
        ("tool", r.tool.as_deref()),
        ("path_prefix", r.path_prefix.as_deref()),
        ("host", r.host.as_deref()),
        ("method", r.method.as_deref()),
    ] {
        if let Some(v) = v {
            label.push_str(&format!(" {k}={v}"));
        }
    }
    Ok(Rule {
        kind,
        index,
        capability,
        tool: r.tool.clone(),
        // Rules are about the real location: resolve symlinks in the prefix too.
        path_prefix: path_prefix.map(|p| canonicalize_lenient(&p)),
        host,
        method: r.method.clone(),
        variables: r.variables.clone(),
        reason: r.reason.clone(),
        label,
    })
}

/// Expand, require absolute, normalise lexically.
fn absolute_path(written: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, String> {
    let (expanded, defaulted) =
        expand_tracked(written, env).map_err(|e: ExpandError| e.to_string())?;
    let p = Path::new(&expanded);
    if !p.is_absolute() {
        return Err(format!(
            "`{written}` must be an absolute path (or start with `~` or a variable)"
        ));
    }
    let p = lexical_normalize(p);
    if defaulted {
        let home = env("HOME").map(|h| lexical_normalize(Path::new(&h)));
        if let Some(why) = super::implicit::too_broad(&p, home.as_deref()) {
            return Err(super::implicit::refusal(written, &p, &why));
        }
    }
    Ok(p)
}

impl HostPattern {
    /// Parse an `allowed_hosts` entry: `host`, `host:port`, `*.domain[:port]`, `1.2.3.4[:port]`,
    /// `[::1]:port`, `::1`.
    pub(crate) fn parse(written: &str) -> Result<HostPattern, String> {
        let s = written.trim();
        if s.is_empty() {
            return Err("empty host".into());
        }
        if s.contains("://") || s.contains('/') || s.contains('@') {
            return Err(format!(
                "`{written}` must be a host name with an optional port, not a URL"
            ));
        }
        let (host_part, port) = if let Some(rest) = s.strip_prefix('[') {
            let close = rest
                .find(']')
                .ok_or_else(|| format!("`{written}`: missing `]`"))?;
            let after = &rest[close + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(parse_port(p, written)?),
                None if after.is_empty() => None,
                None => return Err(format!("`{written}`: unexpected text after `]`")),
            };
            (rest[..close].to_string(), port)
        } else if s.matches(':').count() > 1 {
            (s.to_string(), None) // bare IPv6
        } else if let Some((h, p)) = s.rsplit_once(':') {
            (h.to_string(), Some(parse_port(p, written)?))
        } else {
            (s.to_string(), None)
        };
        let (wildcard, host) = match host_part.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, host_part),
        };
        if host.contains('*') {
            return Err(format!(
                "`{written}`: only a leading `*.` wildcard is supported"
            ));
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("`{written}`: empty host"));
        }
        let host = match crate::check::net::parse_ip_literal(&host) {
            Some(ip) if wildcard => {
                return Err(format!(
                    "`{written}`: a wildcard cannot apply to an IP address ({ip})"
                ))
            }
            Some(ip) => ip.to_string(),
            None => {
                if !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
                {
                    return Err(format!(
                        "`{written}`: not a valid host name (use the ASCII/punycode form)"
                    ));
                }
                host
            }
        };
        Ok(HostPattern {
            written: written.to_string(),
            host,
            wildcard,
            port,
        })
    }
}

fn parse_port(p: &str, written: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{written}`: `{p}` is not a port (1-65535)")),
        Ok(n) => Ok(n),
    }
}

/// `pins:` and `tool_scan:` (see `trust::settings`).
fn compile_trust(
    file: &PolicyFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<crate::trust::settings::TrustPolicy, CompileError> {
    crate::trust::settings::compile(file.pins.as_ref(), file.tool_scan.as_ref(), &|p| {
        absolute_path(p, env).map_err(|e| e.to_string())
    })
    .map_err(|(key, value, message)| err(key, value.as_deref(), message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_str;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME" => Some("/home/u".into()),
            _ => None,
        }
    }

    fn compile_text(text: &str) -> Result<Policy, CompileError> {
        let file: PolicyFile = serde_yaml::from_str(text).unwrap();
        compile_with(file, text.into(), PolicySource::Inline, &env)
    }

    #[test]
    fn host_patterns() {
        let h = HostPattern::parse("*.Example.com.:443").unwrap();
        assert!(h.wildcard);
        assert_eq!(h.host, "example.com");
        assert_eq!(h.port, Some(443));
        let h = HostPattern::parse("[::1]:8080").unwrap();
        assert_eq!((h.host.as_str(), h.port), ("::1", Some(8080)));
        let h = HostPattern::parse("::1").unwrap();
        assert_eq!((h.host.as_str(), h.port), ("::1", None));
        let h = HostPattern::parse("127.0.0.1:9").unwrap();
        assert_eq!((h.host.as_str(), h.port), ("127.0.0.1", Some(9)));
        assert!(HostPattern::parse("http://x.com").is_err());
        assert!(HostPattern::parse("x.com:0").is_err());
        assert!(HostPattern::parse("a.*.com").is_err());
        assert!(HostPattern::parse("*.127.0.0.1").is_err());
    }

    #[test]
    fn missing_sections_are_closed() {
        let p = compile_text("name: bare\n").unwrap();
        assert_eq!(p.filesystem.mounts, Some(vec![]));
        assert_eq!(p.network.mode, NetworkMode::None);
    }

    #[test]
    fn capfence_rules_govern_the_filesystem() {
        let p = compile_text("deny:\n  - capability: filesystem.read\n    path_prefix: /etc\n")
            .unwrap();
        assert_eq!(p.filesystem.mounts, None);
        assert_eq!(p.network.mode, NetworkMode::None);
        assert_eq!(p.rules.rules[0].id(), "deny[0]");
    }

    #[test]
    fn tilde_in_mounts_and_relative_refused() {
        let p =
            compile_text("filesystem:\n  mounts:\n    - path: ~/proj\n      mode: rw\n").unwrap();
        assert_eq!(
            p.filesystem.mounts.unwrap()[0].path,
            PathBuf::from("/home/u/proj")
        );
        let e = compile_text("filesystem:\n  mounts:\n    - path: proj\n").unwrap_err();
        assert_eq!(e.key, "filesystem.mounts[0].path");
    }

    #[test]
    fn an_implicit_workspace_is_never_a_system_root_or_home() {
        let at = |pwd: &'static str| {
            move |k: &str| match k {
                "HOME" => Some("/home/u".to_string()),
                "PWD" => Some(pwd.to_string()),
                _ => None,
            }
        };
        for name in ["workspace", "capfence"] {
            let text = crate::policy::builtin::get(name).unwrap();
            let file = || serde_yaml::from_str::<PolicyFile>(text).unwrap();
            for pwd in ["/", "/home/u", "/etc", "/root", "/home"] {
                let e =
                    compile_with(file(), text.into(), PolicySource::Inline, &at(pwd)).unwrap_err();
                assert!(e.message.contains("--workspace DIR"), "{name} {pwd}: {e}");
            }
            assert!(
                compile_with(file(), text.into(), PolicySource::Inline, &at("/home/u/p")).is_ok()
            );
        }
        // Explicit values are the user's choice.
        let text = "filesystem:\n  mounts:\n    - path: ${W:-/srv}\n";
        let file: PolicyFile = serde_yaml::from_str(text).unwrap();
        let e = compile_with(file.clone(), text.into(), PolicySource::Inline, &env).unwrap_err();
        assert!(e.message.contains("--workspace"), "{e}");
        let w = |k: &str| (k == "W").then(|| "/".to_string());
        assert!(compile_with(file, text.into(), PolicySource::Inline, &w).is_ok());
        // Every built-in compiles from a project directory.
        for name in crate::policy::builtin::names() {
            let text = crate::policy::builtin::get(name).unwrap();
            let file: PolicyFile = serde_yaml::from_str(text).unwrap();
            compile_with(file, text.into(), PolicySource::Inline, &at("/home/u/p")).unwrap();
        }
    }

    #[test]
    fn contradictions_are_errors() {
        assert!(compile_text("tools:\n  mode: allowlist\n  blocked: [x]\n").is_err());
        assert!(compile_text("network:\n  mode: none\n  allowed_hosts: [a.com]\n").is_err());
        assert!(compile_text("deny:\n  - reason: nothing\n").is_err());
        assert!(compile_text("deny:\n  - capability: shell\n").is_err());
        let _ = load_str; // keep the import honest when tests are filtered
    }
}
