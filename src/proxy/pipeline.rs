//! One session's message pipeline, whatever carries the bytes.
//!
//! A transport (stdio today: `proxy::stdio`) cuts its byte streams into lines and hands each
//! line to [`Session::on_client_message`] or [`Session::on_server_message`]; it gets back the
//! [`Output`]s to carry out, in order: what to forward, what to answer, which records to write
//! first. The stages themselves (strict parsing, classification and the capability decision,
//! tool trust, content checks, approvals, roots narrowing, result filtering) live in
//! [`ClientFilter`] (client -> server) and [`ServerFilter`] (server -> client) over one session
//! state ([`Shared`]). `run` drives a session over stdio; `capjail check` and `audit replay` drive
//! an offline session ([`Session::offline`]): no server, nothing written anywhere, the
//! decisions kept for the caller.

use std::io;
use std::sync::{Arc, Mutex};

use super::catalog::SessionCatalog;
use super::client_filter::{id_key, ClientFilter, Outcome, Shared, SharedState};
use super::framing::LineFacts;
use super::outbox::Outbox;
use super::recorder::{Recorder, SharedRecorder};
use super::server_filter::{ServerFilter, ServerOutcome};
use crate::audit::{Direction, FilterRecord, Record};
use crate::check::path::PathContext;
use crate::check::World;
use crate::jsonrpc::{self, code};
use crate::policy::Policy;

/// What the transport does with one message, in the order given.
// A record is moved through once per message; boxing it would add an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Output {
    /// Send the message, byte for byte as it was received, to the other peer.
    Forward,
    /// Send these bytes (one message, no newline) to the server instead.
    ToServer(Vec<u8>),
    /// Send these bytes (one message, no newline) to the client.
    ToClient(Vec<u8>),
    /// Write this record (the one record type, as a stage built it) before carrying out what
    /// follows ([`Session::record`]).
    Record(Record),
}

/// One session: both directions' stages over one session state.
pub(crate) struct Session {
    client: Arc<Mutex<ClientFilter>>,
    server: Mutex<ServerFilter>,
    shared: SharedState,
    recorder: SharedRecorder,
    outbox: Arc<Outbox>,
    /// Check messages (proxy layer); when false, lines are relayed unchecked.
    checking: bool,
    /// Longest client line (`proxy.max_line_bytes`).
    max_line: usize,
    /// The content checks read the server's answers (`content.enabled`, and checking).
    content_checks: bool,
}

fn poisoned(what: &str) -> io::Error {
    io::Error::other(format!("{what} lock poisoned"))
}

impl Session {
    /// The session of `client` (its policy, session state, recorder and outbox serve the
    /// server direction too).
    pub(crate) fn new(client: ClientFilter, checking: bool) -> Session {
        let server = ServerFilter::new(
            client.shared.clone(),
            client.policy.clone(),
            client.outbox.clone(),
        );
        Session {
            shared: client.shared.clone(),
            recorder: client.recorder.clone(),
            outbox: client.outbox.clone(),
            max_line: client.policy.limits.max_line_bytes,
            content_checks: checking && client.policy.content.enabled,
            client: Arc::new(Mutex::new(client)),
            server: Mutex::new(server),
            checking,
        }
    }

    /// A session with no server and no log (`capjail check`, `audit replay`): every client
    /// message goes through the same stages as under `run`; nothing is sent anywhere, no
    /// person is asked (a call a `require_approval` rule gates is refused, as `run` refuses it
    /// with no way to ask), and the decisions are kept ([`Session::take_kept`]).
    pub(crate) fn offline(
        policy: Arc<Policy>,
        catalog: SessionCatalog,
        paths: PathContext,
        world: Box<dyn World + Send>,
    ) -> Session {
        let shared = Arc::new(Mutex::new(Shared::new(catalog)));
        let client = ClientFilter::new(
            policy,
            paths,
            world,
            shared,
            Recorder::keeping(),
            Outbox::discarding(),
            None,
        );
        Session::new(client, true)
    }

    pub(crate) fn recorder(&self) -> &SharedRecorder {
        &self.recorder
    }

    /// The longest client line the policy admits (`proxy.max_line_bytes`).
    pub(crate) fn max_line(&self) -> usize {
        self.max_line
    }

    pub(crate) fn checking(&self) -> bool {
        self.checking
    }

    /// Do the content checks read the server's answers? (Then the server pump computes a
    /// long text's shape as it reads it: `content::shape::TextShapes`.)
    pub(crate) fn content_checks(&self) -> bool {
        self.content_checks
    }

