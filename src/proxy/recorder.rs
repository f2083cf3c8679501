//! Where the proxy reports what it decided and what it filtered: the audit log (when on) and
//! the session's counters. One recorder serves both directions, behind a mutex, so that the
//! audit chain has a single writer per session.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::audit::{AuditLog, DecisionEvent, Direction, Event, FilterAction, FilterEvent};
use crate::check::decide::Decision;
use crate::profile::ToolSpec;

#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub allowed: u64,
    pub denied: u64,
    pub filtered: u64,
}

pub struct Recorder {
    pub audit: Option<AuditLog>,
    pub tally: Tally,
}

pub type SharedRecorder = Arc<Mutex<Recorder>>;

impl Recorder {
    pub fn new(audit: Option<AuditLog>) -> SharedRecorder {
        Arc::new(Mutex::new(Recorder {
            audit,
            tally: Tally::default(),
        }))
    }

    /// Record a decision. Called before the request is forwarded or refused: an error means the
    /// decision must not be carried out.
    pub fn decided(
        &mut self,
        id: Option<&Value>,
        params: Option<&Value>,
        decision: &Decision,
        tool_spec: Option<&ToolSpec>,
        latency_us: u64,
    ) -> std::io::Result<()> {
        if decision.is_allowed() {
            self.tally.allowed += 1;
        } else {
            self.tally.denied += 1;
        }
        if let Some(log) = &mut self.audit {
            let ev = Event::Decision(DecisionEvent {
                direction: Direction::ClientToServer,
                id,
                params,
                decision,
                tool_spec,
                latency_us,
            });
            log.record(&ev)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    /// Record a message capjail altered or dropped.
    pub fn filtered(
        &mut self,
        direction: Direction,
        id: Option<&Value>,
        method: Option<&str>,
        dropped: bool,
        reason: &str,
    ) -> std::io::Result<()> {
        self.tally.filtered += 1;
        if let Some(log) = &mut self.audit {
            let action = if dropped {
                FilterAction::Dropped
            } else {
                FilterAction::Altered
            };
            log.record(&Event::ResponseFilter(FilterEvent {
                direction,
                id,
                method,
                action,
                reason,
            }))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}
