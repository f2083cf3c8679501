//! Real servers keep working under `--mode full` (proxy + Landlock + seccomp), and the kernel
//! layer holds on its own (`--mode kernel`) where the proxy is not there to refuse first.

use std::process::Command;

use crate::support::*;
use serde_json::json;

/// A capjail session in `mode` under `policy`, auditing off.
fn confined(mode: &str, policy: &std::path::Path, server: Vec<String>) -> SessionBuilder {
    SessionBuilder::capjail(
        &[
            "--mode",
            mode,
            "--policy",
            policy.to_str().unwrap(),
            "--audit",
            "off",
        ],
        server,
    )
}

fn ok_text(r: &serde_json::Value) -> String {
    assert!(
        r.get("result").is_some() && r["result"]["isError"] != json!(true),
        "expected a result, got {r}"
    );
    r["result"].to_string()
}

#[test]
fn filesystem_server_via_npx_works_under_full_mode() {
    if !kernel_available() {
        skip!("the kernel layer is not available here");
    }
    let lab = Lab::new();
    let policy = lab.ws_rw_policy();
    let ws = lab.ws_s();
    // The npm cache was warmed by scripts/setup-peers.sh; under network `none` npx runs offline.
    let server = vec![
        "npx".into(),
        "-y".into(),
        "@modelcontextprotocol/server-filesystem".into(),
        ws.clone(),
    ];
    let mut s = confined("full", &policy, server).spawn();
    s.initialize();
    let r = s.call_tool(
        "write_file",
        json!({"path": format!("{ws}/written.txt"), "content": "written under full mode"}),
    );
    ok_text(&r);
    assert_eq!(
        lab.read("ws/written.txt").as_deref(),
        Some("written under full mode")
    );
    let r = s.call_tool("read_text_file", json!({"path": format!("{ws}/notes.txt")}));
    assert!(ok_text(&r).contains(&lab.legit));
    let r = s.call_tool("create_directory", json!({"path": format!("{ws}/build")}));
    ok_text(&r);
    assert!(lab.path("ws/build").is_dir());
    let r = s.call_tool("list_directory", json!({"path": ws}));
    assert!(ok_text(&r).contains("notes.txt"));
    // And the seed's attack is still refused.
    let r = s.call_tool("read_text_file", json!({"path": lab.p("secret/id_rsa")}));
    assert_eq!(r["error"]["code"], -32001, "{r}");
    lab.assert_no_leak(&s);
}

#[test]
fn fetch_server_reaches_the_allowed_loopback_port_and_nothing_else() {
    if !kernel_available() {
        skip!("the kernel layer is not available here");
    }
    let lab = Lab::new();
    let allowed = Canary::start(8);
    let other = Canary::start(8);
    let policy = lab.policy(
        "fetch",
        &format!("name: fetch-loopback\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"127.0.0.1:{}\"]\n", allowed.port),
    );
    let marker = marker();
    let mut s = confined("full", &policy, fetch_server()).spawn();
    s.initialize();
    let r = s.call_tool("fetch", json!({"url": format!("http://127.0.0.1:{}/legit-{marker}", allowed.port), "max_length": 2000}));
    assert!(ok_text(&r).contains(CANARY_BODY), "{r}");
    assert!(
        !allowed.hits_with(&marker).is_empty(),
        "the allowed canary got no request"
    );
    // The proxy refuses another port.
    let r = s.call_tool(
        "fetch",
        json!({"url": format!("http://127.0.0.1:{}/other-{marker}", other.port)}),
    );
    assert_eq!(r["error"]["code"], -32001, "{r}");
    drop(s);

    // Kernel alone: the proxy does not check, Landlock's TCP rule still refuses the other port.
    let mut k = confined("kernel", &policy, fetch_server()).spawn();
    k.initialize();
    let r = k.call_tool("fetch", json!({"url": format!("http://127.0.0.1:{}/kernel-{marker}", other.port), "max_length": 2000}));
    assert!(
        other.hits_with(&format!("kernel-{marker}")).is_empty(),
        "--mode kernel let the server connect to a port the policy does not allow: {r}"
    );
    let r = k.call_tool("fetch", json!({"url": format!("http://127.0.0.1:{}/kernel-ok-{marker}", allowed.port), "max_length": 2000}));
    assert!(ok_text(&r).contains(CANARY_BODY), "{r}");
}

#[test]
fn git_server_works_on_a_repository_inside_the_mount() {
    if !kernel_available() {
        skip!("the kernel layer is not available here");
    }
    let lab = Lab::new();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(&lab.ws)
            .output()
            .expect("git");
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["init", "-q", "."]);
    git(&[
        "-c",
        "user.email=t@example.test",
        "-c",
        "user.name=t",
        "add",
        "notes.txt",
    ]);
    git(&[
        "-c",
        "user.email=t@example.test",
        "-c",
        "user.name=t",
        "commit",
        "-q",
        "-m",
        "first",
    ]);
    let policy = lab.ws_rw_policy();
    let server = vec![
        peer("venv/bin/mcp-server-git").display().to_string(),
        "--repository".into(),
        lab.ws_s(),
    ];
    let mut s = confined("full", &policy, server)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.test")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.test")
        .spawn();
    s.initialize();
    let r = s.call_tool("git_log", json!({"repo_path": lab.ws_s()}));
    assert!(ok_text(&r).contains("first"), "{r}");
    std::fs::write(lab.path("ws/new.txt"), "new\n").unwrap();
    let r = s.call_tool("git_status", json!({"repo_path": lab.ws_s()}));
    assert!(ok_text(&r).contains("new.txt"), "{r}");
    let r = s.call_tool(
        "git_add",
        json!({"repo_path": lab.ws_s(), "files": ["new.txt"]}),
    );
    ok_text(&r);
    let r = s.call_tool("git_diff_staged", json!({"repo_path": lab.ws_s()}));
    assert!(ok_text(&r).contains("new.txt"), "{r}");
    // A repository outside the mount is refused.
    let r = s.call_tool("git_status", json!({"repo_path": lab.root_s()}));
    assert_eq!(r["error"]["code"], -32001, "{r}");
}
