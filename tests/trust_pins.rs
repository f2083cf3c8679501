//! Tools you can trust (issue 16): tool definitions pinned per server, changed definitions
//! ("rug pulls", after `notifications/tools/list_changed` or between sessions) refused until
//! `capjail pins accept`, poisoned descriptions caught by the scanner — judged by effect (the
//! tool ran or not, what the real client was shown) with real clients (the Python SDK, the
//! TypeScript SDK) and a fixture server of our own (tests/fixtures/trust_server.py); and the
//! five real servers' own tools pass the scanner with zero findings, untouched.
//! Every run passes its own `--pins` file and audit log (never the user's).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};

fn python() -> String {
    peer("venv/bin/python").display().to_string()
}

fn trust_server(variant: &str) -> Vec<String> {
    vec![
        python(),
        fixture("trust_server.py").display().to_string(),
        "--variant".into(),
        variant.into(),
    ]
}

struct Files {
    _dir: tempfile::TempDir,
    pins: PathBuf,
    audit: PathBuf,
    dir: PathBuf,
}

fn files() -> Files {
    let d = tempfile::tempdir().unwrap();
    Files {
        pins: d.path().join("pins.json"),
        audit: d.path().join("audit.jsonl"),
        dir: d.path().to_path_buf(),
        _dir: d,
    }
}

/// `capjail run --mode proxy --audit A --pins P [EXTRA] -- SERVER` as an argv.
fn jailed(f: &Files, extra: &[&str], server: &[String]) -> Vec<String> {
    let mut v = vec![
        capjail_bin().display().to_string(),
        "run".into(),
        "--mode".into(),
        "proxy".into(),
        "--audit".into(),
        f.audit.display().to_string(),
        "--pins".into(),
        f.pins.display().to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push("--".into());
    v.extend(server.iter().cloned());
    v
}

fn session(f: &Files, extra: &[&str], server: Vec<String>) -> Session {
    let mut args = vec![
        "--audit",
        f.audit.to_str().unwrap(),
        "--pins",
        f.pins.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    SessionBuilder::capjail(&args, server).spawn()
}

/// The `tool_trust` records of the audit log with this `event`.
fn trust_records(audit: &Path, event: &str) -> Vec<Value> {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "tool_trust" && r["event"] == event)
        .collect()
}

fn list_all(s: &mut Session) -> Vec<Value> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let r = s.request("tools/list", params);
        tools.extend(r["result"]["tools"].as_array().cloned().unwrap_or_default());
        cursor = r["result"]["nextCursor"].as_str().map(String::from);
        if cursor.is_none() {
            break;
        }
    }
    tools
}

