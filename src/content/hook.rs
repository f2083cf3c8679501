//! The edge the proxy calls: after the capability decision allowed a request (scan what
//! leaves, check and arm flows), and before a result reaches the client (scan what comes back).

use std::time::Instant;

use serde_json::Value;

use super::config::OutAction;
use super::flows::{events_of, Event};
use super::known::withheld_env;
use super::scan::Scanner;
use super::{RequestInfo, SessionContent};
use crate::check::decide::{Decision, Verdict};
use crate::check::{Denial, Resource};
use crate::inline_text::InlineText;
use crate::policy::Policy;

fn deny(d: &mut Decision, denial: Denial) {
    d.verdict = Verdict::Deny;
    d.rule = denial.rule.clone();
    d.denial = Some(denial);
}

/// Judge an allowed request's content and flows: refuses `decision` in place when content or a
/// flow says so (it is not moved: issue 19), and returns the findings to record without
/// refusing.
///
/// `key` is the request's id key (`proxy::session::id_key`, computed once by the caller;
/// `None` for a notification); `now` is when the request's decision started (the flows'
/// clock: one clock read per call, not one per stage).
pub(crate) fn on_request(
    policy: &Policy,
    st: &mut SessionContent,
    key: Option<&str>,
    decision: &mut Decision,
    params: Option<&Value>,
    now: Instant,
) -> Vec<String> {
    if !decision.is_allowed() || !judged(decision) {
        return Vec::new();
    }
    let notes = judge_request(policy, st, decision, params, now);
    if decision.is_allowed() {
        commit_request(policy, st, key, decision, now);
    }
    notes
}

/// A call that waits for a person (a `require_approval` rule, or a changed tool's pin), judged
/// as the content checks and flows judge an allowed call: an approval must not let a call skip
/// them. What they say replaces the gate in place (a refusal is not asked about; a request for
/// approval naming a credential or a flow is asked instead of the rule's). Nothing is armed or
/// remembered: [`commit_request`] does that once the call is approved. The findings to record.
pub(crate) fn judge_gated(
    policy: &Policy,
    st: &mut SessionContent,
    decision: &mut Decision,
    params: Option<&Value>,
    now: Instant,
) -> Vec<String> {
    let gated = decision
        .denial
        .as_ref()
        .is_some_and(|d| d.approval_required);
    if !gated || !judged(decision) {
        return Vec::new();
    }
    let mut as_allowed = Decision {
        verdict: Verdict::Allow,
        denial: None,
        ..decision.clone()
    };
    let notes = judge_request(policy, st, &mut as_allowed, params, now);
    if let Some(denial) = as_allowed.denial {
        deny(decision, denial);
    }
    notes
}

/// The methods whose requests and results the content checks read.
fn judged(decision: &Decision) -> bool {
    matches!(
        decision.method.as_ref(),
        "tools/call" | "resources/read" | "prompts/get"
    )
}

