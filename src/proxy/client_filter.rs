//! Client -> server: every line is parsed strictly, classified and decided. Only a message
//! that was fully understood and allowed is forwarded, and it is forwarded byte for byte.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use super::outbox::{answer_of, Outbox, Peer};
use super::recorder::SharedRecorder;
pub(crate) use super::session::{id_key, Pending, ServerRequest, Shared};
use crate::audit::{DecisionRecord, Direction, FilterRecord, Record};
use crate::check::decide::{decide, Context, Decision};
use crate::check::path::PathContext;
use crate::check::World;
use crate::jsonrpc::{self, code, parse_strict, ParseError, Shape};
use crate::policy::Policy;
use crate::policy::RuleId;

/// What to do with one client line.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Send the line, unchanged, to the server.
    Forward,
    /// Send this line to the server instead (a roots/list answer narrowed to the mounts).
    ForwardRewritten(Vec<u8>),
    /// Answer the client with this line instead; nothing reaches the server.
    Reply(Vec<u8>),
    /// Nothing to send anywhere (a blank line, a refused notification).
    Drop,
    /// Nothing now: a stage holds the message and forwards or answers it later through the
    /// [`Outbox`] (an approval, a tool listing capjail waits for).
    Held,
}

pub(crate) type SharedState = Arc<Mutex<Shared>>;

pub(crate) struct ClientFilter {
    pub(crate) policy: Arc<Policy>,
    pub(crate) paths: PathContext,
    pub(crate) world: Box<dyn World + Send>,
    pub(crate) shared: SharedState,
    pub(crate) recorder: SharedRecorder,
    /// capjail's own requests and held messages.
    pub(crate) outbox: Arc<Outbox>,
    /// Who answers `require_approval` questions (None: such calls are refused).
    pub(crate) approvals: Option<Arc<crate::approval::Approvals>>,
    /// What the line being judged needs to remember between stages (reset for every line).
    scratch: Scratch,
    /// Read every line into an owned tree first (the reference the one-pass read of
    /// `jsonrpc::parse_message` is tested against).
    owned_parse: bool,
}

/// The whole message, for the few stages that read more than its envelope: the tree the
/// owned parse built, or the line a one-pass read kept no tree of (parsed again, strictly,
/// where such a stage needs it).
#[derive(Clone, Copy)]
enum Whole<'a> {
    Tree(&'a Value),
    Line(&'a [u8], usize),
}

impl Whole<'_> {
    fn tree(&self) -> std::io::Result<std::borrow::Cow<'_, Value>> {
        match *self {
            Whole::Tree(v) => Ok(std::borrow::Cow::Borrowed(v)),
            // Read once already by the same rules: a refusal now is a bug, and fatal.
            Whole::Line(line, max_depth) => parse_strict(line, max_depth)
                .map(std::borrow::Cow::Owned)
                .map_err(|e| std::io::Error::other(format!("a client line read twice: {e}"))),
        }
    }
}

/// Per-line state of [`ClientFilter`]: set when a line arrives, read by the stages judging it.
#[derive(Default)]
struct Scratch {
    /// The size of the line being judged (what its audit records weigh in the queue).
    weight: usize,
    /// The decision record of a single (non-batch) message, held until its params can be
    /// moved out of the parsed message instead of copied; queued before `on_line` returns.
    held: Option<Box<DecisionRecord>>,
    /// An earlier decision's record, done with, for the next decision to be built in
    /// (`Recorder::take_spare`: no allocation per call).
    spare_record: Option<Box<DecisionRecord>>,
    /// The records the stages built for this line, in order: the pipeline returns them to the
    /// transport (`Output::Record`), which writes them before it carries out the line.
    records: Vec<Record>,
    /// Is the message being judged a single one (not a batch element)?
    single: bool,
    /// The line is a call that waited for capjail's tools listing and is judged again now
    /// (never held for the listing a second time).
    rejudging: bool,
}

impl ClientFilter {
    /// A client filter for one session (`approvals`: None refuses what needs a person).
    pub(crate) fn new(
        policy: Arc<Policy>,
        paths: PathContext,
        world: Box<dyn World + Send>,
        shared: SharedState,
        recorder: SharedRecorder,
        outbox: Arc<Outbox>,
        approvals: Option<Arc<crate::approval::Approvals>>,
    ) -> ClientFilter {
        ClientFilter {
            policy,
            paths,
            world,
            shared,
            recorder,
            outbox,
            approvals,
            scratch: Scratch::default(),
            owned_parse: false,
        }
    }

    /// The session state (never held across I/O; a poisoned lock means a stage panicked while
    /// changing it: nothing may be judged after that).
    fn state(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("shared state")
    }

    /// Judge a call that waited for capjail's tools listing again, whole (every stage); it is
    /// never held for the listing a second time.
    pub(crate) fn rejudge(&mut self, line: &[u8]) -> std::io::Result<Outcome> {
        self.scratch.rejudging = true;
        let judged = self.on_line(line);
        self.scratch.rejudging = false;
        judged
    }

