//! What one proxy session knows about the server's tool definitions: the pins of this
//! server (loaded once from the store), the assessment of every tool listed so far, and the
//! side effects of a listing (audit records first, then new pins written to the store).

use std::collections::{BTreeMap, HashSet};

// Read on every call (its tool's verdict): foldhash, seeded per map (issue 19).
use foldhash::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use super::assess::{assess, Assessment, CallVerdict, Context, Listing, PinState};
use super::digest::PINNED_MEMBERS;
use super::identity::ServerIdentity;
use super::settings::TrustPolicy;
use super::store::{self, Pin, ServerPins, StoreError};
use crate::audit::event::rfc3339_micros;
use crate::profile::Profile;
use crate::proxy::recorder::SharedRecorder;

/// Where the pins of this run live, as the command line and the policy say.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PinsConfig {
    /// `None`: pinning is off for this run (`--pins off`, `pins.enabled: false`).
    pub(crate) file: Option<PathBuf>,
    pub(crate) frozen: bool,
}

pub(crate) struct TrustSession {
    policy: TrustPolicy,
    pub(crate) identity: ServerIdentity,
    config: PinsConfig,
    pins: ServerPins,
    tools: HashMap<String, Assessment>,
    /// (tool, digest) pairs whose change or findings were recorded in this session.
    recorded: HashSet<(String, String)>,
    removed_recorded: HashSet<String>,
    well_known: Vec<String>,
    recorder: SharedRecorder,
    /// The server's `serverInfo`, once seen (stored with the pins).
    pub(crate) server_info: Option<Value>,
    /// capjail's own listings and the calls waiting for them.
    pub(crate) listing: super::listing::ListingState,
}

impl std::fmt::Debug for TrustSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustSession")
            .field("identity", &self.identity)
            .field("config", &self.config)
            .field("tools", &self.tools.len())
            .finish()
    }
}

/// What a listing changes in the answer the client gets.
#[derive(Debug, Default)]
pub(crate) struct ListingOutcome {
    /// The tools array was rewritten (hidden tools, pinned definitions shown).
    pub(crate) rewritten: bool,
    pub(crate) hidden: usize,
    pub(crate) replaced: usize,
}

impl TrustSession {
    pub(crate) fn new(
        policy: &TrustPolicy,
        config: PinsConfig,
        identity: ServerIdentity,
        recorder: SharedRecorder,
    ) -> Result<TrustSession, StoreError> {
        let pins = match &config.file {
            Some(f) => store::load(f)?
                .servers
                .remove(&identity.key)
                .unwrap_or_default(),
            None => ServerPins::default(),
        };
        Ok(TrustSession {
            policy: policy.clone(),
            identity,
            config,
            pins,
            tools: HashMap::default(),
            recorded: HashSet::new(),
            removed_recorded: HashSet::new(),
            well_known: super::scan::well_known_names(),
            recorder,
            server_info: None,
            listing: Default::default(),
        })
    }

    /// The verdict for a call of `tool`; `None` when no listing in this session assessed it
    /// yet (a call of it then waits for one: `listing::must_hold_locked`).
    pub(crate) fn call_verdict(&self, tool: &str) -> Option<&CallVerdict> {
        self.tools.get(tool).map(|a| &a.call)
    }

    /// The server announced a new list: what was assessed no longer holds.
    pub(crate) fn forget_assessments(&mut self) {
        self.tools.clear();
    }

