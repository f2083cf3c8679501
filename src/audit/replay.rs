//! `capjail audit replay`: decide every recorded request again under another policy.
//!
//! Each decision record is re-decided with [`decide`] using what the original decision used:
//! the tool description stored in the record (`tool_spec`), else the session's profile (a
//! built-in profile by name), else none; the session's server `cwd` and `home`; and the real
//! filesystem and resolver. Records whose redacted arguments are resources (a path, a URL, a
//! scanned argument) cannot be re-decided faithfully and are listed as skipped.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::canon::parse_line;
use super::redact::contains_redaction;
use super::verify::{split_lines, verify_bytes};
use super::AuditError;
use crate::check::decide::{decide, Context, StaticCatalog};
use crate::check::path::PathContext;
use crate::check::{RealWorld, World};
use crate::policy::Policy;
use crate::profile::{builtin_profiles, ArgKind, ToolSpec};

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub line: usize,
    pub seq: u64,
    pub method: String,
    pub tool: Option<String>,
    /// `allow`, `ask` (a `require_approval` rule gates it: a person decides) or `deny`, and
    /// the rule that decided, then and now.
    pub before: (String, String),
    pub after: (String, String),
    /// The new denial's reason (empty when now allowed).
    pub reason: String,
}

impl Change {
    pub fn newly_allowed(&self) -> bool {
        self.before.0 != "allow" && self.after.0 == "allow"
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayReport {
    pub policy: String,
    pub replayed: usize,
    pub unchanged: usize,
    pub changes: Vec<Change>,
    /// `line N: why` for records not re-decided.
    pub skipped: Vec<String>,
    /// The chain does not verify (replay still ran on the records it could read).
    pub verify_error: Option<String>,
}

impl ReplayReport {
    /// 1 when anything denied before would now be allowed, else 0.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.changes.iter().any(Change::newly_allowed))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(e) = &self.verify_error {
            let _ = writeln!(
                out,
                "warning: the log does not verify ({e}); replaying what can be read"
            );
        }
        for c in &self.changes {
            let _ = writeln!(
                out,
                "line {} seq {}: {} {}: {} ({}) -> {} ({}){}",
                c.line,
                c.seq,
                c.method,
                c.tool.as_deref().unwrap_or("-"),
                verdict_words(&c.before.0),
                c.before.1,
                verdict_words(&c.after.0),
                c.after.1,
                if c.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.reason)
                }
            );
        }
        for s in &self.skipped {
            let _ = writeln!(out, "skipped: {s}");
        }
        let newly = self.changes.iter().filter(|c| c.newly_allowed()).count();
        let _ = writeln!(
            out,
            "replayed {} decisions under policy `{}`: {} unchanged, {} now denied, {} now allowed, {} skipped",
            self.replayed,
            self.policy,
            self.unchanged,
            self.changes.len() - newly,
            newly,
            self.skipped.len()
        );
        out
    }
}

/// Replay the log at `path` under `policy` (real filesystem and DNS): its whole rotated set,
/// oldest first, checked the way `verify` checks it.
pub fn replay(path: &Path, policy: &Policy) -> Result<ReplayReport, AuditError> {
    let data = super::rotated_read::read_set(path)?;
    let mut report = replay_bytes(&data, policy, &RealWorld);
    report.verify_error = super::rotated_read::set_break(path);
    Ok(report)
}

struct Session {
    paths: PathContext,
    profile: Option<String>,
}

