//! Transparency with the MCP Inspector CLI (`@modelcontextprotocol/inspector` 2.12.0, `--cli`,
//! run with Node 22 from the peers folder): each `--method` call is its own session (spawn,
//! connect, one request, close). The same calls run against each real server directly and with
//! the server command replaced by `capjail run --mode M --policy P --audit A -- SERVER...`; the
//! outputs (stdout, parsed as JSON, and the exit code) must be equal.
//!
//! Normalized, and nothing else: the per-run temp folder (`<WS>`, `<ROOT>`) -- each run has its
//! own world. The Inspector's stderr is not compared (it carries the server's own stderr banner
//! and, through capjail, capjail's notices).
//!
//! Generations: the handshake for every server; `--protocol-era modern` (2026-07-28, pinned) for
//! the Python servers, the only ones here that speak it.

use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};

/// One Inspector CLI call: `args` are the method options; the result is `{code, out}`.
fn inspector(w: &TWorld, target: &[String], env: &[(String, String)], args: &[&str]) -> Value {
    let mut cmd = std::process::Command::new(node22());
    cmd.arg(inspector_launcher()).arg("--cli");
    cmd.args(args);
    for (k, v) in env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.arg("--cwd").arg(&w.root);
    cmd.arg("--").args(target);
    // The Inspector keeps a catalog under ~/.mcp-inspector: keep it in the world.
    cmd.env("HOME", &w.root);
    let o = run_bounded(&mut cmd, None, Duration::from_secs(60));
    let norm = |s: &str| {
        s.replace(&w.ws_s(), "<WS>")
            .replace(&w.root.display().to_string(), "<ROOT>")
    };
    let out = norm(&o.stdout);
    let out = serde_json::from_str::<Value>(&out).unwrap_or(Value::String(out));
    let args: Vec<String> = args.iter().map(|a| norm(a)).collect();
    json!({"args": args, "code": o.code, "out": out, "stderr_if_failed": if o.code == Some(0) { Value::Null } else { json!(norm(&o.stderr).lines().filter(|l| l.starts_with('{')).collect::<Vec<_>>()) }})
}

fn calls(server: RealServer, ws: &str, canary: Option<u16>) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let mut c = vec![
        v(&["--method", "tools/list"]),
        v(&["--method", "resources/list"]),
        v(&["--method", "prompts/list"]),
    ];
    let tool = |name: &str, args: &[String]| {
        let mut t = v(&["--method", "tools/call", "--tool-name", name]);
        for a in args {
            t.push("--tool-arg".into());
            t.push(a.clone());
        }
        t
    };
    match server {
        // Each call is a whole session (two server starts per call and run): a few calls only.
        RealServer::Everything => c.extend([
            tool("echo", &v(&["message=through the inspector"])),
            tool("get-structured-content", &v(&["location=Chicago"])),
            tool("trigger-long-running-operation", &v(&["duration=1", "steps=2"])),
            v(&[
                "--method",
                "resources/read",
                "--uri",
                "demo://resource/static/document/architecture.md",
            ]),
            v(&[
                "--method",
                "prompts/get",
                "--prompt-name",
                "args-prompt",
                "--prompt-args",
                "city=Paris",
            ]),
        ]),
        RealServer::Filesystem => c.extend([
            tool("list_allowed_directories", &[]),
            tool("read_text_file", &[format!("path={ws}/notes.txt")]),
            tool(
                "write_file",
                &[format!("path={ws}/new.txt"), "content=from the inspector".into()],
            ),
            tool("list_directory", &[format!("path={ws}")]),
            tool(
                "search_files",
                &[format!("path={ws}"), "pattern=**/*.md".into()],
            ),
            tool("read_text_file", &[format!("path={ws}/missing.txt")]),
        ]),
        RealServer::Memory => c.extend([
            tool(
                "create_entities",
                &v(&[r#"entities=[{"name":"capjail","entityType":"project","observations":["sandbox"]}]"#]),
            ),
            tool("search_nodes", &v(&["query=sandbox"])),
            tool("read_graph", &[]),
        ]),
        RealServer::Fetch => {
            let port = canary.unwrap();
            c.extend([
                tool(
                    "fetch",
                    &[
                        format!("url=http://127.0.0.1:{port}/inspector"),
                        "max_length=500".into(),
                    ],
                ),
                v(&[
                    "--method",
                    "prompts/get",
                    "--prompt-name",
                    "fetch",
                    "--prompt-args",
                    &format!("url=http://127.0.0.1:{port}/inspector-prompt"),
                ]),
            ])
        }
        RealServer::Git => c.extend([
            tool("git_status", &[format!("repo_path={ws}")]),
            tool("git_log", &[format!("repo_path={ws}"), "max_count=3".into()]),
            tool("git_branch", &[format!("repo_path={ws}"), "branch_type=local".into()]),
            tool("git_show", &[format!("repo_path={ws}"), "revision=HEAD".into()]),
        ]),
    }
    c
}

fn compare(server: RealServer, era: &str) {
    let canary = (server == RealServer::Fetch).then(|| Canary::start(64));
    let port = canary.as_ref().map(|c| c.port);
    let mut transcripts = Vec::new();
    for through in [false, true] {
        let w = TWorld::new(server, port);
        let (argv, env) = w.server(server);
        let target = if through {
            w.through_capjail(&argv)
        } else {
            argv
        };
        let mut out = Vec::new();
        for mut call in calls(server, &w.ws_s(), port) {
            if era == "modern" {
                call.extend(["--protocol-era".to_string(), "modern".to_string()]);
            }
            let args: Vec<&str> = call.iter().map(String::as_str).collect();
            out.push(inspector(&w, &target, &env, &args));
        }
        transcripts.push(Value::Array(out));
    }
    let what = format!("MCP Inspector CLI x {server:?} ({era})");
    // The session really worked: listing tools succeeded and returned some.
    let first = &transcripts[0][0];
    assert_eq!(
        first["code"], 0,
        "{what}: tools/list failed directly: {first}"
    );
    assert!(
        first["out"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{what}: no tools: {first}"
    );
    assert_same_transcript(&what, &transcripts[0], &transcripts[1]);
    if let Some(c) = &canary {
        assert!(
            !c.hits_with("/inspector").is_empty(),
            "the fetch canary got no request"
        );
    }
}

#[test]
fn inspector_everything_handshake() {
    compare(RealServer::Everything, "legacy");
}
#[test]
fn inspector_filesystem_handshake() {
    compare(RealServer::Filesystem, "legacy");
}
#[test]
fn inspector_memory_handshake() {
    compare(RealServer::Memory, "legacy");
}
#[test]
fn inspector_fetch_handshake() {
    compare(RealServer::Fetch, "legacy");
}
#[test]
fn inspector_git_handshake() {
    compare(RealServer::Git, "legacy");
}
#[test]
fn inspector_fetch_2026_07_28() {
    compare(RealServer::Fetch, "modern");
}
#[test]
fn inspector_git_2026_07_28() {
    compare(RealServer::Git, "modern");
}
