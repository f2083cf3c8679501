//! The proxy's side of an approval: what happens to one request that a `require_approval`
//! rule gates. Called by the client filter after the request's decision record is queued.
//!
//! - already approved for this session (same tool, same rule): forwarded;
//! - a 2026-07-28 retry carrying capjail's token: the token is redeemed (single use, bound
//!   to the same method, tool and arguments, within the time limit) and the answer read;
//! - a 2026-07-28 call from a client that takes elicitation: answered with `input_required`;
//! - otherwise held: the approvers are asked on an approval thread and the request is
//!   forwarded unchanged, or refused, from there.
//!
//! Every answer is recorded (question, answer, who answered, time taken) before the request
//! is forwarded or refused.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::memory::{OpenQuestion, TokenError};
use super::question::{call_digest, read_elicitation, ApprovalQuestion, Verdict};
use super::{Answer, Answerer, Approvals};
use crate::audit::{ApprovalRecord, Record};
use crate::check::decide::Decision;
use crate::jsonrpc::{self, code};
use crate::policy::schema::ApproverKind;
use crate::policy::Policy;
use crate::proxy::client_filter::{refusal, SharedState};
use crate::proxy::recorder::SharedRecorder;
use crate::proxy::session::id_key;

/// The key of capjail's question in an `input_required` result's `inputRequests`.
pub(crate) const INPUT_KEY: &str = "capjail_approval";
/// The rule id of a refused 2026-07-28 answer (forged, replayed, expired, for another call).
pub(crate) const TOKEN_RULE: &str = crate::policy::RuleId::ApprovalToken.static_id();

const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPS: &str = "io.modelcontextprotocol/clientCapabilities";

pub(crate) enum GateOutcome {
    /// Forward: the original line (`None`) or this one.
    Forward(Option<Vec<u8>>),
    /// Answer the client with this line; nothing reaches the server.
    Reply(Vec<u8>),
    /// Held: start asking once the decision record is queued.
    Hold(Box<Hold>),
}

/// Everything an approval needs from the proxy.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) approvals: Arc<Approvals>,
    pub(crate) recorder: SharedRecorder,
    pub(crate) shared: SharedState,
    /// For an approved call's content checks and flows (`commit`).
    pub(crate) policy: Arc<Policy>,
}

/// An approved call goes to the server: its result is checked and the flows it triggers are
/// armed, as an allowed call's are (`content::hook::commit_request`; it was judged as if
/// allowed when it was decided). Before it is forwarded: its answer may come at once.
fn commit(ctx: &Ctx, id: &Value, decision: &Decision) {
    let key = id_key(id);
    let mut s = ctx.shared.lock().unwrap_or_else(|p| p.into_inner());
    crate::content::hook::commit_request(
        &ctx.policy,
        &mut s.content,
        Some(&key),
        decision,
        Instant::now(),
    );
}

/// The question for a gated decision.
pub(crate) fn question(
    decision: &Decision,
    policy_rule_label: Option<(&str, Option<&str>)>,
) -> Option<ApprovalQuestion> {
    let d = decision.denial.as_ref().filter(|d| d.approval_required)?;
    let (label, reason) = policy_rule_label.unwrap_or((d.rule.as_str(), None));
    Some(ApprovalQuestion {
        method: decision.method.to_string(),
        tool: decision.tool.as_deref().map(str::to_owned),
        capability: d
            .capability
            .clone()
            .or_else(|| decision.accesses.first().map(|a| a.capability.to_string())),
        resource: d.resource.clone(),
        rule: d.rule.clone(),
        rule_label: label.to_string(),
        reason: reason
            .unwrap_or("the policy asks a person before this call runs")
            .to_string(),
    })
}

