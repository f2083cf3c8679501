//! capjail's own `tools/list` (through the proxy's outbox: its own id space, never relayed),
//! so it knows every definition whether or not the client asks: at the start of a session
//! (the first client request after `notifications/initialized`, or the first request of the
//! 2026-07-28 generation, whose `_meta` it copies), and again after every
//! `notifications/tools/list_changed`. Pages are followed. A `tools/call` of a tool capjail
//! has not assessed yet is HELD (not blocking either pump) until the listing is in, then
//! decided, recorded and forwarded or refused from the thread that read the listing.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::audit::{DecisionRecord, Direction, Record};
use crate::check::decide::{decide, Context, StaticCatalog, ToolCatalog};
use crate::check::path::PathContext;
use crate::check::RealWorld;
use crate::policy::Policy;
use crate::proxy::client_filter::{refusal, SharedState};
use crate::proxy::outbox::{Answer, Outbox};
use crate::proxy::recorder::SharedRecorder;
use crate::proxy::session::{id_key, Pending, Shared};

/// Most pages followed in one listing (a server that pages for ever is cut off).
const MAX_PAGES: usize = 1000;

/// The `_meta` key of the 2026-07-28 generation's per-request protocol version.
const PROTOCOL_META: &str = "io.modelcontextprotocol/protocolVersion";

/// What deciding a held call needs, captured when the session starts.
#[derive(Clone)]
pub(crate) struct Decider {
    pub(crate) policy: Arc<Policy>,
    pub(crate) paths: PathContext,
    pub(crate) recorder: SharedRecorder,
    pub(crate) outbox: Arc<Outbox>,
    /// The kernel layer confines the server (full mode): the backstop for a plain-data call
    /// of a tool capjail could not see.
    pub(crate) kernel_backstop: bool,
    /// Judge a held call again through the whole client filter once the listing is in (the
    /// proxy provides it); `None`: decide here (tests, or no filter).
    pub(crate) rejudge: Option<Rejudge>,
}

/// See [`Decider::rejudge`].
pub(crate) type Rejudge = Arc<dyn Fn(HeldCall) -> std::io::Result<()> + Send + Sync>;

/// A client `tools/call` waiting for the listing.
pub(crate) struct HeldCall {
    pub(crate) id: Value,
    pub(crate) line: Vec<u8>,
    pub(crate) params: Option<Value>,
    pub(crate) weight: usize,
}

#[derive(Default)]
pub(crate) struct ListingState {
    /// A listing of capjail's own is in flight.
    pub(crate) running: bool,
    /// The session may be asked for tools (after `notifications/initialized`, or modern).
    pub(crate) ready: bool,
    /// A listing was started at least once.
    pub(crate) started: bool,
    /// The 2026-07-28 `_meta` to send with capjail's own requests.
    pub(crate) meta: Option<Value>,
    pub(crate) held: Vec<HeldCall>,
    pub(crate) decider: Option<Decider>,
}

/// The client sent a request or notification the proxy allowed: note the generation and
/// start the first listing when the session is ready for it.
pub(crate) fn on_client_message(shared: &SharedState, method: &str, params: Option<&Value>) {
    let start = on_client_message_locked(&mut shared.lock().expect("shared state"), method, params);
    if start {
        start_listing(shared);
    }
}

/// [`on_client_message`] under a lock the caller holds (with its other updates of the
/// session state). Returns whether the caller must [`start_listing`] once it has let go.
pub(crate) fn on_client_message_locked(
    s: &mut Shared,
    method: &str,
    params: Option<&Value>,
) -> bool {
    let Some(t) = s.trust.as_mut() else {
        return false;
    };
    let l = &mut t.listing;
    if note_meta(l, params) {
        l.ready = true;
    }
    if method == "notifications/initialized" {
        l.ready = true;
        false
    } else {
        l.ready && !l.started && method != "initialize" && method != "server/discover"
    }
}

/// A 2026-07-28 request: keep its `_meta` (protocol version, client info and capabilities;
/// not its progress token) for capjail's own requests. Returns whether it was one.
fn note_meta(l: &mut ListingState, params: Option<&Value>) -> bool {
    let Some(meta) = params
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
    else {
        return false;
    };
    if !meta.contains_key(PROTOCOL_META) {
        return false;
    }
    let mut kept = meta.clone();
    kept.remove("progressToken");
    l.meta = Some(Value::Object(kept));
    true
}

/// `notifications/tools/list_changed` from the server: forget the assessments (calls wait
/// for the new listing) and list again.
pub(crate) fn on_list_changed(shared: &SharedState) {
    let go = {
        let mut s = shared.lock().expect("shared state");
        let Some(t) = s.trust.as_mut() else { return };
        t.forget_assessments();
        t.listing.ready
    };
    if go {
        start_listing(shared);
    }
}

