//! THE approval seam for tool definitions (`pins.on_change: approve`, `tool_scan.*: approve`).
//! No approver exists yet: every request is refused with the rule `approval.required`, so a
//! client sees that an approval, not a policy change, would let the call through. The approval
//! mechanism replaces the body of [`request_approval`] and nothing else.

use crate::check::Denial;

/// Ask for approval to call `tool`, which `rule` gates for `why`. Today: refused.
pub(crate) fn request_approval(tool: &str, rule: &crate::policy::RuleId, why: &str) -> Denial {
    let mut d = Denial::new(
        crate::policy::RuleId::ApprovalRequired,
        format!("approval is required to call `{tool}` ({rule}: {why}); no approver is configured, so the call is refused"),
    );
    d.approval_required = true;
    d
}
