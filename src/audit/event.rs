//! How a [`Record`] becomes its line (pure, except the clock): the encoder of the one record
//! type (`record`).
//!
//! The writer adds the chain fields (`seq`, `prev`, `hash`) under the file lock; everything
//! else is built here.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::canon::{
    sha256_hex, write_canonical, write_escaped, write_plain_str, write_record, write_str,
    write_str_bytes, write_u64, Member,
};
use super::record::{DecisionRecord, FilterRecord, Record};
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
    /// A decision encoded ahead ([`Precoded`]).
    pub(crate) fn count_decision(&mut self, allowed: bool) {
        if allowed {
            self.allowed += 1;
        } else {
            self.denied += 1;
        }
    }

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
    /// UTF-8 (ASCII: a formatted time).
    pub(crate) time: &'a [u8],
    pub(crate) seq: u64,
    /// UTF-8 (ASCII: 64 hex digits).
    pub(crate) prev: &'a [u8],
}

impl<'a> Chain<'a> {
    fn members(self) -> [(&'static str, Member<'a>); 3] {
        [
            ("time", Member::StrBytes(self.time)),
            ("seq", Member::U64(self.seq)),
            ("prev", Member::StrBytes(self.prev)),
        ]
    }
}

/// Canonical encodings of the tool descriptions recorded lately (a session calls few tools,
/// many times): a decision record then costs no serialisation of its tool description. The
/// descriptions are shared (`Arc`) with the session's catalog: the one a record holds is
/// usually found by its address, without comparing descriptions (the cache holds its own
/// reference, so an address cannot be reused by another description while it is cached).
#[derive(Debug, Default)]
pub(crate) struct SpecCache {
    entries: Vec<(Arc<ToolSpec>, Vec<u8>)>,
}

impl SpecCache {
    const CAPACITY: usize = 32;

    fn canonical(&mut self, spec: &Arc<ToolSpec>) -> &[u8] {
        let found = self
            .entries
            .iter()
            .position(|(s, _)| Arc::ptr_eq(s, spec))
            .or_else(|| self.entries.iter().position(|(s, _)| **s == **spec));
        let i = match found {
            Some(i) => i,
            None => {
                if self.entries.len() == Self::CAPACITY {
                    self.entries.remove(0);
                }
                let mut bytes = Vec::new();
                write_canonical(
                    &mut bytes,
                    &serde_json::to_value(&**spec).unwrap_or(Value::Null),
                );
                self.entries.push((Arc::clone(spec), bytes));
                self.entries.len() - 1
            }
        };
        &self.entries[i].1
    }
}

/// Append the canonical body of `record`, chain fields included, to `out`: the same bytes as
/// [`record_map`] plus the chain fields through [`write_canonical`], written straight from the
/// record's borrowed fields, in key order, for the frequent kinds (decisions and filters).
pub(crate) fn write_record_body(
    out: &mut Vec<u8>,
    record: &Record,
    session: &str,
    counts: &Counts,
    redactor: &Redactor,
    chain: Chain,
    specs: &mut SpecCache,
) {
    match record {
        Record::Decision(d) => write_decision(out, d, session, redactor, chain, specs),
        Record::Filter(f) => write_filter(out, f, session, chain),
        other => write_map_body(out, &record_map(other, session, counts, redactor), chain),
    }
}

/// A decision record's canonical body: its members in key byte order, written from the
/// record (the keys are literals: no sorting, no escaping to do).
fn write_decision(
    out: &mut Vec<u8>,
    d: &DecisionRecord,
    session: &str,
    redactor: &Redactor,
    chain: Chain,
    specs: &mut SpecCache,
) {
    write_decision_slots(
        out,
        d,
        session,
        redactor,
        chain.time,
        Some((chain.seq, chain.prev)),
        specs,
    );
}

/// A decision record's canonical body encoded before the log's lock is taken (the audit
/// queue's `push`), without the two members only the lock knows: `prev` goes at
/// `bytes[prev_at]` (between its quotes), the digits of `seq` at `bytes[seq_at]`. The writer
/// puts them in ([`Precoded::finish`]); the line is byte for byte what [`write_record_body`]
/// writes. Encoding at `push` lets the request's params (a tree of allocations) be freed by
/// the thread that parsed them, right away, instead of after the batch is written (issue 19:
/// holding ~170 requests' trees per batch cost more in `malloc`/`free` than the encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Precoded {
    pub(crate) prev_at: usize,
    pub(crate) seq_at: usize,
    /// Counted in the session's `allowed` (else `denied`).
    pub(crate) allowed: bool,
}