/// Should this `tools/call` (of a named tool) wait for a listing? (Only single messages, only
/// when the tool was not assessed yet.) If so, its id (`key`, its `id_key`) is reserved as in
/// flight. `assessed`: a listing in this session assessed the tool (`TrustSession::knows`;
/// the caller found its verdict, `hooks::call_verdict`, in the same lookup it decides with).
pub(crate) fn must_hold_locked(s: &mut Shared, key: &str, assessed: bool) -> bool {
    let hold = match s.trust.as_ref() {
        Some(t) => t.listing.decider.is_some() && !assessed,
        None => false,
    };
    if hold {
        s.pending.insert(key.into(), Pending::Plain);
    }
    hold
}

/// The client cancelled the call under `key` while it waited for capjail's listing: it is
/// let go, never judged or sent, and its reserved place is freed. `false`: no such call waits.
pub(crate) fn unhold_locked(s: &mut Shared, key: &str) -> bool {
    let Some(t) = s.trust.as_mut() else {
        return false;
    };
    let Some(at) = t.listing.held.iter().position(|c| id_key(&c.id) == key) else {
        return false;
    };
    t.listing.held.remove(at);
    s.pending.remove(key);
    s.remember_refused(key.to_owned());
    true
}

/// Hold the call and make sure a listing is on its way.
pub(crate) fn hold(shared: &SharedState, call: HeldCall) {
    let start = {
        let mut s = shared.lock().expect("shared state");
        let Some(t) = s.trust.as_mut() else { return };
        tracing::info!(id = %call.id, "tools/call held until capjail has listed the server's tools");
        // A 2026-07-28 client whose first request is this call: capjail's listing speaks its
        // generation (the same `_meta`).
        note_meta(&mut t.listing, call.params.as_ref());
        t.listing.held.push(call);
        // A client that calls before any listing: the session is evidently ready.
        t.listing.ready = true;
        !t.listing.running
    };
    if start {
        start_listing(shared);
    }
}

pub(crate) fn start_listing(shared: &SharedState) {
    let (outbox, meta) = {
        let mut s = shared.lock().expect("shared state");
        let Some(t) = s.trust.as_mut() else { return };
        if t.listing.running {
            return;
        }
        let Some(d) = &t.listing.decider else { return };
        t.listing.running = true;
        t.listing.started = true;
        (d.outbox.clone(), t.listing.meta.clone())
    };
    request_page(shared.clone(), outbox, meta, None, Vec::new(), 0);
}

fn request_page(
    shared: SharedState,
    outbox: Arc<Outbox>,
    meta: Option<Value>,
    cursor: Option<String>,
    mut tools: Vec<Value>,
    pages: usize,
) {
    let mut params = serde_json::Map::new();
    if let Some(c) = &cursor {
        params.insert("cursor".into(), c.clone().into());
    }
    if let Some(m) = &meta {
        params.insert("_meta".into(), m.clone());
    }
    let params = (!params.is_empty()).then_some(Value::Object(params));
    let sh = shared.clone();
    let ob = outbox.clone();
    let m2 = meta.clone();
    let sent = outbox.request_server(
        "tools/list",
        params,
        Box::new(move |answer| match answer {
            Answer::Result(r) => {
                if let Some(page) = r.get("tools").and_then(Value::as_array) {
                    tools.extend(page.iter().cloned());
                }
                match r.get("nextCursor").and_then(Value::as_str) {
                    Some(next) if pages + 1 < MAX_PAGES && Some(next) != cursor.as_deref() => {
                        request_page(sh, ob, m2, Some(next.to_string()), tools, pages + 1)
                    }
                    _ => finish(&sh, Ok(tools)),
                }
            }
            Answer::Error(e) => finish(
                &sh,
                Err(format!(
                    "the server answered capjail's tools/list with an error: {e}"
                )),
            ),
            Answer::Closed => finish(
                &sh,
                Err("the session ended before the server listed its tools".into()),
            ),
        }),
    );
    if let Err(e) = sent {
        tracing::debug!("capjail's own tools/list was not sent: {e}");
    }
}

/// The listing is in (or failed): assess it, then decide every held call.
fn finish(shared: &SharedState, listed: Result<Vec<Value>, String>) {
    let (held, decider, failure) = {
        let mut s = shared.lock().expect("shared state");
        let failure = match listed {
            Ok(mut tools) => {
                s.catalog.on_tools_list(&json!({ "tools": tools }));
                let crate::proxy::session::Shared { trust, catalog, .. } = &mut *s;
                match trust.as_mut() {
                    Some(t) => t
                        .on_listing(&mut tools, catalog.profile(), true)
                        .err()
                        .map(|e| format!("cannot record tool definitions: {e}")),
                    None => None,
                }
            }
            Err(e) => {
                tracing::warn!("{e}");
                Some(e)
            }
        };
        let Some(t) = s.trust.as_mut() else { return };
        t.listing.running = false;
        (
            std::mem::take(&mut t.listing.held),
            t.listing.decider.clone(),
            failure,
        )
    };
    let Some(d) = decider else { return };
    for call in held {
        // A listing that came in: the whole filter judges the call (every stage). A failed
        // listing: decided here, with the plain-data rule for tools capjail could not see.
        let released = match (&d.rejudge, &failure) {
            (Some(rejudge), None) => rejudge(call),
            _ => release(shared, &d, call, failure.as_deref()),
        };
        if let Err(e) = released {
            tracing::error!("cannot record the decision on a held call: {e}");
        }
    }
}

