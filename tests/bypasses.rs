//! Bypasses that string checks miss (DESIGN.md), against the real filesystem and fetch servers and
//! the lab's naive server (tests/fixtures/naive_server.py) where a misbehaving server is needed.
//! Judged by effect: the secret token absent from everything the client received, the file not
//! written, the canary not hit, the line not reaching the server; plus the exact error for the id.
//! Baselines show each probe is real: the same attack succeeds without capjail.

use std::path::PathBuf;

use crate::support::*;
use serde_json::{json, Value};

fn ws_rw(lab: &Lab) -> Session {
    let pol = lab.ws_rw_policy();
    let mut s = SessionBuilder::capjail(
        &["--policy", pol.to_str().unwrap()],
        fs_server(&[&lab.root]),
    )
    .cwd(&lab.root)
    .spawn();
    s.initialize();
    s
}

fn ws_ro(lab: &Lab) -> Session {
    let pol = lab.ws_ro_policy();
    let mut s = SessionBuilder::capjail(
        &["--policy", pol.to_str().unwrap()],
        fs_server(&[&lab.root]),
    )
    .cwd(&lab.root)
    .spawn();
    s.initialize();
    s
}

fn direct_fs(lab: &Lab) -> Session {
    let mut s = SessionBuilder::direct(fs_server(&[&lab.root]))
        .cwd(&lab.root)
        .spawn();
    s.initialize();
    s
}

fn call(s: &mut Session, name: &str, args: Value) -> (Value, Value) {
    let id = json!(s.id());
    s.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":args}}));
    let r = s.wait_id(&id);
    (id, r)
}

/// A legit read right after: the stream is still in sync and the workspace still works.
fn legit_read(lab: &Lab, s: &mut Session) {
    let (_, r) = call(s, "read_text_file", json!({"path": lab.p("ws/notes.txt")}));
    assert_tool_ok(&r, &lab.legit);
}

fn assert_denied_read(lab: &Lab, name: &str, args: Value) {
    let mut s = ws_rw(lab);
    let (id, r) = call(&mut s, name, args.clone());
    assert_policy_error(&r, &id);
    legit_read(lab, &mut s);
    s.finish();
    lab.assert_no_leak(&s);
}

// ----- prefix confusion ------------------------------------------------------------------------

#[test]
fn prefix_sibling_read_denied() {
    let lab = Lab::new();
    assert_denied_read(
        &lab,
        "read_text_file",
        json!({"path": lab.p("ws_evil/canary.txt")}),
    );
    assert_denied_read(&lab, "list_directory", json!({"path": lab.p("ws_evil")}));
}

#[test]
fn prefix_sibling_write_denied() {
    let lab = Lab::new();
    let mut s = ws_rw(&lab);
    let (id, r) = call(
        &mut s,
        "write_file",
        json!({"path": lab.p("ws_evil/planted.txt"), "content": "planted"}),
    );
    assert_policy_error(&r, &id);
    legit_read(&lab, &mut s);
    assert!(
        !lab.exists("ws_evil/planted.txt"),
        "wrote into the prefix-sharing sibling"
    );
}

// ----- symlinks ----------------------------------------------------------------------------------

#[test]
fn symlink_reads_denied() {
    let lab = Lab::new();
    for rel in [
        "ws/link_file",
        "ws/link_dir/id_rsa",
        "ws/chain/id_rsa",
        "ws/link_dir/.aws/credentials",
    ] {
        assert_denied_read(&lab, "read_text_file", json!({"path": lab.p(rel)}));
    }
    assert_denied_read(
        &lab,
        "list_directory",
        json!({"path": lab.p("ws/link_dir")}),
    );
    assert_denied_read(
        &lab,
        "read_media_file",
        json!({"path": lab.p("ws/link_file")}),
    );
}

#[test]
fn symlink_baseline_server_follows_links() {
    let lab = Lab::new();
    let mut s = direct_fs(&lab);
    let (_, r) = call(
        &mut s,
        "read_text_file",
        json!({"path": lab.p("ws/link_dir/id_rsa")}),
    );
    assert_tool_ok(&r, &lab.secret);
    lab.assert_leaked(&s);
}