impl Precoded {
    /// Encode `d` (its time formatted by `clock`) into `out`, from `out.len()`; the offsets
    /// are relative to where it starts.
    pub(crate) fn encode(
        out: &mut Vec<u8>,
        d: &DecisionRecord,
        session: &str,
        redactor: &Redactor,
        clock: &mut Clock,
        specs: &mut SpecCache,
    ) -> Precoded {
        let start = out.len();
        let time = clock.text(d.at);
        let [prev_at, seq_at] =
            write_decision_slots(out, d, session, redactor, time.as_bytes(), None, specs);
        Precoded {
            prev_at: prev_at - start,
            seq_at: seq_at - start,
            allowed: d.decision.is_allowed(),
        }
    }

    /// Append the body `bytes` (as [`Precoded::encode`] wrote it) to `out` with its chain
    /// fields.
    pub(crate) fn finish(&self, out: &mut Vec<u8>, bytes: &[u8], seq: u64, prev: &[u8]) {
        out.extend_from_slice(&bytes[..self.prev_at]);
        // A chain hash: 64 lower-case hex digits (ours, or read back through `parse_line`,
        // which checks them), nothing to escape.
        debug_assert!(prev
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
        out.extend_from_slice(prev);
        out.extend_from_slice(&bytes[self.prev_at..self.seq_at]);
        write_u64(out, seq);
        out.extend_from_slice(&bytes[self.seq_at..]);
    }
}

/// [`write_decision`], or without its chain fields (`chain: None`, see [`Precoded`]): returns
/// where `prev` and `seq` are (or go) in `out`.
fn write_decision_slots(
    out: &mut Vec<u8>,
    d: &DecisionRecord,
    session: &str,
    redactor: &Redactor,
    time: &[u8],
    chain: Option<(u64, &[u8])>,
    specs: &mut SpecCache,
) -> [usize; 2] {
    let dec = &d.decision;
    let denial = dec.denial.as_ref();
    out.extend_from_slice(b"{\"accesses\":[");
    for (i, a) in dec.accesses.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_access(out, a);
    }
    out.push(b']');
    if denial.is_some_and(|x| x.approval_required) {
        out.extend_from_slice(b",\"approval_required\":true");
    }
    out.extend_from_slice(b",\"direction\":");
    write_plain_str(out, d.direction.as_str().as_bytes());
    if let Some(id) = &d.id {
        out.extend_from_slice(b",\"id\":");
        write_canonical(out, id);
    }
    out.extend_from_slice(b",\"kind\":\"decision\",\"latency_us\":");
    write_u64(out, d.latency_us);
    out.extend_from_slice(b",\"method\":");
    match &dec.method {
        // A known method (`check::decide::kept_method`).
        std::borrow::Cow::Borrowed(m) => write_plain_str(out, m.as_bytes()),
        std::borrow::Cow::Owned(m) => write_str(out, m),
    }
    out.extend_from_slice(b",\"params\":");
    match &d.params {
        Some(p) => redactor.write_redacted(out, p),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"prev\":\"");
    let prev_at = out.len();
    if let Some((_, prev)) = chain {
        write_escaped(out, prev);
    }
    out.extend_from_slice(b"\",\"reason\":");
    match denial {
        Some(den) => write_str(out, &den.reason),
        None => {
            // `allowed by RULE`
            out.extend_from_slice(b"\"allowed by ");
            write_escaped(out, dec.rule.as_str().as_bytes());
            out.push(b'"');
        }
    }
    // What a refusal was about when no access could be built from it (e.g. a `..` path).
    if let Some(res) = denial.and_then(|x| x.resource.as_ref()) {
        if dec.accesses.is_empty() {
            out.extend_from_slice(b",\"resource\":");
            write_str(out, res);
        }
    }
    out.extend_from_slice(b",\"rule\":");
    write_str(out, dec.rule.as_str());
    out.extend_from_slice(b",\"seq\":");
    let seq_at = out.len();
    if let Some((seq, _)) = chain {
        write_u64(out, seq);
    }
    out.extend_from_slice(b",\"session\":");
    write_str(out, session);
    out.extend_from_slice(b",\"time\":");
    write_plain_str(out, time);
    out.extend_from_slice(b",\"tool\":");
    match &dec.tool {
        Some(t) => write_str(out, t),
        None => out.extend_from_slice(b"null"),
    }
    if let Some(spec) = &d.tool_spec {
        out.extend_from_slice(b",\"tool_spec\":");
        out.extend_from_slice(specs.canonical(spec));
    }
    write_v(out);
    out.extend_from_slice(if dec.is_allowed() {
        b",\"verdict\":\"allow\"}"
    } else {
        b",\"verdict\":\"deny\"}"
    });
    [prev_at, seq_at]
}

