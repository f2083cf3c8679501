//! Approvals that reach a person (issue 15): a call matching `require_approval` is held while
//! someone is asked, and runs only on an explicit approval. Judged by effect (the file was or
//! was not written) with real peers: the Python `mcp` client's elicitation callback
//! (tests/clients/py_approval.py) against the real filesystem server (handshake generation)
//! and the SDK fixture tests/fixtures/approval_server.py (2026-07-28 generation, where the
//! question travels in an `input_required` result); an approver command when the client
//! cannot ask; raw sessions for what no real client sends (a forged or replayed answer).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};

const REASON: &str = "writes need a person";

fn python(argv: &[String], mode: &str, opts: Value) -> Value {
    let script = repo().join("tests/clients/py_approval.py");
    let out = run_bounded(
        Command::new(peer("venv/bin/python"))
            .arg(script)
            .arg(serde_json::to_string(argv).unwrap())
            .arg(mode)
            .arg(opts.to_string()),
        None,
        Duration::from_secs(150),
    );
    assert!(
        out.status.success(),
        "py_approval failed\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\nstderr:\n{}", out.stdout, out.stderr))
}

fn jailed(policy: &Path, audit: &Path, extra: &[&str], server: Vec<String>) -> Vec<String> {
    let mut v: Vec<String> = vec![
        capjail_bin().display().to_string(),
        "run".into(),
        "--mode".into(),
        "proxy".into(),
        "--policy".into(),
        policy.display().to_string(),
        "--audit".into(),
        audit.display().to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push("--".into());
    v.extend(server);
    v
}

/// The workspace read-write, every write gated by a person; `approval` is appended.
fn gated_policy(lab: &Lab, approval: &str) -> PathBuf {
    lab.policy(
        "gated",
        &format!(
            "name: gated-writes\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\n\
             require_approval:\n  - capability: filesystem.write\n    reason: {REASON}\n{approval}",
            lab.ws.display()
        ),
    )
}

fn fixture_server() -> Vec<String> {
    vec![
        peer("venv/bin/python").display().to_string(),
        fixture("approval_server.py").display().to_string(),
    ]
}

fn fixture_profile() -> String {
    fixture("approval_profile.yaml").display().to_string()
}

fn write(path: &str, content: &str) -> Value {
    json!(["write_file", {"path": path, "content": content}])
}

fn note(path: &str, content: &str) -> Value {
    json!(["write_note", {"path": path, "content": content}])
}

/// The error a call got (panics on a result).
fn error_of(r: &Value) -> &Value {
    r.get("error")
        .unwrap_or_else(|| panic!("expected an error, got {r}"))
}

fn audit_records(audit: &Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == kind)
        .collect()
}

fn assert_asked_in_plain_words(t: &Value, tool: &str, path: &str) {
    let e = &t["elicitations"][0];
    let msg = e["message"].as_str().unwrap_or_default();
    for part in [
        tool,
        "filesystem.write",
        path,
        "require_approval[0]",
        REASON,
    ] {
        assert!(
            msg.contains(part),
            "`{part}` missing from the question: {msg}"
        );
    }
    assert_eq!(
        e["requestedSchema"]["properties"]["approve"]["type"], "boolean",
        "{e}"
    );
}