#[test]
fn symlink_write_into_linked_dir_denied() {
    let lab = Lab::new();
    let mut s = ws_rw(&lab);
    let (id, r) = call(
        &mut s,
        "write_file",
        json!({"path": lab.p("ws/link_dir/planted.txt"), "content": "planted"}),
    );
    assert_policy_error(&r, &id);
    legit_read(&lab, &mut s);
    assert!(
        !lab.exists("secret/planted.txt"),
        "wrote through the directory symlink"
    );
}

#[test]
fn symlink_baseline_write_into_linked_dir_lands() {
    let lab = Lab::new();
    let mut s = direct_fs(&lab);
    let (_, r) = call(
        &mut s,
        "write_file",
        json!({"path": lab.p("ws/link_dir/planted.txt"), "content": "planted"}),
    );
    assert_tool_ok(&r, "");
    assert!(lab.exists("secret/planted.txt"));
}

#[test]
fn symlink_write_through_dangling_link_denied_real_server() {
    let lab = Lab::new();
    let mut s = ws_rw(&lab);
    let (id, r) = call(
        &mut s,
        "write_file",
        json!({"path": lab.p("ws/new_link"), "content": "through the link"}),
    );
    assert_policy_error(&r, &id);
    legit_read(&lab, &mut s);
    assert!(
        !lab.exists("secret/newfile"),
        "wrote through the dangling symlink"
    );
}

fn naive(lab: &Lab, policy: &std::path::Path) -> (Session, PathBuf) {
    let log = lab.path("logs/naive.log");
    let profile = fixture("naive_profile.yaml");
    let mut s = SessionBuilder::capjail(
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--profile",
            profile.to_str().unwrap(),
        ],
        naive_server(&lab.root, &log),
    )
    .spawn();
    s.initialize();
    (s, log)
}

fn naive_direct(lab: &Lab) -> (Session, PathBuf) {
    let log = lab.path("logs/naive.log");
    let mut s = SessionBuilder::direct(naive_server(&lab.root, &log)).spawn();
    s.initialize();
    (s, log)
}

#[test]
fn symlink_write_through_dangling_link_denied_naive_server() {
    let lab = Lab::new();
    let (mut s, log) = naive(&lab, &lab.ws_rw_policy());
    let mk = marker();
    let (id, r) = call(
        &mut s,
        "write_file",
        json!({"path": lab.p("ws/new_link"), "content": format!("through {mk}")}),
    );
    assert_policy_error(&r, &id);
    legit_read(&lab, &mut s);
    assert!(
        !lab.exists("secret/newfile"),
        "wrote through the dangling symlink"
    );
    assert!(!reached(&log).contains(&mk), "the write reached the server");
}

#[test]
fn symlink_baseline_naive_server_writes_through_dangling_link() {
    let lab = Lab::new();
    let (mut s, _) = naive_direct(&lab);
    let (_, r) = call(
        &mut s,
        "write_file",
        json!({"path": lab.p("ws/new_link"), "content": "x"}),
    );
    assert_tool_ok(&r, "");
    assert!(lab.exists("secret/newfile"));
}

// ----- argument shapes ---------------------------------------------------------------------------

#[test]
fn read_multiple_files_secret_second_denied() {
    let lab = Lab::new();
    assert_denied_read(
        &lab,
        "read_multiple_files",
        json!({"paths": [lab.p("ws/notes.txt"), lab.p("secret/id_rsa")]}),
    );
}

#[test]
fn read_multiple_files_baseline_leaks() {
    let lab = Lab::new();
    let mut s = direct_fs(&lab);
    call(
        &mut s,
        "read_multiple_files",
        json!({"paths": [lab.p("ws/notes.txt"), lab.p("secret/id_rsa")]}),
    );
    lab.assert_leaked(&s);
}