fn names(tools: &[Value]) -> Vec<String> {
    tools
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn text_of(r: &Value) -> String {
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The five real servers: zero findings, relayed untouched, pins match across restarts.

fn real_servers(ws: &Path) -> Vec<(&'static str, Vec<String>)> {
    let node = |pkg: &str| {
        vec![
            "node".to_string(),
            peer(&format!(
                "node/node_modules/@modelcontextprotocol/{pkg}/dist/index.js"
            ))
            .display()
            .to_string(),
        ]
    };
    let mut fs = node("server-filesystem");
    fs.push(ws.display().to_string());
    vec![
        ("server-filesystem", fs),
        ("server-everything", node("server-everything")),
        ("server-memory", node("server-memory")),
        (
            "mcp-server-fetch",
            vec![peer("venv/bin/mcp-server-fetch").display().to_string()],
        ),
        (
            "mcp-server-git",
            vec![peer("venv/bin/mcp-server-git").display().to_string()],
        ),
    ]
}

#[test]
fn real_servers_tools_have_zero_findings_and_pass_untouched() {
    let f = files();
    let ws = f.dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let mut total = 0;
    for (name, argv) in real_servers(&ws) {
        let mut direct = SessionBuilder::direct(argv.clone())
            .env(
                "MEMORY_FILE_PATH",
                &f.dir.join("memory.json").display().to_string(),
            )
            .spawn();
        direct.initialize();
        let want = list_all(&mut direct);
        direct.close();
        assert!(!want.is_empty(), "{name} lists no tools");
        for round in 0..2 {
            let mut s = SessionBuilder::capjail(
                &[
                    "--policy",
                    "strict",
                    "--audit",
                    f.audit.to_str().unwrap(),
                    "--pins",
                    f.pins.to_str().unwrap(),
                ],
                argv.clone(),
            )
            .env(
                "MEMORY_FILE_PATH",
                &f.dir.join("memory.json").display().to_string(),
            )
            .spawn();
            s.initialize();
            let got = list_all(&mut s);
            s.close();
            assert_eq!(
                got, want,
                "{name} (session {round}): the client must see the server's own definitions"
            );
        }
        total += want.len();
    }
    let findings = trust_records(&f.audit, "finding");
    assert!(
        findings.is_empty(),
        "the real servers' own tools must pass the scanner: {findings:#?}"
    );
    // Every tool pinned once (first session), matched in the second: nothing changed.
    assert_eq!(trust_records(&f.audit, "pinned").len(), total);
    assert!(trust_records(&f.audit, "changed").is_empty());
    eprintln!("scanned {total} tools of 5 real servers: 0 findings");
}

// ---------------------------------------------------------------------------------------------
// The fixture: what real clients see, as the policy says.

/// The Python SDK client: list, call, print what it saw.
fn py_trust(argv: &[String], mode: &str, calls: Value) -> Value {
    let o = run_bounded(
        Command::new(python())
            .arg(repo().join("tests/clients/py_trust.py"))
            .arg(serde_json::to_string(argv).unwrap())
            .arg(mode)
            .arg(calls.to_string()),
        None,
        Duration::from_secs(120),
    );
    assert_eq!(
        o.code,
        Some(0),
        "py_trust failed\nstdout:\n{}\nstderr:\n{}",
        o.stdout,
        o.stderr
    );
    serde_json::from_str(&o.stdout).unwrap()
}

fn listed(t: &Value, i: usize) -> Vec<String> {
    t["lists"][i]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect()
}

fn call_of<'a>(t: &'a Value, tool: &str) -> &'a Value {
    t["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tool"] == tool)
        .unwrap_or_else(|| panic!("no call of {tool} in {t}"))
}

fn ran(c: &Value, tool: &str) -> bool {
    c["result"]["content"][0]["text"]
        .as_str()
        .is_some_and(|s| s.starts_with(&format!("{tool} ran")))
}

#[test]
fn python_client_poisoned_tools_hidden_and_refused_by_default() {
    let calls = json!([["add", {"a": 1, "b": 2}], ["poisoned_add", {"a": 1, "b": 2}], ["notes", {"text": "x"}], ["read_file", {"path": "n"}]]);
    for mode in ["auto", "legacy"] {
        let f = files();
        let t = py_trust(
            &jailed(&f, &["--policy", "strict"], &trust_server("1")),
            mode,
            calls.clone(),
        );
        let l = listed(&t, 0);
        assert!(
            l.contains(&"add".to_string()) && l.contains(&"weather".to_string()),
            "{mode}: {l:?}"
        );
        assert!(
            !l.contains(&"poisoned_add".to_string()),
            "{mode}: the poisoned description reached the client: {l:?}"
        );
        assert!(
            !l.contains(&"notes".to_string()),
            "{mode}: the hidden-Unicode description reached the client"
        );
        assert!(ran(call_of(&t, "add"), "add"), "{t}");
        let p = call_of(&t, "poisoned_add");
        assert!(
            !ran(p, "poisoned_add"),
            "{mode}: the poisoned tool ran: {p}"
        );
        assert!(
            p["error"]["data"]["rule"]
                .as_str()
                .unwrap()
                .starts_with("scan."),
            "{p}"
        );
        let n = call_of(&t, "notes");
        assert_eq!(n["error"]["data"]["rule"], "scan.hidden_unicode", "{n}");
        // A shadowing name is medium: recorded, shown, callable by default.
        assert!(l.contains(&"read_file".to_string()));
        let shadow = trust_records(&f.audit, "finding");
        assert!(
            shadow
                .iter()
                .any(|r| r["rule"] == "scan.shadowing_name" && r["tool"] == "read_file"),
            "{shadow:#?}"
        );
    }
}

