//! `capjail audit replay`: judge every recorded request again under another policy.
//!
//! Each recorded session becomes an offline session of the same pipeline as `run`
//! (`proxy::pipeline::Session::offline`: strict parsing, the capability decision, content
//! checks and flows, in the order recorded), with what the original session knew: the tool
//! descriptions stored in the records (`tool_spec`), else the session's profile (a built-in
//! profile by name); the session's server `cwd`, `home` and command line; and the real
//! filesystem and resolver. Every record is judged as answered before the next (ids are not
//! in flight across records). Records whose redacted arguments are resources (a path, a URL, a
//! scanned argument) cannot be judged again faithfully and are listed as skipped, as are the
//! egress point's decisions (not messages).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::canon::parse_line;
use super::redact::contains_redaction;
use super::verify::{split_lines, verify_bytes};
use super::AuditError;
use crate::audit::Record;
use crate::check::decide::Decision;
use crate::check::path::PathContext;
use crate::check::{RealWorld, World};
use crate::policy::{Policy, RuleId};
use crate::profile::{builtin_profiles, ArgKind, ToolSpec};
use crate::proxy::catalog::SessionCatalog;
use crate::proxy::pipeline::{Output, Session};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    pub(crate) line: usize,
    pub(crate) seq: u64,
    pub(crate) method: String,
    pub(crate) tool: Option<String>,
    /// `allow`, `ask` (a `require_approval` rule gates it: a person decides) or `deny`, and
    /// the rule that decided, then (read back with [`RuleId::named`]) and now.
    pub(crate) before: (String, RuleId),
    pub(crate) after: (String, RuleId),
    /// The new denial's reason (empty when now allowed).
    pub(crate) reason: String,
}

impl Change {
    pub(crate) fn newly_allowed(&self) -> bool {
        self.before.0 != "allow" && self.after.0 == "allow"
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ReplayReport {
    pub(crate) policy: String,
    pub(crate) replayed: usize,
    pub(crate) unchanged: usize,
    pub(crate) changes: Vec<Change>,
    /// `line N: why` for records not re-decided.
    pub(crate) skipped: Vec<String>,
    /// The chain does not verify (replay still ran on the records it could read).
    pub(crate) verify_error: Option<String>,
}

impl ReplayReport {
    /// 1 when anything denied before would now be allowed, else 0.
    pub(crate) fn exit_code(&self) -> i32 {
        i32::from(self.changes.iter().any(Change::newly_allowed))
    }

    pub(crate) fn render(&self) -> String {
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
pub(crate) fn replay(path: &Path, policy: &Policy) -> Result<ReplayReport, AuditError> {
    let data = super::rotated_read::read_set(path)?;
    let mut report = replay_bytes(&data, policy, &RealWorld);
    report.verify_error = super::rotated_read::set_break(path);
    Ok(report)
}

pub(crate) fn replay_bytes<W: World + Clone + Send + 'static>(
    data: &[u8],
    policy: &Policy,
    world: &W,
) -> ReplayReport {
    let shared_policy = std::sync::Arc::new(policy.clone());
    let mut report = ReplayReport {
        policy: policy.name.clone(),
        ..ReplayReport::default()
    };
    report.verify_error = verify_bytes(data).error.map(|b| b.message);
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
                let profile = text("profile")
                    .and_then(|n| builtin_profiles().iter().find(|p| p.name == n).cloned());
                let paths = PathContext {
                    argv_dirs: crate::check::readings::argv_dirs(&argv, &cwd),
                    cwd,
                    home: text("home").map(PathBuf::from),
                    readings: profile
                        .as_ref()
                        .map(|p| p.paths.clone())
                        .unwrap_or_default(),
                    ..Default::default()
                };
                let catalog = match profile {
                    Some(p) => SessionCatalog::new(Some(p), &[]),
                    None => SessionCatalog::of_tools(Default::default()),
                };
                sessions.insert(
                    session,
                    Session::offline(
                        shared_policy.clone(),
                        catalog,
                        paths,
                        Box::new(world.clone()),
                    ),
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
        if method.starts_with("egress/") {
            report.skipped.push(format!(
                "line {no}: a decision of the egress point (not a message)"
            ));
            continue;
        }
        if let (Some(spec), Some(t)) = (spec, &tool) {
            s.describe_tool(t, spec);
        }
        let mut msg = serde_json::json!({"jsonrpc": "2.0", "method": method});
        if let Some(id) = r.get("id").filter(|v| !v.is_null()) {
            msg["id"] = id.clone();
        }
        if let Some(p) = params {
            msg["params"] = p.clone();
        }
        let Some(d) = judge_again(s, &msg) else {
            report
                .skipped
                .push(format!("line {no}: the pipeline did not decide it again"));
            continue;
        };
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
            RuleId::named(&text("rule").unwrap_or_default()),
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

/// The decision the session's pipeline takes on `msg` now (a refusal before any decision, such
/// as an invalid message, as a denial with its rule).
fn judge_again(s: &Session, msg: &Value) -> Option<Decision> {
    s.forget_in_flight();
    let line = serde_json::to_vec(msg).ok()?;
    let outputs = s.on_client_message(&line).ok()?;
    let mut kept = s.take_kept();
    kept.extend(crate::proxy::pipeline::records(&outputs).cloned());
    if let Some(d) = kept.into_iter().find_map(|k| match k {
        Record::Decision(d) => Some(d.decision),
        _ => None,
    }) {
        return Some(d);
    }
    let error = outputs.iter().find_map(|o| match o {
        Output::ToClient(line) => serde_json::from_slice::<Value>(line).ok(),
        _ => None,
    })?;
    // Every refusal of the pipeline names its rule; one that does not is an invalid message.
    let denial = crate::check::Denial::new(
        error
            .pointer("/error/data/rule")
            .and_then(Value::as_str)
            .map_or(RuleId::ProtocolInvalidRequest, RuleId::named),
        error
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    let d = Decision {
        verdict: crate::check::decide::Verdict::Deny,
        method: msg
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
            .into(),
        tool: None,
        accesses: Default::default(),
        rule: denial.rule.clone(),
        denial: Some(denial),
    };
    Some(d)
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
