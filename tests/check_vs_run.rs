//! `capjail check` and `capjail run` decide the same way (issue 14; issue 13's last line): every
//! message of the project's attack suite (the cases `capjail compare` sends, src/compare/suite.rs)
//! and of the seeds' test requests (tests/seed_capfence.rs, tests/seed_mcpjail.rs) goes through
//! `check` (no server) and through `run` (proxy mode, a real or the lab's naive server), and the
//! verdicts must agree: allowed, or refused with the same rule id. Then `capjail replay` of
//! `run`'s audit log under the same policy must change no decision.
//!
//! `run`'s verdict is read off what the client gets: a `-32001` error names the rule; `-32600` /
//! `-32700` are refusals before any rule; anything else came from the server (allowed).
//! Servers are started with only the lab on their command line, so a wrong "allowed" cannot
//! touch anything outside the lab. No request leaves loopback: the fetch seeds go to the naive
//! server (which has no fetch tool) under the fetch profile.

use std::path::Path;
use std::time::Duration;

use crate::support::*;
use capjail::compare::suite::{render, Step, Vars, WallsVars, SUITE};
use serde_json::{json, Value};

/// One message and how to recognise `run`'s answer to it.
struct Msg {
    name: String,
    line: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Allowed,
    /// Refused, with the rule id (`None`: an invalid message, refused before any rule).
    Refused(Option<String>),
}

/// A group of messages judged under one policy, one profile, one working directory.
struct Group<'a> {
    what: &'a str,
    /// `--policy ...` and friends, shared by `check` and `run`.
    policy_args: Vec<String>,
    /// `--profile` for `check` (and for `run` when `force_profile`); `run` otherwise picks the
    /// same profile from the server's command line.
    profile: String,
    force_profile: bool,
    server: Vec<String>,
    cwd: &'a Path,
    msgs: Vec<Msg>,
}

fn call(name: &str, id: &str, tool: &str, args: Value) -> Msg {
    Msg {
        name: name.to_string(),
        line: serde_json::to_vec(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}})).unwrap(),
    }
}

/// The id `run`'s answer carries (`Null` for a line whose id cannot be read).
fn expected_id(line: &[u8]) -> Option<Value> {
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Array(_)) => None,
        Ok(v) => Some(v.get("id").cloned().unwrap_or(Value::Null)),
        // Not JSON to a lenient reader either (invalid UTF-8, a lone surrogate, too deep):
        // capjail cannot salvage the id.
        Err(_) => Some(Value::Null),
    }
}

fn run_verdict(reply: &Value) -> Verdict {
    let error_verdict = |e: &Value| {
        let code = e.pointer("/error/code").and_then(Value::as_i64);
        let rule = e
            .pointer("/error/data/rule")
            .and_then(Value::as_str)
            .map(str::to_string);
        match code {
            Some(-32001) => Some(Verdict::Refused(rule)),
            Some(-32600) | Some(-32700) => Some(Verdict::Refused(rule)),
            _ => None,
        }
    };
    match reply {
        // A refused batch: the first element refused for its own reason names the rule.
        Value::Array(items) => {
            let own = items.iter().find(|e| {
                e.pointer("/error/data/rule").and_then(Value::as_str) != Some("protocol.batch")
                    && e.get("error").is_some()
            });
            match own.or(items.first()).and_then(error_verdict) {
                Some(v) => v,
                None => Verdict::Allowed,
            }
        }
        v => error_verdict(v).unwrap_or(Verdict::Allowed),
    }
}

fn check_verdict(v: &Value) -> Verdict {
    if v["verdict"] == "allow" {
        return Verdict::Allowed;
    }
    if let Some(batch) = v["batch"].as_array() {
        let first = batch.iter().find(|r| r["verdict"] != "allow");
        return Verdict::Refused(first.and_then(|r| r["rule"].as_str()).map(str::to_string));
    }
    Verdict::Refused(v["rule"].as_str().map(str::to_string))
}

