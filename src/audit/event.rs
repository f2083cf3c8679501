//! How a [`Record`] becomes its line (pure, except the clock): the encoder of the one record
//! type (`record`).
//!
//! The writer adds the chain fields (`seq`, `prev`, `hash`) under the file lock; everything
//! else is built here.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::canon::{sha256_hex, write_canonical, write_record, Member};
use super::record::{DecisionRecord, Record};
use super::redact::Redactor;
use crate::check::{Access, Resource};
use crate::profile::ToolSpec;

/// Version of the record format, in every record as `v`.
pub(crate) const FORMAT_VERSION: u64 = 1;

/// Per-session tallies (written in `session_end`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) allowed: u64,
    pub(crate) denied: u64,
    pub(crate) filtered: u64,
}

impl Counts {
    pub(crate) fn count(&mut self, record: &Record) {
        match record {
            Record::Decision(d) if d.decision.is_allowed() => self.allowed += 1,
            Record::Decision(_) => self.denied += 1,
            Record::Filter(_) => self.filtered += 1,
            _ => {}
        }
    }
}

/// The record as a map, without `time`, `seq`, `prev` and `hash` (the writer adds them under
/// the file lock).
pub(crate) fn record_map(
    record: &Record,
    session: &str,
    counts: &Counts,
    redactor: &Redactor,
) -> Map<String, Value> {
    let mut m = base("", session);
    match record {
        Record::SessionStart(s) => {
            m.insert("kind".into(), "session_start".into());
            m.insert("argv".into(), json!(s.argv));
            m.insert(
                "policy".into(),
                json!({"name": s.policy.name, "sha256": sha256_hex(s.policy.text.as_bytes()), "source": s.policy.source.to_string()}),
            );
            m.insert("mode".into(), s.mode.clone().into());
            m.insert("kernel".into(), s.kernel.clone().into());
            m.insert("cwd".into(), s.cwd.to_string_lossy().into());
            m.insert(
                "home".into(),
                s.home
                    .as_ref()
                    .map(|h| h.to_string_lossy().into_owned())
                    .into(),
            );
            m.insert("profile".into(), s.profile.clone().into());
            m.insert("pid".into(), std::process::id().into());
            m.insert("capjail".into(), env!("CARGO_PKG_VERSION").into());
        }
        Record::Decision(d) => decision_fields(&mut m, d, redactor),
        Record::Approval(a) => {
            m.insert("kind".into(), "approval".into());
            put_id(&mut m, a.id.as_ref());
            m.insert("method".into(), a.method.clone().into());
            m.insert("tool".into(), a.tool.clone().into());
            m.insert("rule".into(), a.rule.as_str().into());
            m.insert(
                "verdict".into(),
                if a.granted { "allow" } else { "deny" }.into(),
            );
            m.insert("by".into(), a.by.clone().into());
            m.insert("question".into(), a.question.clone().into());
            m.insert("answer".into(), a.answer.clone().into());
            m.insert("elapsed_ms".into(), a.elapsed_ms.into());
        }
        Record::Filter(f) => {
            m.insert("kind".into(), "response_filter".into());
            m.insert("direction".into(), f.direction.as_str().into());
            put_id(&mut m, f.id.as_ref());
            m.insert("method".into(), f.method.clone().into());
            m.insert("action".into(), f.action.as_str().into());
            m.insert("reason".into(), f.reason.clone().into());
        }
        Record::Trust(t) => {
            m.insert("kind".into(), "tool_trust".into());
            for (k, v) in t.fields.iter() {
                if !matches!(k.as_str(), "v" | "kind" | "session") {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        Record::SessionEnd(e) => {
            m.insert("kind".into(), "session_end".into());
            m.insert("exit_code".into(), e.exit_code.into());
            m.insert("signal".into(), e.signal.into());
            m.insert("allowed".into(), counts.allowed.into());
            m.insert("denied".into(), counts.denied.into());
            m.insert("filtered".into(), counts.filtered.into());
        }
    }
    m
}

/// The chain fields the writer adds under the file lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chain<'a> {
    pub(crate) time: &'a str,
    pub(crate) seq: u64,
    pub(crate) prev: &'a str,
}

impl<'a> Chain<'a> {
    fn members(self) -> [(&'static str, Member<'a>); 3] {
        [
            ("time", Member::Str(self.time)),
            ("seq", Member::U64(self.seq)),
            ("prev", Member::Str(self.prev)),
        ]
    }
}

/// Canonical encodings of the tool descriptions recorded lately (a session calls few tools,
/// many times): a decision record then costs no serialisation of its tool description.
#[derive(Debug, Default)]
pub(crate) struct SpecCache {
    entries: Vec<(ToolSpec, Vec<u8>)>,
}

impl SpecCache {
    const CAPACITY: usize = 32;

    fn canonical(&mut self, spec: &ToolSpec) -> &[u8] {
        let i = match self.entries.iter().position(|(s, _)| s == spec) {
            Some(i) => i,
            None => {
                if self.entries.len() == Self::CAPACITY {
                    self.entries.remove(0);
                }
                let mut bytes = Vec::new();
                write_canonical(
                    &mut bytes,
                    &serde_json::to_value(spec).unwrap_or(Value::Null),
                );
                self.entries.push((spec.clone(), bytes));
                self.entries.len() - 1
            }
        };
        &self.entries[i].1
    }
}

/// Append the canonical body of `record`, chain fields included, to `out`: the same bytes as
/// [`record_map`] plus the chain fields through [`write_canonical`], built without the
/// intermediate JSON tree for the frequent kinds (decisions and filters).
pub(crate) fn write_record_body(
    out: &mut Vec<u8>,
    record: &Record,
    session: &str,
    counts: &Counts,
    redactor: &Redactor,
    chain: Chain,
    specs: &mut SpecCache,
) {
    let chain_members = chain.members();
    match record {
        Record::Decision(d) => {
            let dec = &d.decision;
            // `allowed by RULE`, written straight into the line (the same bytes as the
            // string's escaping: "allowed by " needs none).
            let write_reason = |out: &mut Vec<u8>| match &dec.denial {
                Some(den) => super::canon::write_str(out, &den.reason),
                None => {
                    let at = out.len() + 1;
                    super::canon::write_str(out, dec.rule.as_str());
                    out.splice(at..at, b"allowed by ".iter().copied());
                }
            };
            let write_accesses = |out: &mut Vec<u8>| {
                out.push(b'[');
                for (i, a) in dec.accesses.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_access(out, a);
                }
                out.push(b']');
            };
            let write_params = |out: &mut Vec<u8>| match &d.params {
                Some(p) => redactor.write_redacted(out, p),
                None => out.extend_from_slice(b"null"),
            };
            let spec = d.tool_spec.as_deref().map(|s| specs.canonical(s));
            // The members on the stack: no allocation per record.
            let mut m = Members::default();
            m.extend(chain_members);
            m.extend([
                ("v", Member::U64(FORMAT_VERSION)),
                ("kind", Member::Str("decision")),
                ("session", Member::Str(session)),
                ("direction", Member::Str(d.direction.as_str())),
                ("method", Member::Str(&dec.method)),
                (
                    "tool",
                    dec.tool.as_deref().map_or(Member::Null, Member::Str),
                ),
                ("accesses", Member::With(&write_accesses)),
                (
                    "verdict",
                    Member::Str(if dec.is_allowed() { "allow" } else { "deny" }),
                ),
                ("rule", Member::Str(dec.rule.as_str())),
                ("reason", Member::With(&write_reason)),
                ("latency_us", Member::U64(d.latency_us)),
                ("params", Member::With(&write_params)),
            ]);
            if let Some(id) = &d.id {
                m.push(("id", Member::Json(id)));
            }
            if dec.denial.as_ref().is_some_and(|x| x.approval_required) {
                m.push(("approval_required", Member::Bool(true)));
            }
            if let Some(bytes) = spec {
                m.push(("tool_spec", Member::Canonical(bytes)));
            }
            write_record(out, m.as_mut_slice());
        }
        Record::Filter(f) => {
            let mut m = Members::default();
            m.extend(chain_members);
            m.extend([
                ("v", Member::U64(FORMAT_VERSION)),
                ("kind", Member::Str("response_filter")),
                ("session", Member::Str(session)),
                ("direction", Member::Str(f.direction.as_str())),
                (
                    "method",
                    f.method.as_deref().map_or(Member::Null, Member::Str),
                ),
                ("action", Member::Str(f.action.as_str())),
                ("reason", Member::Str(&f.reason)),
            ]);
            if let Some(id) = &f.id {
                m.push(("id", Member::Json(id)));
            }
            write_record(out, m.as_mut_slice());
        }
        other => write_map_body(out, &record_map(other, session, counts, redactor), chain),
    }
}

/// A record's members, on the stack (a decision has at most 18).
struct Members<'a> {
    items: [(&'a str, Member<'a>); 20],
    len: usize,
}