/// The checks of an allowed request (what leaves in it, the flows it would complete): refuses
/// `decision` in place when they say so; the findings to record without refusing.
fn judge_request(
    policy: &Policy,
    st: &mut SessionContent,
    decision: &mut Decision,
    params: Option<&Value>,
    now: Instant,
) -> Vec<String> {
    let c = &policy.content;
    let mut notes = Vec::new();
    if !st.env_loaded {
        st.env_loaded = true;
        let env: Vec<(String, String)> = std::env::vars().collect();
        for (k, v) in withheld_env(&env, &policy.environment) {
            st.known.add(
                &v,
                &format!("environment variable {k} (withheld from the server)"),
            );
        }
    }
    let exempt_tool = decision
        .tool
        .as_deref()
        .is_some_and(|t| c.exempt_tools.iter().any(|e| e == t));
    if c.enabled && !exempt_tool {
        let exempt = |host: &str, port: u16| {
            c.exempt_hosts
                .iter()
                .any(|h| crate::check::rules::host_matches(h, host, port))
        };
        let urls: Vec<(&str, bool)> = decision
            .accesses
            .iter()
            .filter_map(|a| match &a.resource {
                Resource::Url {
                    written,
                    host,
                    port,
                } => Some((written.as_str(), exempt(host, *port))),
                _ => None,
            })
            .collect();
        let network = decision
            .accesses
            .iter()
            .any(|a| a.capability.starts_with("network."));
        let all_exempt = !urls.is_empty() && urls.iter().all(|(_, e)| *e);
        let mut sc = Scanner::new(&mut st.known, true);
        if network && !all_exempt {
            if let Some(args) = params.and_then(|p| p.get("arguments").or_else(|| p.get("uri"))) {
                walk(args, &mut |s| sc.outgoing(s), 0);
            }
        }
        for (u, ex) in &urls {
            if !ex {
                sc.outgoing(u);
            }
        }
        for f in std::mem::take(&mut sc.findings) {
            let rule = f.class.rule();
            let reason = format!("a credential would leave in the request: {}", f.describe());
            match c.action(f.class) {
                OutAction::Refuse => {
                    deny(decision, Denial::new(rule, reason));
                    return notes;
                }
                OutAction::Approval => {
                    deny(decision, super::approval::request_approval(rule, reason));
                    return notes;
                }
                OutAction::Record => notes.push(format!("{rule}: {reason} (recorded, forwarded)")),
                OutAction::Off => {}
            }
        }
    }
    if let Some(hit) = st.flows.check(
        &policy.flows,
        &decision.accesses,
        decision.tool.as_deref(),
        now,
    ) {
        let denial = if hit.refuse {
            Denial::new(hit.rule, hit.reason)
        } else {
            super::approval::request_approval(hit.rule, hit.reason)
        };
        deny(decision, denial);
        return notes;
    }
    notes
}

/// A request that goes to the server (allowed, or approved): arm the flows it triggers, and
/// remember what its result needs (the result of a request not remembered here is forwarded
/// unchecked).
pub(crate) fn commit_request(
    policy: &Policy,
    st: &mut SessionContent,
    key: Option<&str>,
    decision: &Decision,
    now: Instant,
) {
    if !judged(decision) {
        return;
    }
    let c = &policy.content;
    // The id's key (its JSON text): what the result is found by, and what flows name.
    let id_text = key.unwrap_or("notification");
    let events = events_of(&decision.accesses, &|p| c.is_sensitive(p), id_text);
    let sensitive = events
        .iter()
        .find(|e| e.kind == super::config::EventKind::SensitiveRead)
        .map(|e| e.what.clone());
    for e in &events {
        st.flows.observe(&policy.flows, e, now);
    }
    // Every such request is remembered, however many are in flight: one its result could not
    // be matched to would be forwarded unchecked (a cap of 4,096 once did that to the rest of
    // a pipelined burst). The entry goes when the server answers (`on_result_spans`), as the
    // session's own entry for the request does (`proxy::session`), which this one follows.
    if key.is_some() {
        // Inline (no allocation for the usual id and tool name): the server's thread frees
        // the entry (`crate::inline_text`).
        let tool = decision.tool.clone();
        st.requests
            .insert(InlineText::new(id_text), RequestInfo { tool, sensitive });
    }
}

fn walk(v: &Value, f: &mut dyn FnMut(&str), depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| walk(x, f, depth + 1)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            f(k);
            walk(x, f, depth + 1)
        }),
        _ => {}
    }
}

/// What to do with a result.
#[derive(Debug, PartialEq)]
pub(crate) enum ResultOutcome {
    /// Not a result capjail scans, or nothing found.
    Forward,
    /// Forward unchanged; record this.
    Flagged(String),
    /// Send this instead; record why.
    Rewritten(Vec<u8>, String),
}

/// Scan the answer to request `key` (a response line), if it was one capjail watches.
#[cfg(test)]
pub(crate) fn on_result(
    policy: &Policy,
    st: &mut SessionContent,
    key: &str,
    line: &[u8],
) -> ResultOutcome {
    on_result_spans(policy, st, key, line, &[], &[], None)
}