    /// Judge one client line. `Err` (kind `Other`): a decision could not be recorded; nothing
    /// of this line may take effect.
    pub(crate) fn on_client_message(&self, line: &[u8]) -> io::Result<Vec<Output>> {
        let mut out = Vec::new();
        self.on_client_message_into(line, &mut out)?;
        Ok(out)
    }

    /// [`Session::on_client_message`] into `out` (cleared first): the client pump keeps one
    /// buffer for every line (no allocation per line, issue 19).
    pub(crate) fn on_client_message_into(
        &self,
        line: &[u8],
        out: &mut Vec<Output>,
    ) -> io::Result<()> {
        out.clear();
        if !self.checking {
            if !line.iter().all(u8::is_ascii_whitespace) {
                out.push(Output::Forward);
            }
            return Ok(());
        }
        let mut client = self.client.lock().map_err(|_| poisoned("client filter"))?;
        let outcome = client.on_line(line)?;
        // Drained, not taken: the filter keeps its buffer for the next line.
        push_client_outputs(out, client.drain_records(), outcome);
        Ok(())
    }

    /// A client line longer than the limit (the transport did not keep it).
    pub(crate) fn on_client_oversized(&self, n: usize) -> Vec<Output> {
        let max = self.max_line;
        tracing::warn!("refused a client message of {n} bytes (limit {max})");
        let rule = crate::policy::RuleId::ProtocolTooLong;
        let message =
            format!("Invalid Request: message of {n} bytes exceeds capjail's limit of {max} bytes");
        // The refusal's record first (every refusal is in the audit log), then the error.
        let data = rule.data();
        vec![
            Output::Record(Record::Filter(FilterRecord::refused(None, rule, &message))),
            Output::ToClient(jsonrpc::error_response(
                &serde_json::Value::Null,
                code::INVALID_REQUEST,
                &message,
                data,
            )),
        ]
    }

    /// Judge one server line.
    #[cfg(test)]
    pub(crate) fn on_server_message(&self, line: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        self.on_server_message_into(line, LineFacts::default(), &mut out);
        out
    }

    /// [`Session::on_server_message`] into `out` (cleared first): the server pump keeps one
    /// buffer for every line (no allocation per line, issue 19). `facts`: what the framer
    /// learnt of the line while reading it.
    pub(crate) fn on_server_message_into(
        &self,
        line: &[u8],
        facts: LineFacts<'_>,
        out: &mut Vec<Output>,
    ) {
        out.clear();
        if !self.checking {
            out.push(Output::Forward);
            return;
        }
        let outcome = match self.server.lock() {
            Ok(mut f) => f.on_line_hinted(line, facts),
            Err(_) => ServerOutcome::Drop("server filter lock poisoned".into()),
        };
        push_server_outputs(out, outcome);
    }

    /// A server line longer than `limit` (the transport did not keep it).
    pub(crate) fn on_server_oversized(&self, n: usize, limit: usize) -> Vec<Output> {
        tracing::error!("dropped a server message of {n} bytes (limit {limit})");
        vec![Output::Record(Record::Filter(FilterRecord::new(
            Direction::ServerToClient,
            true,
            format!("a server message of {n} bytes exceeds the limit of {limit}"),
        )))]
    }

    /// Write a record the pipeline asked for. `Err` (kind `Other`): the audit log failed.
    pub(crate) fn record(&self, r: Record) -> io::Result<()> {
        write_record(&self.recorder, r, false)
    }

    /// [`Session::record`] for the client pump, which waits for the record before it forwards
    /// or settles the audit queue before it blocks (`Watermark::settle`): the audit writer
    /// thread is not woken on the round trip.
    pub(crate) fn record_from_client_pump(&self, r: Record) -> io::Result<()> {
        write_record(&self.recorder, r, true)
    }

    /// What an offline session recorded since the last call (empty for a session that writes
    /// a log).
    pub(crate) fn take_kept(&self) -> Vec<Record> {
        self.recorder
            .lock()
            .map(|mut r| r.take_kept())
            .unwrap_or_default()
    }

    /// Describe a tool to the session's catalog (`audit replay`: the recorded description).
    pub(crate) fn describe_tool(&self, name: &str, spec: crate::profile::ToolSpec) {
        if let Ok(mut s) = self.shared.lock() {
            s.catalog.describe(name, spec);
        }
    }

    /// Forget the requests in flight (an offline session whose caller treats every message as
    /// answered: `audit replay` re-judges records of different sessions and times).
    pub(crate) fn forget_in_flight(&self) {
        if let Ok(mut s) = self.shared.lock() {
            s.pending.clear();
        }
    }