impl Default for Members<'_> {
    fn default() -> Self {
        Members {
            items: std::array::from_fn(|_| ("", Member::Null)),
            len: 0,
        }
    }
}

impl<'a> Members<'a> {
    fn push(&mut self, m: (&'a str, Member<'a>)) {
        self.items[self.len] = m;
        self.len += 1;
    }
    fn extend(&mut self, ms: impl IntoIterator<Item = (&'a str, Member<'a>)>) {
        for m in ms {
            self.push(m);
        }
    }
    fn as_mut_slice(&mut self) -> &mut [(&'a str, Member<'a>)] {
        &mut self.items[..self.len]
    }
}

/// Append the canonical body of a record built as a map, with the chain fields.
pub(crate) fn write_map_body(out: &mut Vec<u8>, rec: &Map<String, Value>, chain: Chain) {
    let mut m: Vec<(&str, Member)> = Vec::with_capacity(rec.len() + 3);
    m.extend(chain.members());
    m.extend(
        rec.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "time" | "seq" | "prev"))
            .map(|(k, v)| (k.as_str(), Member::Json(v))),
    );
    write_record(out, &mut m);
}

fn decision_fields(m: &mut Map<String, Value>, d: &DecisionRecord, redactor: &Redactor) {
    let dec = &d.decision;
    m.insert("kind".into(), "decision".into());
    m.insert("direction".into(), d.direction.as_str().into());
    put_id(m, d.id.as_ref());
    m.insert("method".into(), dec.method.clone().into());
    m.insert("tool".into(), dec.tool.clone().into());
    m.insert(
        "accesses".into(),
        Value::Array(dec.accesses.iter().map(access_json).collect()),
    );
    m.insert(
        "verdict".into(),
        if dec.is_allowed() { "allow" } else { "deny" }.into(),
    );
    m.insert("rule".into(), dec.rule.as_str().into());
    // What a refusal was about when no access could be built from it (e.g. a `..` path).
    if let Some(res) = dec.denial.as_ref().and_then(|x| x.resource.as_ref()) {
        if dec.accesses.is_empty() {
            m.insert("resource".into(), res.clone().into());
        }
    }
    let reason = match &dec.denial {
        Some(den) => den.reason.clone(),
        None => format!("allowed by {}", dec.rule),
    };
    m.insert("reason".into(), reason.into());
    if dec.denial.as_ref().is_some_and(|x| x.approval_required) {
        m.insert("approval_required".into(), true.into());
    }
    m.insert("latency_us".into(), d.latency_us.into());
    m.insert(
        "params".into(),
        d.params
            .as_ref()
            .map(|p| redactor.redact(p))
            .unwrap_or(Value::Null),
    );
    if let Some(spec) = &d.tool_spec {
        m.insert(
            "tool_spec".into(),
            serde_json::to_value(&**spec).unwrap_or(Value::Null),
        );
    }
}

