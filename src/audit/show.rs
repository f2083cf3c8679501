//! `capjail audit show`: the records of a file as a table or as JSON lines, filtered.

use std::path::Path;

use serde_json::{Map, Value};

use super::canon::parse_line;
use super::verify::split_lines;
use super::AuditError;

/// Which records to show. `None` everywhere: all of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShowFilter {
    /// `allow` or `deny`: only decisions (and approvals) with that verdict.
    pub(crate) verdict: Option<String>,
    /// Only records about this tool.
    pub(crate) tool: Option<String>,
    /// Only records at or after this RFC 3339 UTC time or prefix (`2026-03-01`, `2026-03-01T12`).
    pub(crate) since: Option<String>,
}

impl ShowFilter {
    pub(crate) fn matches(&self, r: &Map<String, Value>) -> bool {
        let field = |k: &str| r.get(k).and_then(Value::as_str);
        wanted(self.verdict.as_deref(), field("verdict"))
            && wanted(self.tool.as_deref(), field("tool"))
            && self
                .since
                .as_deref()
                .is_none_or(|s| field("time").is_some_and(|t| t >= s))
    }
}

/// No filter, or the field has the wanted value.
fn wanted(filter: Option<&str>, value: Option<&str>) -> bool {
    filter.is_none_or(|want| value == Some(want))
}

/// Read `path`'s whole rotated set, oldest first, and render it (`json`: the matching lines as
/// they are in the files).
pub(crate) fn show(path: &Path, filter: &ShowFilter, json: bool) -> Result<String, AuditError> {
    let data = super::rotated_read::read_set(path)?;
    Ok(show_bytes(&data, filter, json))
}

pub(crate) fn show_bytes(data: &[u8], filter: &ShowFilter, json: bool) -> String {
    let mut rows: Vec<[String; 8]> = Vec::new();
    let mut out = String::new();
    for line in split_lines(data) {
        let Ok(p) = parse_line(line.bytes) else {
            continue;
        };
        if !filter.matches(&p.record) {
            continue;
        }
        if json {
            out.push_str(&String::from_utf8_lossy(line.bytes));
            out.push('\n');
        } else {
            rows.push(row(&p.record));
        }
    }
    if json {
        return out;
    }
    table(
        &[
            "TIME", "SEQ", "VERDICT", "METHOD", "TOOL", "RESOURCE", "RULE", "REASON",
        ],
        &rows,
    )
}

fn row(r: &Map<String, Value>) -> [String; 8] {
    let s = |k: &str| match r.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    let kind = s("kind");
    let verdict = match kind.as_str() {
        "decision" | "approval" => s("verdict"),
        "session_start" => "start".into(),
        "session_end" => "end".into(),
        "response_filter" => s("action"),
        "tool_trust" => s("event"),
        other => other.to_string(),
    };
    let reason = match kind.as_str() {
        "session_start" => format!(
            "session {} policy {} ({}) argv {}",
            s("session"),
            r.get("policy")
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .unwrap_or(""),
            s("mode"),
            r.get("argv").map(Value::to_string).unwrap_or_default()
        ),
        "session_end" => {
            let counts = format!(
                "{} allowed, {} denied, {} filtered",
                s("allowed"),
                s("denied"),
                s("filtered")
            );
            let nothing = ["allowed", "denied", "filtered"]
                .iter()
                .all(|k| r.get(*k).and_then(Value::as_u64) == Some(0));
            match (s("exit_code").as_str(), s("signal").as_str()) {
                ("127", _) if nothing => "the server did not start: command not found (exit 127)".into(),
                ("126", _) if nothing => "the server did not start: the command cannot be executed (exit 126)".into(),
                (code, "") if nothing && code != "0" => format!(
                    "the server exited with status {code} before any request: it failed to start (its stderr says why; under --mode kernel/full see `capjail policy explain`)"
                ),
                (code, "") => format!("exit {code}: {counts}"),
                (_, sig) => format!("ended by signal {sig}: {counts}"),
            }
        }
        // Who answered what, how fast, and the question as the person read it.
        "approval" => format!(
            "approval: {} answered {:?} after {} ms; asked: {}",
            s("by"),
            s("answer"),
            s("elapsed_ms"),
            s("question").replace('\n', " ")
        ),
        _ => s("reason"),
    };
    [
        s("time"),
        s("seq"),
        verdict,
        s("method"),
        s("tool"),
        resource(r),
        s("rule"),
        reason,
    ]
}

/// The first resource of a decision, `+N` for more.
fn resource(r: &Map<String, Value>) -> String {
    let Some(list) = r.get("accesses").and_then(Value::as_array) else {
        return String::new();
    };
    if list.is_empty() {
        // A refusal before any access was built (a `..` path): the resource as written.
        return r
            .get("resource")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
    }
    let with: Vec<&str> = list
        .iter()
        .filter_map(|a| a.get("resource")?.get("written")?.as_str())
        .collect();
    match with.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    }
}

fn table(header: &[&str; 8], rows: &[[String; 8]]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}