#[test]
fn move_file_source_outside_denied() {
    let lab = Lab::new();
    let mut s = ws_rw(&lab);
    let (id, r) = call(
        &mut s,
        "move_file",
        json!({"source": lab.p("secret/id_rsa"), "destination": lab.p("ws/stolen.txt")}),
    );
    assert_policy_error(&r, &id);
    legit_read(&lab, &mut s);
    assert!(lab.exists("secret/id_rsa"), "the secret was moved away");
    assert!(
        !lab.exists("ws/stolen.txt"),
        "the secret was moved into the workspace"
    );
}

#[test]
fn move_file_baseline_moves() {
    let lab = Lab::new();
    let mut s = direct_fs(&lab);
    let (_, r) = call(
        &mut s,
        "move_file",
        json!({"source": lab.p("secret/id_rsa"), "destination": lab.p("ws/stolen.txt")}),
    );
    assert_tool_ok(&r, "");
    assert!(lab.exists("ws/stolen.txt"));
}

#[test]
fn traversal_variants_denied() {
    let lab = Lab::new();
    for p in [
        format!("{}/../secret/id_rsa", lab.ws_s()),
        format!("{}/sub/../../secret/id_rsa", lab.ws_s()),
        format!("{}//..//secret//id_rsa", lab.ws_s()),
        "ws/../secret/id_rsa".to_string(),
        "secret/id_rsa".to_string(),
    ] {
        assert_denied_read(&lab, "read_text_file", json!({"path": p}));
    }
}

#[test]
fn decoy_key_denied() {
    let lab = Lab::new();
    assert_denied_read(
        &lab,
        "read_text_file",
        json!({"file": lab.p("ws/notes.txt"), "path": lab.p("secret/id_rsa")}),
    );
}

// ----- parser differentials ----------------------------------------------------------------------

/// Send a raw line; expect an error (of one of `codes`) for `id`, then a legit read.
fn raw_refused(lab: &Lab, s: &mut Session, line: &[u8], id: &Value, codes: &[i64]) -> Value {
    s.send_raw(line);
    let r = s.wait_id(id);
    let code = r.pointer("/error/code").and_then(Value::as_i64);
    assert!(
        code.is_some_and(|c| codes.contains(&c)),
        "expected an error in {codes:?} for id {id}, got {r}"
    );
    legit_read(lab, s);
    r
}

#[test]
fn duplicate_name_refused() {
    let lab = Lab::new();
    let mut s = ws_ro(&lab);
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":"dup-name","method":"tools/call","params":{{"name":"read_text_file","arguments":{{"path":"{}","content":"pwned"}},"name":"write_file"}}}}"#,
        lab.p("ws/pwned.txt")
    );
    let r = raw_refused(&lab, &mut s, line.as_bytes(), &json!("dup-name"), &[-32600]);
    assert_eq!(r["error"]["data"]["rule"], "protocol.strict_json", "{r}");
    s.finish();
    assert!(!lab.exists("ws/pwned.txt"), "duplicate name wrote a file");
}

#[test]
fn duplicate_name_baseline_server_takes_the_last() {
    let lab = Lab::new();
    let mut s = direct_fs(&lab);
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":"dup-name","method":"tools/call","params":{{"name":"read_text_file","arguments":{{"path":"{}","content":"pwned"}},"name":"write_file"}}}}"#,
        lab.p("ws/pwned.txt")
    );
    s.send_raw(line.as_bytes());
    s.wait_id(&json!("dup-name"));
    assert!(
        lab.exists("ws/pwned.txt"),
        "the server should have run write_file (last key wins)"
    );
}

#[test]
fn duplicate_path_refused() {
    let lab = Lab::new();
    let mut s = ws_rw(&lab);
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":"dup-path","method":"tools/call","params":{{"name":"read_text_file","arguments":{{"path":"{}","path":"{}"}}}}}}"#,
        lab.p("ws/notes.txt"),
        lab.p("secret/id_rsa")
    );
    raw_refused(&lab, &mut s, line.as_bytes(), &json!("dup-path"), &[-32600]);
    s.finish();
    lab.assert_no_leak(&s);
}

