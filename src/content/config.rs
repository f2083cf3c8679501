//! `content:` and `flows:` as written -> as checked, with the protective defaults every policy
//! gets when it does not mention them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::schema::{ContentSection, FlowRuleFile, FlowsSection};
use super::secrets::Class;
use crate::policy::compile::CompileError;
use crate::policy::expand::expand_with;
use crate::policy::rules::CapabilityPattern;
use crate::policy::{HostPattern, RuleId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutAction {
    Refuse,
    Approval,
    Record,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultAction {
    Redact,
    Wrap,
    Strip,
    Refuse,
    Record,
    Off,
}

#[derive(Debug, Clone)]
pub(crate) struct ContentPolicy {
    pub(crate) enabled: bool,
    pub(crate) outgoing: BTreeMap<Class, OutAction>,
    pub(crate) exempt_hosts: Vec<HostPattern>,
    pub(crate) exempt_tools: Vec<String>,
    pub(crate) secrets: ResultAction,
    pub(crate) injection: ResultAction,
    pub(crate) hidden_unicode: ResultAction,
    pub(crate) results_exempt_tools: Vec<String>,
    pub(crate) sensitive: Vec<Sensitive>,
}

/// A sensitive location: a path prefix, or a file name pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sensitive {
    Prefix(PathBuf),
    /// `.env*` (prefix match when it ends in `*`), `*.pem` (suffix), or exact.
    Name(String),
}

impl Sensitive {
    pub(crate) fn matches(&self, p: &Path) -> bool {
        match self {
            Sensitive::Prefix(pre) => crate::check::path::is_within(p, pre),
            Sensitive::Name(n) => {
                let Some(name) = p.file_name().and_then(|s| s.to_str()) else {
                    return false;
                };
                if let Some(stem) = n.strip_suffix('*') {
                    name.starts_with(stem)
                } else if let Some(suf) = n.strip_prefix('*') {
                    name.ends_with(suf)
                } else {
                    name == n
                }
            }
        }
    }
}

/// The built-in sensitive paths.
pub(crate) const DEFAULT_SENSITIVE: &[&str] = &[
    "~/.ssh",
    "~/.aws",
    "~/.gnupg",
    "~/.config/gcloud",
    "~/.azure",
    "~/.kube",
    "~/.docker",
    "~/.netrc",
    "~/.git-credentials",
    "~/.npmrc",
    "~/.pypirc",
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_ed25519*",
    "id_ecdsa*",
    "credentials.json",
];

impl ContentPolicy {
    pub(crate) fn action(&self, c: Class) -> OutAction {
        self.outgoing.get(&c).copied().unwrap_or(OutAction::Refuse)
    }
    pub(crate) fn is_sensitive(&self, p: &Path) -> bool {
        self.sensitive.iter().any(|s| s.matches(p))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    SensitiveRead,
    Read,
    EnvRead,
    SecretInResult,
}

#[derive(Debug, Clone)]
pub(crate) struct FlowRule {
    /// `flows.rules[0]` or `flows.default.<name>`: the rule id in refusals.
    pub(crate) id: RuleId,
    pub(crate) event: EventKind,
    pub(crate) path_prefix: Option<PathBuf>,
    pub(crate) capability: Option<CapabilityPattern>,
    pub(crate) tool: Option<String>,
    pub(crate) outside: Option<PathBuf>,
    pub(crate) refuse: bool,
    pub(crate) window: Option<Duration>,
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct FlowPolicy {
    pub(crate) rules: Vec<FlowRule>,
}

fn e(key: impl Into<String>, value: Option<&str>, message: impl Into<String>) -> CompileError {
    CompileError {
        key: key.into(),
        value: value.map(str::to_string),
        message: message.into(),
    }
}

fn path(
    written: &str,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, CompileError> {
    let x = expand_with(written, env).map_err(|er| e(key, Some(written), er.to_string()))?;
    let p = Path::new(&x);
    if !p.is_absolute() {
        return Err(e(
            key,
            Some(written),
            "must be an absolute path (or start with `~` or a variable)",
        ));
    }
    Ok(crate::check::path::canonicalize_lenient(
        &crate::check::path::lexical_normalize(p),
    ))
}

fn sensitive(
    written: &str,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Sensitive>, CompileError> {
    if written.contains('/') || written.starts_with('~') || written.starts_with('$') {
        match path(written, key, env) {
            Ok(p) => Ok(Some(Sensitive::Prefix(p))),
            // A default under `~` without a HOME: nothing to protect there.
            Err(_) if written.starts_with('~') && env("HOME").is_none() => Ok(None),
            Err(er) => Err(er),
        }
    } else if written.is_empty() || written[1..].contains('*') && !written.ends_with('*') {
        Err(e(
            key,
            Some(written),
            "a file name pattern may only start or end with `*`",
        ))
    } else {
        Ok(Some(Sensitive::Name(written.to_string())))
    }
}

fn out_action(s: &str, key: &str) -> Result<OutAction, CompileError> {
    Ok(match s {
        "refuse" => OutAction::Refuse,
        "approval" => OutAction::Approval,
        "record" => OutAction::Record,
        "off" => OutAction::Off,
        _ => return Err(e(key, Some(s), "one of refuse, approval, record, off")),
    })
}

fn result_action(
    s: &str,
    key: &str,
    allowed: &[(&str, ResultAction)],
) -> Result<ResultAction, CompileError> {
    allowed
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            e(key, Some(s), format!("one of {}", names.join(", ")))
        })
}

pub(crate) fn compile_content(
    c: Option<&ContentSection>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ContentPolicy, CompileError> {
    let d = ContentSection::default();
    let c = c.unwrap_or(&d);
    let mut outgoing = BTreeMap::new();
    let mut exempt_hosts = Vec::new();
    let mut exempt_tools = Vec::new();
    let default = match c.outgoing.as_ref().and_then(|o| o.default.as_deref()) {
        Some(s) => out_action(s, "content.outgoing.default")?,
        None => OutAction::Refuse,
    };
    for class in Class::ALL {
        outgoing.insert(class, default);
    }
    if let Some(o) = &c.outgoing {
        for (k, v) in &o.classes {
            let key = format!("content.outgoing.classes.{k}");
            let class = Class::ALL
                .into_iter()
                .find(|c| c.as_str() == k)
                .ok_or_else(|| {
                    let names: Vec<&str> = Class::ALL.iter().map(|c| c.as_str()).collect();
                    e(
                        &key,
                        Some(k),
                        format!("unknown class; the classes are {}", names.join(", ")),
                    )
                })?;
            outgoing.insert(class, out_action(v, &key)?);
        }
        for (i, h) in o.exempt_hosts.iter().enumerate() {
            exempt_hosts.push(
                HostPattern::parse(h)
                    .map_err(|m| e(format!("content.outgoing.exempt_hosts[{i}]"), Some(h), m))?,
            );
        }
        exempt_tools = o.exempt_tools.clone();
    }
    use ResultAction::*;
    let r = c.results.clone().unwrap_or_default();
    let secrets = match &r.secrets {
        Some(s) => result_action(
            s,
            "content.results.secrets",
            &[
                ("redact", Redact),
                ("refuse", Refuse),
                ("record", Record),
                ("off", Off),
            ],
        )?,
        None => Redact,
    };
    let injection = match &r.injection {
        Some(s) => result_action(
            s,
            "content.results.injection",
            &[
                ("wrap", Wrap),
                ("strip", Strip),
                ("refuse", Refuse),
                ("record", Record),
                ("off", Off),
            ],
        )?,
        None => Wrap,
    };
    let hidden_unicode = match &r.hidden_unicode {
        Some(s) => result_action(
            s,
            "content.results.hidden_unicode",
            &[
                ("strip", Strip),
                ("refuse", Refuse),
                ("record", Record),
                ("off", Off),
            ],
        )?,
        None => Strip,
    };
    let mut sens = Vec::new();
    if c.sensitive_defaults.unwrap_or(true) {
        for s in DEFAULT_SENSITIVE {
            sens.extend(sensitive(s, "content.sensitive", env)?);
        }
    }
    for (i, s) in c.sensitive.iter().enumerate() {
        sens.extend(sensitive(s, &format!("content.sensitive[{i}]"), env)?);
    }
    Ok(ContentPolicy {
        enabled: c.enabled.unwrap_or(true),
        outgoing,
        exempt_hosts,
        exempt_tools,
        secrets,
        injection,
        hidden_unicode,
        results_exempt_tools: r.exempt_tools.clone(),
        sensitive: sens,
    })
}

/// The built-in flow rules: after a sensitive read, an environment read or a secret in a
/// result, no network call without approval (for the rest of the session).
pub(crate) const DEFAULT_FLOWS: &[(&str, EventKind, RuleId)] = &[
    (
        "sensitive-read-then-network",
        EventKind::SensitiveRead,
        RuleId::FlowSensitiveReadThenNetwork,
    ),
    (
        "env-read-then-network",
        EventKind::EnvRead,
        RuleId::FlowEnvReadThenNetwork,
    ),
    (
        "secret-in-result-then-network",
        EventKind::SecretInResult,
        RuleId::FlowSecretInResultThenNetwork,
    ),
];

pub(crate) fn compile_flows(
    f: Option<&FlowsSection>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FlowPolicy, CompileError> {
    let mut rules = Vec::new();
    if f.and_then(|f| f.defaults).unwrap_or(true) {
        for (_, event, id) in DEFAULT_FLOWS {
            rules.push(FlowRule {
                id: id.clone(),
                event: *event,
                path_prefix: None,
                capability: Some(CapabilityPattern::parse("network.*")),
                tool: None,
                outside: None,
                refuse: false,
                window: None,
                reason: None,
            });
        }
    }
    for (i, r) in f
        .map(|f| f.rules.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        rules.push(flow_rule(i, r, env)?);
    }
    Ok(FlowPolicy { rules })
}

fn flow_rule(
    i: usize,
    r: &FlowRuleFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FlowRule, CompileError> {
    let key = format!("flows.rules[{i}]");
    let event = match r.after.event.as_str() {
        "sensitive_read" => EventKind::SensitiveRead,
        "read" => EventKind::Read,
        "env_read" => EventKind::EnvRead,
        "secret_in_result" => EventKind::SecretInResult,
        other => {
            return Err(e(
                format!("{key}.after.event"),
                Some(other),
                "one of sensitive_read, read, env_read, secret_in_result",
            ))
        }
    };
    let path_prefix = match &r.after.path_prefix {
        Some(p) => Some(path(p, &format!("{key}.after.path_prefix"), env)?),
        None => None,
    };
    if path_prefix.is_some() && !matches!(event, EventKind::Read | EventKind::SensitiveRead) {
        return Err(e(
            format!("{key}.after.path_prefix"),
            None,
            "only applies to `read` and `sensitive_read` events",
        ));
    }
    if r.then.capability.is_none() && r.then.tool.is_none() && r.then.outside.is_none() {
        return Err(e(
            format!("{key}.then"),
            None,
            "needs at least one of capability, tool, outside",
        ));
    }
    let capability = r.then.capability.as_deref().map(CapabilityPattern::parse);
    if let Some(CapabilityPattern::Exact(c)) = &capability {
        if !c.contains('.') {
            return Err(e(
                format!("{key}.then.capability"),
                Some(c),
                "a capability is `family.action` or `family.*`",
            ));
        }
    }
    let outside = match &r.then.outside {
        Some(p) => Some(path(p, &format!("{key}.then.outside"), env)?),
        None => None,
    };
    let refuse = match r.action.as_deref() {
        None | Some("approval") => false,
        Some("refuse") => true,
        Some(o) => {
            return Err(e(
                format!("{key}.action"),
                Some(o),
                "one of approval, refuse",
            ))
        }
    };
    Ok(FlowRule {
        // A rule of the policy file, by its key.
        id: RuleId::Policy(match &r.name {
            Some(n) => format!("flows.rules[{i}] ({n})"),
            None => key,
        }),
        event,
        path_prefix,
        capability,
        tool: r.then.tool.clone(),
        outside,
        refuse,
        window: r.window_seconds.map(Duration::from_secs),
        reason: r.reason.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "HOME").then(|| "/home/u".into())
    }

    #[test]
    fn defaults_are_protective() {
        let c = compile_content(None, &env).unwrap();
        assert!(c.enabled);
        assert!(Class::ALL.iter().all(|&k| c.action(k) == OutAction::Refuse));
        assert_eq!(
            (c.secrets, c.injection, c.hidden_unicode),
            (
                ResultAction::Redact,
                ResultAction::Wrap,
                ResultAction::Strip
            )
        );
        assert!(c.is_sensitive(Path::new("/home/u/.ssh/id_rsa")));
        assert!(c.is_sensitive(Path::new("/srv/app/.env")));
        assert!(c.is_sensitive(Path::new("/srv/app/.env.local")));
        assert!(!c.is_sensitive(Path::new("/srv/app/README.md")));
        let f = compile_flows(None, &env).unwrap();
        assert_eq!(f.rules.len(), 3);
    }

    #[test]
    fn written_sections_are_checked() {
        let s: ContentSection = serde_yaml::from_str("outgoing: {classes: {jwt: record}, exempt_hosts: [api.github.com]}\nresults: {injection: refuse}\nsensitive: [/srv/secrets]\n").unwrap();
        let c = compile_content(Some(&s), &env).unwrap();
        assert_eq!(c.action(Class::Jwt), OutAction::Record);
        assert_eq!(c.action(Class::Cloud), OutAction::Refuse);
        assert!(c.is_sensitive(Path::new("/srv/secrets/a")));
        assert!(serde_yaml::from_str::<ContentSection>("outgoing: {clases: {}}").is_err());
        let bad: ContentSection =
            serde_yaml::from_str("outgoing: {classes: {jwts: record}}").unwrap();
        assert_eq!(
            compile_content(Some(&bad), &env).unwrap_err().key,
            "content.outgoing.classes.jwts"
        );
        let bad: ContentSection = serde_yaml::from_str("results: {hidden_unicode: wrap}").unwrap();
        assert!(compile_content(Some(&bad), &env).is_err());
        let f: FlowsSection = serde_yaml::from_str("defaults: false\nrules:\n  - after: {event: read, path_prefix: /data}\n    then: {capability: filesystem.write, outside: /data}\n    action: refuse\n    window_seconds: 60\n").unwrap();
        let f = compile_flows(Some(&f), &env).unwrap();
        assert_eq!(f.rules.len(), 1);
        assert!(f.rules[0].refuse);
        let bad: FlowsSection = serde_yaml::from_str(
            "rules:\n  - after: {event: whatever}\n    then: {capability: network.*}\n",
        )
        .unwrap();
        assert!(compile_flows(Some(&bad), &env).is_err());
    }
}