    /// The records built while judging the last line, in order (for the transport to write
    /// before it carries out the line's outcome).
    pub(crate) fn drain_records(&mut self) -> std::vec::Drain<'_, Record> {
        self.scratch.records.drain(..)
    }

    pub(crate) fn on_line(&mut self, line: &[u8]) -> std::io::Result<Outcome> {
        self.scratch.weight = line.len();
        self.scratch.held = None;
        self.scratch.records.clear();
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Outcome::Drop);
        }
        // The common message (issue 19): one strict pass, no tree but of its `params`.
        if !self.owned_parse {
            // `params` read into an earlier message's tree (`jsonrpc::reuse`): a small line's.
            // The record of an earlier decision, for this one's to be built in (held in the
            // scratch until a decision takes it).
            let spare = if line.len() <= super::recorder::SPARE_PARAMS_LINE {
                if let Some(r) = self.recorder.lock().ok().and_then(|mut r| r.take_spare()) {
                    self.scratch.spare_record = Some(r);
                }
                self.scratch
                    .spare_record
                    .as_mut()
                    .and_then(|r| r.params.take())
            } else {
                None
            };
            let max_depth = self.policy.limits.max_depth;
            if let Some(mut msg) = jsonrpc::parse_message_reusing(line, max_depth, spare) {
                self.scratch.single = true;
                let one = self.on_message(Whole::Line(line, max_depth), Ok(msg.shape()));
                let params = msg.params.take();
                return self.conclude(line, one, msg.id.as_ref(), params);
            }
        }
        let value = match parse_strict(line, self.policy.limits.max_depth) {
            Ok(v) => v,
            Err(ParseError::Syntax(m)) => {
                tracing::warn!("refused an unparseable client message: {m}");
                return Ok(Outcome::Reply(self.refused_early(
                    &Value::Null,
                    code::PARSE_ERROR,
                    &format!("Parse error: {m}"),
                    RuleId::ProtocolInvalidJson,
                )?));
            }
            Err(ParseError::Refused(m)) => {
                tracing::warn!("refused a client message: {m}");
                let id = lenient_id(line);
                return Ok(Outcome::Reply(self.refused_early(
                    &id,
                    code::INVALID_REQUEST,
                    &format!("Invalid Request: {m} (refused by capjail)"),
                    RuleId::ProtocolStrictJson,
                )?));
            }
        };
        let mut value = value;
        if let Value::Array(items) = &value {
            self.scratch.single = false;
            return self.on_batch(items);
        }
        self.scratch.single = true;
        let one = self.on_message(Whole::Tree(&value), jsonrpc::shape(&value));
        let params = value.get_mut("params").map(Value::take);
        self.conclude(line, one, value.get("id"), params)
    }

    /// The outcome of a single message once judged: its held decision record completed with
    /// its `params` (moved, not copied) and queued, a held call handed over.
    fn conclude(
        &mut self,
        line: &[u8],
        one: std::io::Result<One>,
        id: Option<&Value>,
        params: Option<Value>,
    ) -> std::io::Result<Outcome> {
        if let Ok(One::HeldForListing) = one {
            // A tools/call waiting for capjail's own listing (`trust::listing`), released from
            // the listing's thread: what was recorded so far goes first.
            self.queue_records()?;
            let call = crate::trust::listing::HeldCall {
                id: id.cloned().unwrap_or(Value::Null),
                line: line.to_vec(),
                params,
                weight: self.scratch.weight,
            };
            crate::trust::listing::hold(&self.shared, call);
            return Ok(Outcome::Held);
        }
        if let Some(mut record) = self.scratch.held.take() {
            // Still before the message is forwarded or answered.
            record.params = params;
            self.write(Record::Decision(record))?;
        }
        let one = match one {
            // Held for approval: ask now that its decision record is queued; the approval
            // thread forwards or refuses it later.
            Ok(One::Held(hold)) => {
                self.queue_records()?;
                hold.start(line.to_vec());
                return Ok(Outcome::Held);
            }
            other => other,
        };
        one.map(|r| match r {
            One::Held(_) => unreachable!("handled above"),
            One::Allowed => Outcome::Forward,
            One::Rewritten(line) => Outcome::ForwardRewritten(line),
            One::Refused(Some(line)) => Outcome::Reply(line),
            One::Refused(None) | One::Consumed => Outcome::Drop,
            One::HeldForListing => Outcome::Held,
        })
    }

    /// Batches (JSON-RPC arrays; gone from MCP since 2025-06-18) are forwarded only if every
    /// element is allowed. Otherwise the whole batch is refused: each request gets an error,
    /// the denied ones with their own reason.
    fn on_batch(&mut self, items: &[Value]) -> std::io::Result<Outcome> {
        if items.is_empty() {
            return Ok(Outcome::Reply(self.refused_early(
                &Value::Null,
                code::INVALID_REQUEST,
                "Invalid Request: empty batch",
                RuleId::ProtocolEmptyBatch,
            )?));
        }
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            results.push(self.on_message(Whole::Tree(item), jsonrpc::shape(item))?);
        }
        if results.iter().all(|r| matches!(r, One::Allowed)) {
            return Ok(Outcome::Forward);
        }
        if results
            .iter()
            .all(|r| matches!(r, One::Allowed | One::Rewritten(_)))
        {
            // Responses in a batch that capjail would narrow: refuse rather than half-rewrite.
            tracing::warn!("refused a batch holding a roots/list answer");
        }
        // Nothing of a refused batch reaches the server: forget the requests it would have sent.
        {
            let mut shared = self.state();
            for (item, r) in items.iter().zip(&results) {
                if let (One::Allowed, Some(id), Some(_)) = (r, item.get("id"), item.get("method")) {
                    shared.pending.remove(id_key(id).as_str());
                }
            }
        }
        let first_denied = results
            .iter()
            .position(|r| !matches!(r, One::Allowed))
            .unwrap_or(0);
        let mut errors = Vec::new();
        for (item, r) in items.iter().zip(&results) {
            match r {
                One::Refused(Some(line)) => {
                    errors.push(serde_json::from_slice::<Value>(line).expect("our own JSON"))
                }
                One::Refused(None) | One::Consumed | One::HeldForListing => {}
                One::Allowed | One::Rewritten(_) | One::Held(_) => {
                    if let (Some(id), Some(_)) = (item.get("id"), item.get("method")) {
                        let msg = format!("capjail policy violation: batch refused because element {first_denied} was refused");
                        errors.push(json!({"jsonrpc":"2.0","id":id,"error":{"code":code::POLICY_VIOLATION,"message":msg,"data":{"rule":RuleId::ProtocolBatch}}}));
                    }
                }
            }
        }
        tracing::warn!(
            elements = items.len(),
            "Request blocked: a batch with a refused element was refused whole"
        );
        if errors.is_empty() {
            return Ok(Outcome::Drop);
        }
        Ok(Outcome::Reply(
            serde_json::to_vec(&Value::Array(errors)).expect("serialising a Value"),
        ))
    }

    fn on_message(
        &mut self,
        v: Whole<'_>,
        shape: Result<Shape<'_>, jsonrpc::InvalidMessage>,
    ) -> std::io::Result<One> {
        let shape = match shape {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("refused a client message: {e}");
                let id = jsonrpc::salvage_id(&*v.tree()?);
                return Ok(One::Refused(Some(self.refused_early(
                    &id,
                    code::INVALID_REQUEST,
                    &format!("Invalid Request: {e} (refused by capjail)"),
                    RuleId::ProtocolInvalidRequest,
                )?)));
            }
        };
        match shape {
            Shape::Request { id, method, params } => {
                if Outbox::is_own_id(id) {
                    tracing::warn!(id = %id, "refused a request whose id is in capjail's own id space");
                    return Ok(One::Refused(Some(self.refused_early(id, code::INVALID_REQUEST, "Invalid Request: ids starting with \"capjail:\" are reserved for capjail's own requests (refused by capjail)", RuleId::ProtocolReservedId)?)));
                }
                let key = super::session::id_key_inline(id);
                // One look at the session state before deciding: the id, the listing, the
                // snapshot (the field, not `state()`: `self.paths` changes while it is held).
                let snapshot = {
                    let mut shared = self.shared.lock().expect("shared state");
                    if shared.pending.contains_key(&key) {
                        drop(shared);
                        tracing::warn!(id = %key, "refused a request whose id is already in flight");
                        return Ok(One::Refused(Some(self.refused_early(id, code::INVALID_REQUEST, "Invalid Request: this id is already in use by a request in flight (refused by capjail)", RuleId::ProtocolDuplicateId)?)));
                    }
                    // What capjail keeps per request in flight stays bounded when a server
                    // answers nothing (issue 19): one more is refused, never forwarded. A call
                    // held for capjail's listing had its place while it waited: judged again,
                    // it keeps it (a call that came meanwhile does not take it).
                    let in_flight = shared.pending.len();
                    if in_flight >= self.policy.limits.max_in_flight && !self.scratch.rejudging {
                        drop(shared);
                        return self.refuse_in_flight(id, in_flight);
                    }
                    let tool = called_tool(method, params);
                    // The tool's trust verdict: one lookup for the hold and the decision.
                    let trust = tool.and_then(|t| crate::trust::hooks::call_verdict(&shared, t));
                    if self.scratch.single
                        && !self.scratch.rejudging
                        && tool.is_some()
                        && crate::trust::listing::must_hold_locked(
                            &mut shared,
                            &key,
                            trust.is_some(),
                        )
                    {
                        return Ok(One::HeldForListing);
                    }
                    snapshot(&mut self.paths, &mut shared, tool, trust)
                };
                let decided = self.decide_and_record(Some((id, &key)), method, params, snapshot)?;
                if method == "initialize" {
                    if let Some(a) = &self.approvals {
                        a.note_initialize(params);
                    }
                }
                if let Some((decision, question)) = decided.gated {
                    return self.gate(id, params, decision, question);
                }
                if decided.allowed {
                    let pending = match method {
                        "initialize" | "server/discover" => Pending::Initialize,
                        "tools/list" => Pending::ToolsList,
                        _ => Pending::Plain,
                    };
                    let start = {
                        let mut shared = self.state();
                        let start = crate::trust::listing::on_client_message_locked(
                            &mut shared,
                            method,
                            params,
                        );
                        shared.pending.insert(key, pending);
                        start
                    };
                    if start {
                        crate::trust::listing::start_listing(&self.shared);
                    }
                    // 2026-07-28: roots travel in `inputResponses` of a retried request too.
                    if params.and_then(|p| p.get("inputResponses")).is_some() {
                        let v = v.tree()?;
                        let rewritten = super::roots::narrow_input_responses(&v, &self.policy);
                        let seen: Value = match &rewritten {
                            Some(line) => serde_json::from_slice(line).expect("our own JSON"),
                            None => v.into_owned(),
                        };
                        if let Some(r) = seen
                            .pointer("/params/inputResponses")
                            .and_then(Value::as_object)
                        {
                            for resp in r.values().filter(|x| x.get("roots").is_some()) {
                                self.paths.roots = super::roots::root_paths(resp);
                            }
                        }
                        if let Some(line) = rewritten {
                            self.filtered(
                                Some(id),
                                "roots in inputResponses narrowed to the policy's mounts",
                                None,
                            )?;
                            return Ok(One::Rewritten(line));
                        }
                    }
                    Ok(One::Allowed)
                } else {
                    self.state().remember_refused(key.to_string());
                    Ok(One::Refused(decided.refusal))
                }
            }
            Shape::Notification { method, params } => {
                if method == "notifications/cancelled" {
                    if let Some(rid) = params.and_then(|p| p.get("requestId")) {
                        if let Some(a) = &self.approvals {
                            if a.unhold(&id_key(rid)) {
                                // Held for approval, never sent: the server must not see it.
                                let mut shared = self.state();
                                shared.remember_refused(id_key(rid));
                                shared.pending.remove(id_key(rid).as_str());
                                tracing::info!(request = %rid, "the client cancelled a call waiting for approval");
                                return Ok(One::Refused(None));
                            }
                        }
                        if crate::trust::listing::unhold_locked(&mut self.state(), &id_key(rid)) {
                            // Held for capjail's listing, never sent: neither is the cancellation.
                            tracing::info!(request = %rid, "the client cancelled a call waiting for capjail's tools listing");
                            self.write(Record::Filter(FilterRecord {
                                id: Some(rid.clone()),
                                ..FilterRecord::new(
                                    Direction::ClientToServer,
                                    true,
                                    "cancelled by the client while it waited for capjail's tools listing: never sent".into(),
                                )
                            }))?;
                            return Ok(One::Refused(None));
                        }
                        if self.state().was_refused(&id_key(rid)) {
                            tracing::debug!(request = %rid, "dropped the cancellation of a request capjail refused");
                            return Ok(One::Refused(None));
                        }
                    }
                }
                let snapshot = {
                    let mut shared = self.shared.lock().expect("shared state");
                    let tool = called_tool(method, params);
                    let trust = tool.and_then(|t| crate::trust::hooks::call_verdict(&shared, t));
                    snapshot(&mut self.paths, &mut shared, tool, trust)
                };
                let decided = self.decide_and_record(None, method, params, snapshot)?;
                if decided.allowed {
                    crate::trust::listing::on_client_message(&self.shared, method, params);
                    if method == "notifications/cancelled" {
                        if let Some(rid) = params.and_then(|p| p.get("requestId")) {
                            // No longer in flight: its place and what was kept for it go now.
                            if self.state().forget_cancelled(&id_key(rid)) {
                                tracing::debug!(request = %rid, "the client cancelled a request in flight");
                            }
                        }
                    }
                }
                Ok(if decided.allowed {
                    One::Allowed
                } else {
                    One::Refused(None)
                })
            }
            // The client answering a server request (roots/list, sampling, elicitation).
            Shape::Response { id } => {
                // The answer to one of capjail's own requests (an elicitation): its stage's.
                if let Some(on_answer) = self.outbox.take_answer(Peer::Client, id) {
                    on_answer(answer_of(&*v.tree()?));
                    return Ok(One::Consumed);
                }
                let asked = self.state().server_requests.remove(&id_key(id));
                match asked {
                    None => {
                        tracing::warn!(id = %id, "dropped a client response to a request the server never sent");
                        self.filtered(
                            Some(id),
                            "a response to a request the server never sent",
                            Some(RuleId::ProtocolUnsolicitedResponse),
                        )?;
                        Ok(One::Refused(None))
                    }
                    Some(ServerRequest::Plain) => Ok(One::Allowed),
                    Some(ServerRequest::RootsList) => {
                        let v = v.tree()?;
                        let narrowed = super::roots::narrow_roots_response(&v, &self.policy);
                        // What the server resolves relative paths against from now on.
                        self.paths.roots = match &narrowed {
                            Some(line) => serde_json::from_slice::<Value>(line)
                                .ok()
                                .map(|n| super::roots::root_paths(&n["result"]))
                                .unwrap_or_default(),
                            None => v
                                .get("result")
                                .map(super::roots::root_paths)
                                .unwrap_or_default(),
                        };
                        match narrowed {
                            Some(rewritten) => {
                                self.filtered(
                                    Some(id),
                                    "roots narrowed to the policy's mounts",
                                    None,
                                )?;
                                Ok(One::Rewritten(rewritten))
                            }
                            None => Ok(One::Allowed),
                        }
                    }
                }
            }
        }
    }

    /// `id`: a request's id and its key (`id_key`, computed once per request), `None` for a
    /// notification.
    fn decide_and_record<'a>(
        &mut self,
        id: Option<(&Value, &str)>,
        method: &str,
        params: Option<&'a Value>,
        snapshot: Snapshot<'a>,
    ) -> std::io::Result<Decided> {
        // Decide WITHOUT the session lock: a decision may resolve a host name, and the
        // server->client pump must not wait for that. The same snapshot goes to the audit log.
        let started = Instant::now();
        let (id, key) = (id.map(|(id, _)| id), id.map(|(_, key)| key));
        let (snapshot, trust) = snapshot;
        let ctx = Context {
            policy: &self.policy,
            catalog: &snapshot,
            paths: &self.paths,
            world: self.world.as_ref(),
        };
        let mut decision = decide(&ctx, method, params);
        // A changed, unpinned or poisoned tool definition (`trust`): refused as the policy says.
        // (The decision is judged in place by the later stages, not moved through them.)
        crate::trust::gate::gate_call_in_place(&mut decision, trust.as_ref());
        // Content checks and flows, on what the capability decision allowed (src/content).
        let notes = {
            let mut shared = self.state();
            let notes = if decision.is_allowed() {
                crate::content::hook::on_request(
                    &self.policy,
                    &mut shared.content,
                    key,
                    &mut decision,
                    params,
                    started,
                )
            } else {
                // A call that waits for a person is judged as if allowed (what leaves in it,
                // the flows it completes): the content checks refuse it, or ask about their
                // finding. (Once: a call the checks above gated was judged there.)
                crate::content::hook::judge_gated(
                    &self.policy,
                    &mut shared.content,
                    &mut decision,
                    params,
                    started,
                )
            };
            if let Some(key) = key {
                // An environment read: its answer keeps only the variables the rule names.
                match crate::check::env_read::readable(&self.policy, &decision) {
                    Some(r) => {
                        shared.env_reads.insert(key.to_owned(), r);
                    }
                    // Nothing to forget (the common case).
                    None if shared.env_reads.is_empty() => {}
                    None => {
                        shared.env_reads.remove(key);
                    }
                };
            }
            notes
        };
        for note in &notes {
            tracing::warn!("content finding recorded: {note}");
            self.write(Record::Filter(FilterRecord {
                id: id.cloned(),
                ..FilterRecord::flagged(Direction::ClientToServer, note.clone())
            }))?;
        }
        let micros = started.elapsed().as_micros() as u64;
        if let Some(d) = &decision.denial {
            tracing::warn!(
                id = %id.map(|i| i.to_string()).unwrap_or_default(),
                method,
                tool = decision.tool.as_deref().unwrap_or(""),
                rule = %d.rule,
                "Request blocked: {}",
                d.reason
            );
        } else {
            tracing::debug!(id = %id.map(|i| i.to_string()).unwrap_or_default(), method, rule = %decision.rule, "Request allowed");
        }
        let gated = match (&self.approvals, id) {
            (Some(_), Some(_)) if self.scratch.single => {
                self.question(&decision).map(|q| (decision.clone(), q))
            }
            _ => None,
        };
        let decided = Decided {
            allowed: decision.is_allowed(),
            // (A gated call is answered by `gate`, not with this refusal.)
            refusal: match id {
                Some(id) if !decision.is_allowed() && gated.is_none() => {
                    Some(refusal(id, &decision))
                }
                _ => None,
            },
            gated,
        };
        let tool_spec = snapshot
            .tool
            .filter(|(t, _)| decision.tool.as_deref() == Some(*t))
            .map(|(_, spec)| spec);
        let built = DecisionRecord {
            tool_spec,
            latency_us: micros,
            weight: self.scratch.weight,
            ..DecisionRecord::new(Direction::ClientToServer, id.cloned(), None, decision)
        };
        let mut record = match self.scratch.spare_record.take() {
            Some(mut spare) => {
                *spare = built;
                spare
            }
            None => Box::new(built),
        };
        if self.scratch.single {
            self.scratch.held = Some(record); // on_line moves the params in and queues it
        } else {
            record.params = params.cloned();
            self.write(Record::Decision(record))?;
        }
        Ok(decided)
    }
}