/// A `response_filter` record's canonical body (as [`write_decision`]).
fn write_filter(out: &mut Vec<u8>, f: &FilterRecord, session: &str, chain: Chain) {
    out.extend_from_slice(b"{\"action\":");
    write_str(out, f.action.as_str());
    out.extend_from_slice(b",\"direction\":");
    write_plain_str(out, f.direction.as_str().as_bytes());
    if let Some(id) = &f.id {
        out.extend_from_slice(b",\"id\":");
        write_canonical(out, id);
    }
    out.extend_from_slice(b",\"kind\":\"response_filter\",\"method\":");
    match &f.method {
        Some(m) => write_str(out, m),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"prev\":");
    write_str_bytes(out, chain.prev);
    out.extend_from_slice(b",\"reason\":");
    write_str(out, &f.reason);
    write_seq_session_time(out, chain, session);
    write_v(out);
    out.push(b'}');
}

/// `,"seq":N,"session":S,"time":T` (consecutive in key order in both kinds).
fn write_seq_session_time(out: &mut Vec<u8>, chain: Chain, session: &str) {
    out.extend_from_slice(b",\"seq\":");
    write_u64(out, chain.seq);
    out.extend_from_slice(b",\"session\":");
    write_str(out, session);
    out.extend_from_slice(b",\"time\":");
    write_plain_str(out, chain.time);
}

/// `,"v":FORMAT_VERSION`.
fn write_v(out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"v\":");
    write_u64(out, FORMAT_VERSION);
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
    m.insert("tool".into(), dec.tool.as_deref().into());
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
            write_u64(out, u64::from(*port));
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
        Clock::default().text(t)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("ASCII digits")
    }
}

/// Formats times, the date and time of the last second once (`YYYY-MM-DDTHH:MM:SS.`): the
/// records of a batch share their second, each formats its microseconds only.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    /// The second `prefix` was formatted for (`None`: not yet).
    second: Option<u64>,
    prefix: [u8; 20],
}

impl Clock {
    pub(crate) fn text(&mut self, t: SystemTime) -> TimeText {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        if self.second != Some(secs) {
            let (days, rem) = (secs / 86_400, secs % 86_400);
            let (y, mo, da) = civil_from_days(days as i64);
            if !(0..=9999).contains(&y) {
                return slow_text(y, mo, da, rem, d.subsec_micros());
            }
            let p = &mut self.prefix;
            digits(&mut p[0..4], y as u64);
            p[4] = b'-';
            digits(&mut p[5..7], u64::from(mo));
            p[7] = b'-';
            digits(&mut p[8..10], u64::from(da));
            p[10] = b'T';
            digits(&mut p[11..13], rem / 3600);
            p[13] = b':';
            digits(&mut p[14..16], rem % 3600 / 60);
            p[16] = b':';
            digits(&mut p[17..19], rem % 60);
            p[19] = b'.';
            self.second = Some(secs);
        }
        let mut buf = [0u8; 40];
        buf[..20].copy_from_slice(&self.prefix);
        digits(&mut buf[20..26], u64::from(d.subsec_micros()));
        buf[26] = b'Z';
        TimeText { buf, len: 27 }
    }
}

