//! One JSON-RPC request -> a decision: what it would touch, and whether the policy allows it.
//!
//! Evaluation order (documented in the policy reference):
//! 1. the message must be well-formed for its method (`tools/call` needs a string `name` and
//!    an object `arguments`);
//! 2. `tools`: the tool name against the allowlist or blocklist;
//! 3. the profile (or the tool's `inputSchema`) maps the call to accesses: a capability on a
//!    resource. A tool nothing describes is refused when the policy restricts the filesystem
//!    or the network;
//! 4. every access is checked: paths against `filesystem.mounts`, URLs against `network`,
//!    then the capability rules (deny > require_approval > allow; governed and unmatched ->
//!    deny), then the defaults (`shell.execute` needs an allow rule).
//!
//! The first refusal decides. Pure except for [`World`] (symlinks, DNS).

use std::borrow::Cow;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::exec_writes::executes_on_write_in;
use super::net::check_url;
use super::path::{decode_all, mount_for, MountRefusal, PathContext};
use super::rules::RuleVerdict;
use super::tools::{check_tool, ToolRefusal};
use super::{Access, Denial, Resource, World};
use crate::policy::{Policy, RuleId};
use crate::profile::{ArgKind, ArgSpec, ToolSpec};

/// Where tool descriptions come from: the server's profile, then what `tools/list` said.
pub(crate) trait ToolCatalog {
    fn tool(&self, name: &str) -> Option<Cow<'_, ToolSpec>>;
    /// For messages: the profile in use, if any.
    fn profile_name(&self) -> Option<&str>;
}

/// Everything a decision needs besides the request.
pub(crate) struct Context<'a> {
    pub(crate) policy: &'a Policy,
    pub(crate) catalog: &'a dyn ToolCatalog,
    pub(crate) paths: &'a PathContext,
    pub(crate) world: &'a dyn World,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    /// The request's method ([`kept_method`]: a known one without an allocation).
    pub method: Cow<'static, str>,
    /// The tool a `tools/call` names (held inline when short: no allocation per call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolName>,
    /// What the request would do (one held inline: no allocation for the common call).
    pub accesses: Accesses,
    /// The rule that decided (`allow[0]`, `filesystem.mounts[/srv]`, `default`,
    /// `protocol.allowed`, ...), serialised as its dotted id.
    pub rule: RuleId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denial: Option<Denial>,
}

impl Decision {
    pub(crate) fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }
    fn deny(method: &str, tool: Option<ToolName>, accesses: Accesses, denial: Denial) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            method: kept_method(method),
            tool,
            accesses,
            rule: denial.rule.clone(),
            denial: Some(denial),
        }
    }
}

/// The methods a decision keeps without an allocation (every decision holds its method; a
/// call's eighth small allocation took glibc's slow path, ~400 instructions: issue 19).
const KNOWN_METHODS: &[&str] = &[
    "tools/call",
    "tools/list",
    "resources/read",
    "resources/list",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/get",
    "prompts/list",
    "initialize",
    "ping",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "server/discover",
];

/// `method` as a decision keeps it.
pub(crate) fn kept_method(method: &str) -> Cow<'static, str> {
    kept_from(KNOWN_METHODS, method)
}

/// `s` borrowed from `table` when it is there (no allocation), else kept as written.
fn kept_from(table: &'static [&'static str], s: &str) -> Cow<'static, str> {
    match table.iter().find(|t| **t == s) {
        Some(t) => Cow::Borrowed(t),
        None => Cow::Owned(s.to_owned()),
    }
}

/// A tool's name as a decision holds it (a `str`, inline up to 16 bytes).
pub use crate::inline_text::InlineText as ToolName;

/// A decision's accesses: most calls have one, kept inline.
pub type Accesses = smallvec::SmallVec<[Access; 1]>;

/// The capabilities an access keeps without an allocation (every tool call's access holds
/// its tool's capability): those of the built-in profiles and of the inferred ones.
const KNOWN_CAPABILITIES: &[&str] = &[
    "compute",
    "unknown",
    "filesystem.read",
    "filesystem.write",
    "network.fetch",
    "shell.execute",
    "environment.read",
    "memory.read",
    "memory.write",
    "database.read",
    "database.write",
    "resource.read",
    "prompt.get",
];

