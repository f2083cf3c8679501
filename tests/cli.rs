//! The command line: `policy list|show|validate`, `check`, exit codes, and the lifecycle of the
//! server process (stdin EOF -> SIGTERM -> SIGKILL; no process outlives capjail; stderr passes
//! through; stdout carries protocol only).

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{json, Value};

// ----- policy --------------------------------------------------------------------------------------

#[test]
fn policy_list_names_the_builtins() {
    let o = capjail(&["policy", "list"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    for name in ["strict", "readonly", "workspace", "capfence"] {
        assert!(
            o.stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} missing from:\n{}",
            o.stdout
        );
    }
}

#[test]
fn policy_show_round_trips_through_validate() {
    let lab = Lab::new();
    for name in ["strict", "readonly", "workspace", "capfence"] {
        let o = capjail(&["policy", "show", name]);
        assert_eq!(o.code, Some(0), "{o:?}");
        let p = lab.policy(&format!("shown-{name}"), &o.stdout);
        let v = capjail(&["policy", "validate", p.to_str().unwrap()]);
        assert_eq!(
            v.code,
            Some(0),
            "`policy show {name}` output does not validate: {v:?}\n{}",
            o.stdout
        );
    }
    let o = capjail(&["policy", "show", "strict"]);
    assert!(
        o.stdout.contains("/tmp") && o.stdout.contains("none"),
        "{}",
        o.stdout
    );
}

#[test]
fn policy_show_unknown_is_a_policy_error() {
    let o = capjail(&["policy", "show", "no-such-policy-xyz"]);
    assert_eq!(o.code, Some(124), "{o:?}");
}

#[test]
fn policy_validate_accepts_builtins_and_seeds_verbatim() {
    for f in ["strict", "readonly", "workspace", "capfence"] {
        let p = repo().join(format!("policies/{f}.yaml"));
        let o = capjail(&["policy", "validate", p.to_str().unwrap()]);
        assert_eq!(o.code, Some(0), "{}: {o:?}", p.display());
    }
    for f in [
        "capfence-demo",
        "capfence-mcp_policy",
        "mcpjail-readonly",
        "mcpjail-strict",
    ] {
        let p = repo().join(format!("policies/seeds/{f}.yaml"));
        let o = capjail(&["policy", "validate", p.to_str().unwrap()]);
        assert_eq!(o.code, Some(0), "{}: {o:?}", p.display());
    }
}

#[test]
fn policy_validate_unknown_key_names_file_line_column() {
    let lab = Lab::new();
    let p = lab.policy("bad", "name: bad\nnetwork:\n  mode: none\n  bogus_key: 1\n");
    let o = capjail(&["policy", "validate", p.to_str().unwrap()]);
    assert_eq!(o.code, Some(124), "{o:?}");
    let want = format!("{}:4:3", p.display());
    assert!(
        o.stderr.contains(&want),
        "stderr should name {want}: {}",
        o.stderr
    );
    assert!(
        o.stderr.contains("bogus_key"),
        "stderr should name the key: {}",
        o.stderr
    );
    assert!(o.stdout.is_empty(), "errors go to stderr: {o:?}");
}

#[test]
fn policy_validate_kernel_environment_audit_keys_are_errors() {
    // These sections were read raw where used: a misspelt key became a plan note.
    let lab = Lab::new();
    for (name, text, at, key) in [
        (
            "k",
            "name: k\nkernel: {rlimits: {nofil: 10}}\n",
            "2:",
            "nofil",
        ),
        (
            "k2",
            "name: k\nkernel:\n  rlimits:\n    nofil: 10\n",
            "4:5",
            "nofil",
        ),
        ("e", "name: e\nenvironment:\n  alow: [A]\n", "3:3", "alow"),
        ("a", "name: a\naudit:\n  fsyn: true\n", "3:3", "fsyn"),
    ] {
        let p = lab.policy(name, text);
        for cmd in ["validate", "show"] {
            let o = capjail(&["policy", cmd, p.to_str().unwrap()]);
            assert_eq!(o.code, Some(124), "{cmd} {name}: {o:?}");
            let want = format!("{}:{at}", p.display());
            assert!(
                o.stderr.contains(&want),
                "{cmd} {name}: want {want}: {}",
                o.stderr
            );
            assert!(
                o.stderr.contains(&format!("`{key}`")),
                "{cmd} {name}: {}",
                o.stderr
            );
        }
    }
}

#[test]
fn policy_explain_rule_prints_the_documented_entry() {
    let o = capjail(&["policy", "explain", "--rule", "protocol.batch"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.starts_with("protocol.batch\n"), "{}", o.stdout);
    assert!(
        o.stdout.contains("triggered by:") && o.stdout.contains("to allow:"),
        "{}",
        o.stdout
    );
    // The same entry as docs/rules.md.
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rules.md")).unwrap();
    let row = docs
        .lines()
        .find(|l| l.starts_with("| `protocol.batch` |"))
        .expect("documented");
    let trigger = o
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .trim_start_matches("triggered by: ");
    assert!(row.contains(trigger), "{row}\n{trigger}");
    // A policy rule is explained too; an unknown id is a usage error.
    let o = capjail(&["policy", "explain", "--rule", "deny[0]"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let o = capjail(&["policy", "explain", "--rule", "protocol"]);
    assert_eq!(o.code, Some(125), "{o:?}");
    assert!(o.stderr.contains("docs/rules.md"), "{o:?}");
}

#[test]
fn policy_validate_bad_value_and_missing_file() {
    let lab = Lab::new();
    let p = lab.policy("badval", "name: bad\nnetwork:\n  mode: sometimes\n");
    let o = capjail(&["policy", "validate", p.to_str().unwrap()]);
    assert_eq!(o.code, Some(124), "{o:?}");
    assert!(
        o.stderr.contains(&format!("{}:3", p.display())),
        "{}",
        o.stderr
    );
    let o = capjail(&["policy", "validate", lab.p("does-not-exist.yaml").as_str()]);
    assert_eq!(o.code, Some(124), "{o:?}");
}

// ----- check ---------------------------------------------------------------------------------------

fn req(id: i64, name: &str, args: Value) -> String {
    serde_json::to_string(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":args}})).unwrap()
}

#[test]
fn check_one_verdict_per_line_and_exit_status() {
    let lab = Lab::in_tmp();
    let allowed = format!(
        "{}\n{}\n",
        req(1, "read_file", json!({"path": lab.p("ws/notes.txt")})),
        req(2, "list_directory", json!({"path": lab.ws_s()}))
    );
    let o = capjail_with_input(
        &["check", "--policy", "strict", "--profile", "filesystem"],
        allowed.as_bytes(),
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    let verdicts: Vec<Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON verdict per line"))
        .collect();
    assert_eq!(verdicts.len(), 2, "{}", o.stdout);
    assert!(
        verdicts.iter().all(|v| v["verdict"] == json!("allow")),
        "{}",
        o.stdout
    );

    let mixed = format!(
        "{}\n{}\n{}\n",
        req(1, "read_file", json!({"path": lab.p("ws/notes.txt")})),
        req(2, "read_file", json!({"path": "/etc/passwd"})),
        req(3, "execute_command", json!({"command": "id"}))
    );
    let o = capjail_with_input(
        &["check", "--policy", "strict", "--profile", "filesystem"],
        mixed.as_bytes(),
    );
    assert_eq!(o.code, Some(1), "a denial makes check exit 1: {o:?}");
    let verdicts: Vec<Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON verdict per line"))
        .collect();
    assert_eq!(verdicts.len(), 3, "{}", o.stdout);
    assert_eq!(verdicts[0]["verdict"], json!("allow"));
    assert_eq!(verdicts[1]["verdict"], json!("deny"));
    assert_eq!(verdicts[2]["verdict"], json!("deny"));
    assert_eq!(verdicts[1]["id"], json!(2));
}

#[test]
fn check_invalid_lines_name_their_protocol_rule() {
    let input = "not json\n[]\n{\"id\":1,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}\n";
    let o = capjail_with_input(&["check", "--policy", "strict"], input.as_bytes());
    let rules: Vec<Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON verdict per line")["rule"].clone())
        .collect();
    assert_eq!(
        rules,
        vec![
            json!("protocol.invalid_json"),
            json!("protocol.empty_batch"),
            json!("protocol.invalid_request"),
            json!("protocol.strict_json")
        ],
        "{o:?}"
    );
}

#[test]
fn check_readonly_denies_write_tools() {
    let lab = Lab::new();
    let ws = lab.ws_s();
    let input = format!(
        "{}\n",
        req(
            1,
            "write_file",
            json!({"path": lab.p("ws/x"), "content": "x"})
        )
    );
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
    assert_eq!(o.code, Some(1), "{o:?}");
}

// ----- exit codes ----------------------------------------------------------------------------------

#[test]
fn exit_status_passes_through() {
    let o = capjail(&["run", "--", "sh", "-c", "exit 7"]);
    assert_eq!(o.code, Some(7), "{o:?}");
    let o = capjail(&["run", "--", "sh", "-c", "exit 0"]);
    assert_eq!(o.code, Some(0), "{o:?}");
}

#[test]
fn killed_by_signal_is_128_plus_n() {
    let o = capjail(&["run", "--mode", "proxy", "--", "sh", "-c", "kill -USR1 $$"]);
    assert_eq!(o.code, Some(128 + 10), "{o:?}");
}

#[test]
fn command_not_found_is_127() {
    let o = capjail(&["run", "--", "capjail-no-such-command-xyz"]);
    assert_eq!(o.code, Some(127), "{o:?}");
    let o = capjail(&["run", "--", "/nonexistent/dir/server"]);
    assert_eq!(o.code, Some(127), "{o:?}");
}

#[test]
fn cannot_execute_is_126() {
    let lab = Lab::new();
    let o = capjail(&["run", "--", lab.p("ws/notes.txt").as_str()]);
    assert_eq!(o.code, Some(126), "{o:?}");
}

#[test]
fn policy_error_is_124_and_usage_error_is_125() {
    let o = capjail(&["run", "--policy", "no-such-policy-xyz", "--", "true"]);
    assert_eq!(o.code, Some(124), "{o:?}");
    let lab = Lab::new();
    let p = lab.policy(
        "bad",
        "name: bad\nfilesystem:\n  mounts:\n    - path: /tmp\n      mode: rwx\n",
    );
    let o = capjail(&["run", "--policy", p.to_str().unwrap(), "--", "true"]);
    assert_eq!(o.code, Some(124), "{o:?}");
    let o = capjail(&["run", "--no-such-flag", "--", "true"]);
    assert_eq!(o.code, Some(125), "{o:?}");
    let o = capjail(&["run"]);
    assert_eq!(
        o.code,
        Some(125),
        "a missing server command is a usage error: {o:?}"
    );
    let o = capjail(&["run", "--mode", "sideways", "--", "true"]);
    assert_eq!(o.code, Some(125), "{o:?}");
}

// ----- lifecycle -----------------------------------------------------------------------------------

fn read_pid(path: &std::path::Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(p) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "pid file {} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !pid_alive(pid)
}

#[test]
fn closing_stdin_ends_the_real_server() {
    let lab = Lab::new();
    let pidf = lab.path("logs/server.pid");
    let fs = fs_server(&[&lab.root]).join(" ");
    let mut s = SessionBuilder::capjail(
        &[
            "--policy",
            lab.ws_rw_policy().to_str().unwrap(),
            "--profile",
            "filesystem",
        ],
        vec![
            "sh".into(),
            "-c".into(),
            format!("echo $$ > {}; exec {fs}", pidf.display()),
        ],
    )
    .spawn();
    s.initialize();
    let pid = read_pid(&pidf);
    assert!(pid_alive(pid));
    let st = s
        .close()
        .expect("capjail must exit after the client closes stdin");
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "server pid {pid} still alive after capjail exited ({st:?})"
    );
}

#[test]
fn a_server_ignoring_eof_and_sigterm_is_killed() {
    let lab = Lab::new();
    let pidf = lab.path("logs/stubborn.pid");
    let code = format!(
        "import os,signal,time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nopen({:?},'w').write(str(os.getpid()))\nwhile True: time.sleep(1)\n",
        pidf.display().to_string()
    );
    let mut s = SessionBuilder::capjail(
        &["--mode", "proxy"],
        vec!["python3".into(), "-c".into(), code],
    )
    .spawn();
    let pid = read_pid(&pidf);
    let t = Instant::now();
    let st = s.close();
    assert!(
        st.is_some(),
        "capjail did not exit within {EXIT_TIMEOUT:?} although the server ignores SIGTERM"
    );
    assert!(
        wait_gone(pid, Duration::from_secs(5)),
        "stubborn server {pid} survived"
    );
    eprintln!(
        "stubborn server reaped after {:?}, capjail status {st:?}",
        t.elapsed()
    );
}

#[test]
fn no_grandchild_outlives_capjail() {
    let lab = Lab::new();
    let pidf = lab.path("logs/grandchild.pid");
    let log = lab.path("logs/naive.log");
    let naive = naive_server(&lab.root, &log).join(" ");
    let mut s = SessionBuilder::capjail(
        &[
            "--mode",
            "proxy",
            "--profile",
            fixture("naive_profile.yaml").to_str().unwrap(),
        ],
        vec![
            "sh".into(),
            "-c".into(),
            format!("sleep 300 & echo $! > {}; exec {naive}", pidf.display()),
        ],
    )
    .spawn();
    s.initialize();
    let pid = read_pid(&pidf);
    assert!(pid_alive(pid));
    s.close().expect("capjail must exit");
    let gone = wait_gone(pid, Duration::from_secs(5));
    if !gone {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(gone, "the server's background child {pid} outlived capjail");
}

#[test]
fn server_stderr_passes_through_and_stdout_is_protocol_only() {
    let lab = Lab::new();
    let mk = marker();
    let log = lab.path("logs/naive.log");
    let naive = naive_server(&lab.root, &log).join(" ");
    let pol = lab.ws_rw_policy();
    let mut s = SessionBuilder::capjail(
        &[
            "-v",
            "--policy",
            pol.to_str().unwrap(),
            "--profile",
            fixture("naive_profile.yaml").to_str().unwrap(),
        ],
        vec![
            "sh".into(),
            "-c".into(),
            format!("echo server-stderr-{mk} >&2; exec {naive}"),
        ],
    )
    .spawn();
    s.initialize();
    let r = s.call_tool("read_text_file", json!({"path": lab.p("ws/notes.txt")}));
    assert_tool_ok(&r, &lab.legit);
    let r = s.call_tool("read_text_file", json!({"path": lab.p("secret/id_rsa")}));
    assert!(r.get("error").is_some());
    s.send_raw(b"not json");
    s.finish();
    assert!(
        s.stderr_text().contains(&format!("server-stderr-{mk}")),
        "server stderr missing from capjail's stderr:\n{}",
        s.stderr_text()
    );
    let out = s.received_text();
    assert!(!out.is_empty());
    for line in out.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("non-JSON on stdout ({e}): {line:?}"));
        assert_eq!(v["jsonrpc"], json!("2.0"), "{line}");
    }
    assert!(out.ends_with('\n'));
}

#[test]
fn stdout_is_protocol_only_with_json_logs() {
    let lab = Lab::new();
    let mut s = SessionBuilder::capjail(
        &[
            "-v",
            "--log-format",
            "json",
            "--policy",
            lab.ws_rw_policy().to_str().unwrap(),
        ],
        fs_server(&[&lab.root]),
    )
    .spawn();
    s.initialize();
    s.call_tool("read_text_file", json!({"path": lab.p("secret/id_rsa")}));
    s.finish();
    for line in s.received_text().lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("non-JSON on stdout ({e}): {line:?}"));
    }
    let err = s.stderr_text();
    assert!(
        err.lines()
            .any(|l| serde_json::from_str::<Value>(l).is_ok()),
        "--log-format json should log JSON lines on stderr:\n{err}"
    );
    lab.assert_no_leak(&s);
}

// ----- the error contract ------------------------------------------------------------------------

/// Every policy violation carries `error.data` with rule, capability, resource and reason (null
/// when there is none), whatever layer of the policy refused it: a mount, a tool list, a rule.
#[test]
fn error_data_carries_every_contract_field() {
    let lab = Lab::new();
    let log = lab.path("logs/naive.log");
    let capfence = lab.policy("capfence-like", &format!(
        "deny:\n- capability: shell.execute\nrequire_approval:\n- capability: database.write\nallow:\n- capability: filesystem.read\n  path_prefix: {}\n",
        lab.ws_s()
    ));
    let profile = fixture("naive_profile.yaml");
    let cases: Vec<(&str, std::path::PathBuf, &str, Value)> = vec![
        (
            "mount",
            lab.ws_rw_policy(),
            "read_text_file",
            json!({"path": lab.p("secret/id_rsa")}),
        ),
        (
            "tools.blocked",
            lab.ws_rw_policy(),
            "run_command",
            json!({"command": "id"}),
        ),
        (
            "tools.allowed",
            lab.ws_ro_policy(),
            "write_file",
            json!({"path": lab.p("ws/x"), "content": "x"}),
        ),
        (
            "deny rule",
            capfence.clone(),
            "run_command",
            json!({"command": "id"}),
        ),
        (
            "approval",
            capfence,
            "execute_sql",
            json!({"query": "DELETE FROM t"}),
        ),
    ];
    let mut bad = Vec::new();
    for (what, pol, tool, args) in cases {
        let mut s = SessionBuilder::capjail(
            &[
                "--policy",
                pol.to_str().unwrap(),
                "--profile",
                profile.to_str().unwrap(),
            ],
            naive_server(&lab.root, &log),
        )
        .spawn();
        s.initialize();
        let r = s.call_tool(tool, args);
        let data = r.pointer("/error/data").cloned().unwrap_or(Value::Null);
        let missing: Vec<&str> = ["rule", "capability", "resource", "reason"]
            .into_iter()
            .filter(|k| data.get(*k).is_none())
            .collect();
        if r.pointer("/error/code") != Some(&json!(-32001)) || !missing.is_empty() {
            bad.push(format!("{what}: missing {missing:?} in {r}"));
        }
    }
    assert!(
        bad.is_empty(),
        "error.data must carry rule, capability, resource, reason:\n{}",
        bad.join("\n")
    );
}