#[test]
fn handshake_approve_writes_and_other_traffic_flows_while_it_waits() {
    let lab = Lab::new();
    let audit = lab.path("audit.jsonl");
    let target = lab.p("ws/approved.txt");
    let argv = jailed(&gated_policy(&lab, ""), &audit, &[], fs_server(&[&lab.ws]));
    // The callback answers only after a ping and another tool call went through capjail
    // while the question was open: a stalled stream would never answer (the client fails).
    let t = python(
        &argv,
        "legacy",
        json!({"answer": "approve", "calls": [write(&target, "approved body")],
               "concurrent": ["list_allowed_directories", {}]}),
    );
    assert_eq!(
        lab.read("ws/approved.txt").as_deref(),
        Some("approved body"),
        "{t}"
    );
    assert!(t["results"][0].get("ok").is_some(), "{t}");
    assert_asked_in_plain_words(&t, "write_file", &target);
    assert_eq!(t["concurrent"][0], "ping ok", "{t}");
    assert!(
        t["concurrent"][1]["result"]
            .to_string()
            .contains(&lab.ws_s()),
        "{t}"
    );
    // The audit log: the gated decision, then who answered what and how fast.
    let a = audit_records(&audit, "approval");
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (
            a[0]["verdict"].as_str(),
            a[0]["by"].as_str(),
            a[0]["answer"].as_str()
        ),
        (Some("allow"), Some("client elicitation"), Some("approve"))
    );
    assert!(a[0]["question"].as_str().unwrap().contains(REASON));
    assert!(a[0]["elapsed_ms"].is_u64());
    let gated: Vec<Value> = audit_records(&audit, "decision")
        .into_iter()
        .filter(|d| d["approval_required"] == true)
        .collect();
    assert_eq!(gated.len(), 1);
    assert!(gated[0]["seq"].as_u64() < a[0]["seq"].as_u64());
    let shown = capjail(&["audit", "show", audit.to_str().unwrap()]);
    assert!(
        shown.stdout.contains("client elicitation") && shown.stdout.contains("approve"),
        "{}{}",
        shown.stdout,
        shown.stderr
    );
}

#[test]
fn handshake_decline_and_cancel_refuse_and_nothing_is_written() {
    for answer in ["decline", "cancel"] {
        let lab = Lab::new();
        let audit = lab.path("audit.jsonl");
        let target = lab.p("ws/refused.txt");
        let argv = jailed(&gated_policy(&lab, ""), &audit, &[], fs_server(&[&lab.ws]));
        let t = python(
            &argv,
            "legacy",
            json!({"answer": answer, "calls": [write(&target, "x")]}),
        );
        assert!(
            !lab.exists("ws/refused.txt"),
            "{answer}: the write happened: {t}"
        );
        let e = error_of(&t["results"][0]);
        assert_eq!(e["code"], -32001, "{t}");
        assert_eq!(e["data"]["rule"], "require_approval[0]", "{t}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("denied by the user"),
            "{t}"
        );
        let a = audit_records(&audit, "approval");
        assert_eq!(
            (a[0]["verdict"].as_str(), a[0]["answer"].as_str()),
            (Some("deny"), Some(answer))
        );
    }
}

/// One gated `write_note` of "new era" to `target`, through the real Python client that
/// answers the 2026-07-28 input request with `answer`: the client's transcript (the protocol
/// checked).
fn note_through_2026_client(lab: &Lab, audit: &Path, answer: &str, target: &str) -> Value {
    let argv = jailed(
        &gated_policy(lab, ""),
        audit,
        &["--profile", &fixture_profile()],
        fixture_server(),
    );
    let t = python(
        &argv,
        "auto",
        json!({"answer": answer, "calls": [note(target, "new era")]}),
    );
    assert_eq!(t["protocol"], "2026-07-28", "{t}");
    t
}

#[test]
fn generation_2026_asks_with_input_required_and_acts_on_the_answer() {
    for (answer, written) in [("approve", true), ("decline", false)] {
        let lab = Lab::new();
        let audit = lab.path("audit.jsonl");
        let target = lab.p("ws/note.txt");
        let t = note_through_2026_client(&lab, &audit, answer, &target);
        assert_asked_in_plain_words(&t, "write_note", &target);
        assert_eq!(lab.exists("ws/note.txt"), written, "{answer}: {t}");
        if written {
            assert_eq!(lab.read("ws/note.txt").as_deref(), Some("new era"));
        } else {
            let e = error_of(&t["results"][0]);
            assert_eq!(e["data"]["rule"], "require_approval[0]", "{t}");
            assert!(
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("denied by the user"),
                "{t}"
            );
        }
    }
}

