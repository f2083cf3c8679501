//! The first hour (issue 12), the parts tests/first_hour.rs did not cover yet: `show` and
//! `replay` read a whole rotated set, the roots a client names are compared with the mounts,
//! and a refusal by the kernel is explained on stderr.

use std::path::Path;

use crate::support::*;
use serde_json::json;

#[test]
fn audit_show_and_replay_read_the_whole_rotated_set() {
    let lab = Lab::new();
    let log = lab.p("logs/audit.jsonl");
    let pol = lab.policy(
        "rot",
        &format!(
            "name: rot\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\naudit:\n  max_bytes: 1500\n  keep: 50\n",
            lab.ws.display()
        ),
    );
    let relay = lab.path("logs/naive.log");
    let mut markers = Vec::new();
    for _ in 0..4 {
        let m = marker();
        let mut s = SessionBuilder::capjail(
            &[
                "--policy",
                pol.to_str().unwrap(),
                "--audit",
                &log,
                "--profile",
                "filesystem",
            ],
            naive_server(&lab.root, &relay),
        )
        .cwd(&lab.ws)
        .spawn();
        s.initialize();
        let r = s.call_tool("read_file", json!({"path": lab.p(&format!("secret/{m}"))}));
        assert!(r.get("error").is_some(), "{r}");
        s.finish();
        markers.push(m);
    }
    let rotated = Path::new(&format!("{log}.1")).exists();
    assert!(rotated, "the log did not rotate");
    // The oldest session's record is no longer in the live file: only the set has it.
    let live = std::fs::read_to_string(&log).unwrap();
    assert!(!live.contains(&markers[0]), "choose a smaller max_bytes");

    let o = capjail(&["audit", "show", &log]);
    assert_eq!(o.code, Some(0), "{o:?}");
    for m in &markers {
        assert!(o.stdout.contains(m), "show misses {m}:\n{}", o.stdout);
    }
    assert!(o.stderr.contains("rotated set"), "{}", o.stderr);
    let o = capjail(&["audit", "show", "--json", &log]);
    assert!(o.stdout.contains(&markers[0]), "{}", o.stdout);

    // Replayed under a policy that mounts the secret folder too, every denial becomes allowed,
    // the ones in rotated files included; and the set verifies, so no warning.
    let wider = lab.policy(
        "wider",
        &format!(
            "name: wider\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\n    - path: {}\n      mode: ro\n",
            lab.ws.display(),
            lab.p("secret")
        ),
    );
    let o = capjail(&["replay", &log, "--policy", wider.to_str().unwrap()]);
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(
        o.stdout.contains(&format!("{} now allowed", markers.len())),
        "{}",
        o.stdout
    );
    assert!(!o.stdout.contains("does not verify"), "{}", o.stdout);
    // A rotated file removed by hand: replay says the set does not verify.
    std::fs::remove_file(format!("{log}.1")).unwrap();
    let o = capjail(&["replay", &log, "--policy", wider.to_str().unwrap()]);
    assert!(o.stdout.contains("does not verify"), "{}", o.stdout);
}

#[test]
fn client_roots_outside_the_mounts_are_warned_about_with_the_line_to_add() {
    let lab = Lab::new();
    if !peers()
        .join("node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js")
        .exists()
    {
        skip!("real peers not installed (scripts/setup-peers.sh)");
    }
    let pol = lab.ws_rw_policy();
    let outside = lab.path("secret");
    let mut s = SessionBuilder::capjail(
        &["--policy", pol.to_str().unwrap(), "--audit", "off"],
        fs_server(&[&lab.ws]),
    )
    .cwd(&lab.ws)
    .spawn();
    let id = json!(s.id());
    s.send(
        &json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {"roots": {"listChanged": true}},
        "clientInfo": {"name": "roots-client", "version": "0"}}}),
    );
    let init = s.wait_id(&id);
    assert!(init.get("result").is_some(), "{init}");
    s.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    // The filesystem server asks for the client's roots; the client names one inside the
    // workspace mount and one outside every mount.
    let ask = s.wait_line(RESPONSE_TIMEOUT, "roots/list", |v| {
        v["method"] == "roots/list"
    });
    s.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"roots":[
        {"uri": format!("file://{}", lab.ws.display()), "name": "project"},
        {"uri": format!("file://{}", outside.display()), "name": "elsewhere"}]}}));
    let r = s.call_tool("list_allowed_directories", json!({}));
    assert!(r.get("result").is_some(), "{r}");
    s.finish();
    let err = s.stderr_text();
    let warned: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("the client named the root"))
        .collect();
    assert_eq!(warned.len(), 1, "{err}");
    assert!(
        warned[0].contains(outside.to_str().unwrap())
            && warned[0].contains("filesystem.mounts: - {path: "),
        "{}",
        warned[0]
    );
    assert!(!warned[0].contains(&format!("root {} ", lab.ws_s())));
}

