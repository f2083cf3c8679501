//! What the proxy records, and how each event becomes a record (pure, except the clock).
//!
//! The writer adds the chain fields (`seq`, `prev`, `hash`) under the file lock; everything
//! else is built here.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::canon::sha256_hex;
use super::redact::Redactor;
use crate::check::decide::Decision;
use crate::check::{Access, Resource};
use crate::policy::Policy;
use crate::profile::ToolSpec;

/// Version of the record format, in every record as `v`.
pub const FORMAT_VERSION: u64 = 1;

/// Which way the message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToServer => "client_to_server",
            Direction::ServerToClient => "server_to_client",
        }
    }
}

/// One thing to record. Built by the proxy from what it already has; the log adds the time,
/// session, sequence and chain fields.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    SessionStart(SessionStart<'a>),
    Decision(DecisionEvent<'a>),
    /// Reserved: an approval granted or refused for a `require_approval` call.
    Approval(ApprovalEvent<'a>),
    ResponseFilter(FilterEvent<'a>),
    SessionEnd(SessionEnd),
}

#[derive(Debug, Clone)]
pub struct SessionStart<'a> {
    /// The server command line as capjail runs it.
    pub argv: &'a [String],
    pub policy: &'a Policy,
    /// `proxy`, `proxy+kernel`, ... (free text from the CLI).
    pub mode: &'a str,
    /// What the kernel layer enforces (free text, e.g. `landlock abi 4; seccomp; no-new-privs`).
    pub kernel: &'a str,
    /// The server's working directory and home: what relative paths and `~` meant (replay).
    pub cwd: &'a Path,
    pub home: Option<&'a Path>,
    /// The profile in use (replay falls back to it when a record has no `tool_spec`).
    pub profile: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct DecisionEvent<'a> {
    pub direction: Direction,
    /// The JSON-RPC id (`None` for a notification).
    pub id: Option<&'a Value>,
    /// The request params as received (redacted before they are written).
    pub params: Option<&'a Value>,
    pub decision: &'a Decision,
    /// The description of the tool the decision used (from the profile or `tools/list`), so
    /// that replay decides with the same description.
    pub tool_spec: Option<&'a ToolSpec>,
    /// Time spent deciding, in microseconds.
    pub latency_us: u64,
}

#[derive(Debug, Clone)]
pub struct ApprovalEvent<'a> {
    pub id: Option<&'a Value>,
    pub method: &'a str,
    pub tool: Option<&'a str>,
    pub rule: &'a str,
    pub granted: bool,
    /// Who or what answered (`tty`, `webhook:...`).
    pub by: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    /// The message was forwarded with changes (e.g. blocked tools hidden from `tools/list`).
    Altered,
    /// The message was not forwarded.
    Dropped,
}

#[derive(Debug, Clone)]
pub struct FilterEvent<'a> {
    pub direction: Direction,
    pub id: Option<&'a Value>,
    /// The method of the request this answers (if known) or of the message itself.
    pub method: Option<&'a str>,
    pub action: FilterAction,
    pub reason: &'a str,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SessionEnd {
    pub exit_code: Option<i32>,
    /// The signal that ended the server, if one did.
    pub signal: Option<i32>,
}

/// Per-session tallies (written in `session_end`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub allowed: u64,
    pub denied: u64,
    pub filtered: u64,
}

impl Counts {
    pub fn count(&mut self, event: &Event) {
        match event {
            Event::Decision(d) if d.decision.is_allowed() => self.allowed += 1,
            Event::Decision(_) => self.denied += 1,
            Event::ResponseFilter(_) => self.filtered += 1,
            _ => {}
        }
    }
}

/// The record for an event, without `time`, `seq`, `prev` and `hash` (the writer adds them
/// under the file lock, so that times follow the order of the file).
pub fn event_record(
    event: &Event,
    session: &str,
    counts: &Counts,
    redactor: &Redactor,
) -> Map<String, Value> {
    let mut m = base("", session);
    match event {
        Event::SessionStart(s) => {
            m.insert("kind".into(), "session_start".into());
            m.insert("argv".into(), json!(s.argv));
            m.insert(
                "policy".into(),
                json!({"name": s.policy.name, "sha256": sha256_hex(s.policy.text.as_bytes()), "source": s.policy.source.to_string()}),
            );
            m.insert("mode".into(), s.mode.into());
            m.insert("kernel".into(), s.kernel.into());
            m.insert("cwd".into(), s.cwd.to_string_lossy().into());
            m.insert(
                "home".into(),
                s.home.map(|h| h.to_string_lossy().into_owned()).into(),
            );
            m.insert("profile".into(), s.profile.into());
            m.insert("pid".into(), std::process::id().into());
            m.insert("capjail".into(), env!("CARGO_PKG_VERSION").into());
        }
        Event::Decision(d) => decision_fields(&mut m, d, redactor),
        Event::Approval(a) => {
            m.insert("kind".into(), "approval".into());
            put_id(&mut m, a.id);
            m.insert("method".into(), a.method.into());
            m.insert("tool".into(), a.tool.into());
            m.insert("rule".into(), a.rule.into());
            m.insert(
                "verdict".into(),
                if a.granted { "allow" } else { "deny" }.into(),
            );
            m.insert("by".into(), a.by.into());
        }
        Event::ResponseFilter(f) => {
            m.insert("kind".into(), "response_filter".into());
            m.insert("direction".into(), f.direction.as_str().into());
            put_id(&mut m, f.id);
            m.insert("method".into(), f.method.into());
            m.insert(
                "action".into(),
                if f.action == FilterAction::Altered {
                    "altered"
                } else {
                    "dropped"
                }
                .into(),
            );
            m.insert("reason".into(), f.reason.into());
        }
        Event::SessionEnd(e) => {
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

fn decision_fields(m: &mut Map<String, Value>, d: &DecisionEvent, redactor: &Redactor) {
    let dec = d.decision;
    m.insert("kind".into(), "decision".into());
    m.insert("direction".into(), d.direction.as_str().into());
    put_id(m, d.id);
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
    m.insert("rule".into(), dec.rule.clone().into());
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
        d.params.map(|p| redactor.redact(p)).unwrap_or(Value::Null),
    );
    if let Some(spec) = d.tool_spec {
        m.insert(
            "tool_spec".into(),
            serde_json::to_value(spec).unwrap_or(Value::Null),
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
pub fn recovery_record(session: &str, torn: &[(u64, u64, String)]) -> Map<String, Value> {
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
pub fn access_json(a: &Access) -> Value {
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

/// RFC 3339, UTC, microseconds: `2026-03-01T12:34:56.123456Z`.
pub fn rfc3339_micros(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, da) = civil_from_days(days as i64);
    format!(
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
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
pub fn new_session_id() -> std::io::Result<String> {
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

    #[test]
    fn session_ids_are_random_hex() {
        let a = new_session_id().unwrap();
        let b = new_session_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