fn put_id(m: &mut Map<String, Value>, id: Option<&Value>) {
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
}

fn base(kind: &str, session: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("v".into(), FORMAT_VERSION.into());
    m.insert("kind".into(), kind.into());
    m.insert("session".into(), session.into());
    m
}

/// The `recovery` record for torn bytes found at the tail.
pub(crate) fn recovery_record(session: &str, torn: &[(u64, u64, String)]) -> Map<String, Value> {
    let mut m = base("recovery", session);
    let list: Vec<Value> = torn
        .iter()
        .map(|(o, l, h)| json!({"offset": o, "length": l, "sha256": h}))
        .collect();
    m.insert(
        "reason".into(),
        format!("{} incomplete line(s) after the last record (a writer stopped mid-record); kept, newline-terminated, and chained over", list.len()).into(),
    );
    m.insert("torn".into(), Value::Array(list));
    m
}

/// An access as JSON (lossless for UTF-8 paths; lossy otherwise, never an error).
pub(crate) fn access_json(a: &Access) -> Value {
    let resource = match &a.resource {
        Resource::None => Value::Null,
        Resource::Path { written, resolved } => {
            json!({"kind": "path", "written": written, "resolved": resolved.to_string_lossy()})
        }
        Resource::Url {
            written,
            host,
            port,
        } => json!({"kind": "url", "written": written, "host": host, "port": port}),
        Resource::Command { written } => json!({"kind": "command", "written": written}),
    };
    json!({"capability": a.capability, "resource": resource})
}

