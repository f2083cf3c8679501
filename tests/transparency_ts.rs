//! Transparency with the real TypeScript clients: `@modelcontextprotocol/client` 2.x ("v2") and
//! `@modelcontextprotocol/sdk` 1.x ("v1") drive the same scripted session (tests/clients/
//! ts_session.mjs) against each real server twice -- directly and through `capjail run` under a
//! policy that allows the session -- and the two normalized transcripts must be equal.
//!
//! capjail runs in its default mode (`full`: proxy + Landlock + seccomp) when the kernel layer is
//! available here, else `--mode proxy` (see `transparency_mode`).
//!
//! Protocol generations: every server speaks the handshake generation. The 2026-07-28 generation
//! (`server/discover`, `_meta` on every request) is spoken by the v2 client (pinned) and by the
//! Python servers (mcp 2.3.0: fetch and git); the npm servers are built on the 1.x SDK, which only
//! knows the handshake, and the v1 client cannot speak 2026-07-28 at all.

use crate::support::*;
use serde_json::{json, Value};

#[derive(Clone, Copy)]
enum Run {
    Direct,
    Capjail,
}

/// One session: returns the normalized transcript.
fn session(client: &str, era: &str, server: RealServer, run: Run, canary: Option<u16>) -> Value {
    let w = TWorld::new(server, canary);
    let (argv, env) = w.server(server);
    let argv = match run {
        Run::Direct => argv,
        Run::Capjail => w.through_capjail(&argv),
    };
    let ws = w.ws_s();
    let scenario = json!({
        "client": client,
        "era": era,
        "modules": peers().join("node").display().to_string(),
        "server": {
            "command": argv[0],
            "args": argv[1..],
            "env": env.into_iter().map(|(k, v)| (k, json!(v))).collect::<serde_json::Map<String, Value>>(),
            "cwd": w.root.display().to_string(),
        },
        "capabilities": capabilities(server),
        "roots": [{"uri": format!("file://{ws}"), "name": "workspace"}],
        "replace": [[ws, "<WS>"], [w.root.display().to_string(), "<ROOT>"]],
        "steps": steps(server, era, &w, canary),
        "deadlineMs": 90000,
    });
    let file = w.root.join("scenario.json");
    std::fs::write(&file, serde_json::to_vec(&scenario).unwrap()).unwrap();
    let driver = repo().join("tests/clients/ts_session.mjs");
    let out = run_bounded(
        std::process::Command::new(node22())
            .arg(&driver)
            .arg(&file)
            .env("HOME", &w.root),
        None,
        std::time::Duration::from_secs(100),
    );
    assert_eq!(
        out.code,
        Some(0),
        "the {client} driver failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        argv,
        out.stdout,
        out.stderr
    );
    let t: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "driver output is not JSON ({e}):\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        )
    });
    assert!(
        t.get("connectError").is_none(),
        "{client}/{era} could not connect to {argv:?}: {t}\nstderr:\n{}",
        out.stderr
    );
    if let Some(dir) = std::env::var_os("CAPJAIL_KEEP_TRANSCRIPTS") {
        let tag = match run {
            Run::Direct => "direct",
            Run::Capjail => "capjail",
        };
        let f = std::path::Path::new(&dir).join(format!("{client}-{era}-{server:?}-{tag}.json"));
        let _ = std::fs::write(f, serde_json::to_string_pretty(&t).unwrap());
    }
    t
}

fn capabilities(server: RealServer) -> Value {
    match server {
        // Everything asks for roots, sampling and elicitation (handshake generation).
        RealServer::Everything => {
            json!({"roots": {"listChanged": true}, "sampling": {}, "elicitation": {"form": {}}})
        }
        // The filesystem server replaces its directories with the client's roots.
        RealServer::Filesystem => json!({"roots": {"listChanged": true}}),
        _ => json!({}),
    }
}

fn call(name: &str, args: Value) -> Value {
    json!({"op": "tools/call", "params": {"name": name, "arguments": args}})
}

