//! Where the proxy reports what it decided and what it filtered: the audit log (when on) and
//! the session's counters. One recorder serves both directions, behind a mutex; records go to
//! the audit queue (`audit::queue`) in the order they are handed over, so the chain follows
//! the order of the decisions.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::Value;

use crate::audit::queue::Watermark;
use crate::audit::{AuditError, AuditQueue, Direction, FilterAction, Record, SessionEnd};
use crate::check::decide::Decision;
use crate::profile::ToolSpec;

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) allowed: u64,
    pub(crate) denied: u64,
    pub(crate) filtered: u64,
}

pub(crate) struct Recorder {
    pub(crate) audit: Option<AuditQueue>,
    pub(crate) tally: Tally,
    /// The sequence number of the last record queued (0: none). A request is forwarded only
    /// once the audit log is written up to the record of its decision (`Watermark::wait`).
    pub(crate) last_seq: u64,
    /// An offline session (`capjail check`, `audit replay`) keeps what it decided here instead
    /// of writing a log (`None`: a session that runs a server).
    kept: Option<Vec<Kept>>,
}

/// What an offline session decided, in order.
pub(crate) enum Kept {
    Decision(Box<DecisionRecord>),
    /// A message capjail altered or dropped.
    Filtered {
        dropped: bool,
        reason: String,
        /// The rule that dropped it, when one names the refusal.
        rule: Option<crate::policy::RuleId>,
    },
}

pub(crate) type SharedRecorder = Arc<Mutex<Recorder>>;

/// What a decision record is made of (owned: the audit writer encodes it on its own thread).
pub(crate) struct DecisionRecord {
    pub(crate) id: Option<Value>,
    pub(crate) params: Option<Value>,
    pub(crate) decision: Decision,
    pub(crate) tool_spec: Option<Arc<ToolSpec>>,
    pub(crate) latency_us: u64,
    /// The size of the request as it was received (bounds the audit queue in bytes).
    pub(crate) weight: usize,
}

/// What an approval record is made of.
pub(crate) struct ApprovalRecord {
    pub(crate) id: Option<Value>,
    pub(crate) method: String,
    pub(crate) tool: Option<String>,
    pub(crate) rule: crate::policy::RuleId,
    pub(crate) question: String,
    pub(crate) granted: bool,
    pub(crate) answer: String,
    pub(crate) by: String,
    pub(crate) elapsed_ms: u64,
}

impl Recorder {
    pub(crate) fn new(audit: Option<AuditQueue>) -> SharedRecorder {
        Arc::new(Mutex::new(Recorder {
            audit,
            tally: Tally::default(),
            last_seq: 0,
            kept: None,
        }))
    }

    /// The recorder of an offline session: no log, what is decided is kept ([`Kept`]).
    pub(crate) fn keeping() -> SharedRecorder {
        Arc::new(Mutex::new(Recorder {
            audit: None,
            tally: Tally::default(),
            last_seq: 0,
            kept: Some(Vec::new()),
        }))
    }