/// A file in the workspace nobody may read: the server has no capability left in the
/// sandbox (not even as root), so the kernel refuses the open with EACCES.
fn locked_file(lab: &Lab) -> std::path::PathBuf {
    let locked = lab.ws.join("locked.txt");
    std::fs::write(&locked, "locked").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    locked
}

#[test]
fn a_call_the_sandbox_refuses_is_explained_on_stderr() {
    if !kernel_available() {
        skip!("no kernel confinement here");
    }
    if !peers()
        .join("node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js")
        .exists()
    {
        skip!("real peers not installed (scripts/setup-peers.sh)");
    }
    let lab = Lab::new();
    let pol = lab.ws_rw_policy();
    let locked = locked_file(&lab);
    let mut s = SessionBuilder::full_mode(&pol, fs_server(&[&lab.ws]))
        .cwd(&lab.ws)
        .spawn();
    s.initialize();
    let r = s.call_tool("read_text_file", json!({"path": locked.to_str().unwrap()}));
    assert!(r.to_string().contains("EACCES"), "{r}");
    s.finish();
    let err = s.stderr_text();
    let line = err
        .lines()
        .find(|l| l.contains("a tool call failed with EACCES"))
        .unwrap_or_else(|| panic!("no explanation on stderr:\n{err}"));
    assert!(
        line.contains(locked.to_str().unwrap()) && line.contains("inside the mount"),
        "{line}"
    );
}

/// Only a call that failed is explained: a successful answer whose text names a refusal (a
/// log file read) is no refusal, and gets no hint; the failed call in the same session does.
#[test]
fn a_successful_answer_that_names_a_refusal_is_not_explained() {
    if !kernel_available() {
        skip!("no kernel confinement here");
    }
    let lab = Lab::new();
    // The workspace and the naive server's own log writable, its script readable.
    let pol = lab.policy(
        "naive-full",
        &format!(
            "name: naive-full\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\n    - path: {}\n      mode: rw\nkernel:\n  extra_read: [{}]\n",
            lab.ws.display(),
            lab.p("logs"),
            fixture("naive_server.py").display()
        ),
    );
    let log = lab.ws.join("server.log");
    std::fs::write(
        &log,
        "12:00 Error: EACCES: permission denied, open '/etc/capjail-test-named-in-a-log'\n",
    )
    .unwrap();
    let locked = locked_file(&lab);
    let relay = lab.path("logs/naive.log");
    let mut s = SessionBuilder::full_mode(&pol, naive_server(&lab.root, &relay))
        .cwd(&lab.ws)
        .spawn();
    s.initialize();
    let r = s.call_tool("read_text_file", json!({"path": log.to_str().unwrap()}));
    assert!(
        r.to_string().contains("capjail-test-named-in-a-log") && r["result"]["isError"] != true,
        "{r}"
    );
    let r = s.call_tool("read_text_file", json!({"path": locked.to_str().unwrap()}));
    assert_eq!(r["result"]["isError"], true, "{r}");
    s.finish();
    let err = s.stderr_text();
    assert!(
        !err.contains("capjail-test-named-in-a-log"),
        "a successful answer was explained as a refusal:\n{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("a tool call failed with") && l.contains(locked.to_str().unwrap())),
        "the failed call was not explained:\n{err}"
    );
}