fn steps(server: RealServer, era: &str, w: &TWorld, canary: Option<u16>) -> Value {
    let ws = w.ws_s();
    let p = |rel: &str| format!("{ws}/{rel}");
    let mut s = vec![];
    if era == "modern" {
        s.push(json!({"op": "server/discover"}));
    }
    if era == "legacy" {
        // (2026-07-28 has no ping: the v2 client refuses it locally, nothing reaches the wire.)
        s.push(json!({"op": "ping"}));
    }
    // Pagination: the first page, then an explicit (unknown) cursor -- whatever the server makes
    // of it must reach the client unchanged.
    s.push(json!({"op": "tools/list"}));
    s.push(json!({"op": "tools/list", "params": {"cursor": "capjail-test-cursor"}}));
    match server {
        RealServer::Everything => {
            // The root sync (350 ms after initialized) and the conditional tools' list_changed.
            s.insert(0, json!({"op": "sleep", "ms": 700}));
            s.extend([
                call("echo", json!({"message": "hello through capjail"})),
                call("get-annotated-message", json!({"messageType": "error", "includeImage": true})),
                call("get-annotated-message", json!({"messageType": "success"})),
                // get-env: the environment the server sees. Under full mode capjail scrubs it;
                // see compare() for how that one legitimate difference is handled.
                call("get-env", json!({})),
                call("get-resource-links", json!({"count": 3})),
                call("get-resource-reference", json!({"resourceType": "Blob", "resourceId": 2})),
                call("get-structured-content", json!({"location": "Chicago"})),
                call("get-sum", json!({"a": 2, "b": 40})),
                call("get-tiny-image", json!({})),
                // A data: URI, never the default github URL (no traffic leaves loopback).
                call("gzip-file-as-resource", json!({"name": "t.gz", "data": "data:text/plain;base64,aGVsbG8gd29ybGQ=", "outputType": "resource"})),
                call("toggle-simulated-logging", json!({})),
                call("toggle-simulated-logging", json!({})),
                // Subscriptions and their simulated updates (one is sent at once when toggled on).
                json!({"op": "resources/subscribe", "params": {"uri": "demo://resource/dynamic/text/1"}}),
                call("toggle-subscriber-updates", json!({})),
                call("toggle-subscriber-updates", json!({})),
                json!({"op": "resources/unsubscribe", "params": {"uri": "demo://resource/dynamic/text/1"}}),
                // Progress from a long-running operation.
                {
                    let mut c = call("trigger-long-running-operation", json!({"duration": 1, "steps": 4}));
                    c["progress"] = json!(true);
                    c
                },
                // Cancellation of an in-flight request after its first progress notification.
                {
                    let mut c = call("trigger-long-running-operation", json!({"duration": 20, "steps": 20}));
                    c["cancelAfterProgress"] = json!(1);
                    c
                },
                call("echo", json!({"message": "still in sync after the cancellation"})),
                // Server-to-client requests: sampling, elicitation, roots.
                call("trigger-sampling-request", json!({"prompt": "say hi", "maxTokens": 20})),
                call("trigger-elicitation-request", json!({})),
                call("get-roots-list", json!({})),
                json!({"op": "roots/list_changed", "sleepMs": 300}),
                call("get-roots-list", json!({})),
                call("simulate-research-query", json!({"topic": "capjail"})),
                // An error from the server itself: arguments that fail its schema. (An unknown tool
                // name is not used: capjail refuses a tool it cannot classify, by design.)
                call("get-sum", json!({"a": "two", "b": 40})),
                json!({"op": "resources/list"}),
                json!({"op": "resources/list", "params": {"cursor": "capjail-test-cursor"}}),
                json!({"op": "resources/templates/list"}),
                json!({"op": "resources/read", "params": {"uri": "demo://resource/dynamic/text/1"}}),
                json!({"op": "resources/read", "params": {"uri": "demo://resource/dynamic/blob/2"}}),
                json!({"op": "resources/read", "params": {"uri": "demo://resource/static/document/architecture.md"}}),
                json!({"op": "prompts/list"}),
                json!({"op": "prompts/get", "params": {"name": "simple-prompt"}}),
                json!({"op": "prompts/get", "params": {"name": "args-prompt", "arguments": {"city": "Paris", "state": "TX"}}}),
                json!({"op": "prompts/get", "params": {"name": "completable-prompt", "arguments": {"department": "Engineering", "name": "Alice"}}}),
                json!({"op": "prompts/get", "params": {"name": "resource-prompt", "arguments": {"resourceType": "Text", "resourceId": "3"}}}),
                json!({"op": "completion/complete", "params": {"ref": {"type": "ref/prompt", "name": "completable-prompt"}, "argument": {"name": "department", "value": "E"}}}),
                json!({"op": "logging/setLevel", "params": {"level": "debug"}}),
            ]);
        }
        RealServer::Filesystem => s.extend([
            // The server asks for roots right after the handshake; let that settle.
            json!({"op": "sleep", "ms": 300}),
            call("list_allowed_directories", json!({})),
            call("read_text_file", json!({"path": p("notes.txt"), "head": 2})),
            call("read_file", json!({"path": p("notes.txt"), "tail": 1})),
            call("read_media_file", json!({"path": p("data.csv")})),
            call("read_multiple_files", json!({"paths": [p("notes.txt"), p("sub/readme.md")]})),
            call("write_file", json!({"path": p("new.txt"), "content": "written\nby the client\n"})),
            call("edit_file", json!({"path": p("new.txt"), "edits": [{"oldText": "written", "newText": "edited"}], "dryRun": true})),
            call("edit_file", json!({"path": p("new.txt"), "edits": [{"oldText": "written", "newText": "edited"}]})),
            call("create_directory", json!({"path": p("made/deeper")})),
            call("list_directory", json!({"path": ws})),
            call("list_directory_with_sizes", json!({"path": ws, "sortBy": "name"})),
            call("directory_tree", json!({"path": ws, "excludePatterns": ["made"]})),
            call("move_file", json!({"source": p("new.txt"), "destination": p("made/moved.txt")})),
            call("search_files", json!({"path": ws, "pattern": "**/*.md"})),
            call("get_file_info", json!({"path": p("made/moved.txt")})),
            // An error from the server itself (not from capjail): the file does not exist.
            call("read_text_file", json!({"path": p("missing.txt")})),
            json!({"op": "roots/list_changed", "sleepMs": 300}),
            call("list_allowed_directories", json!({})),
            json!({"op": "resources/list"}),
            json!({"op": "prompts/list"}),
        ]),
        RealServer::Memory => s.extend([
            call("create_entities", json!({"entities": [
                {"name": "capjail", "entityType": "project", "observations": ["a sandbox"]},
                {"name": "landlock", "entityType": "lsm", "observations": ["kernel"]},
            ]})),
            call("create_relations", json!({"relations": [{"from": "capjail", "to": "landlock", "relationType": "uses"}]})),
            call("add_observations", json!({"observations": [{"entityName": "capjail", "contents": ["written in Rust"]}]})),
            call("search_nodes", json!({"query": "Rust"})),
            call("open_nodes", json!({"names": ["capjail", "landlock"]})),
            call("read_graph", json!({})),
            call("delete_observations", json!({"deletions": [{"entityName": "capjail", "observations": ["a sandbox"]}]})),
            call("delete_relations", json!({"relations": [{"from": "capjail", "to": "landlock", "relationType": "uses"}]})),
            call("delete_entities", json!({"entityNames": ["landlock"]})),
            call("read_graph", json!({})),
            json!({"op": "resources/list"}),
            json!({"op": "prompts/list"}),
        ]),
        RealServer::Fetch => {
            let port = canary.unwrap();
            let url = format!("http://127.0.0.1:{port}/transparency");
            s.extend([
                call("fetch", json!({"url": url, "max_length": 2000})),
                call("fetch", json!({"url": url, "max_length": 5, "start_index": 3, "raw": true})),
                json!({"op": "prompts/list"}),
                json!({"op": "prompts/get", "params": {"name": "fetch", "arguments": {"url": url}}}),
                // A server-side error: the canary answers 404 for /robots.txt.
                call("fetch", json!({"url": format!("http://127.0.0.1:{port}/robots.txt")})),
            ]);
        }
        RealServer::Git => s.extend([
            call("git_status", json!({"repo_path": ws})),
            call("git_log", json!({"repo_path": ws, "max_count": 5})),
            call("git_diff_unstaged", json!({"repo_path": ws})),
            call("git_add", json!({"repo_path": ws, "files": ["data.csv"]})),
            call("git_diff_staged", json!({"repo_path": ws, "context_lines": 1})),
            call("git_reset", json!({"repo_path": ws})),
            call("git_add", json!({"repo_path": ws, "files": ["data.csv"]})),
            call("git_commit", json!({"repo_path": ws, "message": "second commit"})),
            call("git_create_branch", json!({"repo_path": ws, "branch_name": "feature"})),
            call("git_checkout", json!({"repo_path": ws, "branch_name": "feature"})),
            call("git_branch", json!({"repo_path": ws, "branch_type": "local"})),
            call("git_diff", json!({"repo_path": ws, "target": "main"})),
            call("git_show", json!({"repo_path": ws, "revision": "HEAD"})),
            call("git_log", json!({"repo_path": ws})),
            // A server-side error: no such revision.
            call("git_show", json!({"repo_path": ws, "revision": "no-such-rev"})),
        ]),
    }
    Value::Array(s)
}