    /// Assess one page of a `tools/list` answer and rewrite it for the client. `complete`: the
    /// page is the whole list (no cursor asked, none returned), so missing pins are removals.
    /// Records are queued before the store is written and before the answer goes out; an
    /// error means the audit log failed and nothing may be forwarded.
    pub(crate) fn on_listing(
        &mut self,
        tools: &mut Vec<Value>,
        profile: Option<&Profile>,
        complete: bool,
    ) -> std::io::Result<ListingOutcome> {
        let names: Vec<String> = tools
            .iter()
            .filter_map(|t| t.get("name").and_then(Value::as_str).map(String::from))
            .collect();
        let siblings: Vec<&str> = names.iter().map(String::as_str).collect();
        let well_known: Vec<&str> = self
            .well_known
            .iter()
            .map(String::as_str)
            .filter(|w| !profile.is_some_and(|p| p.tools.contains_key(*w)))
            .collect();
        let cx = Context {
            policy: &self.policy,
            pinning: self.config.file.is_some() && self.policy.pinning,
            frozen: self.config.frozen,
            siblings: &siblings,
            well_known: &well_known,
        };
        let now = rfc3339_micros(SystemTime::now());
        let mut records = Vec::new();
        let mut to_pin: BTreeMap<String, Pin> = BTreeMap::new();
        let mut pending: BTreeMap<String, Pin> = BTreeMap::new();
        let mut assessments = Vec::with_capacity(tools.len());
        for t in tools.iter() {
            let a = assess(t, self.pins.tools.get(tool_name(t)), &cx);
            let first_time = self.recorded.insert((a.name.clone(), a.digest.clone()));
            let pin = || Pin {
                digest: a.digest.clone(),
                definition: a.definition.clone(),
                at: now.clone(),
            };
            match &a.pin {
                PinState::New => {
                    to_pin.insert(a.name.clone(), pin());
                    records.push(self.record("pinned", &a, json!({})));
                }
                PinState::Changed(members) if first_time => {
                    pending.insert(a.name.clone(), pin());
                    let old = self.pins.tools.get(&a.name).map(|p| p.digest.clone());
                    records.push(self.record(
                        "changed",
                        &a,
                        json!({"changed": members, "pinned_digest": old}),
                    ));
                }
                PinState::Unpinned if first_time => {
                    records.push(self.record("unpinned", &a, json!({})));
                }
                _ => {}
            }
            if first_time {
                for f in &a.findings {
                    records.push(self.record(
                        "finding",
                        &a,
                        json!({"rule": f.rule, "severity": f.severity, "field": f.field, "excerpt": f.excerpt, "action": self.policy.action(f.severity)}),
                    ));
                }
            }
            assessments.push(a);
        }
        if complete && cx.pinning {
            let listed: HashSet<&str> = siblings.iter().copied().collect();
            let gone: Vec<String> = self
                .pins
                .tools
                .keys()
                .filter(|k| !listed.contains(k.as_str()) && !self.removed_recorded.contains(*k))
                .cloned()
                .collect();
            for name in gone {
                let mut m = self.base("removed", Some(&name));
                m.insert(
                    "reason".into(),
                    format!("pinned tool `{name}` is no longer listed by the server").into(),
                );
                records.push(m);
                self.removed_recorded.insert(name);
            }
        }
        // Audit first, then the store, then the answer.
        {
            let mut r = self
                .recorder
                .lock()
                .map_err(|_| std::io::Error::other("recorder lock poisoned"))?;
            for fields in records {
                r.record(crate::audit::Record::Trust(crate::audit::TrustRecord {
                    fields,
                    at: std::time::SystemTime::now(),
                }))?;
            }
        }
        if cx.pinning && !self.config.frozen && (!to_pin.is_empty() || !pending.is_empty()) {
            self.persist(to_pin, pending);
        }
        // The answer the client gets.
        let mut out = ListingOutcome::default();
        let mut kept = Vec::with_capacity(tools.len());
        for (mut t, a) in std::mem::take(tools).into_iter().zip(&assessments) {
            match &a.listing {
                Listing::Show => kept.push(t),
                Listing::Hide => out.hidden += 1,
                Listing::ShowPinned(def) => {
                    if let Value::Object(m) = &mut t {
                        for k in PINNED_MEMBERS {
                            match def.get(*k) {
                                Some(v) => m.insert((*k).to_string(), v.clone()),
                                None => m.remove(*k),
                            };
                        }
                    }
                    out.replaced += 1;
                    kept.push(t);
                }
            }
        }
        *tools = kept;
        out.rewritten = out.hidden + out.replaced > 0;
        for a in assessments {
            self.tools.insert(a.name.clone(), a);
        }
        Ok(out)
    }

    /// Write new pins and pending changes. A failure is logged: the session goes on with the
    /// pins in memory (the pins decide nothing more permissive by being unsaved).
    fn persist(&mut self, to_pin: BTreeMap<String, Pin>, pending: BTreeMap<String, Pin>) {
        let Some(path) = self.config.file.clone() else {
            return;
        };
        let key = self.identity.key.clone();
        let info = self.server_info.clone();
        let result = store::update(&path, |f| {
            let entry = f.servers.entry(key).or_default();
            for (name, pin) in &to_pin {
                // Another session may have pinned it meanwhile: the first pin stays.
                entry
                    .tools
                    .entry(name.clone())
                    .or_insert_with(|| pin.clone());
            }
            for (name, pin) in &pending {
                entry.pending.insert(name.clone(), pin.clone());
            }
            if info.is_some() {
                entry.server_info = info.clone();
            }
        });
        match result {
            Ok(()) => {
                for (name, pin) in to_pin {
                    self.pins.tools.entry(name).or_insert(pin);
                }
            }
            Err(e) => tracing::error!("cannot write the pin file: {e}"),
        }
    }

    fn base(&self, event: &str, tool: Option<&str>) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("event".into(), event.into());
        m.insert("server".into(), self.identity.key.clone().into());
        m.insert("tool".into(), tool.into());
        m.insert("method".into(), "tools/list".into());
        m
    }

    fn record(&self, event: &str, a: &Assessment, extra: Value) -> Map<String, Value> {
        let mut m = self.base(event, Some(&a.name));
        m.insert("digest".into(), a.digest.clone().into());
        let (rule, reason) = match event {
            "pinned" => (
                "pins.tofu".to_string(),
                format!("tool `{}` pinned on first use", a.name),
            ),
            "changed" => (
                crate::policy::RuleId::PinsChanged.to_string(),
                format!("the definition of tool `{}` differs from its pin", a.name),
            ),
            "unpinned" => (
                crate::policy::RuleId::PinsFrozen.to_string(),
                format!("tool `{}` has no pin and the pin file is frozen", a.name),
            ),
            _ => (String::new(), String::new()),
        };
        if !rule.is_empty() {
            m.insert("rule".into(), rule.into());
            m.insert("reason".into(), reason.into());
        }
        if let Value::Object(x) = extra {
            for (k, v) in x {
                m.insert(k, v);
            }
        }
        if event == "finding" {
            let reason = format!(
                "{} at {}: {}",
                m.get("severity").and_then(Value::as_str).unwrap_or(""),
                m.get("field").and_then(Value::as_str).unwrap_or(""),
                m.get("excerpt").and_then(Value::as_str).unwrap_or("")
            );
            m.insert("reason".into(), reason.into());
        }
        let listing = match &a.listing {
            Listing::Show => "shown",
            Listing::ShowPinned(_) => "shown_pinned",
            Listing::Hide => "hidden",
        };
        m.insert("listing".into(), listing.into());
        m
    }
}

fn tool_name(t: &Value) -> &str {
    t.get("name").and_then(Value::as_str).unwrap_or_default()
}
