//! Allowed client lines waiting for their audit records: released to the server only once the
//! audit log is written up to the last decision among them (write before forward).

use std::io;

use serde_json::Value;

use super::outbox::Outbox;
use crate::audit::queue::Watermark;
use crate::jsonrpc;

/// Bytes held before the pump stops reading ahead and waits for the audit log.
const HELD_BYTES: usize = 1 << 20;
/// Lines held before the same.
const HELD_LINES: usize = 256;

#[derive(Default)]
pub(crate) struct Held {
    /// The lines for the server, each with its newline.
    bytes: Vec<u8>,
    /// The lines as the client sent them (for an error reply if they cannot be released):
    /// where each is in `bytes`, or its own copy when the filter rewrote it (no allocation
    /// per line in the common case).
    originals: Vec<Original>,
}

enum Original {
    In(std::ops::Range<usize>),
    Own(Vec<u8>),
}

impl Held {
    pub(crate) fn is_empty(&self) -> bool {
        self.originals.is_empty()
    }

    /// How many lines are held.
    pub(crate) fn len(&self) -> usize {
        self.originals.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.bytes.len() >= HELD_BYTES || self.originals.len() >= HELD_LINES
    }

    /// Hold `line` (or, when the filter rewrote it, `rewritten`) for the server.
    pub(crate) fn hold(&mut self, line: &[u8], rewritten: Option<Vec<u8>>) {
        let start = self.bytes.len();
        self.bytes
            .extend_from_slice(rewritten.as_deref().unwrap_or(line));
        self.originals.push(match rewritten {
            None => Original::In(start..self.bytes.len()),
            Some(_) => Original::Own(line.to_vec()),
        });
        self.bytes.push(b'\n');
    }

    /// Wait until the audit log holds record `seq`, then send everything held to the server.
    /// `Ok(false)`: the server's stdin is closed. An audit failure refuses every held request
    /// (the client gets an error for each) and is returned as a `fatal::AuditFailure`.
    pub(crate) fn release(
        &mut self,
        watermark: Option<&Watermark>,
        seq: u64,
        out: &Outbox,
    ) -> io::Result<bool> {
        if let Some(w) = watermark {
            // The pump settles the queue once it has forwarded (`Watermark::settle`).
            if let Err(e) = w.wait_quiet(seq) {
                let e = super::fatal::AuditFailure::io(format!("cannot record a decision: {e}"));
                self.refuse_all(out, &e);
                return Err(e);
            }
        }
        self.originals.clear();
        let sent = out.pump_to_server(&self.bytes);
        self.bytes.clear();
        if let Err(e) = sent {
            tracing::debug!("server stdin closed: {e}");
            return Ok(false);
        }
        Ok(true)
    }

    /// Nothing held will be sent: answer each held request with an error.
    pub(crate) fn refuse_all(&mut self, out: &Outbox, why: &io::Error) {
        for original in std::mem::take(&mut self.originals) {
            let line = match &original {
                Original::In(r) => &self.bytes[r.clone()],
                Original::Own(l) => l,
            };
            for id in request_ids(line) {
                let reply = jsonrpc::error_response(
                    &id,
                    -32603,
                    &format!("capjail cannot write its audit log, so the request was not forwarded and the session ends: {why}"),
                    crate::policy::RuleId::Audit.data(),
                );
                let _ = out.send_to_client(&reply);
            }
        }
        self.bytes.clear();
    }
}

/// The ids of the requests in a line (one message or a batch).
fn request_ids(line: &[u8]) -> Vec<Value> {
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return vec![];
    };
    let one = |m: &Value| match (m.get("id"), m.get("method")) {
        (Some(id), Some(_)) if !id.is_null() => Some(id.clone()),
        _ => None,
    };
    match &v {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        m => one(m).into_iter().collect(),
    }
}