#[test]
fn duplicate_method_refused() {
    let lab = Lab::new();
    let mut s = ws_rw(&lab);
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":"dup-method","method":"ping","method":"tools/call","params":{{"name":"read_text_file","arguments":{{"path":"{}"}}}}}}"#,
        lab.p("secret/id_rsa")
    );
    raw_refused(
        &lab,
        &mut s,
        line.as_bytes(),
        &json!("dup-method"),
        &[-32600],
    );
    s.finish();
    lab.assert_no_leak(&s);
}

#[test]
fn shadow_name_key_does_not_hide_the_tool() {
    let lab = Lab::new();
    let mut s = ws_ro(&lab);
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":"shadow","method":"tools/call","params":{{"name":"write_file","Name":"read_text_file","arguments":{{"path":"{}","content":"pwned"}}}}}}"#,
        lab.p("ws/pwned.txt")
    );
    s.send_raw(line.as_bytes());
    let r = s.wait_id(&json!("shadow"));
    assert!(r.get("error").is_some(), "expected a refusal: {r}");
    legit_read(&lab, &mut s);
    s.finish();
    assert!(
        !lab.exists("ws/pwned.txt"),
        "the shadow key let write_file through"
    );
}

#[test]
fn unicode_escaped_tool_name_denied() {
    let lab = Lab::new();
    let mut s = ws_ro(&lab);
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":"esc","method":"tools/call","params":{{"name":"write\u005ffile","arguments":{{"path":"{}","content":"pwned"}}}}}}"#,
        lab.p("ws/pwned.txt")
    );
    s.send_raw(line.as_bytes());
    let r = s.wait_id(&json!("esc"));
    assert_policy_error(&r, &json!("esc"));
    legit_read(&lab, &mut s);
    assert!(!lab.exists("ws/pwned.txt"));
}

#[test]
fn invalid_utf8_refused_and_stream_stays_in_sync() {
    let lab = Lab::new();
    let mut s = ws_rw(&lab);
    let mut line = format!(
        r#"{{"jsonrpc":"2.0","id":"utf8","method":"tools/call","params":{{"name":"read_text_file","arguments":{{"path":"{}"}},"_meta":{{"x":""#,
        lab.p("secret/id_rsa")
    )
    .into_bytes();
    line.extend_from_slice(&[0xff, 0xfe]);
    line.extend_from_slice(br#""}}}"#);
    s.send_raw(&line);
    let r = s.wait_line(RESPONSE_TIMEOUT, "error for the invalid UTF-8 line", |v| {
        v.get("error").is_some()
    });
    assert_eq!(
        r.pointer("/error/code"),
        Some(&json!(-32700)),
        "invalid UTF-8 must be a parse error: {r}"
    );
    assert_eq!(
        r.get("id"),
        Some(&Value::Null),
        "a parse error has id null: {r}"
    );
    assert_eq!(r["error"]["data"]["rule"], "protocol.invalid_json", "{r}");
    legit_read(&lab, &mut s);
    s.finish();
    lab.assert_no_leak(&s);
}

#[test]
fn lone_surrogate_refused_and_stream_stays_in_sync() {
    let lab = Lab::new();
    let mut s = ws_rw(&lab);
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":"surr","method":"tools/call","params":{{"name":"read_text_file","arguments":{{"path":"{}\ud800"}}}}}}"#,
        lab.p("secret/id_rsa")
    );
    s.send_raw(line.as_bytes());
    let r = s.wait_line(RESPONSE_TIMEOUT, "error for the lone surrogate", |v| {
        v.get("error").is_some()
    });
    let code = r.pointer("/error/code").and_then(Value::as_i64).unwrap();
    assert!(
        [-32700, -32600, -32001].contains(&code),
        "unexpected error: {r}"
    );
    legit_read(&lab, &mut s);
    s.finish();
    lab.assert_no_leak(&s);
}