/// `n` in decimal, zero-padded to fill `out` (`n` fits).
fn digits(out: &mut [u8], mut n: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// A year outside 0..=9999 (never in practice): through `write!`.
fn slow_text(y: i64, mo: u32, da: u32, rem: u64, micros: u32) -> TimeText {
    use std::io::Write;
    let mut buf = [0u8; 40];
    let mut w = &mut buf[..];
    write!(
        w,
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    )
    .expect("a time fits in 40 bytes");
    let len = 40 - w.len();
    TimeText { buf, len }
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
            accesses: smallvec::smallvec![
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
            Record::Decision(Box::new(DecisionRecord {
                tool_spec: Some(spec),
                latency_us: 12,
                ..DecisionRecord::new(Direction::ClientToServer, Some(n), Some(params), allow)
            })),
            Record::Decision(Box::new(DecisionRecord::new(
                Direction::ServerToClient,
                None,
                None,
                deny,
            ))),
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
                    time: b"T",
                    seq: 9,
                    prev: b"P",
                };
                write_record_body(&mut out, ev, "sess", &counts, &redactor, chain, &mut specs);
                assert_eq!(String::from_utf8(out).unwrap(), want, "{ev:?}");
            }
        }
    }

    /// Generated decision and filter records: the streamed body is byte for byte serde_json's
    /// own compact serialisation of the reference map ([`record_map`] plus the chain fields;
    /// serde_json's map iterates in key order), and the same as [`write_map_body`] on it.
    /// Unicode, escapes, big numbers, floats, nested params, secrets to redact at any depth.
    #[test]
    fn streamed_body_equals_the_reference_on_generated_records() {
        use crate::audit::canon::tests::Rng;
        use crate::check::decide::Verdict;
        use crate::check::Denial;
        use crate::policy::RuleId;
        use crate::profile::{ArgKind, ArgSpec};

        fn value(rng: &mut Rng, depth: usize) -> Value {
            const KEYS: &[&str] = &[
                "name",
                "arguments",
                "path",
                "content",
                "Content",
                "token",
                "API_KEY",
                "my_secret_value",
                "ssh_key",
                "progressToken",
                "password",
                "keys",
                "x_token",
                "Authorization",
                "zz_extra",
                "a\"b",
                "é",
                "",
                "_meta",
                "B",
                "a",
            ];
            match rng.below(if depth == 0 { 7 } else { 9 }) {
                0 => Value::Null,
                1 => Value::Bool(rng.below(2) == 0),
                2 => json!(rng.next() >> rng.below(64)),
                3 => json!(-((rng.next() >> (1 + rng.below(63))) as i64)),
                4 => json!([1.5, -0.0, 1e300, 2.5e-10, 0.1][rng.below(5)]),
                5 | 6 => Value::String(rng.text(12)),
                7 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth - 1)).collect()),
                _ => {
                    let mut m = Map::new();
                    for _ in 0..rng.below(6) {
                        let k = if rng.below(4) == 0 {
                            rng.text(6)
                        } else {
                            KEYS[rng.below(KEYS.len())].to_string()
                        };
                        m.insert(k, value(rng, depth - 1));
                    }
                    Value::Object(m)
                }
            }
        }
        fn opt_id(rng: &mut Rng) -> Option<Value> {
            match rng.below(5) {
                0 => None,
                1 => Some(Value::Null),
                2 => Some(json!(rng.next())),
                3 => Some(json!(-7)),
                _ => Some(Value::String(rng.text(8))),
            }
        }
        fn rule(rng: &mut Rng) -> RuleId {
            match rng.below(4) {
                0 => RuleId::ToolsAllowed,
                1 => RuleId::FilesystemMounts,
                2 => RuleId::Policy("require_approval[0]".into()),
                _ => RuleId::Policy(format!("deny[{}] ({})", rng.below(9), rng.text(5))),
            }
        }
        fn access(rng: &mut Rng) -> Access {
            let resource = match rng.below(4) {
                0 => Resource::None,
                1 => Resource::Path {
                    written: rng.text(8),
                    resolved: rng.text(8).into(),
                },
                2 => Resource::Url {
                    written: rng.text(8),
                    host: rng.text(4),
                    port: rng.next() as u16,
                },
                _ => Resource::Command {
                    written: rng.text(8),
                },
            };
            Access {
                capability: rng.text(5).into(),
                resource,
            }
        }
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
        let mut other = spec.clone();
        other.note = "a \"note\" é".into();
        let specs_pool = [Arc::new(spec), Arc::new(other)];
        let redactor = Redactor::new(["zz_extra", "*Meta*"]);
        let counts = Counts::default();
        let mut specs = SpecCache::default();
        let (mut pre_clock, mut pre_specs) = (Clock::default(), SpecCache::default());
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for i in 0..4000 {
            let record = if rng.below(4) == 0 {
                let mut f = FilterRecord::new(
                    [Direction::ClientToServer, Direction::ServerToClient][rng.below(2)],
                    rng.below(2) == 0,
                    rng.text(10),
                );
                if rng.below(3) == 0 {
                    f.action = crate::audit::record::FilterAction::Flagged;
                }
                f.id = opt_id(&mut rng);
                f.method = (rng.below(2) == 0).then(|| rng.text(6));
                Record::Filter(f)
            } else {
                let allow = rng.below(2) == 0;
                let denial = (!allow).then(|| Denial {
                    reason: rng.text(10),
                    rule: rule(&mut rng),
                    capability: None,
                    resource: (rng.below(2) == 0).then(|| rng.text(6)),
                    approval_required: rng.below(2) == 0,
                });
                let decision = Decision {
                    verdict: if allow { Verdict::Allow } else { Verdict::Deny },
                    method: rng.text(6).into(),
                    tool: (rng.below(3) > 0).then(|| rng.text(5).into()),
                    accesses: (0..rng.below(3) * rng.below(2))
                        .map(|_| access(&mut rng))
                        .collect(),
                    rule: rule(&mut rng),
                    denial,
                };
                let params = match rng.below(5) {
                    0 => None,
                    1 => Some(value(&mut rng, 0)),
                    _ => Some(value(&mut rng, 4)),
                };
                let tool_spec = match rng.below(4) {
                    0 => None,
                    1 => Some(Arc::new((*specs_pool[0]).clone())), // equal, not the same
                    n => Some(specs_pool[n - 2].clone()),
                };
                Record::Decision(Box::new(DecisionRecord {
                    tool_spec,
                    latency_us: rng.next() >> rng.below(64),
                    ..DecisionRecord::new(
                        [Direction::ClientToServer, Direction::ServerToClient][rng.below(2)],
                        opt_id(&mut rng),
                        params,
                        decision,
                    )
                }))
            };
            let at = UNIX_EPOCH + std::time::Duration::from_micros(rng.next() >> 12);
            let time = TimeText::of(at);
            let prev = hex::encode(rng.next().to_le_bytes()).repeat(4);
            let seq = rng.next() >> rng.below(64);
            let session = if i % 7 == 0 {
                rng.text(6)
            } else {
                "sess".to_string()
            };
            let chain = Chain {
                time: time.as_bytes(),
                seq,
                prev: prev.as_bytes(),
            };
            let mut streamed = Vec::new();
            write_record_body(
                &mut streamed,
                &record,
                &session,
                &counts,
                &redactor,
                chain,
                &mut specs,
            );
            let map = record_map(&record, &session, &counts, &redactor);
            let mut via_map = Vec::new();
            write_map_body(&mut via_map, &map, chain);
            let mut full = map;
            full.insert("time".into(), time.as_str().into());
            full.insert("seq".into(), seq.into());
            full.insert("prev".into(), prev.clone().into());
            let want = serde_json::to_string(&Value::Object(full)).unwrap();
            // A decision encoded ahead (the queue's `push`), its chain fields put in after:
            // the same bytes, after other records in the buffer too.
            if let Record::Decision(d) = &record {
                let d = DecisionRecord {
                    at,
                    ..(**d).clone()
                };
                let mut ahead = b"junk".to_vec();
                let pre = Precoded::encode(
                    &mut ahead,
                    &d,
                    &session,
                    &redactor,
                    &mut pre_clock,
                    &mut pre_specs,
                );
                assert_eq!(pre.allowed, d.decision.is_allowed());
                let mut finished = b"x".to_vec();
                pre.finish(&mut finished, &ahead[4..], seq, prev.as_bytes());
                assert_eq!(&finished[..1], b"x");
                assert_eq!(String::from_utf8_lossy(&finished[1..]), want, "{record:?}");
            }
            let streamed = String::from_utf8(streamed).unwrap();
            assert_eq!(streamed, want, "{record:?}");
            assert_eq!(String::from_utf8(via_map).unwrap(), want);
        }
    }

    /// The time cache gives what formatting each time from scratch gives, across seconds,
    /// days, leap days and years.
    #[test]
    fn clock_equals_formatting_from_scratch() {
        use crate::audit::canon::tests::Rng;
        let mut clock = Clock::default();
        let mut rng = Rng(99);
        let mut t = UNIX_EPOCH + Duration::new(951_868_790, 0);
        for _ in 0..20_000 {
            t += Duration::from_micros(rng.next() % [10, 1_000_000, 90_000_000_000][rng.below(3)]);
            let d = t.duration_since(UNIX_EPOCH).unwrap();
            let secs = d.as_secs();
            let (y, mo, da) = civil_from_days((secs / 86_400) as i64);
            let rem = secs % 86_400;
            let want = slow_text(y, mo, da, rem, d.subsec_micros());
            assert_eq!(clock.text(t).as_str(), want.as_str());
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