    /// How a call held for capjail's own tools listing is judged once the listing is in: the
    /// whole client pipeline again (capability decision, pins, content checks, flows,
    /// approvals), then forwarded (after its record is written), answered, or held by a stage.
    pub(crate) fn rejudge(&self) -> crate::trust::listing::Rejudge {
        let client = self.client.clone();
        let shared = self.shared.clone();
        let outbox = self.outbox.clone();
        let recorder = self.recorder.clone();
        Arc::new(move |call: crate::trust::listing::HeldCall| {
            // The id was reserved while the call waited; the filter reserves it again.
            shared
                .lock()
                .map_err(|_| poisoned("shared state"))?
                .pending
                .remove(id_key(&call.id).as_str());
            let outputs = {
                let mut client = client.lock().map_err(|_| poisoned("client filter"))?;
                let outcome = client.rejudge(&call.line)?;
                client_outputs(client.drain_records(), outcome)
            };
            for o in outputs {
                match o {
                    Output::Forward => outbox.send_to_server(&call.line)?,
                    Output::ToServer(line) => outbox.send_to_server(&line)?,
                    Output::ToClient(line) => outbox.send_to_client(&line)?,
                    // Queued before what follows; the outbox sends it once written.
                    Output::Record(r) => write_record(&recorder, r, false)?,
                }
            }
            Ok(())
        })
    }
}

/// Queue (or keep) a record. `Err` (kind `Other`): the audit log failed.
fn write_record(recorder: &SharedRecorder, r: Record, quiet: bool) -> io::Result<()> {
    let what = match &r {
        Record::Decision(_) => "a decision",
        Record::Filter(_) => "a filtered message",
        _ => "a record",
    };
    let mut recorder = recorder.lock().map_err(|_| poisoned("recorder"))?;
    let recorded = if quiet {
        recorder.record_quiet(r)
    } else {
        recorder.record(r)
    };
    recorded.map_err(|e| super::fatal::AuditFailure::io(format!("cannot record {what}: {e}")))
}

/// The outputs of the client filter's outcome: the records its stages built first, then what
/// to send.
fn client_outputs(records: impl ExactSizeIterator<Item = Record>, outcome: Outcome) -> Vec<Output> {
    let mut out: Vec<Output> = Vec::with_capacity(records.len() + 1);
    push_client_outputs(&mut out, records, outcome);
    out
}

/// [`client_outputs`], appended to `out`.
fn push_client_outputs(
    out: &mut Vec<Output>,
    records: impl ExactSizeIterator<Item = Record>,
    outcome: Outcome,
) {
    out.reserve(records.len() + 1);
    out.extend(records.map(Output::Record));
    match outcome {
        Outcome::Forward => out.push(Output::Forward),
        Outcome::ForwardRewritten(line) => out.push(Output::ToServer(line)),
        Outcome::Reply(line) => out.push(Output::ToClient(line)),
        // A stage holds the message and sends or answers it later (outbox).
        Outcome::Drop | Outcome::Held => {}
    }
}

/// The records among `outputs` (an offline caller reads what was decided from them).
pub(crate) fn records(outputs: &[Output]) -> impl Iterator<Item = &Record> {
    outputs.iter().filter_map(|o| match o {
        Output::Record(r) => Some(r),
        _ => None,
    })
}

/// The outputs of the server filter's outcome: the record first, then what the client gets.
#[cfg(test)]
fn server_outputs(outcome: ServerOutcome) -> Vec<Output> {
    let mut out = Vec::new();
    push_server_outputs(&mut out, outcome);
    out
}

