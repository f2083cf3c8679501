//! Where the session's records go: the audit log (when on) and the session's counters. One
//! recorder serves both directions, behind a mutex; records go to the audit queue
//! (`audit::queue`) in the order they are handed over, so the chain follows the order of the
//! decisions. An offline session keeps the same records instead (`Recorder::keeping`).

use std::sync::{Arc, Mutex};

use crate::audit::queue::Watermark;
use serde_json::Value;

use crate::audit::{
    AuditError, AuditQueue, DecisionRecord, Direction, FilterAction, Record, SessionEnd,
};

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
    /// An offline session (`capjail check`, `audit replay`) keeps its records here instead
    /// of writing a log (`None`: a session that runs a server).
    kept: Option<Vec<Record>>,
    /// The last client decision record written, done with, for the client filter's next
    /// decision to be built in (no allocation per call), with its `params` for the next
    /// message's to be read into (`jsonrpc::reuse`) when they were a small message's (its
    /// line at most [`SPARE_PARAMS_LINE`] bytes), so what is kept stays small.
    spare: Option<Box<DecisionRecord>>,
}

/// The longest client line whose `params` tree is kept for the next message
/// ([`Recorder::take_spare`]).
pub(crate) const SPARE_PARAMS_LINE: usize = 4096;

pub(crate) type SharedRecorder = Arc<Mutex<Recorder>>;

impl Recorder {
    pub(crate) fn new(audit: Option<AuditQueue>) -> SharedRecorder {
        Arc::new(Mutex::new(Recorder {
            audit,
            tally: Tally::default(),
            last_seq: 0,
            kept: None,
            spare: None,
        }))
    }

    /// The recorder of an offline session: no log, the records are kept.
    pub(crate) fn keeping() -> SharedRecorder {
        Arc::new(Mutex::new(Recorder {
            audit: None,
            tally: Tally::default(),
            last_seq: 0,
            kept: Some(Vec::new()),
            spare: None,
        }))
    }

    /// The records kept since the last call (offline sessions).
    pub(crate) fn take_kept(&mut self) -> Vec<Record> {
        self.kept.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Where the proxy waits for records to be written (`None`: auditing is off).
    pub(crate) fn watermark(&self) -> Option<Watermark> {
        self.audit.as_ref().map(AuditQueue::watermark)
    }

    /// Queue (or keep) a record a stage built. Called before what it records takes effect: an
    /// error means it must not take effect (the audit log failed).
    pub(crate) fn record(&mut self, record: Record) -> std::io::Result<()> {
        self.record_with(record, false)
    }

    /// [`Recorder::record`] for the client pump: the audit writer thread is not woken now
    /// (`AuditQueue::push_quiet`); the pump waits for the record or calls
    /// `Watermark::settle` before it blocks.
    pub(crate) fn record_quiet(&mut self, record: Record) -> std::io::Result<()> {
        self.record_with(record, true)
    }

    fn record_with(&mut self, record: Record, quiet: bool) -> std::io::Result<()> {
        match &record {
            Record::Decision(d) if d.decision.is_allowed() => self.tally.allowed += 1,
            Record::Decision(_) => self.tally.denied += 1,
            Record::Filter(f) if f.action != FilterAction::Flagged => self.tally.filtered += 1,
            _ => {}
        }
        if let Some(kept) = &mut self.kept {
            kept.push(record);
            return Ok(());
        }
        let Record::Decision(d) = record else {
            if let Some(q) = &self.audit {
                let pushed = if quiet {
                    q.push_quiet(record)
                } else {
                    q.push(record)
                };
                self.last_seq = pushed.map_err(io_error)?;
            }
            return Ok(());
        };
        if let Some(q) = &self.audit {
            self.last_seq = q.push_decision(&d, quiet).map_err(io_error)?;
        }
        self.keep_spare(d);
        Ok(())
    }

    /// Keep a written client decision record for the next (see `spare`).
    fn keep_spare(&mut self, mut d: Box<DecisionRecord>) {
        if d.direction != Direction::ClientToServer {
            return;
        }
        if d.weight > SPARE_PARAMS_LINE || !d.params.as_ref().is_some_and(Value::is_object) {
            d.params = None;
        }
        self.spare = Some(d);
    }

    #[cfg(test)]
    pub(crate) fn has_spare_params(&self) -> bool {
        self.spare.as_ref().is_some_and(|d| d.params.is_some())
    }

    /// The kept record of an earlier client decision, if any (taken: the next decision is
    /// built in it, the next message's params read into its own).
    pub(crate) fn take_spare(&mut self) -> Option<Box<DecisionRecord>> {
        self.spare.take()
    }

    /// Record the end of the session and write everything still queued. `Err`: some record
    /// could not be written.
    pub(crate) fn finish(&mut self, end: SessionEnd) -> Result<(), AuditError> {
        match self.audit.take() {
            Some(q) => {
                let pushed = q.push(Record::SessionEnd(end));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::decide::kept_method;

    fn decision(direction: Direction, weight: usize, params: Value) -> Record {
        let d = crate::check::decide::Decision {
            verdict: crate::check::decide::Verdict::Allow,
            method: kept_method("tools/call"),
            tool: None,
            accesses: Default::default(),
            rule: crate::policy::RuleId::Default,
            denial: None,
        };
        Record::Decision(Box::new(DecisionRecord {
            weight,
            ..DecisionRecord::new(direction, Some(1.into()), Some(params), d)
        }))
    }

    #[test]
    fn only_a_small_client_message_s_params_are_kept_for_the_next() {
        let params = serde_json::json!({"name": "echo", "arguments": {"m": "x"}});
        let r = Recorder::new(None);
        let mut r = r.lock().unwrap();
        r.record(decision(Direction::ClientToServer, 100, params.clone()))
            .unwrap();
        let spare = r.take_spare().expect("a client decision's record is kept");
        assert_eq!(spare.params, Some(params.clone()));
        assert!(r.take_spare().is_none(), "taken once");
        // A long line's tree is not kept (what is kept stays small), nor a server's request's,
        // nor params that are not an object.
        let long = decision(
            Direction::ClientToServer,
            SPARE_PARAMS_LINE + 1,
            params.clone(),
        );
        r.record(long).unwrap();
        r.record(decision(Direction::ServerToClient, 100, params.clone()))
            .unwrap();
        r.record(decision(
            Direction::ClientToServer,
            100,
            serde_json::json!([1]),
        ))
        .unwrap();
        assert!(!r.has_spare_params());
        // (The record itself is still kept for the next decision: the last client one's.)
        assert_eq!(r.take_spare().map(|d| d.weight), Some(100));
        assert_eq!(r.tally.allowed, 4);
    }
}