#[test]
fn python_client_sees_what_a_lenient_policy_says() {
    // The same fixture under a policy that only records high findings and hides medium ones:
    // the poisoned tool is shown and runs; the shadowing one is hidden.
    let f = files();
    let policy = f.dir.join("lenient.yaml");
    std::fs::write(
        &policy,
        "name: lenient\nfilesystem: {mode: any}\ntool_scan:\n  high: record\n  medium: hide\n",
    )
    .unwrap();
    let t = py_trust(
        &jailed(
            &f,
            &["--policy", policy.to_str().unwrap()],
            &trust_server("1"),
        ),
        "auto",
        json!([["poisoned_add", {"a": 1, "b": 2}], ["read_file", {"path": "n"}]]),
    );
    let l = listed(&t, 0);
    assert!(
        l.contains(&"poisoned_add".to_string()) && !l.contains(&"read_file".to_string()),
        "{l:?}"
    );
    assert!(ran(call_of(&t, "poisoned_add"), "poisoned_add"));
    let r = call_of(&t, "read_file");
    assert_eq!(r["error"]["data"]["rule"], "scan.shadowing_name", "{r}");
}

// ---------------------------------------------------------------------------------------------
// Rug pulls.

#[test]
fn rug_pull_after_list_changed_is_refused_without_a_relist() {
    let f = files();
    let mut s = session(&f, &["--policy", "strict"], trust_server("1"));
    s.initialize();
    let tools = list_all(&mut s);
    assert!(names(&tools).contains(&"weather".to_string()));
    assert!(text_of(&s.call_tool("weather", json!({"city": "Oslo"}))).starts_with("weather ran"));
    assert_eq!(text_of(&s.call_tool("rug_pull", json!({}))), "rug_pull ran");
    s.wait_line(RESPONSE_TIMEOUT, "list_changed", |v| {
        v["method"] == "notifications/tools/list_changed"
    });
    // The client does NOT list again: capjail did, and the changed tool is refused.
    let r = s.call_tool("weather", json!({"city": "Oslo"}));
    assert_eq!(r["error"]["data"]["rule"], "pins.changed", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(description)"),
        "{r}"
    );
    // By effect: the second weather call never ran (only the first one's answer exists).
    assert_eq!(
        s.received_text()
            .matches("weather ran: sunny in Oslo")
            .count(),
        2,
        "{}",
        s.received_text()
    );
    // Listing now shows the PINNED definition, not the new one.
    let tools = list_all(&mut s);
    let w = tools.iter().find(|t| t["name"] == "weather").unwrap();
    assert_eq!(w["description"], "Get the weather for a city.");
    s.close();
    assert_eq!(trust_records(&f.audit, "changed").len(), 1);
    let shown = capjail(&["audit", "show", f.audit.to_str().unwrap()]);
    for word in ["pinned", "changed", "finding", "pins.changed"] {
        assert!(
            shown.stdout.contains(word),
            "audit show lacks {word}:\n{}",
            shown.stdout
        );
    }
}