/// Append the canonical JSON of [`access_json`]`(a)` without building it (keys in byte order).
fn write_access(out: &mut Vec<u8>, a: &Access) {
    use super::canon::write_str;
    out.extend_from_slice(b"{\"capability\":");
    write_str(out, &a.capability);
    out.extend_from_slice(b",\"resource\":");
    match &a.resource {
        Resource::None => out.extend_from_slice(b"null"),
        Resource::Path { written, resolved } => {
            out.extend_from_slice(b"{\"kind\":\"path\",\"resolved\":");
            write_str(out, &resolved.to_string_lossy());
            out.extend_from_slice(b",\"written\":");
            write_str(out, written);
            out.push(b'}');
        }
        Resource::Url {
            written,
            host,
            port,
        } => {
            out.extend_from_slice(b"{\"host\":");
            write_str(out, host);
            out.extend_from_slice(b",\"kind\":\"url\",\"port\":");
            out.extend_from_slice(port.to_string().as_bytes());
            out.extend_from_slice(b",\"written\":");
            write_str(out, written);
            out.push(b'}');
        }
        Resource::Command { written } => {
            out.extend_from_slice(b"{\"kind\":\"command\",\"written\":");
            write_str(out, written);
            out.push(b'}');
        }
    }
    out.push(b'}');
}

/// RFC 3339, UTC, microseconds: `2026-03-01T12:34:56.123456Z`.
pub(crate) fn rfc3339_micros(t: SystemTime) -> String {
    TimeText::of(t).as_str().to_string()
}

/// [`rfc3339_micros`] on the stack (the writer formats one per record).
pub(crate) struct TimeText {
    buf: [u8; 40],
    len: usize,
}