/// `capability` as an access keeps it.
pub(crate) fn kept_capability(capability: &str) -> Cow<'static, str> {
    kept_from(KNOWN_CAPABILITIES, capability)
}

/// Decide a request (or a notification: pass its method and params the same way).
pub(crate) fn decide(ctx: &Context, method: &str, params: Option<&Value>) -> Decision {
    match method {
        "tools/call" => decide_tool_call(ctx, params),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            decide_resource(ctx, method, params)
        }
        "prompts/get" => decide_scanned(
            ctx,
            method,
            "prompt.get",
            params.and_then(|p| p.get("arguments")),
        ),
        _ => match super::doors::classify(method, params) {
            super::doors::Door::Protocol => Decision {
                verdict: Verdict::Allow,
                method: kept_method(method),
                tool: None,
                accesses: Accesses::new(),
                rule: RuleId::ProtocolAllowed,
                denial: None,
            },
            super::doors::Door::Uris(uris) => {
                let mut accesses = Accesses::new();
                for u in uris {
                    if let Err(d) = scan_value(
                        ctx,
                        "filesystem.read",
                        &Value::String(u),
                        &mut accesses,
                        true,
                    ) {
                        return Decision::deny(method, None, Accesses::new(), d);
                    }
                }
                if accesses.is_empty() {
                    accesses.push(Access {
                        capability: "resource.read".into(),
                        resource: Resource::None,
                    });
                }
                judge(ctx, method, None, accesses)
            }
            super::doors::Door::Capability(cap) => decide_scanned(ctx, method, cap, None),
            super::doors::Door::Scanned(cap) => decide_scanned(ctx, method, cap, params),
            super::doors::Door::Malformed(why) => Decision::deny(
                method,
                None,
                Accesses::new(),
                Denial::new(RuleId::ProtocolParams, why),
            ),
        },
    }
}

fn decide_tool_call(ctx: &Context, params: Option<&Value>) -> Decision {
    const M: &str = "tools/call";
    let Some(params) = params.and_then(Value::as_object) else {
        return Decision::deny(
            M,
            None,
            Accesses::new(),
            Denial::new(
                RuleId::ProtocolToolCallParams,
                "tools/call needs an object `params`",
            ),
        );
    };
    let name = match params.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        _ => {
            return Decision::deny(
                M,
                None,
                Accesses::new(),
                Denial::new(
                    RuleId::ProtocolToolName,
                    "tools/call needs a non-empty string `params.name`",
                ),
            )
        }
    };
    let empty = Map::new();
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Decision::deny(
                M,
                Some(ToolName::new(name)),
                Accesses::new(),
                Denial::new(
                    RuleId::ProtocolToolArguments,
                    "`params.arguments` must be an object",
                ),
            )
        }
    };
    let tool = Some(ToolName::new(name));

    if let Err(r) = check_tool(name, &ctx.policy.tools) {
        let d = match r {
            ToolRefusal::NotAllowed => Denial::new(
                RuleId::ToolsAllowed,
                format!("Tool not allowed by policy: {name} (not in tools.allowed)"),
            ),
            ToolRefusal::Blocked(b) => Denial::new(
                RuleId::ToolsBlocked,
                format!("Tool blocked by policy: {name} (tools.blocked: {b})"),
            ),
        };
        return Decision::deny(M, tool, Accesses::new(), d);
    }

    let spec = match ctx.catalog.tool(name) {
        Some(s) => s,
        None if ctx.policy.restricts_filesystem() || ctx.policy.restricts_network() => {
            return Decision::deny(M, tool, Accesses::new(), Denial::new(RuleId::ProfileUnknownTool, format!(
                "Tool `{name}` is unknown: {} and the server has not described it in tools/list, so capjail cannot tell which paths or URLs it touches. Describe it in a profile (see profiles/README.md) and pass --profile FILE",
                match ctx.catalog.profile_name() { Some(p) => format!("the `{p}` profile does not list it"), None => "no profile matches this server".to_string() }
            )));
        }
        None => Cow::Owned(ToolSpec {
            capability: "unknown".into(),
            args: Default::default(),
            note: String::new(),
        }),
    };

    let accesses = match accesses_for(ctx, &spec, arguments) {
        Ok(a) => a,
        Err(d) => return Decision::deny(M, tool, Accesses::new(), d),
    };
    judge(ctx, M, tool, accesses)
}