#[test]
fn changed_between_sessions_refused_until_accepted_and_pins_survive_restarts() {
    let f = files();
    let calls = json!([["weather", {"city": "Oslo"}]]);
    let first = py_trust(
        &jailed(&f, &["--policy", "strict"], &trust_server("1")),
        "auto",
        calls.clone(),
    );
    assert!(ran(call_of(&first, "weather"), "weather"));
    // Same definitions again: the pins (written by the first session) match.
    let again = py_trust(
        &jailed(&f, &["--policy", "strict"], &trust_server("1")),
        "legacy",
        calls.clone(),
    );
    assert!(ran(call_of(&again, "weather"), "weather"));
    assert!(trust_records(&f.audit, "changed").is_empty());
    // The server now serves another definition: refused, the pinned one shown.
    let changed = py_trust(
        &jailed(&f, &["--policy", "strict"], &trust_server("2")),
        "auto",
        calls.clone(),
    );
    let c = call_of(&changed, "weather");
    assert!(!ran(c, "weather"), "{c}");
    assert_eq!(c["error"]["data"]["rule"], "pins.changed");
    let w = changed["lists"][0]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "weather")
        .unwrap()
        .clone();
    assert_eq!(w["description"], "Get the weather for a city.");
    // pins diff shows it; accept pins it.
    let pins = f.pins.to_str().unwrap();
    let d = capjail(&["pins", "diff", "--pins", pins]);
    assert_eq!(d.code, Some(1), "{}{}", d.stdout, d.stderr);
    assert!(
        d.stdout
            .contains("+ \"Get the weather for a city. Results are cached for an hour.\""),
        "{}",
        d.stdout
    );
    let a = capjail(&["pins", "accept", "--pins", pins, "weather"]);
    assert_eq!(a.code, Some(0), "{}{}", a.stdout, a.stderr);
    let after = py_trust(
        &jailed(&f, &["--policy", "strict"], &trust_server("2")),
        "auto",
        calls,
    );
    assert!(ran(call_of(&after, "weather"), "weather"), "{after}");
    assert_eq!(capjail(&["pins", "diff", "--pins", pins]).code, Some(0));
}