pub fn replay_bytes(data: &[u8], policy: &Policy, world: &dyn World) -> ReplayReport {
    let mut report = ReplayReport {
        policy: policy.name.clone(),
        ..ReplayReport::default()
    };
    report.verify_error = verify_bytes(data).error.map(|b| b.message);
    let profiles: HashMap<String, BTreeMap<String, ToolSpec>> = builtin_profiles()
        .into_iter()
        .map(|p| (p.name, p.tools))
        .collect();
    let mut sessions: HashMap<String, Session> = HashMap::new();
    for line in split_lines(data) {
        let Ok(p) = parse_line(line.bytes) else {
            continue;
        };
        let r = &p.record;
        let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
        let session = text("session").unwrap_or_default();
        match p.kind.as_str() {
            "session_start" => {
                let cwd = PathBuf::from(text("cwd").unwrap_or_else(|| "/".into()));
                let argv: Vec<String> = r
                    .get("argv")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                // The same readings as `run`: the server's bases and its profile's `paths`
                // (the environment is not recorded: variables are judged unknown).
                let readings = text("profile")
                    .and_then(|n| builtin_profiles().into_iter().find(|p| p.name == n))
                    .map(|p| p.paths)
                    .unwrap_or_default();
                let paths = PathContext {
                    argv_dirs: crate::check::readings::argv_dirs(&argv, &cwd),
                    cwd,
                    home: text("home").map(PathBuf::from),
                    readings,
                    ..Default::default()
                };
                sessions.insert(
                    session,
                    Session {
                        paths,
                        profile: text("profile"),
                    },
                );
                continue;
            }
            "decision" => {}
            _ => continue,
        }
        let no = line.no;
        let Some(s) = sessions.get(&session) else {
            report
                .skipped
                .push(format!("line {no}: no session_start for session {session}"));
            continue;
        };
        let method = text("method").unwrap_or_default();
        let tool = text("tool");
        let spec: Option<ToolSpec> = r
            .get("tool_spec")
            .filter(|v| !v.is_null())
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let params = r.get("params").filter(|v| !v.is_null());
        if let Some(why) = unreplayable(&method, params, spec.as_ref()) {
            report.skipped.push(format!("line {no}: {why}"));
            continue;
        }
        let mut tools = BTreeMap::new();
        match (&spec, &tool) {
            (Some(spec), Some(t)) => {
                tools.insert(t.clone(), spec.clone());
            }
            _ => {
                if let Some(all) = s.profile.as_ref().and_then(|n| profiles.get(n)) {
                    tools = all.clone();
                }
            }
        }
        let catalog = StaticCatalog {
            name: s.profile.clone(),
            tools,
        };
        let ctx = Context {
            policy,
            catalog: &catalog,
            paths: &s.paths,
            world,
        };
        let d = decide(&ctx, &method, params);
        report.replayed += 1;
        // A decision a require_approval rule gated is neither allowed nor denied: a person
        // decided (the approval record that follows it says who and what).
        let gated_then = r.get("approval_required").and_then(Value::as_bool) == Some(true);
        let before = (
            if gated_then {
                "ask".to_string()
            } else {
                text("verdict").unwrap_or_default()
            },
            text("rule").unwrap_or_default(),
        );
        let gated_now = d.denial.as_ref().is_some_and(|x| x.approval_required);
        let after = (
            if d.is_allowed() {
                "allow"
            } else if gated_now {
                "ask"
            } else {
                "deny"
            }
            .to_string(),
            d.rule.clone(),
        );
        if before.0 == after.0 {
            report.unchanged += 1;
        } else {
            let reason = d.denial.map(|x| x.reason).unwrap_or_default();
            report.changes.push(Change {
                line: no,
                seq: p.seq,
                method,
                tool,
                before,
                after,
                reason,
            });
        }
    }
    report
}

fn verdict_words(v: &str) -> &str {
    match v {
        "allow" => "allowed",
        "deny" => "denied",
        "ask" => "asked for approval",
        other => other,
    }
}

/// Why a record cannot be re-decided faithfully, if it cannot.
fn unreplayable(method: &str, params: Option<&Value>, spec: Option<&ToolSpec>) -> Option<String> {
    let params = params?;
    if method != "tools/call" {
        return contains_redaction(params)
            .then(|| format!("{method} params hold a redacted value"));
    }
    let args = params.get("arguments").and_then(Value::as_object)?;
    for (name, v) in args {
        if !contains_redaction(v) {
            continue;
        }
        let kind = spec.and_then(|s| s.args.get(name)).map(|a| a.kind);
        if kind != Some(ArgKind::Data) {
            return Some(format!("argument `{name}` is redacted and the decision depends on it (redact only data arguments to keep replay exact)"));
        }
    }
    None
}
