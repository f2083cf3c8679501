//! THE APPROVAL SEAM for content and flow decisions (issue 15 wires the approval channel).
//!
//! Every content or flow decision whose action is `approval` calls [`request_approval`] and
//! nothing else. Until an approval channel exists it refuses: the denial says approval is
//! required (`approval_required: true`) and names the rule.

use crate::check::Denial;
use crate::policy::RuleId;

/// Ask for approval of a call held back by `rule`. Today: refused, approval required.
pub(crate) fn request_approval(rule: RuleId, reason: String) -> Denial {
    let mut d = Denial::new(
        rule,
        format!("{reason} (approval required; no approval channel is configured)"),
    );
    d.approval_required = true;
    d
}