/// Judge every message of `g` with `check` and with `run`; returns the disagreements.
fn compare(g: &Group) -> Vec<String> {
    let cwd = g.cwd.display().to_string();
    // check: all lines in one session, as `run` sees them in one.
    let mut args: Vec<&str> = vec!["check"];
    args.extend(g.policy_args.iter().map(String::as_str));
    args.extend(["--profile", &g.profile, "--cwd", &cwd]);
    let mut input = Vec::new();
    for m in &g.msgs {
        input.extend_from_slice(&m.line);
        input.push(b'\n');
    }
    let o = capjail_with_input(&args, &input);
    let checked: Vec<Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        checked.len(),
        g.msgs.len(),
        "{}: one verdict per line from check: {o:?}",
        g.what
    );

    // run: the same lines, one at a time, each answered before the next.
    let mut run_args: Vec<&str> = g.policy_args.iter().map(String::as_str).collect();
    if g.force_profile {
        run_args.extend(["--profile", &g.profile]);
    }
    // run's own audit log, replayed below under the same policy.
    let log = g.cwd.join(format!(
        "check-vs-run-{}.jsonl",
        g.what.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    ));
    let log_s = log.display().to_string();
    run_args.extend(["--audit", &log_s]);
    let mut s = SessionBuilder::capjail(&run_args, g.server.clone())
        .cwd(g.cwd)
        .spawn();
    s.initialize();
    let mut differences = Vec::new();
    for (m, c) in g.msgs.iter().zip(&checked) {
        s.send_raw(&m.line);
        let reply = match expected_id(&m.line) {
            Some(id) => s.wait_line(Duration::from_secs(30), &m.name, move |v| {
                v.get("id") == Some(&id) && (v.get("result").is_some() || v.get("error").is_some())
            }),
            None => s.wait_line(Duration::from_secs(30), &m.name, Value::is_array),
        };
        let (by_run, by_check) = (run_verdict(&reply), check_verdict(c));
        eprintln!("{}: {}: run {by_run:?}, check {by_check:?}", g.what, m.name);
        if by_run != by_check {
            differences.push(format!(
                "{}: {}: run {by_run:?} ({reply}), check {by_check:?} ({c})",
                g.what, m.name
            ));
        }
    }
    s.finish();

    // `audit replay` of what run recorded, under the same policy: the same decisions.
    let mut args: Vec<&str> = vec!["replay", &log_s];
    args.extend(g.policy_args.iter().map(String::as_str));
    let o = capjail(&args);
    eprintln!("{}: replay: {}", g.what, o.stdout.trim());
    if o.code != Some(0) || !o.stdout.contains(" 0 now denied, 0 now allowed") {
        differences.push(format!(
            "{}: replay of run's log under the same policy changed decisions: {o:?}",
            g.what
        ));
    }
    let _ = std::fs::remove_file(&log);
    differences
}