#[test]
fn overlong_line_refused_and_stream_stays_in_sync() {
    let lab = Lab::new();
    let mut s = ws_rw(&lab);
    let pad = "A".repeat(17 * 1024 * 1024); // over the default 16 MiB limit
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":"long","method":"tools/call","params":{{"name":"read_text_file","arguments":{{"path":"{}"}},"_meta":{{"pad":"{pad}"}}}}}}"#,
        lab.p("secret/id_rsa")
    );
    s.send_raw(line.as_bytes());
    let r = s.wait_line(RESPONSE_TIMEOUT, "error for the over-long line", |v| {
        v.get("error").is_some()
    });
    assert_eq!(
        r.pointer("/error/code"),
        Some(&json!(-32600)),
        "an over-long line is an invalid request: {r}"
    );
    assert_eq!(r["error"]["data"]["rule"], "protocol.too_long", "{r}");
    legit_read(&lab, &mut s);
    s.finish();
    lab.assert_no_leak(&s);
}

#[test]
fn deep_nesting_refused_and_stream_stays_in_sync() {
    let lab = Lab::new();
    let mut s = ws_rw(&lab);
    let nest = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{{"name":"read_text_file","arguments":{{"path":"{}"}},"_meta":{{"x":{nest}}}}}}}"#,
        lab.p("secret/id_rsa")
    );
    s.send_raw(line.as_bytes());
    let r = s.wait_line(RESPONSE_TIMEOUT, "error for the deeply nested line", |v| {
        v.get("error").is_some()
    });
    assert_eq!(r["error"]["data"]["rule"], "protocol.strict_json", "{r}");
    legit_read(&lab, &mut s);
    s.finish();
    lab.assert_no_leak(&s);
}

#[test]
fn garbage_line_is_a_parse_error_with_null_id() {
    let lab = Lab::new();
    let mut s = ws_rw(&lab);
    s.send_raw(b"this is not json");
    let r = s.wait_line(RESPONSE_TIMEOUT, "parse error", |v| {
        v.get("error").is_some()
    });
    assert_error_code(&r, &Value::Null, -32700);
    assert_eq!(r["error"]["data"]["rule"], "protocol.invalid_json", "{r}");
    legit_read(&lab, &mut s);
}

#[test]
fn every_protocol_refusal_names_its_own_rule() {
    let lab = Lab::new();
    let mut s = ws_rw(&lab);
    let secret = lab.p("secret/id_rsa");
    let read = |id: &str| json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"read_text_file","arguments":{"path":secret}}});
    // Not JSON-RPC 2.0 (no `jsonrpc`), a reserved id, an empty batch.
    let mut no_version = read("nov");
    no_version.as_object_mut().unwrap().remove("jsonrpc");
    for (line, id, code, rule) in [
        (
            no_version.to_string(),
            json!("nov"),
            -32600,
            "protocol.invalid_request",
        ),
        (
            read("capjail:0:9").to_string(),
            json!("capjail:0:9"),
            -32600,
            "protocol.reserved_id",
        ),
        (
            "[]".to_string(),
            Value::Null,
            -32600,
            "protocol.empty_batch",
        ),
    ] {
        s.send_raw(line.as_bytes());
        let r = s.wait_line(RESPONSE_TIMEOUT, rule, |v| v.get("error").is_some());
        assert_error_code(&r, &id, code);
        assert_eq!(r["error"]["data"]["rule"], rule, "{r}");
    }
    legit_read(&lab, &mut s);
    s.finish();
    lab.assert_no_leak(&s);
}