/// Run the pair and compare. The only legitimate difference handled here is spelled out.
fn compare(client: &str, era: &str, server: RealServer) {
    let canary = (server == RealServer::Fetch).then(|| Canary::start(64));
    let port = canary.as_ref().map(|c| c.port);
    let direct = session(client, era, server, Run::Direct, port);
    let mut confined = session(client, era, server, Run::Capjail, port);
    let mut direct = direct;
    if server == RealServer::Everything {
        // get-env returns the server's environment. capjail starts servers with a scrubbed
        // environment under the kernel layer (full mode), and the two runs have different temp
        // folders anyway: the result must still be a successful one-text-item JSON object, and
        // under proxy mode the variable names must be the same.
        let idx = direct["steps"]
            .as_array()
            .unwrap()
            .iter()
            .position(|s| s["params"]["name"] == "get-env")
            .expect("get-env step");
        for t in [&mut direct, &mut confined] {
            let step = &mut t["steps"][idx];
            let text = step["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or_else(|| panic!("get-env failed: {step}"))
                .to_string();
            let env: serde_json::Map<String, Value> = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("get-env is not a JSON object ({e}): {text}"));
            let mut names: Vec<&String> = env.keys().collect();
            names.sort();
            step["result"]["content"][0]["text"] = if transparency_mode() == "proxy" {
                json!(format!("<ENV names={names:?}>"))
            } else {
                json!("<ENV scrubbed under full mode>")
            };
        }
    }
    covers(client, era, server, &direct);
    assert_same_transcript(
        &format!("{client} x {server:?} ({era})"),
        &direct,
        &confined,
    );
    if let Some(c) = &canary {
        assert!(
            !c.hits_with("/transparency").is_empty(),
            "the fetch canary got no request"
        );
    }
}