fn decide_resource(ctx: &Context, method: &str, params: Option<&Value>) -> Decision {
    let Some(uri) = params.and_then(|p| p.get("uri")).and_then(Value::as_str) else {
        return Decision::deny(
            method,
            None,
            Accesses::new(),
            Denial::new(
                RuleId::ProtocolResourceUri,
                format!("{method} needs a string `params.uri`"),
            ),
        );
    };
    let mut accesses = Accesses::new();
    if let Err(d) = scan_value(
        ctx,
        "filesystem.read",
        &Value::String(uri.to_string()),
        &mut accesses,
        true,
    ) {
        return Decision::deny(method, None, Accesses::new(), d);
    }
    if accesses.is_empty() {
        accesses.push(Access {
            capability: "resource.read".into(),
            resource: Resource::None,
        });
    }
    judge(ctx, method, None, accesses)
}

fn decide_scanned(ctx: &Context, method: &str, capability: &str, args: Option<&Value>) -> Decision {
    let mut accesses = Accesses::new();
    if let Some(a) = args {
        if let Err(d) = scan_value(ctx, "filesystem.read", a, &mut accesses, false) {
            return Decision::deny(method, None, Accesses::new(), d);
        }
    }
    if accesses.is_empty() {
        accesses.push(Access {
            capability: kept_capability(capability),
            resource: Resource::None,
        });
    }
    judge(ctx, method, None, accesses)
}

/// Map a call's arguments to accesses using the tool's description.
fn accesses_for(
    ctx: &Context,
    spec: &ToolSpec,
    arguments: &Map<String, Value>,
) -> Result<Accesses, Denial> {
    let mut out = Accesses::new();
    for (arg, value) in arguments {
        if value.is_null() {
            continue;
        }
        match spec.args.get(arg) {
            Some(a) => declared_arg(ctx, spec, arg, a, value, arguments, &mut out)?,
            // Not described: a value that looks like a path or URL is checked as one.
            None => {
                let cap = if spec.capability.starts_with("filesystem.") {
                    spec.capability.as_str()
                } else {
                    "filesystem.read"
                };
                scan_value(ctx, cap, value, &mut out, false)?
            }
        }
    }
    if !out.iter().any(|a| a.capability == spec.capability) {
        out.insert(
            0,
            Access {
                capability: kept_capability(&spec.capability),
                resource: Resource::None,
            },
        );
    }
    Ok(out)
}

fn declared_arg(
    ctx: &Context,
    spec: &ToolSpec,
    arg: &str,
    a: &ArgSpec,
    value: &Value,
    arguments: &Map<String, Value>,
    out: &mut Accesses,
) -> Result<(), Denial> {
    let cap = a.capability.as_deref().unwrap_or(&spec.capability);
    let strings = |list: bool| -> Result<Vec<&str>, Denial> {
        match (value, list) {
            (Value::String(s), false) => Ok(vec![s.as_str()]),
            (Value::Array(items), true) => items
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        Denial::new(
                            RuleId::ProfileListItem,
                            format!("argument `{arg}` must be an array of strings"),
                        )
                    })
                })
                .collect(),
            (_, false) => Err(Denial::new(
                RuleId::ProfileStringArgument,
                format!("argument `{arg}` must be a string"),
            )),
            (_, true) => Err(Denial::new(
                RuleId::ProfileListArgument,
                format!("argument `{arg}` must be an array of strings"),
            )),
        }
    };
    match a.kind {
        ArgKind::Data => {}
        ArgKind::Path | ArgKind::PathList => {
            // Every reading of the base argument is a base for this one.
            let bases = match &a.relative_to {
                Some(other) => match arguments.get(other).and_then(Value::as_str) {
                    Some(b) => Some(decode_all(b, ctx.paths).map_err(|e| {
                        Denial::new(
                            RuleId::FilesystemPath,
                            format!("Path blocked by policy: {e}"),
                        )
                    })?),
                    None => None,
                },
                None => None,
            };
            for s in strings(a.kind == ArgKind::PathList)? {
                match &bases {
                    Some(bs) => {
                        for b in bs {
                            out.extend(path_access(ctx, cap, s, Some(b))?);
                        }
                    }
                    None => out.extend(path_access(ctx, cap, s, None)?),
                }
            }
        }
        ArgKind::Url | ArgKind::UrlList => {
            for s in strings(a.kind == ArgKind::UrlList)? {
                if let Some(acc) = url_access(ctx, cap, s)? {
                    out.push(acc);
                }
            }
        }
        ArgKind::Glob | ArgKind::GlobList => {
            for s in strings(a.kind == ArgKind::GlobList)? {
                check_glob(arg, s)?;
            }
        }
        ArgKind::Command => {
            for s in strings(false)? {
                out.push(Access {
                    capability: "shell.execute".into(),
                    resource: Resource::Command {
                        written: s.to_string(),
                    },
                });
            }
        }
    }
    Ok(())
}

