//! A tools/call against what capjail knows of the tool's definition (pure).

use super::approval::request_approval;
use super::assess::CallVerdict;
use crate::check::decide::{Decision, Verdict};
use crate::check::Denial;

/// The decision for a call, after the policy's own: a call the policy allows is refused when
/// the tool's definition changed, is unpinned under a frozen pin file, or was flagged by the
/// scanner (as the policy says). A call the policy refuses stays refused.
pub(crate) fn gate_call(mut decision: Decision, verdict: Option<&CallVerdict>) -> Decision {
    gate_call_in_place(&mut decision, verdict);
    decision
}

/// [`gate_call`] on a decision in place (not moved twice on the request's path: issue 19).
pub(crate) fn gate_call_in_place(decision: &mut Decision, verdict: Option<&CallVerdict>) {
    if !decision.is_allowed() {
        return;
    }
    let denial = match verdict {
        None | Some(CallVerdict::Allow) => return,
        Some(CallVerdict::Refuse { rule, reason }) => Denial::new(rule.clone(), reason.clone()),
        Some(CallVerdict::Approve { rule, reason }) => {
            request_approval(decision.tool.as_deref().unwrap_or_default(), rule, reason)
        }
    };
    decision.verdict = Verdict::Deny;
    decision.rule = denial.rule.clone();
    decision.denial = Some(denial);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Decision {
        Decision {
            verdict: Verdict::Allow,
            method: "tools/call".into(),
            tool: Some("t".into()),
            accesses: Default::default(),
            rule: crate::policy::RuleId::Default,
            denial: None,
        }
    }

    #[test]
    fn refusals_and_approvals_replace_an_allowed_decision() {
        assert!(gate_call(allowed(), None).is_allowed());
        assert!(gate_call(allowed(), Some(&CallVerdict::Allow)).is_allowed());
        let d = gate_call(
            allowed(),
            Some(&CallVerdict::Refuse {
                rule: crate::policy::RuleId::PinsChanged,
                reason: "changed (description)".into(),
            }),
        );
        assert_eq!(d.rule, "pins.changed");
        assert_eq!(d.denial.unwrap().reason, "changed (description)");
        let d = gate_call(
            allowed(),
            Some(&CallVerdict::Approve {
                rule: crate::policy::RuleId::PinsChanged,
                reason: "x".into(),
            }),
        );
        assert_eq!(d.rule, "approval.required");
        assert!(d.denial.unwrap().approval_required);
    }
}