/// Every message of the compare suite, with ids unique across the session.
fn suite_messages(lab: &Lab) -> Vec<Msg> {
    let vars = Vars {
        root: lab.root.display().to_string(),
        ws: lab.ws.display().to_string(),
        // Nothing listens there: the host cases are refused before any connection, by both.
        port: 9,
        origin_port: 9,
        marker: marker(),
        walls: WallsVars::default(),
    };
    let mut msgs = Vec::new();
    for case in SUITE {
        for (i, step) in case.steps.iter().enumerate() {
            let name = format!("{}#{i}", case.id);
            match step {
                Step::Call { tool, args } => {
                    let args: Value = serde_json::from_slice(&render(args, &vars))
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    msgs.push(call(&name, &name, tool, args));
                }
                Step::Raw(t) => {
                    // Unique ids: `run`'s server answers each request, `check`'s never does.
                    let t = t
                        .replace("\"id\":\"atk\"", &format!("\"id\":\"{name}\""))
                        .replace("\"id\":\"ok\"", &format!("\"id\":\"{name}-ok\""));
                    msgs.push(Msg {
                        name,
                        line: render(&t, &vars),
                    });
                }
            }
        }
    }
    msgs
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn check_and_run_agree_on_the_compare_suite() {
    let lab = Lab::new();
    let policy = lab.policy("compare", &capjail::compare::lab::workspace_policy(&lab.ws));
    let mut msgs = suite_messages(&lab);
    assert!(msgs.len() >= SUITE.len(), "every case has a message");
    // A stage after the capability decision: the content checks read what a write carries.
    msgs.push(call(
        "content-secret-in-write",
        "content-1",
        "write_file",
        json!({"path": lab.p("ws/leak.txt"), "content": "aws key=AKIAZ7Q3BT4LCMW2PX5N"}),
    ));
    let g = Group {
        what: "compare suite",
        policy_args: args(&["--policy", policy.to_str().unwrap()]),
        profile: "filesystem".into(),
        force_profile: false,
        // As `capjail compare` runs it: the workspace and the whole lab on the command line.
        server: fs_server(&[&lab.ws, &lab.root]),
        cwd: &lab.root,
        msgs,
    };
    let d = compare(&g);
    assert!(d.is_empty(), "check and run disagree:\n{}", d.join("\n"));
}

/// The seeds' policy file for CapFence, with the project and .ssh paths in the lab.
fn capfence_policy(lab: &Lab) -> std::path::PathBuf {
    let seed = std::fs::read_to_string(repo().join("policies/seeds/capfence-mcp_policy.yaml"))
        .expect("policies/seeds/capfence-mcp_policy.yaml");
    let text = seed
        .replace(
            "/Users/anshumankumar/Documents/Capfence/capfence",
            &lab.ws_s(),
        )
        .replace("/Users/anshumankumar/.ssh", &lab.p("home/.ssh"));
    lab.policy("capfence", &text)
}

#[test]
fn check_and_run_agree_on_the_seed_requests() {
    let lab = Lab::in_tmp();
    std::fs::create_dir_all(lab.path("home/.ssh")).unwrap();
    std::fs::write(lab.path("home/.ssh/id_ed25519"), "key").unwrap();
    let capfence = capfence_policy(&lab);
    let capfence = capfence.to_str().unwrap();
    let ws = lab.ws_s();
    let naive_log = lab.path("logs/naive.log");
    let naive_profile = fixture("naive_profile.yaml").display().to_string();
    let mut differences = Vec::new();

    // tests/seed_capfence.rs: the filesystem server under the seed's policy.
    differences.extend(compare(&Group {
        what: "capfence (filesystem)",
        policy_args: args(&["--policy", capfence]),
        profile: "filesystem".into(),
        force_profile: false,
        server: fs_server(&[&lab.root]),
        cwd: &lab.ws,
        msgs: vec![
            call(
                "scenario1-read-project",
                "c1",
                "read_file",
                json!({"path": lab.p("ws/notes.txt")}),
            ),
            call(
                "scenario2-etc-passwd",
                "c2",
                "read_file",
                json!({"path": "/etc/passwd"}),
            ),
            call(
                "ssh-dir",
                "c3",
                "read_file",
                json!({"path": lab.p("home/.ssh/id_ed25519")}),
            ),
            call(
                "project-write",
                "c4",
                "write_file",
                json!({"path": lab.p("ws/out.txt"), "content": "x"}),
            ),
            call(
                "outside-write",
                "c5",
                "write_file",
                json!({"path": lab.p("etc_like/out.txt"), "content": "x"}),
            ),
        ],
    }));
    // tests/seed_capfence.rs: shell and database tools on the naive server.
    differences.extend(compare(&Group {
        what: "capfence (naive)",
        policy_args: args(&["--policy", capfence]),
        profile: naive_profile.clone(),
        force_profile: true,
        server: naive_server(&lab.root, &naive_log),
        cwd: &lab.ws,
        msgs: vec![
            call(
                "shell-execute",
                "n1",
                "run_command",
                json!({"command": format!("cat {}", lab.p("secret/id_rsa"))}),
            ),
            call(
                "database-write",
                "n2",
                "execute_sql",
                json!({"query": "DELETE FROM users"}),
            ),
        ],
    }));
    // tests/seed_mcpjail.rs, tests 1-3 and 8: strict, the filesystem server.
    differences.extend(compare(&Group {
        what: "mcpjail (strict, filesystem)",
        policy_args: args(&["--policy", "strict"]),
        profile: "filesystem".into(),
        force_profile: false,
        server: fs_server(&[&lab.root]),
        cwd: &lab.ws,
        msgs: vec![
            call(
                "t01-traversal",
                "m1",
                "read_file",
                json!({"path": "../../../etc/passwd"}),
            ),
            call(
                "t02-outside-mount",
                "m2",
                "read_file",
                json!({"path": "/etc/passwd"}),
            ),
            call(
                "t03-allowed-read",
                "m3",
                "read_file",
                json!({"path": lab.p("ws/notes.txt")}),
            ),
            call(
                "t03-allowed-write",
                "m4",
                "write_file",
                json!({"path": lab.p("ws/t03.txt"), "content": "ok"}),
            ),
            call(
                "t08-system-file",
                "m5",
                "write_file",
                json!({"path": "/etc/crontab", "content": "* * * * * true"}),
            ),
        ],
    }));
    // tests/seed_mcpjail.rs, tests 4-7: strict, the fetch profile (on the naive server: no
    // request can leave loopback even if one were allowed).
    let mk = marker();
    differences.extend(compare(&Group {
        what: "mcpjail (strict, fetch)",
        policy_args: args(&["--policy", "strict"]),
        profile: "fetch".into(),
        force_profile: true,
        server: naive_server(&lab.root, &naive_log),
        cwd: &lab.root,
        msgs: vec![
            call("t04-metadata", "f1", "fetch", json!({"url": format!("http://169.254.169.254/latest/meta-data/?caplab={mk}"), "max_length": 2000})),
            call("t05-localhost-22", "f2", "fetch", json!({"url": format!("http://localhost:22/?caplab={mk}"), "max_length": 2000})),
            call("t05-localhost-canary", "f3", "fetch", json!({"url": format!("http://localhost:{}/ssrf-{mk}", 18080), "max_length": 2000})),
            call("t06-private", "f4", "fetch", json!({"url": format!("http://192.168.1.1/admin?caplab={mk}"), "max_length": 2000})),
            call("t07-external", "f5", "fetch", json!({"url": format!("https://example.com/?caplab={mk}"), "max_length": 2000})),
        ],
    }));
    // tests/seed_mcpjail.rs, tests 9-10: readonly.
    differences.extend(compare(&Group {
        what: "mcpjail (readonly)",
        policy_args: args(&["--policy", "readonly", "--workspace", &ws]),
        profile: "filesystem".into(),
        force_profile: false,
        server: fs_server(&[&lab.root]),
        cwd: &lab.ws,
        msgs: vec![
            call("t09-write-ws", "r1", "write_file", json!({"path": lab.p("ws/test.txt"), "content": "malicious"})),
            call("t09-write-tmp", "r2", "write_file", json!({"path": "/tmp/test.txt", "content": "malicious"})),
            call("t09-read-ws", "r3", "read_file", json!({"path": lab.p("ws/notes.txt")})),
            call("t10-edit", "r4", "edit_file", json!({"path": lab.p("ws/test.txt"), "edits": [{"oldText": "test", "newText": "hacked"}]})),
        ],
    }));
    assert!(
        differences.is_empty(),
        "check and run disagree:\n{}",
        differences.join("\n")
    );
}

#[test]
fn check_refuses_what_run_refuses_before_any_rule() {
    // Protocol refusals `check` used to get wrong: a client response to a request the server
    // never sent (dropped by `run`), and an id reused while its request is in flight.
    let lab = Lab::new();
    let line = |id: i64| {
        serde_json::to_string(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"read_file","arguments":{"path":lab.p("ws/notes.txt")}}})).unwrap()
    };
    let input = format!(
        "{}\n{}\n{}\n",
        r#"{"jsonrpc":"2.0","id":77,"result":{}}"#,
        line(1),
        line(1)
    );
    let ws = lab.ws_s();
    let o = capjail_with_input(
        &[
            "check",
            "--policy",
            "readonly",
            "--workspace",
            &ws,
            "--profile",
            "filesystem",
        ],
        input.as_bytes(),
    );
    let v: Vec<Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 3, "{o:?}");
    assert_eq!(v[0]["verdict"], "deny", "a response to nothing: {}", v[0]);
    assert_eq!(v[0]["rule"], "protocol.unsolicited_response", "{}", v[0]);
    assert_eq!(v[1]["verdict"], "allow", "{}", v[1]);
    assert_eq!(v[2]["verdict"], "invalid", "an id in flight: {}", v[2]);
    assert_eq!(v[2]["rule"], "protocol.duplicate_id", "{}", v[2]);
    assert_eq!(o.code, Some(1));
}