/// The accesses for one path argument (two when decoding is ambiguous, see `decode_all`).
fn path_access(
    ctx: &Context,
    capability: &str,
    written: &str,
    base: Option<&Path>,
) -> Result<Accesses, Denial> {
    let pctx;
    let paths = match base {
        Some(b) => {
            pctx = PathContext {
                cwd: b.to_path_buf(),
                home: ctx.paths.home.clone(),
                env: ctx.paths.env.clone(),
                readings: crate::check::readings::PathReadings {
                    relative_to: vec![crate::check::readings::Base::Cwd],
                    expands_vars: ctx.paths.readings.expands_vars,
                },
                ..Default::default()
            };
            &pctx
        }
        None => ctx.paths,
    };
    let decoded = decode_all(written, paths).map_err(|e| {
        let mut d = Denial::new(
            RuleId::FilesystemPath,
            format!("Path blocked by policy: {e}"),
        );
        d.capability = Some(capability.into());
        d.resource = Some(written.into());
        d
    })?;
    let capability = if capability.starts_with("filesystem.") {
        capability
    } else {
        "filesystem.write"
    };
    let mut out = Accesses::with_capacity(decoded.len());
    for p in &decoded {
        let resolved = ctx.world.resolve_path(p);
        // A write that a program later executes is execution too (check::exec_writes).
        let executes = (capability != "filesystem.read")
            .then(|| {
                executes_on_write_in(&resolved, executes_patterns(ctx.policy), &|d| {
                    ctx.world.is_git_dir(d)
                })
            })
            .flatten();
        out.push(Access {
            capability: kept_capability(capability),
            resource: Resource::Path {
                written: written.into(),
                resolved: resolved.clone(),
            },
        });
        if executes.is_some() {
            out.push(Access {
                capability: "shell.execute".into(),
                resource: Resource::Path {
                    written: written.into(),
                    resolved,
                },
            });
        }
    }
    Ok(out)
}

fn executes_patterns(policy: &Policy) -> &[String] {
    &policy.filesystem.executes
}

fn url_access(ctx: &Context, capability: &str, written: &str) -> Result<Option<Access>, Denial> {
    // The scheme as URL parsers read it (controls and spaces stripped, tabs removed).
    let scheme = super::uri::scheme(written);
    if scheme.as_deref() == Some("data") {
        return Ok(None); // inline data, nothing is fetched
    }
    if scheme.as_deref() == Some("file") {
        let mut v = path_access(ctx, "filesystem.read", written, None)?;
        return Ok(v.pop());
    }
    let capability = if capability.starts_with("network.") {
        capability
    } else {
        "network.fetch"
    };
    match check_url(written, &ctx.policy.network, ctx.world) {
        Ok(dest) => Ok(Some(Access {
            capability: kept_capability(capability),
            resource: Resource::Url {
                written: written.into(),
                host: dest.host,
                port: dest.port,
            },
        })),
        Err(r) => {
            let mut d = Denial::new(r.rule, format!("Network access blocked: {}", r.reason));
            d.capability = Some(capability.into());
            d.resource = Some(if r.target.is_empty() {
                written.to_string()
            } else {
                r.target
            });
            Err(d)
        }
    }
}

fn check_glob(arg: &str, g: &str) -> Result<(), Denial> {
    if g.starts_with('/') || g.starts_with('~') || g.split(['/', '\\']).any(|s| s == "..") {
        return Err(Denial::new(RuleId::FilesystemPath, format!("Path blocked by policy: the pattern in `{arg}` may not be absolute or climb with `..`: {g}")));
    }
    Ok(())
}