/// Decide what happens to a gated request (see the module doc).
pub(crate) fn gate(
    ctx: &Ctx,
    id: &Value,
    params: Option<&Value>,
    decision: &Decision,
    q: ApprovalQuestion,
) -> std::io::Result<GateOutcome> {
    let tool = q.tool.clone().unwrap_or_default();
    // What an approval given through the client is bound to (SHA-256 of the method, tool and
    // arguments): computed only where a token is issued or redeemed, not for a call the
    // session's memory approves.
    let digest = || call_digest(&decision.method, params);
    // A retry that carries an answer to capjail's question (or claims to).
    let state = params.and_then(|p| p.get("requestState"));
    let answer = params
        .and_then(|p| p.get("inputResponses"))
        .and_then(|r| r.get(INPUT_KEY));
    let ours = state
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with("capjail-approval:"));
    if ours || answer.is_some() {
        let token = state.and_then(Value::as_str).unwrap_or("");
        let redeemed = ctx
            .approvals
            .tokens(|t| t.redeem(token, &digest(), Instant::now()));
        let open = match redeemed {
            Ok(open) => open,
            Err(e) => {
                let why = match e {
                    TokenError::Unknown => {
                        "an approval answer capjail did not ask for (forged, or already used)"
                    }
                    TokenError::OtherCall => {
                        "an approval answer given for another call (tool or arguments differ)"
                    }
                    TokenError::Expired => "an approval answer that came after the time limit",
                };
                tracing::warn!(id = %id, "refused a retry: {why}");
                let a = Answer {
                    verdict: Verdict::Denied,
                    words: format!("refused: {why}"),
                    by: Answerer::Client,
                    elapsed: Default::default(),
                };
                record_on_pump(ctx, Some(id), &q, &a)?;
                return Ok(GateOutcome::Reply(jsonrpc::error_response(
                    id,
                    code::POLICY_VIOLATION,
                    &format!("capjail policy violation: {why}"),
                    Some(
                        json!({"rule": TOKEN_RULE, "reason": why, "tool": q.tool, "capability": q.capability, "resource": q.resource, "approval": "forged"}),
                    ),
                )));
            }
        };
        let (verdict, words) = match answer {
            Some(a) => read_elicitation(a, ctx.approvals.policy.remember),
            None => (
                Verdict::Denied,
                "a retry without capjail's answer (deny)".into(),
            ),
        };
        let a = Answer {
            verdict,
            words,
            by: Answerer::Client,
            elapsed: open.asked_at.elapsed(),
        };
        record_on_pump(ctx, Some(id), &q, &a)?;
        return Ok(match verdict {
            Verdict::Approved { remember } => {
                if remember {
                    ctx.approvals.remember(&tool, q.rule.as_str());
                }
                commit(ctx, id, decision);
                // The original request, unchanged, under the retry's id.
                let mut req = json!({"jsonrpc": "2.0", "id": id, "method": decision.method});
                if let Some(p) = open.params {
                    req["params"] = p;
                }
                GateOutcome::Forward(Some(serde_json::to_vec(&req).expect("a Value")))
            }
            _ => GateOutcome::Reply(refused_line(id, decision, &a)),
        });
    }
    if ctx.approvals.remembered(&tool, q.rule.as_str()) {
        let a = Answer {
            verdict: Verdict::Approved { remember: true },
            words: "approved earlier for the rest of the session".into(),
            by: Answerer::SessionMemory,
            elapsed: Default::default(),
        };
        record_on_pump(ctx, Some(id), &q, &a)?;
        commit(ctx, id, decision);
        return Ok(GateOutcome::Forward(None));
    }
    let meta = params.and_then(|p| p.get("_meta"));
    let new_generation = meta.and_then(|m| m.get(META_VERSION)).is_some();
    if new_generation {
        let elicits = meta
            .and_then(|m| m.get(META_CAPS))
            .and_then(|c| c.get("elicitation"))
            .is_some_and(Value::is_object);
        // The client is asked here (the answer comes with its retry) when it is the first
        // approver in the policy's order that can ask; otherwise the call is held below.
        if ctx.approvals.first_usable(elicits) == Some(ApproverKind::Client) {
            let token = ctx.approvals.tokens(|t| {
                t.issue(OpenQuestion {
                    digest: digest(),
                    params: params.cloned(),
                    asked_at: Instant::now(),
                })
            })?;
            let result = json!({
                "resultType": "input_required",
                "inputRequests": {INPUT_KEY: {"method": "elicitation/create", "params": q.elicitation_params(ctx.approvals.policy.remember)}},
                "requestState": token,
            });
            tracing::info!(id = %id, tool = %tool, rule = %q.rule, "asked the client for an approval (input_required)");
            return Ok(GateOutcome::Reply(
                serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
                    .expect("a Value"),
            ));
        }
        return Ok(GateOutcome::Hold(Box::new(Hold {
            ctx: ctx.clone(),
            id: id.clone(),
            decision: decision.clone(),
            q,
            client_elicits: false,
        })));
    }
    let client_elicits = ctx.approvals.client_elicits();
    Ok(GateOutcome::Hold(Box::new(Hold {
        ctx: ctx.clone(),
        id: id.clone(),
        decision: decision.clone(),
        q,
        client_elicits,
    })))
}

/// A request waiting for its answer; its id counts as in flight meanwhile.
pub(crate) struct Hold {
    ctx: Ctx,
    id: Value,
    decision: Decision,
    q: ApprovalQuestion,
    client_elicits: bool,
}