#[test]
fn without_elicitation_the_approver_command_decides() {
    let lab = Lab::new();
    let audit = lab.path("audit.jsonl");
    let asked = lab.path("asked.jsonl");
    // Approves writes to ok.txt only; keeps every question it read.
    let script = format!(
        "read -r q; printf '%s\\n' \"$q\" >> {}; case \"$q\" in *ok.txt*) echo approve;; *) echo deny;; esac",
        asked.display()
    );
    let approval = format!(
        "approval:\n  approvers: [client, command]\n  command:\n    argv: [/bin/sh, -c, {}]\n    timeout_seconds: 20\n",
        serde_json::to_string(&script).unwrap()
    );
    let argv = jailed(
        &gated_policy(&lab, &approval),
        &audit,
        &[],
        fs_server(&[&lab.ws]),
    );
    let t = python(
        &argv,
        "legacy",
        json!({"answer": null, "calls": [write(&lab.p("ws/ok.txt"), "yes"), write(&lab.p("ws/no.txt"), "no")]}),
    );
    assert_eq!(lab.read("ws/ok.txt").as_deref(), Some("yes"), "{t}");
    assert!(!lab.exists("ws/no.txt"), "{t}");
    assert_eq!(
        t["elicitations"],
        json!([]),
        "a client without the capability was asked: {t}"
    );
    let e = error_of(&t["results"][1]);
    assert_eq!(e["data"]["answered_by"], "command", "{t}");
    let questions: Vec<Value> = std::fs::read_to_string(&asked)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(questions.len(), 2);
    assert_eq!(questions[0]["tool"], "write_file");
    assert_eq!(questions[0]["rule"], "require_approval[0]");
    assert_eq!(questions[0]["capability"], "filesystem.write");
    let by: Vec<String> = audit_records(&audit, "approval")
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["by"].as_str().unwrap(),
                a["verdict"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(by, ["command allow", "command deny"]);
}

#[test]
fn an_unanswered_question_times_out_and_the_call_is_refused() {
    let lab = Lab::new();
    let audit = lab.path("audit.jsonl");
    let argv = jailed(
        &gated_policy(&lab, "approval:\n  timeout_seconds: 1\n"),
        &audit,
        &[],
        fs_server(&[&lab.ws]),
    );
    let t = python(
        &argv,
        "legacy",
        json!({"answer": "wait", "calls": [write(&lab.p("ws/late.txt"), "x")]}),
    );
    assert!(!lab.exists("ws/late.txt"), "{t}");
    let e = error_of(&t["results"][0]);
    assert_eq!(e["data"]["approval"], "timed_out", "{t}");
    assert!(e["message"].as_str().unwrap().contains("timed out"), "{t}");
    assert_eq!(e["data"]["rule"], "require_approval[0]", "{t}");
}

#[test]
fn for_the_rest_of_the_session_covers_the_same_tool_and_rule_unless_the_policy_forbids() {
    for (remember, asked) in [("session", 1), ("never", 2)] {
        let lab = Lab::new();
        let audit = lab.path("audit.jsonl");
        let argv = jailed(
            &gated_policy(&lab, &format!("approval:\n  remember: {remember}\n")),
            &audit,
            &[],
            fs_server(&[&lab.ws]),
        );
        let t = python(
            &argv,
            "legacy",
            json!({"answer": "approve_session", "calls": [write(&lab.p("ws/1.txt"), "1"), write(&lab.p("ws/2.txt"), "2")]}),
        );
        assert!(lab.exists("ws/1.txt") && lab.exists("ws/2.txt"), "{t}");
        assert_eq!(
            t["elicitations"].as_array().unwrap().len(),
            asked,
            "remember {remember}: {t}"
        );
        let offered = t["elicitations"][0]["requestedSchema"]["properties"]
            .get("remember")
            .is_some();
        assert_eq!(offered, remember == "session", "{t}");
    }
}

#[test]
fn nobody_to_ask_refuses_and_says_how_to_enable_approvals() {
    let lab = Lab::new();
    let pol = gated_policy(&lab, "");
    let mut s = SessionBuilder::capjail(
        &["--policy", pol.to_str().unwrap(), "--audit", "off"],
        fs_server(&[&lab.ws]),
    )
    .spawn();
    s.initialize(); // no elicitation capability
    let r = s.call_tool(
        "write_file",
        json!({"path": lab.p("ws/x.txt"), "content": "x"}),
    );
    let e = error_of(&r);
    assert_eq!(e["data"]["approval"], "unavailable", "{r}");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("elicitation") && msg.contains("approval:"),
        "{msg}"
    );
    s.assert_in_sync();
    s.finish();
    assert!(!lab.exists("ws/x.txt"));
}