/// [`server_outputs`] appended to `out` (the server pump keeps one buffer for every line).
fn push_server_outputs(out: &mut Vec<Output>, outcome: ServerOutcome) {
    let filtered = |dropped: bool, reason: String| {
        Output::Record(Record::Filter(FilterRecord::new(
            Direction::ServerToClient,
            dropped,
            reason,
        )))
    };
    match outcome {
        ServerOutcome::Forward => out.push(Output::Forward),
        ServerOutcome::Rewritten(line) => out.extend([
            filtered(false, "tools/list rewritten: tools the policy blocks, or whose definitions changed or are suspicious, were not shown as served".into()),
            Output::ToClient(line),
        ]),
        ServerOutcome::Content(line, why) => {
            tracing::warn!("content checks rewrote a result: {why}");
            out.extend([filtered(false, why), Output::ToClient(line)]);
        }
        ServerOutcome::Flagged(why) => {
            tracing::warn!("content finding recorded: {why}");
            out.extend([
                Output::Record(Record::Filter(FilterRecord::flagged(
                    Direction::ServerToClient,
                    why,
                ))),
                Output::Forward,
            ]);
        }
        // The answer to one of capjail's own requests, handed to its stage.
        ServerOutcome::Consumed => {}
        ServerOutcome::Drop(reason) => {
            if reason == "blank line" {
                return;
            }
            tracing::warn!("dropped a server message: {reason}");
            out.push(filtered(true, reason));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::FilterAction;
    use crate::check::RealWorld;
    use crate::policy::{builtin, load_str, PolicySource};

    /// A session of the built-in `strict` policy and the filesystem profile, offline.
    pub(crate) fn offline() -> Session {
        let policy = load_str(
            builtin::get("strict").unwrap(),
            PolicySource::Builtin("strict".into()),
        )
        .unwrap();
        let profile = crate::profile::load("filesystem").unwrap();
        let paths = PathContext {
            cwd: "/tmp".into(),
            readings: profile.paths.clone(),
            ..Default::default()
        };
        Session::offline(
            Arc::new(policy),
            SessionCatalog::new(Some(profile), &[]),
            paths,
            Box::new(RealWorld),
        )
    }

    fn call(id: i64, path: &str) -> Vec<u8> {
        serde_json::json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"read_file","arguments":{"path":path}}}).to_string().into_bytes()
    }

    #[test]
    fn offline_session_judges_and_returns_the_records() {
        let s = offline();
        // The decision's record comes back first, then what to do with the line.
        let out = s.on_client_message(&call(1, "/tmp/a")).unwrap();
        assert!(
            matches!(&out[..], [Output::Record(Record::Decision(d)), Output::Forward] if d.decision.is_allowed()),
            "{out:?}"
        );
        let out = s.on_client_message(&call(2, "/etc/passwd")).unwrap();
        let [Output::Record(Record::Decision(d)), Output::ToClient(reply)] = &out[..] else {
            panic!("{out:?}")
        };
        assert!(!d.decision.is_allowed());
        // The params were moved into the record, not lost.
        assert_eq!(
            d.params.as_ref().and_then(|p| p.pointer("/arguments/path")),
            Some(&serde_json::json!("/etc/passwd"))
        );
        let reply: serde_json::Value = serde_json::from_slice(reply).unwrap();
        assert_eq!(reply["error"]["data"]["rule"], "filesystem.mounts");
        // Nothing was written behind the pipeline's back: the stages returned their records.
        assert!(s.take_kept().is_empty());
        // Id 1 is still in flight (no server answers it): reusing it is refused as `run` does.
        let out = s.on_client_message(&call(1, "/tmp/a")).unwrap();
        assert!(
            matches!(&out[..], [Output::Record(Record::Filter(f)), Output::ToClient(_)] if f.action == FilterAction::Dropped && f.rule == Some(crate::policy::RuleId::ProtocolDuplicateId)),
            "the refusal is recorded first: {out:?}"
        );
        s.forget_in_flight();
        let out = s.on_client_message(&call(1, "/tmp/a")).unwrap();
        assert!(
            matches!(&out[..], [Output::Record(_), Output::Forward]),
            "{out:?}"
        );
        // A response to a request the server never sent: dropped and recorded.
        let out = s
            .on_client_message(br#"{"jsonrpc":"2.0","id":9,"result":{}}"#)
            .unwrap();
        assert!(
            matches!(&out[..], [Output::Record(Record::Filter(f))] if f.action == FilterAction::Dropped && f.rule == Some(crate::policy::RuleId::ProtocolUnsolicitedResponse)),
            "{out:?}"
        );
    }

    #[test]
    fn server_outcomes_record_before_they_send() {
        let out = server_outputs(ServerOutcome::Content(b"x".to_vec(), "why".into()));
        assert!(matches!(
            &out[..],
            [
                Output::Record(Record::Filter(FilterRecord {
                    action: FilterAction::Altered,
                    ..
                })),
                Output::ToClient(_)
            ]
        ));
        assert!(server_outputs(ServerOutcome::Drop("blank line".into())).is_empty());
        let out = server_outputs(ServerOutcome::Drop("bad".into()));
        assert!(matches!(
            &out[..],
            [Output::Record(Record::Filter(FilterRecord {
                action: FilterAction::Dropped,
                ..
            }))]
        ));
    }
}