/// The tool a `tools/call` names (`None` for any other method, or a call without a name).
fn called_tool<'a>(method: &str, params: Option<&'a Value>) -> Option<&'a str> {
    (method == "tools/call")
        .then(|| params.and_then(|p| p.get("name")).and_then(Value::as_str))
        .flatten()
}

/// What a decision reads of the session state, taken under its lock: the catalog's snapshot
/// and the tool's trust verdict.
type Snapshot<'a> = (
    super::catalog::CallSnapshot<'a>,
    Option<crate::trust::assess::CallVerdict>,
);

/// Snapshot the one tool description the decision can need (shared, not copied:
/// `SessionCatalog::shared_tool`), the profile's name and the tool's trust verdict; bring
/// `paths` up to date with how this server reads paths (its profile may be known only since
/// `initialize`).
fn snapshot<'a>(
    paths: &mut PathContext,
    shared: &mut Shared,
    tool: Option<&'a str>,
    trust: Option<crate::trust::assess::CallVerdict>,
) -> Snapshot<'a> {
    match shared.catalog.profile() {
        Some(p) if p.paths != paths.readings => paths.readings = p.paths.clone(),
        _ => {}
    }
    let spec = tool.and_then(|t| Some((t, shared.catalog.shared_tool(t)?)));
    (
        super::catalog::CallSnapshot {
            profile_name: shared.catalog.shared_profile_name(),
            tool: spec,
        },
        trust,
    )
}