/// A call of a tool capjail could not list. Plain data (no argument value is a path, a URL or
/// a command, judged as for a tool nobody described) is let through under full mode, where
/// the kernel layer contains what the tool does; otherwise, and always in proxy-only mode,
/// it is refused (rule `pins.unlisted`), saying why.
fn unlisted(
    d: &Decider,
    ctx: &Context,
    tool: &str,
    params: Option<&Value>,
    decision: crate::check::decide::Decision,
    why: &str,
) -> crate::check::decide::Decision {
    if !decision.is_allowed() {
        return decision;
    }
    let undescribed = StaticCatalog {
        name: None,
        tools: [(
            tool.to_string(),
            crate::profile::ToolSpec {
                capability: "unknown".into(),
                args: Default::default(),
                note: "not listed by the server".into(),
            },
        )]
        .into(),
    };
    let plain = Context {
        catalog: &undescribed,
        ..*ctx
    };
    let as_data = decide(&plain, "tools/call", params);
    if d.kernel_backstop && as_data.is_allowed() && as_data.accesses.is_empty() {
        tracing::info!(tool, "a tool capjail could not list, called with plain data: allowed, the kernel layer confines the server");
        return decision;
    }
    let reason = if d.kernel_backstop {
        format!("capjail could not see the definition of tool `{tool}` ({why}) and its arguments carry a path, URL or command, so the call is refused")
    } else {
        format!("capjail could not see the definition of tool `{tool}` ({why}); in proxy-only mode such a call is refused (under --mode full the kernel layer would contain a call with plain-data arguments)")
    };
    super::gate::gate_call(
        decision,
        Some(&super::assess::CallVerdict::Refuse {
            rule: crate::policy::RuleId::PinsUnlisted,
            reason,
        }),
    )
}

/// Decide a held call now that the listing is in: the policy's decision with the tool as the
/// server describes it, gated by the trust layer; recorded, then forwarded or answered.
fn release(
    shared: &SharedState,
    d: &Decider,
    call: HeldCall,
    failure: Option<&str>,
) -> std::io::Result<()> {
    let started = Instant::now();
    let tool = call
        .params
        .as_ref()
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let (snapshot, verdict) = {
        let s = shared.lock().expect("shared state");
        let mut tools = std::collections::BTreeMap::new();
        if let Some(spec) = s.catalog.tool(&tool) {
            tools.insert(tool.clone(), spec.into_owned());
        }
        let verdict = s
            .trust
            .as_ref()
            .and_then(|t| t.call_verdict(&tool).cloned());
        (
            StaticCatalog {
                name: s.catalog.profile_name().map(str::to_string),
                tools,
            },
            verdict,
        )
    };
    let ctx = Context {
        policy: &d.policy,
        catalog: &snapshot,
        paths: &d.paths,
        world: &RealWorld,
    };
    let decision = decide(&ctx, "tools/call", call.params.as_ref());
    let mut decision = super::gate::gate_call(decision, verdict.as_ref());
    if let Some(why) = failure {
        decision = unlisted(d, &ctx, &tool, call.params.as_ref(), decision, why);
    }
    let allowed = decision.is_allowed();
    let reply = (!allowed).then(|| refusal(&call.id, &decision));
    let mut snapshot = snapshot;
    let record = DecisionRecord {
        tool_spec: snapshot.tools.remove(&tool).map(std::sync::Arc::new),
        latency_us: started.elapsed().as_micros() as u64,
        weight: call.weight,
        ..DecisionRecord::new(
            Direction::ClientToServer,
            Some(call.id.clone()),
            call.params,
            decision,
        )
    };
    d.recorder
        .lock()
        .map_err(|_| std::io::Error::other("recorder lock poisoned"))?
        .record(Record::Decision(Box::new(record)))?;
    match reply {
        None => d.outbox.send_to_server(&call.line),
        Some(line) => {
            {
                let mut s = shared.lock().expect("shared state");
                let key = id_key(&call.id);
                s.pending.remove(key.as_str());
                s.remember_refused(key);
            }
            d.outbox.send_to_client(&line)
        }
    }
}