/// Every message refused before any decision leaves a dropped record naming its rule in the
/// audit log, written before its error (the log once held none of them: a client probing the
/// parser with duplicate keys or oversized lines left no trace).
#[test]
fn protocol_refusals_are_in_the_audit_log() {
    let lab = Lab::new();
    let ws_rw = std::fs::read_to_string(lab.ws_rw_policy()).unwrap();
    let pol = lab.policy(
        "early",
        &format!("{ws_rw}proxy: {{max_line_bytes: 4096}}\n"),
    );
    let audit = lab.path("audit.jsonl");
    let mut s = SessionBuilder::capjail(
        &[
            "--policy",
            pol.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
        ],
        fs_server(&[&lab.root]),
    )
    .cwd(&lab.root)
    .spawn();
    s.initialize();
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":"long","method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(5000)
    );
    let lines = [
        ("this is not json".to_string(), "protocol.invalid_json"),
        (
            r#"{"jsonrpc":"2.0","id":"dup","id":"dup2","method":"ping"}"#.to_string(),
            "protocol.strict_json",
        ),
        (
            r#"{"id":"nov","method":"ping"}"#.to_string(),
            "protocol.invalid_request",
        ),
        (
            r#"{"jsonrpc":"2.0","id":"capjail:0:9","method":"ping"}"#.to_string(),
            "protocol.reserved_id",
        ),
        ("[]".to_string(), "protocol.empty_batch"),
        (long, "protocol.too_long"),
    ];
    for (line, rule) in &lines {
        s.send_raw(line.as_bytes());
        let r = s.wait_line(RESPONSE_TIMEOUT, rule, |v| v.get("error").is_some());
        assert_eq!(r["error"]["data"]["rule"], *rule, "{r}");
    }
    legit_read(&lab, &mut s);
    s.finish();
    let records: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (_, rule) in &lines {
        assert!(
            records.iter().any(|r| r["action"] == "dropped"
                && r["reason"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(&format!("(rule {rule})")))),
            "no dropped record names {rule}"
        );
    }
    // The chain still verifies.
    let v = capjail(&["audit", "verify", audit.to_str().unwrap()]);
    assert!(v.status.success(), "{v:?}");
}

// ----- batches -----------------------------------------------------------------------------------

fn batch_line(lab: &Lab, mk: &str) -> String {
    serde_json::to_string(&json!([
        {"jsonrpc":"2.0","id":format!("ok-{mk}"),"method":"tools/call","params":{"name":"read_text_file","arguments":{"path":lab.p("ws/notes.txt")}}},
        {"jsonrpc":"2.0","id":format!("bad-{mk}"),"method":"tools/call","params":{"name":"read_text_file","arguments":{"path":lab.p("secret/id_rsa")}}},
        {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":mk,"progress":1}}
    ]))
    .unwrap()
}

#[test]
fn batch_hiding_a_blocked_call_refused_whole() {
    let lab = Lab::new();
    let (mut s, log) = naive(&lab, &lab.ws_rw_policy());
    let mk = marker();
    s.send_raw(batch_line(&lab, &mk).as_bytes());
    let line = s
        .next_line(RESPONSE_TIMEOUT)
        .unwrap_or_else(|| panic!("no answer to the batch\nstderr:\n{}", s.stderr_text()));
    let v: Value = serde_json::from_slice(&line)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&line)));
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("a refused batch is answered with an array: {v}"));
    assert_eq!(
        arr.len(),
        2,
        "one error per request element (none for the notification): {v}"
    );
    for e in arr {
        assert!(e.get("error").is_some(), "every element refused: {v}");
    }
    let ids: Vec<&Value> = arr.iter().map(|e| &e["id"]).collect();
    assert!(
        ids.contains(&&json!(format!("ok-{mk}"))) && ids.contains(&&json!(format!("bad-{mk}"))),
        "{v}"
    );
    let bad = arr
        .iter()
        .find(|e| e["id"] == json!(format!("bad-{mk}")))
        .unwrap();
    assert_policy_error(bad, &json!(format!("bad-{mk}")));
    legit_read(&lab, &mut s);
    s.finish();
    lab.assert_no_leak(&s);
    assert!(
        !reached(&log).contains(&mk),
        "the batch reached the server:\n{}",
        reached(&log)
    );
}

#[test]
fn batch_baseline_naive_server_answers_batches() {
    let lab = Lab::new();
    let (mut s, _) = naive_direct(&lab);
    let mk = marker();
    s.send_raw(batch_line(&lab, &mk).as_bytes());
    s.next_line(RESPONSE_TIMEOUT).expect("batch answer");
    lab.assert_leaked(&s);
}

