//! CapFence's two scenarios (seeds/000_67abd5501da5216d.txt) with its policy file as published
//! (policies/seeds/capfence-mcp_policy.yaml, only the project path replaced by the lab's
//! workspace), against the real filesystem server; `shell.execute` and `database.write` against
//! the lab's naive server (which has a shell tool and a database tool, described by
//! tests/fixtures/naive_profile.yaml).

use crate::support::*;
use serde_json::{json, Value};

const PROJECT: &str = "/Users/anshumankumar/Documents/Capfence/capfence";
const SSH: &str = "/Users/anshumankumar/.ssh";

/// The seed policy, verbatim but for the project path (and optionally the .ssh path).
fn capfence_policy(lab: &Lab, ssh: Option<&str>) -> std::path::PathBuf {
    let seed = std::fs::read_to_string(repo().join("policies/seeds/capfence-mcp_policy.yaml"))
        .expect("policies/seeds/capfence-mcp_policy.yaml");
    assert!(
        seed.contains(PROJECT),
        "the seed policy should name the original project path"
    );
    let mut text = seed.replace(PROJECT, &lab.ws_s());
    if let Some(s) = ssh {
        text = text.replace(SSH, s);
    }
    lab.policy("capfence", &text)
}

fn fs_session(lab: &Lab, ssh: Option<&str>) -> Session {
    let pol = capfence_policy(lab, ssh);
    let mut s = SessionBuilder::capjail(
        &["--policy", pol.to_str().unwrap()],
        fs_server(&[std::path::Path::new("/")]),
    )
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

#[test]
fn scenario1_project_file_read_allowed_with_real_content() {
    let lab = Lab::new();
    let body = format!("[project]\nname = \"capfence\"\n# {}\n", lab.legit);
    std::fs::write(lab.path("ws/pyproject.toml"), &body).unwrap();
    let mut s = fs_session(&lab, None);
    let (id, r) = call(
        &mut s,
        "read_file",
        json!({"path": lab.p("ws/pyproject.toml")}),
    );
    assert_eq!(r["id"], id);
    let text = assert_tool_ok(&r, &lab.legit);
    assert_eq!(text, body, "the real file content must come back unchanged");
}

#[test]
fn scenario2_etc_passwd_denied_by_deny0() {
    let lab = Lab::new();
    let mut s = fs_session(&lab, None);
    let (id, r) = call(&mut s, "read_file", json!({"path": "/etc/passwd"}));
    let err = assert_policy_error(&r, &id);
    assert_eq!(
        err["data"]["rule"],
        json!("deny[0]"),
        "the deny rule must be named: {r}"
    );
    assert_eq!(err["data"]["capability"], json!("filesystem.read"), "{r}");
    s.assert_in_sync();
    s.finish();
    assert!(
        !s.received_text().contains("root:x:0:0"),
        "/etc/passwd reached the client"
    );
}

#[test]
fn scenario2_baseline_server_would_serve_etc_passwd() {
    let mut s = SessionBuilder::direct(fs_server(&[std::path::Path::new("/")])).spawn();
    s.initialize();
    let (_, r) = call(&mut s, "read_file", json!({"path": "/etc/passwd"}));
    assert_tool_ok(&r, "root:x:0:0");
}

#[test]
fn ssh_dir_denied_by_deny1() {
    let lab = Lab::new();
    let secret_dir = lab.p("secret");
    let mut s = fs_session(&lab, Some(&secret_dir));
    let (id, r) = call(&mut s, "read_file", json!({"path": lab.p("secret/id_rsa")}));
    let err = assert_policy_error(&r, &id);
    assert_eq!(err["data"]["rule"], json!("deny[1]"), "{r}");
    s.finish();
    lab.assert_no_leak(&s);
}

#[test]
fn project_write_allowed_and_outside_write_denied() {
    let lab = Lab::new();
    let mut s = fs_session(&lab, None);
    let (_, r) = call(
        &mut s,
        "write_file",
        json!({"path": lab.p("ws/out.txt"), "content": "ok"}),
    );
    assert_tool_ok(&r, "");
    assert_eq!(lab.read("ws/out.txt").as_deref(), Some("ok"));
    let (id, r) = call(
        &mut s,
        "write_file",
        json!({"path": lab.p("ws_evil/out.txt"), "content": "no"}),
    );
    assert_policy_error(&r, &id);
    assert!(
        !lab.exists("ws_evil/out.txt"),
        "a write outside the project landed"
    );
    // A read outside the project that no deny rule names: no allow rule matches either.
    let (id, r) = call(
        &mut s,
        "read_file",
        json!({"path": lab.p("ws_evil/canary.txt")}),
    );
    assert_policy_error(&r, &id);
    s.finish();
    lab.assert_no_leak(&s);
}

fn naive_capfence(lab: &Lab) -> (Session, std::path::PathBuf) {
    let pol = capfence_policy(lab, None);
    let log = lab.path("logs/naive.log");
    let profile = fixture("naive_profile.yaml");
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
    (s, log)
}

#[test]
fn shell_execute_denied() {
    let lab = Lab::new();
    let (mut s, log) = naive_capfence(&lab);
    let mk = marker();
    let (id, r) = call(
        &mut s,
        "run_command",
        json!({"command": format!("cat {} # {mk}", lab.p("secret/id_rsa"))}),
    );
    let err = assert_policy_error(&r, &id);
    assert_eq!(err["data"]["capability"], json!("shell.execute"), "{r}");
    assert_eq!(err["data"]["rule"], json!("deny[2]"), "{r}");
    s.assert_in_sync();
    s.finish();
    lab.assert_no_leak(&s);
    assert!(
        !reached(&log).contains(&mk),
        "the shell call reached the server"
    );
}

#[test]
fn database_write_requires_approval() {
    let lab = Lab::new();
    let (mut s, log) = naive_capfence(&lab);
    let mk = marker();
    let (id, r) = call(
        &mut s,
        "execute_sql",
        json!({"query": format!("DELETE FROM users -- {mk}")}),
    );
    let err = assert_policy_error(&r, &id);
    assert_eq!(err["data"]["capability"], json!("database.write"), "{r}");
    assert_eq!(err["data"]["rule"], json!("require_approval[0]"), "{r}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("approval required"),
        "{r}"
    );
    s.assert_in_sync();
    s.finish();
    assert!(!lab.exists("db.log"), "the database write happened");
    assert!(
        !reached(&log).contains(&mk),
        "the database call reached the server"
    );
}

#[test]
fn naive_baseline_shell_and_database_tools_work() {
    let lab = Lab::new();
    let log = lab.path("logs/naive.log");
    let mut s = SessionBuilder::direct(naive_server(&lab.root, &log)).spawn();
    s.initialize();
    let (_, r) = call(
        &mut s,
        "run_command",
        json!({"command": format!("cat {}", lab.p("secret/id_rsa"))}),
    );
    assert_tool_ok(&r, &lab.secret);
    let (_, r) = call(&mut s, "execute_sql", json!({"query": "DELETE FROM users"}));
    assert_tool_ok(&r, "1 row");
    assert!(lab.exists("db.log"));
}