/// A decision as the filter needs it once the record is handed over.
struct Decided {
    /// A call a `require_approval` rule gates (and an approval channel exists).
    gated: Option<(Decision, crate::approval::ApprovalQuestion)>,
    allowed: bool,
    /// The error line for a refused request.
    refusal: Option<Vec<u8>>,
}

impl ClientFilter {
    /// Record a message altered (`dropped_by: None`) or dropped by a rule.
    fn filtered(
        &mut self,
        id: Option<&Value>,
        reason: &str,
        dropped_by: Option<RuleId>,
    ) -> std::io::Result<()> {
        let dropped = dropped_by.is_some();
        let method = if dropped { None } else { Some("roots/list") };
        self.write(Record::Filter(FilterRecord {
            id: id.cloned(),
            method: method.map(str::to_string),
            rule: dropped_by,
            ..FilterRecord::new(Direction::ClientToServer, dropped, reason.to_string())
        }))
    }

    /// A client message refused before any decision (its JSON, its shape, its id): a dropped
    /// record naming the rule first, so the audit log holds every refusal, then the JSON-RPC
    /// error (`id` null when none could be read).
    fn refused_early(
        &mut self,
        id: &Value,
        code: i64,
        message: &str,
        rule: RuleId,
    ) -> std::io::Result<Vec<u8>> {
        let data = rule.data();
        let known_id = (!id.is_null()).then(|| id.clone());
        self.write(Record::Filter(FilterRecord::refused(
            known_id, rule, message,
        )))?;
        Ok(jsonrpc::error_response(id, code, message, data))
    }