/// [`on_result`], told where `line`'s long strings end: `spans` are what
/// `jsonrpc::strict::validate_envelope_spans` found in this same line (`&[]` for any other
/// line), handed to `borrowed::each_text_spans`; and `texts`, the texts of its `result` the
/// envelope scanner listed (`ResultTexts::listed`; `None` for any other line, or when it
/// listed none), read without walking the line again (`borrowed::each_listed_text`).
pub(crate) fn on_result_spans(
    policy: &Policy,
    st: &mut SessionContent,
    key: &str,
    line: &[u8],
    spans: &[crate::jsonrpc::strict::Span],
    shapes: &[super::shape::TextShape],
    texts: Option<(bool, &[crate::jsonrpc::strict::TextSpan])>,
) -> ResultOutcome {
    let Some(info) = st.requests.remove(key) else {
        return ResultOutcome::Forward;
    };
    let c = &policy.content;
    let scanned = c.enabled
        && !info
            .tool
            .as_ref()
            .is_some_and(|t| c.results_exempt_tools.iter().any(|e| e == t.as_str()));
    if info.sensitive.is_none() {
        if !scanned {
            return ResultOutcome::Forward; // nothing to remember, nothing to scan
        }
        // The common case: the texts read from the line, no tree built; the tree only when a
        // text needs more than a look (a finding: redaction, wrapping, a record).
        let known = &mut st.known;
        let mut clean = |t: &str| {
            let shaped = super::shape::TextShapes::of(shapes, line, t);
            super::results::text_is_clean_shaped(t, c, known, shaped)
        };
        let read = match texts {
            Some(listed) => {
                super::borrowed::each_listed_text(line, listed, &mut st.scratch, &mut clean)
            }
            None => super::borrowed::each_text_spans(line, spans, &mut st.scratch, &mut clean),
        };
        if read != Some(false) {
            return ResultOutcome::Forward; // every text clean, or no result to read
        }
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(line) else {
        return ResultOutcome::Forward; // the server filter already judged the framing
    };
    let Some(result) = v.get_mut("result") else {
        return ResultOutcome::Forward;
    };
    if let Some(what) = &info.sensitive {
        // Remember what a sensitive read returned (before any redaction).
        let mut texts = Vec::new();
        walk(result, &mut |s| texts.push(s.to_string()), 0);
        for t in texts {
            st.known.add_file(&t, what);
        }
    }
    if !scanned {
        return ResultOutcome::Forward;
    }
    let rep = super::results::check_result(result, c, &mut st.known);
    if !rep.secrets.is_empty() && info.sensitive.is_none() {
        st.flows.observe(
            &policy.flows,
            &Event {
                kind: super::config::EventKind::SecretInResult,
                path: None,
                what: format!("a secret in the result of request {key}"),
            },
            Instant::now(),
        );
    }
    if !rep.any() {
        return ResultOutcome::Forward;
    }
    let why = rep.describe();
    if let Some(rule) = rep.refuse {
        let id = v.get("id").cloned().unwrap_or(Value::Null);
        let why = format!("the result was withheld: {why}");
        let msg = format!("capjail policy violation: {why}");
        let line = serde_json::to_vec(&serde_json::json!({"jsonrpc":"2.0","id":id,"error":{"code":crate::jsonrpc::code::POLICY_VIOLATION,"message":msg,"data":{"rule":rule,"reason":why,"capability":null,"resource":null,"tool":info.tool}}}))
            .expect("serialising a Value");
        return ResultOutcome::Rewritten(line, format!("{rule}: {why}"));
    }
    if rep.changed {
        let line = serde_json::to_vec(&v).expect("serialising a Value");
        return ResultOutcome::Rewritten(line, format!("content.results: {why} (rewritten)"));
    }
    ResultOutcome::Flagged(format!("content.results: {why} (recorded, forwarded)"))
}
