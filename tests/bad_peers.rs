//! Bad peers: a server (tests/fixtures/bad_server.py, hand-written, no SDK) that writes a
//! non-JSON line, a truncated line, a response with an id nobody asked for, JSON that is not
//! JSON-RPC, a partial message glued to the next one, and a partial message before it exits.
//! capjail must keep the client's stream valid (every line it writes is one JSON-RPC message;
//! the garbage is dropped, never forwarded), log each drop on stderr, record it in the audit
//! log, and keep serving.

use std::path::Path;
use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};

fn bad_server(log: &Path) -> Vec<String> {
    vec![
        "python3".into(),
        fixture("bad_server.py").display().to_string(),
        log.display().to_string(),
    ]
}

/// Every line capjail wrote to the client is a JSON-RPC 2.0 message (object, or an array of
/// objects), and no line carries the garbage.
#[track_caller]
fn assert_stream_valid(s: &Session) {
    let text = s.received_text();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the client's stream ends in a partial line:\n{text}"
    );
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("capjail wrote a line that is not JSON ({e}): {line:?}"));
        let ok = |m: &Value| m.is_object() && m["jsonrpc"] == "2.0";
        let valid = match &v {
            Value::Array(a) => !a.is_empty() && a.iter().all(ok),
            m => ok(m),
        };
        assert!(valid, "capjail wrote a line that is not JSON-RPC: {line}");
        for garbage in ["987654321", "not JSON at all", "\"hello\""] {
            assert!(
                !line.contains(garbage),
                "garbage reached the client: {line}"
            );
        }
    }
}

fn audit_drops(audit: &Path) -> Vec<Value> {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "response_filter")
        .collect()
}

fn start(lab: &Lab, audit: &Path) -> Session {
    let policy = lab.ws_rw_policy();
    let mut s = SessionBuilder::capjail(
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
        ],
        bad_server(&lab.path("logs/bad.log")),
    )
    .spawn();
    s.initialize();
    let r = s.request("tools/list", json!({}));
    assert_eq!(r["result"]["tools"][0]["name"], "misbehave", "{r}");
    s
}

#[test]
fn garbage_from_the_server_is_dropped_logged_audited_and_the_session_goes_on() {
    let lab = Lab::new();
    let audit = lab.path("logs/audit.jsonl");
    let mut s = start(&lab, &audit);
    for kind in ["non_json", "partial", "unknown_id", "bad_json"] {
        let r = s.call_tool("misbehave", json!({"kind": kind}));
        // The good answer that follows the garbage still arrives, with its own id.
        assert_tool_ok(&r, &format!("answered after {kind}"));
        s.assert_in_sync();
    }
    s.finish();
    assert_stream_valid(&s);
    let err = s.stderr_text();
    for needle in ["not a JSON-RPC message", "which no forwarded request has"] {
        assert!(
            err.contains(needle),
            "capjail did not log {needle:?}:\n{err}"
        );
    }
    let drops = audit_drops(&audit);
    // non_json 1, partial 1, unknown_id 1, bad_json 3.
    assert_eq!(
        drops.len(),
        6,
        "audit records of dropped messages: {drops:?}"
    );
    assert!(drops.iter().all(|d| d["action"] == "dropped"), "{drops:?}");
    assert!(
        drops.iter().any(|d| d.to_string().contains("987654321")),
        "the audit does not name the unknown id: {drops:?}"
    );
    // The chain verifies.
    let v = capjail(&["audit", "verify", audit.to_str().unwrap()]);
    assert_eq!(v.code, Some(0), "{v:?}");
}

#[test]
fn a_partial_message_glued_to_the_answer_loses_the_answer_not_the_stream() {
    let lab = Lab::new();
    let audit = lab.path("logs/audit.jsonl");
    let mut s = start(&lab, &audit);
    let id = json!(s.id());
    s.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"misbehave","arguments":{"kind":"glued"}}}));
    // The combined line is garbage: dropped whole. Nothing answers this id (capjail cannot know
    // which request the garbage belonged to), but the next request is answered.
    s.assert_in_sync();
    let r = s.call_tool("misbehave", json!({"kind": "non_json"}));
    assert_tool_ok(&r, "answered after non_json");
    s.finish();
    assert_stream_valid(&s);
    assert!(
        !s.received_text().contains(&format!("\"id\":{id}")),
        "a line for the glued id reached the client:\n{}",
        s.received_text()
    );
    assert!(s.stderr_text().contains("not a JSON-RPC message"));
}

#[test]
fn a_partial_message_before_the_server_exits_is_not_forwarded() {
    let lab = Lab::new();
    let audit = lab.path("logs/audit.jsonl");
    let mut s = start(&lab, &audit);
    let id = json!(s.id());
    s.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"misbehave","arguments":{"kind":"partial_eof"}}}));
    // The server exits; capjail ends the session (bounded) without writing the partial bytes.
    let mut waited = Duration::ZERO;
    while s.next_line(Duration::from_millis(100)).is_some() && waited < Duration::from_secs(10) {
        waited += Duration::from_millis(100);
    }
    s.finish();
    assert_stream_valid(&s);
    assert!(
        !s.received_text().contains("\"con"),
        "{}",
        s.received_text()
    );
    let drops = audit_drops(&audit);
    assert_eq!(drops.len(), 1, "{drops:?}");
}