/// Does this string look like something a server would open or fetch?
fn looks_like_url(s: &str) -> bool {
    match find_scheme_separator(s.as_bytes()) {
        Some(p) if p > 0 => {
            let scheme = &s[..p];
            scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        }
        _ => false,
    }
}

fn looks_like_path(s: &str) -> bool {
    s.starts_with('/')
        || s == "~"
        || s.starts_with("~/")
        || s.starts_with("./")
        || s == ".."
        || s.starts_with("../")
        || s.starts_with("..\\")
        || has_dotdot_segment(s.as_bytes())
        || s.ends_with("/..")
        || starts_with_ignore_ascii_case(s, "file:")
}

/// `s.find("://")` without a substring searcher (its set-up cost more than the search for
/// the short strings of every call's arguments, issue 19): the first `:` followed by `//`.
fn find_scheme_separator(s: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b':', s).find(|&p| s[p + 1..].starts_with(b"//"))
}

/// `s.contains("/../")`, the same way: a `.` between `/` and `./`.
fn has_dotdot_segment(s: &[u8]) -> bool {
    memchr::memchr_iter(b'.', s).any(|p| p > 0 && s[p - 1] == b'/' && s[p + 1..].starts_with(b"./"))
}

/// `s.to_ascii_lowercase().starts_with(prefix)` for a lower-case ASCII `prefix`, without the
/// copy (ASCII lower-casing keeps every other byte as it is).
fn starts_with_ignore_ascii_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Walk a value; check every string that looks like a path or a URL. `uri_context`: the value
/// is known to be a URI (resources/read), so other schemes are resources of the server.
fn scan_value(
    ctx: &Context,
    fs_capability: &str,
    v: &Value,
    out: &mut Accesses,
    uri_context: bool,
) -> Result<(), Denial> {
    match v {
        Value::String(s) => {
            // Judge the string as URL parsers read it (WHATWG: `" file:..."`, `"fi\tle:..."`).
            let norm = super::uri::url_normalize(s);
            if starts_with_ignore_ascii_case(&norm, "file:") {
                out.extend(path_access(ctx, fs_capability, s, None)?);
            } else if looks_like_url(&norm) {
                if starts_with_ignore_ascii_case(&norm, "http://")
                    || starts_with_ignore_ascii_case(&norm, "https://")
                    || !uri_context
                {
                    if let Some(a) = url_access(ctx, "network.fetch", s)? {
                        out.push(a);
                    }
                }
            } else if !uri_context && looks_like_path(s) {
                out.extend(path_access(ctx, fs_capability, s, None)?);
            }
        }
        Value::Array(items) => {
            for i in items {
                scan_value(ctx, fs_capability, i, out, uri_context)?;
            }
        }
        Value::Object(m) => {
            for (k, i) in m {
                if k == "_meta" {
                    continue;
                }
                scan_value(ctx, fs_capability, i, out, uri_context)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Check every access; the first refusal decides, except that a call needing approval is
/// still checked to the end: a later access that is refused outright refuses the call (an
/// approval must never let through what the policy denies).
fn judge(ctx: &Context, method: &str, tool: Option<ToolName>, accesses: Accesses) -> Decision {
    let mut deciding_rule = RuleId::Default;
    let mut approval: Option<Denial> = None;
    for access in &accesses {
        if let Err(d) = check_access(ctx, method, tool.as_deref(), access, &mut deciding_rule) {
            if d.approval_required {
                approval.get_or_insert(d.on(access));
                continue;
            }
            return Decision::deny(method, tool, accesses.clone(), d.on(access));
        }
    }
    if let Some(d) = approval {
        return Decision::deny(method, tool, accesses.clone(), d);
    }
    Decision {
        verdict: Verdict::Allow,
        method: kept_method(method),
        tool,
        accesses,
        rule: deciding_rule,
        denial: None,
    }
}

fn check_access(
    ctx: &Context,
    method: &str,
    tool: Option<&str>,
    access: &Access,
    deciding: &mut RuleId,
) -> Result<(), Denial> {
    // Below a case-insensitive directory, mounts and path prefixes compare folded (check::casefold).
    let fold_from = match &access.resource {
        Resource::Path { resolved, .. } => ctx.world.case_insensitive_from(resolved),
        _ => None,
    };
    if let Resource::Path { written, resolved } = &access.resource {
        if let Some(mounts) = &ctx.policy.filesystem.mounts {
            let write = access.capability != "filesystem.read";
            let found = match fold_from {
                Some(from) => super::casefold::mount_for_folded(resolved, mounts, write, from),
                None => mount_for(resolved, mounts, write),
            };
            match found {
                Ok(m) => {
                    *deciding = RuleId::Policy(format!("filesystem.mounts[{}]", m.path.display()))
                }
                Err(MountRefusal::Outside) => {
                    return Err(Denial::new(
                        RuleId::FilesystemMounts,
                        format!(
                            "Path blocked by policy: {} is outside the allowed mounts",
                            shown(written, resolved)
                        ),
                    ));
                }
                Err(MountRefusal::ReadOnly(m)) => {
                    return Err(Denial::new(
                        RuleId::FilesystemMounts,
                        format!(
                            "Path blocked by policy: {} is in the read-only mount {m}",
                            shown(written, resolved)
                        ),
                    ));
                }
            }
        }
    }
    let within = |kind: crate::policy::RuleKind, p: &Path, root: &Path| match fold_from {
        None => super::path::is_within(p, root),
        Some(from) => super::casefold::within_folded(
            p,
            root,
            from,
            match kind {
                crate::policy::RuleKind::Allow => super::casefold::Fold::Ascii,
                _ => super::casefold::Fold::Loose,
            },
        ),
    };
    match super::rules::evaluate_with(&ctx.policy.rules, access, tool, method, &within) {
        RuleVerdict::Denied(r) => {
            return Err(Denial::new(
                RuleId::Policy(r.id()),
                format!(
                    "denied by rule {}{}",
                    r.label,
                    r.reason
                        .as_ref()
                        .map(|x| format!(" ({x})"))
                        .unwrap_or_default()
                ),
            ));
        }
        RuleVerdict::ApprovalRequired(r) => {
            let mut d = Denial::new(
                RuleId::Policy(r.id()),
                format!(
                    "approval required (rule {}{})",
                    r.label,
                    r.reason
                        .as_ref()
                        .map(|x| format!(": {x}"))
                        .unwrap_or_default()
                ),
            );
            d.approval_required = true;
            return Err(d);
        }
        RuleVerdict::NoAllowMatched => {
            return Err(Denial::new(
                RuleId::Default,
                format!(
                    "no allow rule matches {} (the rules govern this capability, so it is denied)",
                    access.capability
                ),
            ));
        }
        RuleVerdict::Allowed(r) => {
            if access.capability == super::env_read::CAPABILITY {
                super::env_read::judge_allowed(r)?;
            }
            *deciding = RuleId::Policy(r.id())
        }
        RuleVerdict::NotGoverned => {
            if access.capability == "shell.execute" {
                if let Resource::Path { resolved, .. } = &access.resource {
                    let why = executes_on_write_in(resolved, executes_patterns(ctx.policy), &|d| {
                        ctx.world.is_git_dir(d)
                    })
                    .unwrap_or_default();
                    return Err(Denial::new(
                        RuleId::DefaultShell,
                        format!("writing {} is execution ({why}); shell execution is denied unless an allow rule names shell.execute", resolved.display()),
                    ));
                }
                return Err(Denial::new(
                    RuleId::DefaultShell,
                    "shell execution is denied unless an allow rule names shell.execute",
                ));
            }
            if access.capability == "environment.read" {
                return Err(Denial::new(
                    RuleId::DefaultEnvironment,
                    "reading the server's environment is denied unless an allow rule names environment.read and the variables (`variables: [LANG, TZ]`)",
                ));
            }
        }
    }
    Ok(())
}

fn shown(written: &str, resolved: &Path) -> String {
    if Path::new(written) == resolved {
        written.to_string()
    } else {
        format!("{written} (resolves to {})", resolved.display())
    }
}

/// A catalog of a fixed list of tools (for `capjail check` and tests).
pub(crate) struct StaticCatalog {
    pub(crate) name: Option<String>,
    pub(crate) tools: std::collections::BTreeMap<String, ToolSpec>,
}

impl ToolCatalog for StaticCatalog {
    fn tool(&self, name: &str) -> Option<Cow<'_, ToolSpec>> {
        self.tools.get(name).map(Cow::Borrowed)
    }
    fn profile_name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