    /// What was kept since the last call (offline sessions).
    pub(crate) fn take_kept(&mut self) -> Vec<Kept> {
        self.kept.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Where the proxy waits for records to be written (`None`: auditing is off).
    pub(crate) fn watermark(&self) -> Option<Watermark> {
        self.audit.as_ref().map(AuditQueue::watermark)
    }

    /// Record a decision. Called before the request is forwarded or refused: an error means
    /// the decision must not be carried out (the audit log failed).
    pub(crate) fn decided(&mut self, d: DecisionRecord) -> std::io::Result<()> {
        if d.decision.is_allowed() {
            self.tally.allowed += 1;
        } else {
            self.tally.denied += 1;
        }
        if let Some(kept) = &mut self.kept {
            kept.push(Kept::Decision(Box::new(d)));
            return Ok(());
        }
        if let Some(q) = &self.audit {
            let record = Record::Decision {
                direction: Direction::ClientToServer,
                id: d.id,
                params: d.params,
                decision: d.decision,
                tool_spec: d.tool_spec,
                latency_us: d.latency_us,
                at: SystemTime::now(),
            };
            self.last_seq = q.push(record, d.weight).map_err(io_error)?;
        }
        Ok(())
    }

    /// Record a message capjail altered or dropped (`rule`: the rule that dropped it, kept for
    /// `capjail check`; the audit record does not carry it).
    pub(crate) fn filtered(
        &mut self,
        direction: Direction,
        id: Option<&Value>,
        method: Option<&str>,
        dropped: bool,
        reason: &str,
        rule: Option<crate::policy::RuleId>,
    ) -> std::io::Result<()> {
        self.tally.filtered += 1;
        if let Some(kept) = &mut self.kept {
            kept.push(Kept::Filtered {
                dropped,
                reason: reason.to_string(),
                rule,
            });
        }
        if let Some(q) = &self.audit {
            let record = Record::Filter {
                direction,
                id: id.cloned(),
                method: method.map(str::to_string),
                action: if dropped {
                    FilterAction::Dropped
                } else {
                    FilterAction::Altered
                },
                reason: reason.to_string(),
                at: SystemTime::now(),
            };
            self.last_seq = q.push(record, reason.len()).map_err(io_error)?;
        }
        Ok(())
    }

    /// Record the answer to an approval question (before the call is forwarded or refused).
    pub(crate) fn approval(&mut self, a: ApprovalRecord) -> std::io::Result<()> {
        if let Some(q) = &self.audit {
            let weight = a.question.len();
            let record = Record::Approval {
                id: a.id,
                method: a.method,
                tool: a.tool,
                rule: a.rule,
                granted: a.granted,
                by: a.by,
                question: a.question,
                answer: a.answer,
                elapsed_ms: a.elapsed_ms,
                at: SystemTime::now(),
            };
            self.last_seq = q.push(record, weight).map_err(io_error)?;
        }
        Ok(())
    }

    /// Record a `tool_trust` record (pins, definition changes, scanner findings).
    pub(crate) fn trust(&mut self, fields: serde_json::Map<String, Value>) -> std::io::Result<()> {
        if let Some(q) = &self.audit {
            let weight = fields.len() * 64;
            let record = Record::Trust {
                fields,
                at: SystemTime::now(),
            };
            self.last_seq = q.push(record, weight).map_err(io_error)?;
        }
        Ok(())
    }

    /// Record a message forwarded unchanged in which the content checks found something to
    /// record (a finding whose action is `record`).
    pub(crate) fn flagged(
        &mut self,
        direction: Direction,
        id: Option<&Value>,
        reason: &str,
    ) -> std::io::Result<()> {
        if let Some(q) = &self.audit {
            let record = Record::Filter {
                direction,
                id: id.cloned(),
                method: None,
                action: FilterAction::Flagged,
                reason: reason.to_string(),
                at: SystemTime::now(),
            };
            q.push(record, reason.len()).map_err(io_error)?;
        }
        Ok(())
    }

    /// Record the end of the session and write everything still queued. `Err`: some record
    /// could not be written.
    pub(crate) fn finish(&mut self, end: SessionEnd) -> Result<(), AuditError> {
        match self.audit.take() {
            Some(q) => {
                let pushed = q.push(Record::SessionEnd(end), 0);
                let closed = q.close();
                pushed.map(|_| ()).and(closed)
            }
            None => Ok(()),
        }
    }
}

fn io_error(e: AuditError) -> std::io::Error {
    super::fatal::AuditFailure::io(e)
}

impl Recorder {
    /// Record a decision of the egress point (a connection or request the server made;
    /// `direction: server_to_client`, method `egress/<METHOD>`). Called before it takes effect.
    pub(crate) fn egress_decided(
        &mut self,
        decision: Decision,
        latency_us: u64,
        weight: usize,
    ) -> std::io::Result<()> {
        if decision.is_allowed() {
            self.tally.allowed += 1;
        } else {
            self.tally.denied += 1;
        }
        if let Some(q) = &self.audit {
            let record = Record::Decision {
                direction: Direction::ServerToClient,
                id: None,
                params: None,
                decision,
                tool_spec: None,
                latency_us,
                at: SystemTime::now(),
            };
            self.last_seq = q.push(record, weight).map_err(io_error)?;
        }
        Ok(())
    }
}
