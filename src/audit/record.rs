//! THE record: what a stage decided or did, owned, from the stage that builds it to the line
//! in the file.
//!
//! A stage builds a [`Record`] (the request's id and params moved in, not serialised); the
//! pipeline hands it to the transport, which queues it (`queue`: a decision is encoded as it
//! is queued, `event::Precoded`, other records by the writer); the writer chains and appends
//! it (`writer`). An offline session (`capjail check`, `audit
//! replay`) keeps the same records instead of writing them. Nothing converts a record into
//! another type on the way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::check::decide::Decision;
use crate::policy::{Policy, RuleId};
use crate::profile::ToolSpec;

/// One record, owned.
#[derive(Debug, Clone)]
pub enum Record {
    /// The first record of a session (written before the server starts).
    SessionStart(Box<SessionStart>),
    /// Boxed (issue 19): a decision (320 bytes) travels from the filter through the pipeline,
    /// the pump and the recorder to the audit queue, about ten moves; one allocation costs
    /// less than copying it each time.
    Decision(Box<DecisionRecord>),
    /// The answer to a `require_approval` question (src/approval).
    Approval(Box<ApprovalRecord>),
    /// A message capjail altered, dropped or flagged (`response_filter`).
    Filter(FilterRecord),
    /// A `tool_trust` record (pins, definition changes, scanner findings; `trust::record`).
    Trust(TrustRecord),
    SessionEnd(SessionEnd),
}

impl Record {
    /// When the record's event happened (`None`: the time of writing).
    pub(crate) fn at(&self) -> Option<SystemTime> {
        match self {
            Record::Decision(d) => Some(d.at),
            Record::Approval(a) => Some(a.at),
            Record::Filter(f) => Some(f.at),
            Record::Trust(t) => Some(t.at),
            Record::SessionStart(_) | Record::SessionEnd(_) => None,
        }
    }

    /// What the record weighs in the audit queue (bounds it in bytes): a decision weighs its
    /// request as it was received.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Record::Decision(d) => d.weight,
            Record::Approval(a) => a.question.len(),
            Record::Filter(f) => f.reason.len(),
            Record::Trust(t) => t.fields.len() * 64,
            Record::SessionStart(_) | Record::SessionEnd(_) => 0,
        }
    }
}

/// Which way the message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToServer => "client_to_server",
            Direction::ServerToClient => "server_to_client",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionStart {
    /// The server command line as capjail runs it.
    pub(crate) argv: Vec<String>,
    pub(crate) policy: Arc<Policy>,
    /// `proxy`, `proxy+kernel`, ... (free text from the CLI).
    pub(crate) mode: String,
    /// What the kernel layer enforces (free text, e.g. `landlock abi 4; seccomp; no-new-privs`).
    pub(crate) kernel: String,
    /// The server's working directory and home: what relative paths and `~` meant (replay).
    pub(crate) cwd: PathBuf,
    pub(crate) home: Option<PathBuf>,
    /// The profile in use (replay falls back to it when a record has no `tool_spec`).
    pub(crate) profile: Option<String>,
}

/// A decision on a request (or, `direction: server_to_client`, on a connection the server
/// made through the egress point).
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub direction: Direction,
    /// The JSON-RPC id (`None` for a notification).
    pub id: Option<Value>,
    /// The request params as received (redacted when they are written).
    pub params: Option<Value>,
    pub decision: Decision,
    /// The description of the tool the decision used (from the profile or `tools/list`;
    /// shared with the session's catalog, not copied per call), so that replay decides with
    /// the same description.
    pub tool_spec: Option<Arc<ToolSpec>>,
    /// Time spent deciding, in microseconds.
    pub latency_us: u64,
    /// When the decision was taken (the record's `time`).
    pub at: SystemTime,
    /// The size of the request as it was received (the record's weight in the queue; not
    /// written).
    pub weight: usize,
}

impl DecisionRecord {
    /// A decision taken now, with no tool description, latency or weight (set them with
    /// `..DecisionRecord::new(..)`).
    pub fn new(
        direction: Direction,
        id: Option<Value>,
        params: Option<Value>,
        decision: Decision,
    ) -> DecisionRecord {
        DecisionRecord {
            direction,
            id,
            params,
            decision,
            tool_spec: None,
            latency_us: 0,
            at: SystemTime::now(),
            weight: 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApprovalRecord {
    pub id: Option<Value>,
    pub(crate) method: String,
    pub(crate) tool: Option<String>,
    pub(crate) rule: RuleId,
    pub(crate) granted: bool,
    /// Who or what answered (`client elicitation`, `command`, `terminal`, `session memory`).
    pub(crate) by: String,
    /// The question as the person read it.
    pub(crate) question: String,
    /// The answer in words (`approve`, `decline`, `no answer in time`, ...).
    pub(crate) answer: String,
    /// From the question to its answer, in milliseconds.
    pub(crate) elapsed_ms: u64,
    pub(crate) at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    /// The message was forwarded with changes (e.g. blocked tools hidden from `tools/list`).
    Altered,
    /// The message was not forwarded.
    Dropped,
    /// Forwarded unchanged; something in it was recorded (a content finding set to `record`).
    Flagged,
}

impl FilterAction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FilterAction::Altered => "altered",
            FilterAction::Dropped => "dropped",
            FilterAction::Flagged => "flagged",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilterRecord {
    pub direction: Direction,
    pub id: Option<Value>,
    /// The method of the request this answers (if known) or of the message itself.
    pub(crate) method: Option<String>,
    pub(crate) action: FilterAction,
    pub(crate) reason: String,
    /// The rule that dropped the message, when one names the refusal (`capjail check` shows
    /// it; the audit record does not carry it: docs/audit-format.md).
    pub(crate) rule: Option<RuleId>,
    pub(crate) at: SystemTime,
}

impl FilterRecord {
    /// A message altered (`dropped: false`) or dropped, now.
    pub(crate) fn new(direction: Direction, dropped: bool, reason: String) -> FilterRecord {
        FilterRecord {
            direction,
            id: None,
            method: None,
            action: if dropped {
                FilterAction::Dropped
            } else {
                FilterAction::Altered
            },
            reason,
            rule: None,
            at: SystemTime::now(),
        }
    }

    /// A client message refused by the built-in rule `rule` (its id when one could be read):
    /// dropped, its reason ending with `(rule ID)` (the record does not carry `rule` itself:
    /// docs/audit-format.md).
    pub(crate) fn refused(id: Option<Value>, rule: RuleId, reason: &str) -> FilterRecord {
        FilterRecord {
            id,
            reason: format!("{reason} (rule {})", rule.static_id()),
            rule: Some(rule),
            ..FilterRecord::new(Direction::ClientToServer, true, String::new())
        }
    }

    /// A message forwarded unchanged in which the content checks found something to record.
    pub(crate) fn flagged(direction: Direction, reason: String) -> FilterRecord {
        FilterRecord {
            action: FilterAction::Flagged,
            ..FilterRecord::new(direction, false, reason)
        }
    }
}

/// A `tool_trust` record: its members besides `v`, `kind` and `session`.
#[derive(Debug, Clone)]
pub struct TrustRecord {
    pub(crate) fields: Map<String, Value>,
    pub(crate) at: SystemTime,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SessionEnd {
    pub(crate) exit_code: Option<i32>,
    /// The signal that ended the server, if one did.
    pub(crate) signal: Option<i32>,
}