    /// Refuse a request because `in_flight` requests are already in flight (`proxy.max_in_flight`):
    /// a dropped record naming the rule, then a JSON-RPC error for the client.
    fn refuse_in_flight(&mut self, id: &Value, in_flight: usize) -> std::io::Result<One> {
        let rule = RuleId::ProtocolInFlight;
        let reason = format!("{in_flight} requests are already in flight, the most proxy.max_in_flight allows; wait for their answers or cancel some");
        tracing::warn!(id = %id, in_flight, "refused a request: too many requests in flight");
        self.write(Record::Filter(FilterRecord::refused(
            Some(id.clone()),
            rule.clone(),
            &reason,
        )))?;
        self.state().remember_refused(id_key(id));
        Ok(One::Refused(Some(jsonrpc::error_response(
            id,
            code::POLICY_VIOLATION,
            &format!("capjail policy violation: {reason}"),
            Some(json!({"rule": rule, "reason": reason})),
        ))))
    }

    /// A record a stage built: returned with the line's outcome (`drain_records`), written by
    /// the transport before the outcome takes effect.
    fn write(&mut self, record: Record) -> std::io::Result<()> {
        self.scratch.records.push(record);
        Ok(())
    }

    /// Queue the records built so far now: the line is handed to another thread (an
    /// approval), whose own records and sends must follow them.
    fn queue_records(&mut self) -> std::io::Result<()> {
        if self.scratch.records.is_empty() {
            return Ok(());
        }
        let mut recorder = self
            .recorder
            .lock()
            .map_err(|_| std::io::Error::other("recorder lock poisoned"))?;
        // Quietly, as the pump's records are: the pump writes them before it forwards the call
        // (or wakes the writer before it blocks, `Watermark::settle`), where a wake-up of the
        // writer for each cost a gated call two context switches.
        for r in self.scratch.records.drain(..) {
            recorder.record_quiet(r)?;
        }
        Ok(())
    }
}