impl TimeText {
    pub(crate) fn of(t: SystemTime) -> TimeText {
        use std::io::Write;
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, mo, da) = civil_from_days(days as i64);
        let mut buf = [0u8; 40];
        let mut w = &mut buf[..];
        write!(
            w,
            "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            d.subsec_micros()
        )
        .expect("a time fits in 40 bytes");
        let len = 40 - w.len();
        TimeText { buf, len }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("ASCII digits")
    }
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A random 128-bit session id, hex (getrandom(2), falling back to /dev/urandom).
pub(crate) fn new_session_id() -> std::io::Result<String> {
    let mut buf = [0u8; 16];
    #[cfg(target_os = "linux")]
    {
        // SAFETY: buf is a valid writable buffer of the length passed.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == buf.len() as isize {
            return Ok(hex::encode(buf));
        }
    }
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{Direction, FilterRecord, SessionEnd, SessionStart};
    use crate::check::decide::Decision;
    use std::time::Duration;

    #[test]
    fn time_format() {
        assert_eq!(rfc3339_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29T23:59:59.000001Z (leap day)
        let t = UNIX_EPOCH + Duration::new(951_868_799, 1_000);
        assert_eq!(rfc3339_micros(t), "2000-02-29T23:59:59.000001Z");
        let t = UNIX_EPOCH + Duration::new(1_767_225_600, 999_999_999); // 2026-01-01
        assert_eq!(rfc3339_micros(t), "2026-01-01T00:00:00.999999Z");
    }

    /// The fast encoder writes exactly what the map-based record gives, for every kind.
    #[test]
    fn streamed_body_equals_the_record_map() {
        use crate::audit::canon::canonical_json;
        use crate::check::decide::Verdict;
        use crate::check::Denial;
        use crate::profile::{ArgKind, ArgSpec};

        let allow = Decision {
            verdict: Verdict::Allow,
            method: "tools/call".into(),
            tool: Some("write_file".into()),
            accesses: vec![
                Access {
                    capability: "filesystem.write".into(),
                    resource: Resource::Path {
                        written: "~/a\"b".into(),
                        resolved: "/home/u/a\"b".into(),
                    },
                },
                Access {
                    capability: "network.fetch".into(),
                    resource: Resource::Url {
                        written: "https://h.test:8443/é".into(),
                        host: "h.test".into(),
                        port: 8443,
                    },
                },
                Access {
                    capability: "shell.execute".into(),
                    resource: Resource::Command {
                        written: "ls \u{1}".into(),
                    },
                },
                Access {
                    capability: "unknown".into(),
                    resource: Resource::None,
                },
            ],
            rule: crate::policy::RuleId::FilesystemMounts,
            denial: None,
        };
        let mut deny = allow.clone();
        deny.verdict = Verdict::Deny;
        deny.tool = None;
        deny.denial = Some(Denial {
            reason: "needs approval: \u{1} é".into(),
            rule: crate::policy::RuleId::Policy("require_approval[0]".into()),
            capability: None,
            resource: None,
            approval_required: true,
        });
        let mut spec = ToolSpec {
            capability: "filesystem.write".into(),
            args: Default::default(),
            note: String::new(),
        };
        spec.args.insert(
            "path".into(),
            ArgSpec {
                kind: ArgKind::Path,
                capability: None,
                relative_to: Some("repo_path".into()),
            },
        );
        let params = json!({"name": "write_file", "arguments": {"path": "/tmp/a", "content": "hunter2", "zz": [1, 2.5, null, {"B": true, "a_token": "t"}]}});
        let (n, s) = (json!(7), json!("req-1"));
        let redactor = Redactor::new(["zz_extra"]);
        let policy = crate::audit::testutil::policy("name: p\n");
        let argv = vec!["srv".to_string(), "--x".to_string()];
        let spec = std::sync::Arc::new(spec);
        let events = vec![
            Record::Decision(DecisionRecord {
                tool_spec: Some(spec),
                latency_us: 12,
                ..DecisionRecord::new(Direction::ClientToServer, Some(n), Some(params), allow)
            }),
            Record::Decision(DecisionRecord::new(
                Direction::ServerToClient,
                None,
                None,
                deny,
            )),
            Record::Filter(FilterRecord {
                id: Some(s),
                method: Some("tools/list".into()),
                ..FilterRecord::new(Direction::ServerToClient, false, "hid 2 tools".into())
            }),
            Record::Filter(FilterRecord::new(
                Direction::ServerToClient,
                true,
                "not JSON".into(),
            )),
            Record::SessionStart(Box::new(SessionStart {
                argv,
                policy: std::sync::Arc::new(policy),
                mode: "full".into(),
                kernel: "k".into(),
                cwd: "/w".into(),
                home: None,
                profile: Some("filesystem".into()),
            })),
            Record::SessionEnd(SessionEnd {
                exit_code: Some(0),
                signal: None,
            }),
        ];
        let counts = Counts {
            allowed: 3,
            denied: 1,
            filtered: 2,
        };
        let mut specs = SpecCache::default();
        for ev in &events {
            let mut rec = record_map(ev, "sess", &counts, &redactor);
            rec.insert("time".into(), "T".into());
            rec.insert("seq".into(), 9.into());
            rec.insert("prev".into(), "P".into());
            let want = canonical_json(&Value::Object(rec));
            for _ in 0..2 {
                // twice: the second time the tool description comes from the cache
                let mut out = Vec::new();
                let chain = Chain {
                    time: "T",
                    seq: 9,
                    prev: "P",
                };
                write_record_body(&mut out, ev, "sess", &counts, &redactor, chain, &mut specs);
                assert_eq!(String::from_utf8(out).unwrap(), want, "{ev:?}");
            }
        }
    }

    #[test]
    fn session_ids_are_random_hex() {
        let a = new_session_id().unwrap();
        let b = new_session_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