/// A raw 2026-07-28 request to the fixture.
fn call_2026(s: &mut Session, args: Value, extra: Value) -> Value {
    let mut params = json!({
        "name": "write_note",
        "arguments": args,
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
            "io.modelcontextprotocol/clientInfo": {"name": "capjail-tests", "version": "0"}
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    s.request("tools/call", params)
}

fn accept() -> Value {
    json!({"capjail_approval": {"action": "accept", "content": {"approve": true}}})
}

#[test]
fn generation_2026_forged_replayed_or_rebound_answers_are_refused() {
    let lab = Lab::new();
    let pol = gated_policy(&lab, "");
    let profile = fixture_profile();
    let mut s = SessionBuilder::capjail(
        &[
            "--policy",
            pol.to_str().unwrap(),
            "--profile",
            &profile,
            "--audit",
            "off",
        ],
        fixture_server(),
    )
    .spawn();
    let args = |f: &str, c: &str| json!({"path": lab.p(&format!("ws/{f}")), "content": c});
    let token_rule = |r: &Value| {
        error_of(r)["data"]["rule"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    // A made-up token with an "approve" answer.
    let forged = format!("capjail-approval:{}", "0".repeat(32));
    let r = call_2026(
        &mut s,
        args("forged.txt", "f"),
        json!({"requestState": forged, "inputResponses": accept()}),
    );
    assert_eq!(token_rule(&r), "approval.token", "{r}");
    // An answer without any token.
    let r = call_2026(
        &mut s,
        args("forged.txt", "f"),
        json!({"inputResponses": accept()}),
    );
    assert_eq!(token_rule(&r), "approval.token", "{r}");

    // A real question...
    let q = call_2026(&mut s, args("real.txt", "r"), json!({}));
    assert_eq!(q["result"]["resultType"], "input_required", "{q}");
    let token = q["result"]["requestState"].as_str().unwrap().to_string();
    assert_eq!(
        q["result"]["inputRequests"]["capjail_approval"]["method"],
        "elicitation/create"
    );
    // ...whose answer is spent on other arguments: refused, and the token is gone.
    let r = call_2026(
        &mut s,
        args("other.txt", "o"),
        json!({"requestState": token, "inputResponses": accept()}),
    );
    assert_eq!(token_rule(&r), "approval.token", "{r}");
    let r = call_2026(
        &mut s,
        args("real.txt", "r"),
        json!({"requestState": token, "inputResponses": accept()}),
    );
    assert_eq!(token_rule(&r), "approval.token", "{r}");

    // A fresh question, answered properly: the write happens once.
    let q = call_2026(&mut s, args("real.txt", "r"), json!({}));
    let token = q["result"]["requestState"].as_str().unwrap().to_string();
    let r = call_2026(
        &mut s,
        args("real.txt", "r"),
        json!({"requestState": token, "inputResponses": accept()}),
    );
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("wrote"),
        "{r}"
    );
    assert_eq!(lab.read("ws/real.txt").as_deref(), Some("r"));
    std::fs::remove_file(lab.path("ws/real.txt")).unwrap();
    // Replayed: refused.
    let r = call_2026(
        &mut s,
        args("real.txt", "r"),
        json!({"requestState": token, "inputResponses": accept()}),
    );
    assert_eq!(token_rule(&r), "approval.token", "{r}");
    s.finish();
    assert!(
        !lab.exists("ws/forged.txt") && !lab.exists("ws/other.txt") && !lab.exists("ws/real.txt")
    );
}

#[test]
fn capfence_seed_database_write_asks_and_acts_on_the_answer() {
    const PROJECT: &str = "/Users/anshumankumar/Documents/Capfence/capfence";
    for (answer, happens) in [("approve", true), ("decline", false)] {
        let lab = Lab::new();
        let seed = std::fs::read_to_string(repo().join("policies/seeds/capfence-mcp_policy.yaml"))
            .unwrap();
        let pol = lab.policy("capfence", &seed.replace(PROJECT, &lab.ws_s()));
        let audit = lab.path("audit.jsonl");
        let log = lab.path("logs/naive.log");
        let mk = marker();
        let profile = fixture("naive_profile.yaml").display().to_string();
        let argv = jailed(
            &pol,
            &audit,
            &["--profile", &profile],
            naive_server(&lab.root, &log),
        );
        let t = python(
            &argv,
            "legacy",
            json!({"answer": answer, "calls": [["execute_sql", {"query": format!("DELETE FROM users -- {mk}")}]]}),
        );
        let msg = t["elicitations"][0]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("execute_sql") && msg.contains("database.write"),
            "{t}"
        );
        let db = lab.read("db.log").unwrap_or_default();
        assert_eq!(db.contains(&mk), happens, "{answer}: {t}");
        assert_eq!(reached(&log).contains(&mk), happens, "{answer}");
    }
}

/// The real TypeScript client (tests/clients/ts_session.mjs) with the elicitation capability:
/// it accepts with every boolean true (approve, and for the rest of the session) unless
/// `action` says otherwise.
fn typescript(
    client: &str,
    era: &str,
    argv: &[String],
    action: &str,
    steps: Value,
    lab: &Lab,
) -> Value {
    let scenario = json!({
        "client": client,
        "era": era,
        "modules": peers().join("node").display().to_string(),
        "server": {"command": argv[0], "args": argv[1..], "cwd": lab.root.display().to_string()},
        "capabilities": {"elicitation": {"form": {}}},
        "elicitAction": action,
        "steps": steps,
        "deadlineMs": 90000,
    });
    let file = lab.path("scenario.json");
    std::fs::write(&file, serde_json::to_vec(&scenario).unwrap()).unwrap();
    let out = run_bounded(
        Command::new(node22())
            .arg(repo().join("tests/clients/ts_session.mjs"))
            .arg(&file)
            .env("HOME", &lab.root),
        None,
        Duration::from_secs(100),
    );
    assert_eq!(
        out.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let t: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(t.get("connectError").is_none(), "{t}\n{}", out.stderr);
    t
}

#[test]
fn typescript_clients_approve_and_decline_in_both_generations() {
    // (client, era, the SDK fixture (2026-07-28) rather than server-filesystem, answer)
    let cases = [
        ("v2", "legacy", false, "accept"),
        ("v2", "legacy", false, "decline"),
        ("v1", "legacy", false, "accept"),
        ("v2", "modern", true, "accept"),
        ("v2", "modern", true, "decline"),
    ];
    for (client, era, fixture_srv, action) in cases {
        let lab = Lab::new();
        let audit = lab.path("audit.jsonl");
        let target = lab.p("ws/ts.txt");
        let pol = gated_policy(&lab, "");
        let (argv, tool) = if fixture_srv {
            (
                jailed(
                    &pol,
                    &audit,
                    &["--profile", &fixture_profile()],
                    fixture_server(),
                ),
                "write_note",
            )
        } else {
            (
                jailed(&pol, &audit, &[], fs_server(&[&lab.ws])),
                "write_file",
            )
        };
        let steps = json!([
            {"op": "tools/call", "params": {"name": tool, "arguments": {"path": target, "content": "from ts"}}},
            {"op": "tools/list"},
        ]);
        let t = typescript(client, era, &argv, action, steps, &lab);
        let what = format!("{client}/{era}/{action}");
        if era == "modern" {
            assert_eq!(t["protocolVersion"], "2026-07-28", "{what}: {t}");
        }
        let asked = &t["serverRequests"][0];
        assert_eq!(asked["method"], "elicitation/create", "{what}: {t}");
        assert!(
            asked["params"]["message"]
                .as_str()
                .unwrap()
                .contains(REASON),
            "{what}: {t}"
        );
        let step = &t["steps"][0];
        if action == "accept" {
            assert_eq!(
                lab.read("ws/ts.txt").as_deref(),
                Some("from ts"),
                "{what}: {t}"
            );
            assert!(step.get("result").is_some(), "{what}: {t}");
        } else {
            assert!(!lab.exists("ws/ts.txt"), "{what}: the write happened: {t}");
            assert!(
                step["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("denied by the user"),
                "{what}: {t}"
            );
        }
        assert!(
            t["steps"][1].get("result").is_some(),
            "{what}: still in sync: {t}"
        );
    }
}

#[test]
fn a_call_cancelled_while_it_waits_is_never_sent() {
    let lab = Lab::new();
    let asked = lab.path("asked");
    let go = lab.path("go");
    // The approver approves, but only once the test lets it (bounded: 30 s).
    let script = format!(
        "touch {asked}; i=0; while [ ! -e {go} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; echo approve",
        asked = asked.display(),
        go = go.display()
    );
    let approval = format!(
        "approval:\n  approvers: [command]\n  command:\n    argv: [/bin/sh, -c, {}]\n    timeout_seconds: 40\n",
        serde_json::to_string(&script).unwrap()
    );
    let pol = gated_policy(&lab, &approval);
    let audit = lab.path("audit.jsonl");
    let mut s = SessionBuilder::capjail(
        &[
            "--policy",
            pol.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
        ],
        fs_server(&[&lab.ws]),
    )
    .spawn();
    s.initialize();
    s.send(&json!({"jsonrpc":"2.0","id":"held","method":"tools/call","params":{"name":"write_file","arguments":{"path": lab.p("ws/cancelled.txt"), "content": "x"}}}));
    for _ in 0..300 {
        if asked.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(asked.exists(), "the approver was never asked");
    // While it waits: the id is in flight, and other traffic flows.
    s.assert_in_sync();
    s.send(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"held","reason":"user gave up"}}));
    std::fs::write(&go, "").unwrap();
    // The approval arrives (recorded) for a call that was cancelled meanwhile.
    let answered = || {
        audit_records(&audit, "approval")
            .iter()
            .any(|a| a["id"] == "held")
    };
    for _ in 0..300 {
        if answered() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answered(), "the approval was never recorded");
    // A later call reaches the server after anything the approval could have sent.
    let r = s.call_tool(
        "write_file",
        json!({"path": lab.p("ws/after.txt"), "content": "y"}),
    );
    assert!(r.get("result").is_some(), "{r}");
    s.assert_in_sync();
    s.finish();
    assert!(lab.exists("ws/after.txt"));
    assert!(
        !lab.exists("ws/cancelled.txt"),
        "a cancelled call was forwarded after its approval"
    );
}

#[test]
fn generation_2026_the_policy_order_decides_who_is_asked() {
    // The command comes first and refuses: the client (which would approve) is not asked.
    let lab = Lab::new();
    let audit = lab.path("audit.jsonl");
    let approval = "approval:\n  approvers: [command, client]\n  command:\n    argv: [/bin/sh, -c, \"cat >/dev/null; echo deny\"]\n";
    let argv = jailed(
        &gated_policy(&lab, approval),
        &audit,
        &["--profile", &fixture_profile()],
        fixture_server(),
    );
    let t = python(
        &argv,
        "auto",
        json!({"answer": "approve", "calls": [note(&lab.p("ws/order.txt"), "x")]}),
    );
    assert_eq!(t["protocol"], "2026-07-28", "{t}");
    assert_eq!(t["elicitations"], json!([]), "{t}");
    assert!(!lab.exists("ws/order.txt"), "{t}");
    assert_eq!(
        error_of(&t["results"][0])["data"]["answered_by"],
        "command",
        "{t}"
    );
}

#[test]
fn the_controlling_terminal_answers_when_configured() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    use std::sync::mpsc;

    let lab = Lab::new();
    let pol = gated_policy(
        &lab,
        "approval:\n  approvers: [terminal]\n  timeout_seconds: 30\n",
    );
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = pty.slave.as_raw_fd();
    let mut cmd = Command::new(capjail_bin());
    cmd.args([
        "run",
        "--mode",
        "proxy",
        "--policy",
        pol.to_str().unwrap(),
        "--audit",
        "off",
        "--",
    ])
    .args(fs_server(&[&lab.ws]))
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // A new session whose controlling terminal is the pty: capjail's /dev/tty.
            if libc::setsid() < 0 || libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(pty.slave);
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let (ttx, trx) = mpsc::channel::<String>();
    let mut master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = reader.read(&mut b) {
            if n == 0
                || ttx
                    .send(String::from_utf8_lossy(&b[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let mut send = |v: Value| writeln!(stdin, "{v}").unwrap();
    let wait = |id: i64| loop {
        let v = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("no response in time");
        if v["id"] == id {
            break v;
        }
    };
    send(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}),
    );
    wait(1);
    send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    for (id, file, typed) in [(2, "yes.txt", "approve"), (3, "no.txt", "no")] {
        send(
            json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"write_file","arguments":{"path": lab.p(&format!("ws/{file}")), "content": "t"}}}),
        );
        // The question appears on the terminal; then the person types.
        let mut seen = String::new();
        while !seen.contains("(deny after") {
            seen.push_str(
                &trx.recv_timeout(Duration::from_secs(30))
                    .expect("no question on the terminal"),
            );
        }
        assert!(
            seen.contains("write_file") && seen.contains(REASON),
            "{seen}"
        );
        master.write_all(format!("{typed}\n").as_bytes()).unwrap();
        let r = wait(id);
        assert_eq!(r.get("result").is_some(), typed == "approve", "{r}");
        if typed != "approve" {
            assert_eq!(r["error"]["data"]["answered_by"], "terminal", "{r}");
        }
    }
    drop(stdin);
    wait_bounded(&mut child, Duration::from_secs(20));
    assert_eq!(lab.read("ws/yes.txt").as_deref(), Some("t"));
    assert!(!lab.exists("ws/no.txt"));
}

/// An approval given through the client (2026-07-28: the answer comes with the retry) lets the
/// call run, not its result skip the content checks: the fixture's answer names the path it
/// wrote, here one holding an AWS access key id, which reaches the client redacted.
#[test]
fn generation_2026_an_approved_calls_result_is_checked() {
    let lab = Lab::new();
    let audit = lab.path("audit.jsonl");
    let key = format!("AKIA{}", random_hex(8).to_uppercase());
    let target = lab.p(&format!("ws/{key}.txt"));
    let t = note_through_2026_client(&lab, &audit, "approve", &target);
    assert_eq!(
        lab.read(&format!("ws/{key}.txt")).as_deref(),
        Some("new era")
    );
    let result = t["results"][0].to_string();
    assert!(result.contains("[REDACTED by capjail: cloud]"), "{t}");
    assert!(!result.contains(&key), "the key reached the client: {t}");
}