enum One {
    Allowed,
    /// A tools/call held until capjail has listed the tools (`trust::listing`).
    HeldForListing,
    /// Handed to a stage of capjail's (the answer to its own request): nothing to send.
    Consumed,
    /// Held for approval (src/approval).
    Held(Box<crate::approval::gate::Hold>),
    /// Allowed, but forward this instead.
    Rewritten(Vec<u8>),
    /// The error line for a request, or `None` for a notification.
    Refused(Option<Vec<u8>>),
}

impl ClientFilter {
    fn question(&self, decision: &Decision) -> Option<crate::approval::ApprovalQuestion> {
        let rule = decision.denial.as_ref().and_then(|d| {
            self.policy
                .rules
                .rules
                .iter()
                .find(|r| r.id() == d.rule.as_str())
        });
        crate::approval::gate::question(
            decision,
            rule.map(|r| (r.label.as_str(), r.reason.as_deref())),
        )
    }

    /// A request a `require_approval` rule gates: see `approval::gate`.
    fn gate(
        &mut self,
        id: &Value,
        params: Option<&Value>,
        decision: Decision,
        q: crate::approval::ApprovalQuestion,
    ) -> std::io::Result<One> {
        use crate::approval::gate::{gate, Ctx, GateOutcome};
        // The decision record first (the approval's records follow it), queued now: the
        // approval may be answered (and recorded) from another thread.
        if let Some(mut record) = self.scratch.held.take() {
            record.params = params.cloned();
            self.write(Record::Decision(record))?;
        }
        self.queue_records()?;
        let ctx = Ctx {
            approvals: self.approvals.clone().expect("gated only with approvals"),
            recorder: self.recorder.clone(),
            shared: self.shared.clone(),
            policy: self.policy.clone(),
        };
        let key = id_key(id);
        Ok(match gate(&ctx, id, params, &decision, q)? {
            GateOutcome::Forward(line) => {
                self.state()
                    .pending
                    .insert(key.as_str().into(), Pending::Plain);
                match line {
                    None => One::Allowed,
                    Some(l) => One::Rewritten(l),
                }
            }
            GateOutcome::Reply(line) => {
                self.state().remember_refused(key);
                One::Refused(Some(line))
            }
            GateOutcome::Hold(hold) => {
                // In flight while it waits: the same id cannot be reused meanwhile.
                self.state()
                    .pending
                    .insert(key.as_str().into(), Pending::Plain);
                ctx.approvals.hold(key);
                One::Held(hold)
            }
        })
    }
}

/// The -32001 error for a refused request.
pub(crate) fn refusal(id: &Value, decision: &Decision) -> Vec<u8> {
    let d = decision
        .denial
        .as_ref()
        .expect("a refused decision has a denial");
    // Always the same members (null where there is nothing to name), so clients can rely on them.
    let capability = d
        .capability
        .clone()
        .or_else(|| decision.accesses.first().map(|a| a.capability.to_string()));
    let mut data = json!({
        "rule": d.rule,
        "reason": d.reason,
        "capability": capability,
        "resource": d.resource,
        "tool": decision.tool,
    });
    if d.approval_required {
        data["approval_required"] = json!(true);
    }
    jsonrpc::error_response(
        id,
        code::POLICY_VIOLATION,
        &format!("capjail policy violation: {}", d.reason),
        Some(data),
    )
}