#[test]
fn exec_tool_denied_naive_server() {
    let lab = Lab::new();
    let (mut s, log) = naive(&lab, &lab.ws_rw_policy());
    let mk = marker();
    let (id, r) = call(
        &mut s,
        "run_command",
        json!({"command": format!("cat {} # {mk}", lab.p("secret/id_rsa"))}),
    );
    assert_policy_error(&r, &id);
    legit_read(&lab, &mut s);
    s.finish();
    lab.assert_no_leak(&s);
    assert!(!reached(&log).contains(&mk));
}

#[test]
fn naive_server_encodings_denied() {
    let lab = Lab::new();
    let (mut s, _) = naive(&lab, &lab.ws_rw_policy());
    for args in [
        json!({"path": format!("file://{}", lab.p("secret/id_rsa"))}),
        json!({"path": format!("{}/%2e%2e/secret/id_rsa", lab.ws_s())}),
    ] {
        let (id, r) = call(&mut s, "read_text_file", args);
        assert_policy_error(&r, &id);
    }
    let (id, r) = call(
        &mut s,
        "Write_File",
        json!({"path": lab.p("ws_evil/x.txt"), "content": "x"}),
    );
    assert!(
        r.get("error").is_some(),
        "case variant tool name: {r} (id {id})"
    );
    legit_read(&lab, &mut s);
    s.finish();
    lab.assert_no_leak(&s);
    assert!(!lab.exists("ws_evil/x.txt"));
}

// ----- encoded loopback hosts (fetch, inside a network namespace) --------------------------------