/// The session really exercised what it claims (two runs failing the same way would compare equal).
fn covers(client: &str, era: &str, server: RealServer, t: &Value) {
    let what = format!("{client} x {server:?} ({era})");
    let steps = t["steps"].as_array().unwrap();
    if era == "modern" {
        assert_eq!(
            t["protocolVersion"], "2026-07-28",
            "{what}: not the 2026-07-28 generation: {t}"
        );
        assert!(
            steps
                .iter()
                .any(|s| s["op"] == "server/discover" && s.get("result").is_some()),
            "{what}: server/discover failed"
        );
    } else if client == "v2" {
        assert_eq!(
            t["protocolVersion"], "2025-11-25",
            "{what}: {}",
            t["protocolVersion"]
        );
    }
    // Every tool the server lists was called.
    let called: Vec<&Value> = steps.iter().map(|s| &s["params"]["name"]).collect();
    let listed: Vec<String> = steps
        .iter()
        .filter(|s| s["op"] == "tools/list")
        .flat_map(|s| s["result"]["tools"].as_array().cloned().unwrap_or_default())
        .filter(|tool| !called.contains(&&tool["name"]))
        .map(|tool| tool["name"].to_string())
        .collect();
    assert!(
        listed.is_empty(),
        "{what}: tools listed but never called: {listed:?}"
    );
    if server == RealServer::Everything {
        let methods: Vec<&str> = t["serverRequests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["method"].as_str())
            .collect();
        for m in ["roots/list", "sampling/createMessage", "elicitation/create"] {
            assert!(
                methods.contains(&m),
                "{what}: no {m} from the server: {methods:?}"
            );
        }
        let long: Vec<&Value> = steps
            .iter()
            .filter(|s| s["params"]["name"] == "trigger-long-running-operation")
            .collect();
        assert_eq!(
            long[0]["progress"].as_array().map(Vec::len),
            Some(4),
            "{what}: progress: {}",
            long[0]
        );
        assert!(
            long[1].get("error").is_some(),
            "{what}: the cancelled call did not end in an error: {}",
            long[1]
        );
        let notes = t["notifications"].to_string();
        for n in [
            "notifications/tools/list_changed",
            "notifications/resources/updated",
        ] {
            assert!(notes.contains(n), "{what}: no {n}: {notes}");
        }
    }
}

#[test]
fn v2_client_everything_handshake() {
    compare("v2", "legacy", RealServer::Everything);
}
#[test]
fn v1_sdk_everything_handshake() {
    compare("v1", "legacy", RealServer::Everything);
}
#[test]
fn v2_client_filesystem_handshake() {
    compare("v2", "legacy", RealServer::Filesystem);
}
#[test]
fn v1_sdk_filesystem_handshake() {
    compare("v1", "legacy", RealServer::Filesystem);
}
#[test]
fn v2_client_memory_handshake() {
    compare("v2", "legacy", RealServer::Memory);
}
#[test]
fn v1_sdk_memory_handshake() {
    compare("v1", "legacy", RealServer::Memory);
}
#[test]
fn v2_client_fetch_handshake() {
    compare("v2", "legacy", RealServer::Fetch);
}
#[test]
fn v1_sdk_fetch_handshake() {
    compare("v1", "legacy", RealServer::Fetch);
}
#[test]
fn v2_client_git_handshake() {
    compare("v2", "legacy", RealServer::Git);
}
#[test]
fn v1_sdk_git_handshake() {
    compare("v1", "legacy", RealServer::Git);
}
#[test]
fn v2_client_fetch_2026_07_28() {
    compare("v2", "modern", RealServer::Fetch);
}
#[test]
fn v2_client_git_2026_07_28() {
    compare("v2", "modern", RealServer::Git);
}