/// The id of a message refused by the strict parser, read leniently for the error reply.
fn lenient_id(line: &[u8]) -> Value {
    serde_json::from_slice::<Value>(line)
        .map(|v| jsonrpc::salvage_id(&v))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::RealWorld;
    use crate::policy::{builtin, load_str, PolicySource};
    use crate::proxy::catalog::SessionCatalog;
    use crate::proxy::server_filter::ServerOutcome;

    fn filter() -> ClientFilter {
        let policy = load_str(
            builtin::get("strict").unwrap(),
            PolicySource::Builtin("strict".into()),
        )
        .unwrap();
        let argv = vec![
            "npx".to_string(),
            "@modelcontextprotocol/server-filesystem".to_string(),
        ];
        ClientFilter {
            policy: Arc::new(policy),
            paths: PathContext {
                cwd: "/tmp".into(),
                home: None,
                ..Default::default()
            },
            world: Box::new(RealWorld),
            shared: Arc::new(Mutex::new(Shared::new(SessionCatalog::new(None, &argv)))),
            recorder: crate::proxy::recorder::Recorder::new(None),
            outbox: Outbox::discarding(),
            approvals: None,
            scratch: Scratch::default(),
            owned_parse: false,
        }
    }

    fn reply(o: Outcome) -> Value {
        match o {
            Outcome::Reply(l) => serde_json::from_slice(&l).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    const ALLOWED: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/tmp/a"}}}"#;
    const DENIED: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/etc/passwd"}}}"#;

    #[test]
    fn allowed_is_forwarded_denied_is_answered() {
        let mut f = filter();
        assert_eq!(f.on_line(ALLOWED.as_bytes()).unwrap(), Outcome::Forward);
        let r = reply(f.on_line(DENIED.as_bytes()).unwrap());
        assert_eq!(r["id"], 2);
        assert_eq!(r["error"]["code"], -32001);
        assert!(r["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("capjail policy violation: "));
        assert_eq!(r["error"]["data"]["rule"], "filesystem.mounts");
        assert_eq!(r["error"]["data"]["capability"], "filesystem.read");
    }

    fn call(id: u32) -> String {
        ALLOWED.replace("\"id\":1", &format!("\"id\":{id}"))
    }

    fn cancel(id: u32) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id}}}}}"#
        )
    }

    #[test]
    fn requests_past_max_in_flight_are_refused_until_one_is_answered_or_cancelled() {
        let mut f = filter();
        let mut policy = (*f.policy).clone();
        policy.limits.max_in_flight = 3;
        f.policy = Arc::new(policy);
        let server = crate::proxy::server_filter::ServerFilter::new(
            f.shared.clone(),
            f.policy.clone(),
            Outbox::discarding(),
        );
        let mut server = server;
        for id in 1..=3 {
            assert_eq!(f.on_line(call(id).as_bytes()).unwrap(), Outcome::Forward);
        }
        // The fourth is refused, never forwarded, and its refusal is recorded first.
        let r = reply(f.on_line(call(4).as_bytes()).unwrap());
        assert_eq!(r["id"], 4);
        assert_eq!(r["error"]["code"], -32001);
        assert_eq!(r["error"]["data"]["rule"], "protocol.in_flight");
        match f.scratch.records.as_slice() {
            [Record::Filter(rec)] => {
                assert_eq!(rec.rule, Some(RuleId::ProtocolInFlight));
                assert!(rec.reason.contains("protocol.in_flight"), "{}", rec.reason);
            }
            other => panic!("expected one filter record, got {other:?}"),
        }
        assert_eq!(f.shared.lock().unwrap().pending.len(), 3);
        // Its cancellation goes nowhere: the server never saw it.
        assert_eq!(f.on_line(cancel(4).as_bytes()).unwrap(), Outcome::Drop);
        // An answer frees a place.
        let answer = |id: u32| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"ok"}}]}}}}"#
            )
        };
        assert_eq!(server.on_line(answer(1).as_bytes()), ServerOutcome::Forward);
        assert_eq!(f.on_line(call(5).as_bytes()).unwrap(), Outcome::Forward);
        assert_eq!(
            reply(f.on_line(call(6).as_bytes()).unwrap())["error"]["data"]["rule"],
            "protocol.in_flight"
        );
        // So does a cancellation, which is forwarded: what was kept for the call goes now.
        let kept = f.shared.lock().unwrap().content.requests_in_flight();
        assert_eq!(f.on_line(cancel(2).as_bytes()).unwrap(), Outcome::Forward);
        {
            let s = f.shared.lock().unwrap();
            assert_eq!(s.pending.len(), 2);
            assert!(!s.pending.contains_key("2"));
            assert_eq!(s.content.requests_in_flight() + 1, kept);
        }
        assert_eq!(f.on_line(call(7).as_bytes()).unwrap(), Outcome::Forward);
        // The cancelled call's late answer is dropped, and says why.
        match server.on_line(answer(2).as_bytes()) {
            ServerOutcome::Drop(why) => assert!(why.contains("cancelled"), "{why}"),
            other => panic!("expected a drop, got {other:?}"),
        }
        // The others are still answered.
        assert_eq!(server.on_line(answer(3).as_bytes()), ServerOutcome::Forward);
        assert_eq!(server.on_line(answer(7).as_bytes()), ServerOutcome::Forward);
    }

    #[test]
    fn a_call_held_for_the_listing_keeps_its_place() {
        let mut f = filter();
        let mut policy = (*f.policy).clone();
        policy.limits.max_in_flight = 1;
        f.policy = Arc::new(policy);
        // Released from the listing's hold, its reserved place already given back, while a
        // call that came meanwhile took the last place: it is judged, not refused.
        assert_eq!(f.on_line(call(5).as_bytes()).unwrap(), Outcome::Forward);
        assert_eq!(f.rejudge(call(1).as_bytes()).unwrap(), Outcome::Forward);
        assert_eq!(
            reply(f.on_line(call(6).as_bytes()).unwrap())["error"]["data"]["rule"],
            "protocol.in_flight"
        );
    }

    #[test]
    fn a_cancelled_listing_stays_in_flight_until_answered() {
        let mut f = filter();
        let list = r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#;
        assert_eq!(f.on_line(list.as_bytes()).unwrap(), Outcome::Forward);
        assert_eq!(f.on_line(cancel(9).as_bytes()).unwrap(), Outcome::Forward);
        // Its answer is still read (the tools it lists): the entry stays.
        assert_eq!(
            f.shared.lock().unwrap().pending.get("9"),
            Some(&Pending::ToolsList)
        );
    }

    #[test]
    fn batches_are_forwarded_only_when_every_element_is_allowed() {
        let mut f = filter();
        assert_eq!(
            f.on_line(format!("[{ALLOWED}]").as_bytes()).unwrap(),
            Outcome::Forward
        );
        let allowed_too = ALLOWED.replace("\"id\":1", "\"id\":11");
        let r = reply(
            f.on_line(format!("[{allowed_too},{DENIED}]").as_bytes())
                .unwrap(),
        );
        let errs = r.as_array().unwrap();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0]["id"], 11);
        assert_eq!(errs[0]["error"]["data"]["rule"], "protocol.batch");
        assert_eq!(errs[1]["id"], 2);
        assert_eq!(errs[1]["error"]["data"]["rule"], "filesystem.mounts");
        // The refused batch left nothing in flight: id 11 can be used again.
        assert_eq!(f.on_line(allowed_too.as_bytes()).unwrap(), Outcome::Forward);
        assert_eq!(reply(f.on_line(b"[]").unwrap())["error"]["code"], -32600);
        // A batch of only a refused notification: nothing to answer, nothing forwarded.
        let n = r#"[{"jsonrpc":"2.0","method":"tools/call","params":{"name":"read_file","arguments":{"path":"/etc/passwd"}}}]"#;
        assert_eq!(f.on_line(n.as_bytes()).unwrap(), Outcome::Drop);
    }

    #[test]
    fn bad_input_gets_an_error_and_nothing_is_forwarded() {
        let mut f = filter();
        assert_eq!(
            reply(f.on_line(b"not json").unwrap())["error"]["code"],
            -32700
        );
        assert_eq!(
            reply(
                f.on_line(
                    b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"x\",\"params\":{\"a\":\"\xff\"}}"
                )
                .unwrap()
            )["error"]["code"],
            -32700
        );
        let dup = reply(f.on_line(br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/tmp/a","path":"/etc/passwd"}}}"#).unwrap());
        assert_eq!(
            (dup["id"].clone(), dup["error"]["code"].clone()),
            (serde_json::json!(4), serde_json::json!(-32600))
        );
        let nojsonrpc = reply(f.on_line(br#"{"id":5,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/etc/passwd"}}}"#).unwrap());
        assert_eq!(nojsonrpc["id"], 5);
        assert_eq!(nojsonrpc["error"]["code"], -32600);
        assert_eq!(f.on_line(b"   \r").unwrap(), Outcome::Drop);
        // Still in sync.
        assert_eq!(f.on_line(ALLOWED.as_bytes()).unwrap(), Outcome::Forward);
    }

    #[test]
    fn own_ids_are_reserved_and_own_answers_are_consumed() {
        let mut f = filter();
        let r = reply(
            f.on_line(br#"{"jsonrpc":"2.0","id":"capjail:0:1","method":"ping"}"#)
                .unwrap(),
        );
        assert_eq!(r["error"]["code"], -32600);
        let (tx, rx) = std::sync::mpsc::channel();
        let id = f
            .outbox
            .request_client(
                "elicitation/create",
                Some(json!({})),
                Box::new(move |a| tx.send(a).unwrap()),
            )
            .unwrap();
        let answer = json!({"jsonrpc":"2.0","id":id,"result":{"action":"accept"}}).to_string();
        assert_eq!(f.on_line(answer.as_bytes()).unwrap(), Outcome::Drop);
        assert_eq!(
            rx.recv().unwrap(),
            crate::proxy::outbox::Answer::Result(json!({"action":"accept"}))
        );
        // The same answer again answers nothing.
        assert_eq!(f.on_line(answer.as_bytes()).unwrap(), Outcome::Drop);
    }

    #[test]
    fn watched_requests_are_remembered() {
        let mut f = filter();
        f.on_line(br#"{"jsonrpc":"2.0","id":"L","method":"tools/list"}"#)
            .unwrap();
        assert_eq!(
            f.shared.lock().unwrap().pending.get("\"L\""),
            Some(&Pending::ToolsList)
        );
        // The same id again while in flight is refused.
        assert_eq!(
            reply(
                f.on_line(br#"{"jsonrpc":"2.0","id":"L","method":"ping"}"#)
                    .unwrap()
            )["error"]["code"],
            -32600
        );
    }
}

#[cfg(test)]
#[path = "client_filter_bench.rs"]
mod bench;

#[cfg(test)]
#[path = "client_filter_diff.rs"]
mod diff;
