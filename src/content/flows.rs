//! Rules over sequences: events armed in a session, and the calls they hold back. Pure: the
//! caller passes the clock.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::config::{EventKind, FlowPolicy, FlowRule};
use crate::check::{Access, Resource};

/// Something that happened in the session that a flow rule may wait for.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) kind: EventKind,
    pub(crate) path: Option<PathBuf>,
    /// For messages: "filesystem.read of /home/u/.env (request 3)".
    pub(crate) what: String,
}

#[derive(Debug, Clone)]
struct Armed {
    rule: usize,
    what: String,
    at: Instant,
}

/// The flow rules armed so far (one entry per rule: the first event that armed it).
#[derive(Debug, Default)]
pub(crate) struct FlowState {
    armed: Vec<Armed>,
}

/// A call a flow rule holds back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlowHit {
    pub(crate) rule: crate::policy::RuleId,
    pub(crate) refuse: bool,
    pub(crate) reason: String,
}

fn event_matches(r: &FlowRule, e: &Event) -> bool {
    let kind_ok =
        r.event == e.kind || (r.event == EventKind::Read && e.kind == EventKind::SensitiveRead);
    kind_ok
        && match (&r.path_prefix, &e.path) {
            (Some(pre), Some(p)) => crate::check::path::is_within(p, pre),
            (Some(_), None) => false,
            (None, _) => true,
        }
}

fn access_matches(r: &FlowRule, a: &Access, tool: Option<&str>) -> bool {
    if let Some(c) = &r.capability {
        if !c.matches(&a.capability) {
            return false;
        }
    }
    if let Some(t) = &r.tool {
        if tool != Some(t.as_str()) {
            return false;
        }
    }
    if let Some(dir) = &r.outside {
        match &a.resource {
            Resource::Path { resolved, .. } => {
                if crate::check::path::is_within(resolved, dir) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

impl FlowState {
    pub(crate) fn observe(&mut self, policy: &FlowPolicy, e: &Event, now: Instant) {
        for (i, r) in policy.rules.iter().enumerate() {
            if !event_matches(r, e) {
                continue;
            }
            match self.armed.iter_mut().find(|a| a.rule == i) {
                // A windowed rule is re-armed by a later event; a session rule keeps its first.
                Some(a) if r.window.is_some() => {
                    a.at = now;
                    a.what = e.what.clone();
                }
                Some(_) => {}
                None => self.armed.push(Armed {
                    rule: i,
                    what: e.what.clone(),
                    at: now,
                }),
            }
        }
    }

    /// The first armed rule that holds back one of these accesses.
    pub(crate) fn check(
        &self,
        policy: &FlowPolicy,
        accesses: &[Access],
        tool: Option<&str>,
        now: Instant,
    ) -> Option<FlowHit> {
        for a in &self.armed {
            let r = &policy.rules[a.rule];
            if r.window.is_some_and(|w| now.duration_since(a.at) > w) {
                continue;
            }
            if let Some(acc) = accesses.iter().find(|acc| access_matches(r, acc, tool)) {
                let what = if r.refuse {
                    "is refused"
                } else {
                    "needs approval"
                };
                let mut reason = format!(
                    "{} {} after {} (flow rule {})",
                    acc.capability, what, a.what, r.id
                );
                if let Some(w) = r.window {
                    reason.push_str(&format!(", for {}s after the event", w.as_secs()));
                }
                if let Some(why) = &r.reason {
                    reason.push_str(&format!(": {why}"));
                }
                return Some(FlowHit {
                    rule: r.id.clone(),
                    refuse: r.refuse,
                    reason,
                });
            }
        }
        None
    }
}

/// The events one allowed call produces.
pub(crate) fn events_of(
    accesses: &[Access],
    sensitive: &dyn Fn(&Path) -> bool,
    id: &str,
) -> Vec<Event> {
    let mut out = Vec::new();
    for a in accesses {
        match (&a.resource, &*a.capability) {
            (Resource::Path { resolved, written }, c)
                if c.ends_with(".read")
                    || c == "filesystem.list"
                    || c.starts_with("filesystem.read") =>
            {
                let kind = if sensitive(resolved) {
                    EventKind::SensitiveRead
                } else {
                    EventKind::Read
                };
                out.push(Event {
                    kind,
                    path: Some(resolved.clone()),
                    what: format!("{c} of {written} (request {id})"),
                });
            }
            (_, "environment.read") => out.push(Event {
                kind: EventKind::EnvRead,
                path: None,
                what: format!("environment.read (request {id})"),
            }),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::config::compile_flows;

    fn read(p: &str) -> Access {
        Access {
            capability: "filesystem.read".into(),
            resource: Resource::Path {
                written: p.into(),
                resolved: p.into(),
            },
        }
    }
    fn fetch() -> Access {
        Access {
            capability: "network.fetch".into(),
            resource: Resource::Url {
                written: "http://a.test/".into(),
                host: "a.test".into(),
                port: 80,
            },
        }
    }

    #[test]
    fn sensitive_read_then_fetch_needs_approval_and_names_the_read() {
        let env = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
        let flows = compile_flows(None, &env).unwrap();
        let content = crate::content::config::compile_content(None, &env).unwrap();
        let mut st = FlowState::default();
        let now = Instant::now();
        for e in events_of(&[read("/w/README.md")], &|p| content.is_sensitive(p), "1") {
            st.observe(&flows, &e, now);
        }
        assert_eq!(st.check(&flows, &[fetch()], Some("fetch"), now), None);
        for e in events_of(&[read("/w/.env")], &|p| content.is_sensitive(p), "2") {
            st.observe(&flows, &e, now);
        }
        let hit = st.check(&flows, &[fetch()], Some("fetch"), now).unwrap();
        assert_eq!(hit.rule, "flows.default.sensitive-read-then-network");
        assert!(!hit.refuse);
        assert!(
            hit.reason
                .contains("filesystem.read of /w/.env (request 2)"),
            "{}",
            hit.reason
        );
    }

    #[test]
    fn windows_and_outside() {
        let env = |_: &str| None;
        let f: crate::content::schema::FlowsSection = serde_yaml::from_str("defaults: false\nrules:\n  - after: {event: read, path_prefix: /data}\n    then: {capability: filesystem.write, outside: /data}\n    action: refuse\n    window_seconds: 60\n").unwrap();
        let flows = compile_flows(Some(&f), &env).unwrap();
        let mut st = FlowState::default();
        let t0 = Instant::now();
        for e in events_of(&[read("/data/x")], &|_| false, "1") {
            st.observe(&flows, &e, t0);
        }
        let w = |p: &str| Access {
            capability: "filesystem.write".into(),
            resource: Resource::Path {
                written: p.into(),
                resolved: p.into(),
            },
        };
        assert!(st.check(&flows, &[w("/data/y")], None, t0).is_none());
        assert!(st.check(&flows, &[w("/tmp/y")], None, t0).unwrap().refuse);
        let later = t0 + std::time::Duration::from_secs(61);
        assert!(st.check(&flows, &[w("/tmp/y")], None, later).is_none());
    }
}