impl Hold {
    /// Ask; forward `line` unchanged on approval, or answer the client with the refusal.
    pub(crate) fn start(self, line: Vec<u8>) {
        let Hold {
            ctx,
            id,
            decision,
            q,
            client_elicits,
        } = self;
        tracing::info!(id = %id, tool = q.tool.as_deref().unwrap_or(""), rule = %q.rule, "holding a call for approval");
        let approvals = ctx.approvals.clone();
        let question = q.clone();
        approvals.request(
            question,
            client_elicits,
            Box::new(move |a: Answer| finish(&ctx, &id, &decision, &q, &a, line)),
        );
    }
}

/// Carry out the answer to a held request.
fn finish(
    ctx: &Ctx,
    id: &Value,
    decision: &Decision,
    q: &ApprovalQuestion,
    a: &Answer,
    line: Vec<u8>,
) {
    let key = id_key(id);
    // Cancelled by the client while it waited: then it is no longer held.
    let cancelled = !ctx.approvals.unhold(&key);
    let recorded = record(ctx, Some(id), q, a);
    if let Err(e) = &recorded {
        tracing::error!("cannot record an approval; the call is refused: {e}");
    }
    let outbox = ctx.approvals.outbox.clone();
    match (a.verdict, recorded.is_ok(), cancelled) {
        (Verdict::Approved { remember }, true, false) => {
            if remember {
                ctx.approvals
                    .remember(q.tool.as_deref().unwrap_or_default(), q.rule.as_str());
            }
            tracing::info!(id = %id, by = a.by.as_str(), "approved; forwarding the held call");
            commit(ctx, id, decision);
            if let Err(e) = outbox.send_to_server(&line) {
                tracing::debug!("server stdin closed: {e}");
            }
        }
        (_, _, true) => {
            // The client cancelled the request while it waited: nothing to send anywhere.
            tracing::info!(id = %id, "a cancelled call's approval arrived; nothing sent");
        }
        _ => {
            {
                let mut s = ctx.shared.lock().unwrap_or_else(|p| p.into_inner());
                s.pending.remove(key.as_str());
                s.remember_refused(key);
            }
            tracing::warn!(id = %id, by = a.by.as_str(), answer = %a.words, "Request blocked: not approved");
            let _ = outbox.send_to_client(&refused_line(id, decision, a));
        }
    }
}

/// The -32001 error for a call that was not approved.
pub(crate) fn refused_line(id: &Value, decision: &Decision, a: &Answer) -> Vec<u8> {
    let mut d = decision.clone();
    let (what, word) = match a.verdict {
        Verdict::TimedOut => ("approval timed out".to_string(), "timed_out"),
        Verdict::Unavailable => (format!("approval required but {}", a.words), "unavailable"),
        _ => (
            format!(
                "denied by the user ({}, answered by {})",
                a.words,
                a.by.as_str()
            ),
            "denied",
        ),
    };
    if let Some(den) = d.denial.as_mut() {
        // What was asked stays in the message (a flow names the event that armed it).
        den.reason = format!("{what}: rule {} ({})", den.rule, den.reason);
    }
    let line = refusal(id, &d);
    let mut v: Value = serde_json::from_slice(&line).expect("our own JSON");
    v["error"]["data"]["approval"] = json!(word);
    v["error"]["data"]["answered_by"] = json!(a.by.as_str());
    serde_json::to_vec(&v).expect("a Value")
}

fn record(ctx: &Ctx, id: Option<&Value>, q: &ApprovalQuestion, a: &Answer) -> std::io::Result<()> {
    record_with(ctx, id, q, a, false)
}

/// [`record`] on the client pump, for an answer given while the call is decided (the
/// session's memory, a retry's token): queued quietly, as the call's decision record is, and
/// written with it by the pump before the call is forwarded (`Recorder::record_quiet`), not by
/// a wake-up of the writer thread for each.
fn record_on_pump(
    ctx: &Ctx,
    id: Option<&Value>,
    q: &ApprovalQuestion,
    a: &Answer,
) -> std::io::Result<()> {
    record_with(ctx, id, q, a, true)
}

fn record_with(
    ctx: &Ctx,
    id: Option<&Value>,
    q: &ApprovalQuestion,
    a: &Answer,
    quiet: bool,
) -> std::io::Result<()> {
    let record = Record::Approval(Box::new(ApprovalRecord {
        id: id.cloned(),
        method: q.method.clone(),
        tool: q.tool.clone(),
        rule: q.rule.clone(),
        question: q.message(),
        granted: matches!(a.verdict, Verdict::Approved { .. }),
        answer: a.words.clone(),
        by: a.by.as_str().to_string(),
        elapsed_ms: a.elapsed.as_millis() as u64,
        at: std::time::SystemTime::now(),
    }));
    let mut recorder = ctx
        .recorder
        .lock()
        .map_err(|_| std::io::Error::other("recorder lock poisoned"))?;
    match quiet {
        true => recorder.record_quiet(record),
        false => recorder.record(record),
    }
}