fn loopback_urls(mk: &str) -> Vec<(String, String)> {
    let p = NETNS_CANARY_PORT;
    [
        ("127.0.0.1", format!("http://127.0.0.1:{p}/ssrf-{mk}-lit")),
        ("localhost", format!("http://localhost:{p}/ssrf-{mk}-name")),
        ("127.1", format!("http://127.1:{p}/ssrf-{mk}-short")),
        ("2130706433", format!("http://2130706433:{p}/ssrf-{mk}-dec")),
        ("0x7f000001", format!("http://0x7f000001:{p}/ssrf-{mk}-hex")),
        ("[::1]", format!("http://[::1]:{p}/ssrf-{mk}-v6")),
        (
            "[::ffff:127.0.0.1]",
            format!("http://[::ffff:127.0.0.1]:{p}/ssrf-{mk}-mapped"),
        ),
        (
            "userinfo",
            format!("http://{ALLOWED_HOST}@127.0.0.1:{p}/ssrf-{mk}-userinfo"),
        ),
        (
            "trailing dot",
            format!("http://127.0.0.1.:{p}/ssrf-{mk}-dot"),
        ),
        (
            "scheme case",
            format!("HTTP://127.0.0.1:{p}/ssrf-{mk}-case"),
        ),
        (
            "wildcard dns",
            format!("http://127.0.0.1.nip.io:{p}/ssrf-{mk}-nip"),
        ),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect()
}

fn fetch_iso(lab: &Lab) -> Isolation {
    let mut iso = Isolation::new(&lab.path("logs/iso"));
    iso.extra_hosts
        .push(("127.0.0.1.nip.io".into(), "127.0.0.1".into()));
    iso
}

#[test]
fn encoded_loopback_hosts_denied_under_host_allowlist() {
    let lab = Lab::new();
    let iso = fetch_iso(&lab);
    let log = lab.path("logs/fetch-relay.log");
    let pol = lab.net_allow_policy();
    let mut s = SessionBuilder::capjail(
        &["--policy", pol.to_str().unwrap()],
        relayed(&log, fetch_server()),
    )
    .isolated(&iso)
    .spawn();
    s.initialize();
    let mk = marker();
    let mut failures = Vec::new();
    for (what, url) in loopback_urls(&mk) {
        let (id, r) = call(&mut s, "fetch", json!({"url": url, "max_length": 2000}));
        if r.pointer("/error/code") != Some(&json!(-32001)) || r["id"] != id {
            failures.push(format!("{what}: not refused with -32001: {r}"));
        }
    }
    s.assert_in_sync();
    s.finish();
    let hits = iso.hits_with(&mk);
    assert!(
        hits.is_empty() && failures.is_empty(),
        "canary hits: {hits:?}\nfailures:\n{}",
        failures.join("\n")
    );
    assert!(
        !reached(&log).contains(&mk),
        "a blocked fetch reached the server"
    );
}

#[test]
fn encoded_loopback_baseline_reaches_the_canary() {
    let lab = Lab::new();
    let iso = fetch_iso(&lab);
    let mut s = SessionBuilder::direct(fetch_server())
        .isolated(&iso)
        .spawn();
    s.initialize();
    let mk = marker();
    let mut reached_canary = Vec::new();
    for (what, url) in loopback_urls(&mk) {
        let tag = url.rsplit('-').next().unwrap().to_string();
        call(&mut s, "fetch", json!({"url": url, "max_length": 2000}));
        if !iso.hits_with(&format!("{mk}-{tag}")).is_empty() {
            reached_canary.push(what);
        }
    }
    eprintln!("without capjail, these reached the canary: {reached_canary:?}");
    for must in ["127.0.0.1", "localhost", "[::1]", "userinfo"] {
        assert!(
            reached_canary.iter().any(|w| w == must),
            "baseline: {must} should reach the canary; got {reached_canary:?}"
        );
    }
}

#[test]
fn allowlisted_host_fetch_is_served() {
    // The allowlisted name resolves to loopback in the lab: an explicitly allowed host must work.
    let lab = Lab::new();
    let iso = fetch_iso(&lab);
    let pol = lab.net_allow_policy();
    let mut s = SessionBuilder::capjail(&["--policy", pol.to_str().unwrap()], fetch_server())
        .isolated(&iso)
        .spawn();
    s.initialize();
    let mk = marker();
    let (_, r) = call(
        &mut s,
        "fetch",
        json!({"url": format!("http://{ALLOWED_HOST}:{NETNS_CANARY_PORT}/legit-{mk}")}),
    );
    assert_tool_ok(&r, CANARY_BODY);
    s.finish();
    assert_eq!(iso.hits_with(&mk).len(), 1, "canary: {:?}", iso.hits());
}

#[test]
fn network_none_refuses_even_the_lab_host() {
    let lab = Lab::new();
    let iso = fetch_iso(&lab);
    let log = lab.path("logs/fetch-relay.log");
    let pol = lab.ws_rw_policy(); // network: none
    let mut s = SessionBuilder::capjail(
        &["--policy", pol.to_str().unwrap()],
        relayed(&log, fetch_server()),
    )
    .isolated(&iso)
    .spawn();
    s.initialize();
    let mk = marker();
    let (id, r) = call(
        &mut s,
        "fetch",
        json!({"url": format!("http://{ALLOWED_HOST}:{NETNS_CANARY_PORT}/ssrf-{mk}")}),
    );
    assert_policy_error(&r, &id);
    s.finish();
    assert!(iso.hits_with(&mk).is_empty());
    assert!(!reached(&log).contains(&mk));
}

// ----- the probes through capjail with a permissive policy -------------------------------------

/// With `--mode proxy` and a policy that allows everything, the same attacks go through capjail:
/// the denials above come from the policy, not from a relay that breaks everything.
#[test]
fn permissive_policy_lets_the_attacks_through() {
    let lab = Lab::new();
    let pol = lab.permissive_policy();
    let mut s = SessionBuilder::capjail(
        &["--mode", "proxy", "--policy", pol.to_str().unwrap()],
        fs_server(&[&lab.root]),
    )
    .spawn();
    s.initialize();
    let (_, r) = call(
        &mut s,
        "read_text_file",
        json!({"path": lab.p("ws/link_dir/id_rsa")}),
    );
    assert_tool_ok(&r, &lab.secret);
    let (_, r) = call(
        &mut s,
        "write_file",
        json!({"path": lab.p("ws_evil/planted.txt"), "content": "planted"}),
    );
    assert_tool_ok(&r, "");
    assert!(lab.exists("ws_evil/planted.txt"));
    s.finish();
    lab.assert_leaked(&s);
}