#[test]
fn a_frozen_pin_file_refuses_a_new_tool_and_is_not_written() {
    let f = files();
    let first = py_trust(
        &jailed(&f, &["--policy", "strict"], &trust_server("1")),
        "auto",
        json!([]),
    );
    assert!(listed(&first, 0).contains(&"add".to_string()));
    // Drop the pin of `add`: to the frozen file, `add` is a new tool.
    let mut file: Value = serde_json::from_slice(&std::fs::read(&f.pins).unwrap()).unwrap();
    let servers = file["servers"].as_object_mut().unwrap();
    assert_eq!(servers.len(), 1);
    let server = servers.values_mut().next().unwrap();
    server["tools"]
        .as_object_mut()
        .unwrap()
        .remove("add")
        .unwrap();
    std::fs::write(&f.pins, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    let before = std::fs::read(&f.pins).unwrap();
    let calls = json!([["add", {"a": 1, "b": 2}], ["weather", {"city": "x"}]]);
    let frozen = py_trust(
        &jailed(
            &f,
            &["--policy", "strict", "--pins-frozen"],
            &trust_server("1"),
        ),
        "auto",
        calls.clone(),
    );
    assert!(!listed(&frozen, 0).contains(&"add".to_string()));
    let a = call_of(&frozen, "add");
    assert!(!ran(a, "add"), "{a}");
    assert_eq!(a["error"]["data"]["rule"], "pins.frozen");
    assert!(ran(call_of(&frozen, "weather"), "weather"));
    assert_eq!(
        std::fs::read(&f.pins).unwrap(),
        before,
        "a frozen pin file was written"
    );
    // Not frozen: the new tool is pinned on first use and runs.
    let open = py_trust(
        &jailed(&f, &["--policy", "strict"], &trust_server("1")),
        "auto",
        calls,
    );
    assert!(ran(call_of(&open, "add"), "add"));
}

// ---------------------------------------------------------------------------------------------
// The TypeScript client.

#[test]
fn typescript_client_sees_the_pinned_definition_and_a_refused_call() {
    let f = files();
    // First session pins variant 1.
    let _ = py_trust(
        &jailed(&f, &["--policy", "strict"], &trust_server("1")),
        "legacy",
        json!([]),
    );
    let argv = jailed(&f, &["--policy", "strict"], &trust_server("2"));
    let scenario = json!({
        "client": "v2",
        "era": "legacy",
        "modules": peers().join("node").display().to_string(),
        "server": {"command": argv[0], "args": argv[1..], "env": {}, "cwd": f.dir.display().to_string()},
        "capabilities": {},
        "roots": [],
        "replace": [],
        "steps": [
            {"op": "tools/list"},
            {"op": "tools/call", "params": {"name": "weather", "arguments": {"city": "Oslo"}}},
            {"op": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}},
        ],
        "deadlineMs": 60000,
    });
    let file = f.dir.join("scenario.json");
    std::fs::write(&file, serde_json::to_vec(&scenario).unwrap()).unwrap();
    let out = run_bounded(
        Command::new(node22())
            .arg(repo().join("tests/clients/ts_session.mjs"))
            .arg(&file),
        None,
        Duration::from_secs(90),
    );
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let text = out.stdout;
    // Shown: the pinned description, never the new one, never the poisoned ones.
    assert!(text.contains("Get the weather for a city."), "{text}");
    assert!(
        !text.contains("Results are cached for an hour"),
        "the changed definition reached the client: {text}"
    );
    assert!(
        !text.contains("id_rsa") && !text.contains("poisoned_add"),
        "{text}"
    );
    // Called: weather refused (it never ran), add ran.
    assert!(
        text.contains("pins.changed") && !text.contains("weather ran"),
        "{text}"
    );
    assert!(text.contains("add ran: 3"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// A client that calls without listing (cached tool lists, scripts): capjail lists itself.

/// A call cancelled while it waits for capjail's own listing is let go: the server never gets
/// it (nor its cancellation), the client no answer to it, and the audit log says so.
#[test]
fn a_call_cancelled_while_it_waits_for_capjails_listing_is_never_sent() {
    let f = files();
    let mut s = session(&f, &["--policy", "strict"], trust_server("1"));
    s.initialize();
    let id = json!(s.id());
    let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}});
    let cancel = json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":id,"reason":"the user gave up"}});
    // One write: the call waits for capjail's listing (a Python server's answer takes
    // milliseconds) when its cancellation comes.
    s.send_raw(format!("{call}\n{cancel}").as_bytes());
    assert!(text_of(&s.call_tool("add", json!({"a": 2, "b": 2}))).starts_with("add ran: 4"));
    s.assert_in_sync();
    s.close();
    let text = s.received_text();
    assert!(
        !text.contains("add ran: 3"),
        "the cancelled call ran: {text}"
    );
    let audit = std::fs::read_to_string(&f.audit).unwrap();
    assert!(
        audit.contains("cancelled by the client while it waited for capjail's tools listing"),
        "{audit}"
    );
}

#[test]
fn a_call_without_a_listing_waits_for_capjails_own_listing() {
    let f = files();
    let mut s = session(&f, &["--policy", "strict"], trust_server("1"));
    s.initialize();
    // No tools/list from the client: the calls are held until capjail has listed the tools.
    let r = s.call_tool("poisoned_add", json!({"a": 1, "b": 2}));
    assert!(
        r["error"]["data"]["rule"]
            .as_str()
            .unwrap_or("")
            .starts_with("scan."),
        "{r}"
    );
    assert!(text_of(&s.call_tool("add", json!({"a": 1, "b": 2}))).starts_with("add ran"));
    s.assert_in_sync();
    s.close();
    assert!(!s.received_text().contains("poisoned_add ran"));
    // capjail's own listing was never relayed: the client saw no tools/list answer.
    assert!(
        !s.received_text().contains("\"tools\":["),
        "{}",
        s.received_text()
    );
    assert!(trust_records(&f.audit, "pinned").len() >= 6);
}
