//! Transparency with the real Python `mcp` SDK client (2.x): the same scripted session
//! (tests/clients/py_session.py) runs directly against a real server and through `capjail run`
//! under a policy that allows it; the two transcripts (results, errors, notifications,
//! server->client requests; ids and timing aside) must be equal.
//!
//! The SDK's two connect modes are both driven: `auto` probes `server/discover` (the dual-era
//! Python servers, mcp-server-fetch, mcp-server-git and tests/fixtures/sdk_server.py, then speak
//! the 2026-07-28 generation: `_meta` on every request, `input_required` results retried with a
//! new id) and falls back to the `initialize` handshake on the npm servers, whose SDK (1.x)
//! knows only the handshake generation; `legacy` always shakes hands.
//!
//! capjail runs in its default mode, full (proxy + Landlock + seccomp), when the kernel layer is
//! available here, else `--mode proxy` (said on stderr).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};

fn python() -> String {
    peer("venv/bin/python").display().to_string()
}

fn node_server(pkg: &str) -> Vec<String> {
    vec![
        "node".into(),
        peer(&format!(
            "node/node_modules/@modelcontextprotocol/{pkg}/dist/index.js"
        ))
        .display()
        .to_string(),
    ]
}

fn sdk_fixture() -> Vec<String> {
    vec![python(), fixture("sdk_server.py").display().to_string()]
}

/// `full` when the kernel layer is available, else `proxy`.
fn jail_mode() -> &'static str {
    static MODE: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    MODE.get_or_init(|| {
        if kernel_available() {
            "full"
        } else {
            eprintln!("NOTE: transparency runs through capjail --mode proxy only");
            "proxy"
        }
    })
}

/// `capjail run --mode M --policy P --audit A -- SERVER`.
fn jailed(policy: &Path, audit: &Path, server: &[String]) -> Vec<String> {
    let mut v = vec![
        capjail_bin().display().to_string(),
        "run".into(),
        "--mode".into(),
        jail_mode().into(),
        "--policy".into(),
        policy.display().to_string(),
        "--audit".into(),
        audit.display().to_string(),
        // Never the user's pin file.
        "--pins".into(),
        audit.with_file_name("pins.json").display().to_string(),
        "--".into(),
    ];
    v.extend(server.iter().cloned());
    v
}

/// Run the Python SDK session; returns the transcript and the driver's stderr.
fn py_session(server: &[String], mode: &str, scenario: &str, opts: &Value) -> (Value, String) {
    let script = repo().join("tests/clients/py_session.py");
    let o = run_bounded(
        Command::new(python())
            .arg(&script)
            .arg(serde_json::to_string(server).unwrap())
            .arg(mode)
            .arg(scenario)
            .arg(opts.to_string()),
        None,
        Duration::from_secs(150),
    );
    assert_eq!(
        o.code,
        Some(0),
        "py_session {scenario} ({mode}) failed against {server:?}\nstdout:\n{}\nstderr:\n{}",
        o.stdout,
        o.stderr
    );
    let v: Value = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("transcript is not JSON ({e}):\n{}", o.stdout));
    (v, o.stderr)
}

/// Equal, or a readable line diff of the two pretty-printed transcripts.
#[track_caller]
fn assert_same(direct: &Value, through: &Value, what: &str) {
    if direct == through {
        return;
    }
    let a = serde_json::to_string_pretty(direct).unwrap();
    let b = serde_json::to_string_pretty(through).unwrap();
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while (i < a.len() || j < b.len()) && out.len() < 20_000 {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
            continue;
        }
        // Resynchronise on the next common line (small lookahead).
        let mut synced = false;
        'look: for d in 1..40 {
            for (di, dj) in [(d, 0), (0, d), (d, d)] {
                if i + di < a.len() && j + dj < b.len() && a[i + di] == b[j + dj] {
                    for l in &a[i..i + di] {
                        out += &format!("- {l}\n");
                    }
                    for l in &b[j..j + dj] {
                        out += &format!("+ {l}\n");
                    }
                    out += "  ...\n";
                    i += di;
                    j += dj;
                    synced = true;
                    break 'look;
                }
            }
        }
        if !synced {
            for l in &a[i..] {
                out += &format!("- {l}\n");
            }
            for l in &b[j..] {
                out += &format!("+ {l}\n");
            }
            break;
        }
    }
    panic!("{what}: the transcript through capjail differs from the direct one (- direct, + through capjail):\n{out}");
}

/// The steps of a transcript, by name.
fn step<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name:?} in {t}"))
}

fn step_text(t: &Value, name: &str) -> String {
    step(t, name)["result"]["content"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn policy_file(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let p = dir.join(format!("policy-{name}.yaml"));
    std::fs::write(&p, yaml).unwrap();
    p
}

/// A temp dir under /tmp (canonical) for one test.
fn tmp() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::Builder::new()
        .prefix("capjail-py-")
        .tempdir_in("/tmp")
        .unwrap();
    let p = d.path().canonicalize().unwrap();
    (d, p)
}

/// Everything allowed that the server needs: a workspace mount, no network, no blocked tool the
/// scenario uses.
fn ws_policy(dir: &Path, ws: &Path, extra: &str) -> PathBuf {
    policy_file(
        dir,
        "ws",
        &format!(
            "name: transparency-ws\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\n\
             tools:\n  mode: blocklist\n  blocked: [execute_command, run_command]\nallow:\n  - capability: environment.read\n    variables: [\"*\"]\n{extra}",
            ws.display()
        ),
    )
}

/// Run `scenario` directly and through capjail (after `reset`, which restores the server's
/// state so both runs start from the same place); return both transcripts after comparing them.
fn compare(
    server: &[String],
    mode: &str,
    scenario: &str,
    opts: &Value,
    policy: &Path,
    audit: &Path,
    reset: &dyn Fn(),
) -> (Value, Value) {
    reset();
    let (direct, _) = py_session(server, mode, scenario, opts);
    reset();
    let (through, err) = py_session(&jailed(policy, audit, server), mode, scenario, opts);
    assert_same(
        &direct,
        &through,
        &format!(
            "{scenario} / python {mode} / capjail {}\n(driver stderr: {err})",
            jail_mode()
        ),
    );
    let log = std::fs::read_to_string(audit).unwrap_or_default();
    assert!(
        !log.contains("\"deny\""),
        "the policy meant to allow everything denied something: {log}"
    );
    (direct, through)
}

// ---------------------------------------------------------------------------------------------
// The SDK fixture server: both generations, pagination, progress, list_changed, input
// ---------------------------------------------------------------------------------------------

fn fixture_opts(root: &Path) -> Value {
    json!({"roots": [{"uri": format!("file://{}", root.display()), "name": "ws"}],
           "elicit_content": {"colour": "teal"}})
}

fn fixture_pair(mode: &str, generation: &str) {
    let (_d, dir) = tmp();
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let policy = ws_policy(&dir, &ws, "");
    let audit = dir.join("audit.jsonl");
    let (t, _) = compare(
        &sdk_fixture(),
        mode,
        "fixture",
        &fixture_opts(&ws),
        &policy,
        &audit,
        &|| {},
    );
    assert_eq!(t["protocol_version"], generation, "{t}");
    // The session really exercised what it claims (so equality is not vacuous).
    assert!(step_text(&t, "call ask_user").contains("teal"), "{t}");
    assert_eq!(
        step(&t, "call ask_user")["server_requests"][0]["method"],
        "elicitation/create"
    );
    assert!(step_text(&t, "call summarise").contains("sampled by capjail-tests"));
    assert!(step_text(&t, "call where_am_i").contains(&ws.display().to_string()));
    assert_eq!(
        step(&t, "call slow")["progress"].as_array().unwrap().len(),
        3
    );
    assert_eq!(step(&t, "tools page 1")["result"]["nextCursor"], "4");
    assert_eq!(
        step(&t, "cancel slow")["outcome"],
        "cancelled by the client"
    );
    if generation == "2025-11-25" {
        assert!(
            t["notifications"]
                .to_string()
                .contains("notifications/tools/list_changed"),
            "{t}"
        );
    }
}

#[test]
fn python_auto_x_sdk_fixture_2026_07_28() {
    fixture_pair("auto", "2026-07-28");
}

#[test]
fn python_legacy_x_sdk_fixture_handshake() {
    fixture_pair("legacy", "2025-11-25");
}

// ---------------------------------------------------------------------------------------------
// server-everything
// ---------------------------------------------------------------------------------------------

fn everything_pair(mode: &str) {
    let (_d, dir) = tmp();
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let policy = ws_policy(&dir, &ws, "");
    let audit = dir.join("audit.jsonl");
    let opts = json!({"simulated_logging": true,
                      "roots": [{"uri": format!("file://{}", ws.display()), "name": "ws"}],
                      "elicit_content": {"color": "teal", "number": 7, "pets": "cats"}});
    let (t, _) = compare(
        &node_server("server-everything"),
        mode,
        "everything",
        &opts,
        &policy,
        &audit,
        &|| {},
    );
    // server-everything (TypeScript SDK 1.x) speaks only the handshake generation: auto mode's
    // server/discover probe is refused by the server (not by capjail) and the SDK falls back.
    assert_eq!(t["protocol_version"], "2025-11-25");
    assert_eq!(
        step(&t, "call trigger-long-running-operation")["progress"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert!(step_text(&t, "call trigger-sampling-request").contains("sampled by capjail-tests"));
    assert!(step_text(&t, "call trigger-elicitation-request").contains("teal"));
    assert!(step_text(&t, "call get-roots-list").contains(&ws.display().to_string()));
    assert!(t["notifications"]
        .to_string()
        .contains("notifications/tools/list_changed"));
    assert_eq!(
        step(&t, "cancel trigger-long-running-operation")["outcome"],
        "cancelled by the client"
    );
}

#[test]
fn python_auto_x_server_everything() {
    everything_pair("auto");
}

#[test]
fn python_legacy_x_server_everything() {
    everything_pair("legacy");
}

// ---------------------------------------------------------------------------------------------
// server-filesystem
// ---------------------------------------------------------------------------------------------

/// A 1x1 PNG for read_media_file.
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

fn reset_ws(ws: &Path) {
    let _ = std::fs::remove_dir_all(ws);
    std::fs::create_dir_all(ws.join("sub")).unwrap();
    std::fs::write(ws.join("sub/readme.md"), "# readme\n").unwrap();
    std::fs::write(ws.join("notes.txt"), "Lab notes\n").unwrap();
    std::fs::write(ws.join("pixel.png"), PIXEL_PNG).unwrap();
}

fn filesystem_pair(mode: &str) {
    let (_d, dir) = tmp();
    let ws = dir.join("ws");
    let policy = ws_policy(&dir, &ws, "");
    let audit = dir.join("audit.jsonl");
    let opts = json!({"root": ws.display().to_string(),
                      "roots": [{"uri": format!("file://{}", ws.display()), "name": "ws"}]});
    let (t, _) = compare(
        &fs_server(&[&ws]),
        mode,
        "filesystem",
        &opts,
        &policy,
        &audit,
        &|| reset_ws(&ws),
    );
    assert!(step_text(&t, "call read_text_file").contains("alpha"));
    assert!(step_text(&t, "call search_files").contains("a.txt"));
}

#[test]
fn python_auto_x_server_filesystem() {
    filesystem_pair("auto");
}

#[test]
fn python_legacy_x_server_filesystem() {
    filesystem_pair("legacy");
}

// ---------------------------------------------------------------------------------------------
// server-memory
// ---------------------------------------------------------------------------------------------

fn memory_pair(mode: &str) {
    let (_d, dir) = tmp();
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let file = ws.join("memory.jsonl");
    // The memory file's location reaches the server through the environment: the policy passes it.
    let policy = ws_policy(&dir, &ws, "environment:\n  allow: [MEMORY_FILE_PATH]\n");
    let audit = dir.join("audit.jsonl");
    let opts = json!({"env": {"MEMORY_FILE_PATH": file.display().to_string()}});
    let (t, _) = compare(
        &node_server("server-memory"),
        mode,
        "memory",
        &opts,
        &policy,
        &audit,
        &|| {
            let _ = std::fs::remove_file(&file);
        },
    );
    assert!(step_text(&t, "call read_graph").contains("programmed"));
    assert!(file.exists(), "the server did not write MEMORY_FILE_PATH");
}

#[test]
fn python_auto_x_server_memory() {
    memory_pair("auto");
}

#[test]
fn python_legacy_x_server_memory() {
    memory_pair("legacy");
}

// ---------------------------------------------------------------------------------------------
// mcp-server-fetch (loopback canary only)
// ---------------------------------------------------------------------------------------------

fn fetch_pair(mode: &str, generation: &str) {
    let (_d, dir) = tmp();
    let canary = Canary::start(64);
    let policy = policy_file(
        &dir,
        "fetch",
        &format!(
            "name: transparency-fetch\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"127.0.0.1:{}\"]\n",
            canary.port
        ),
    );
    let audit = dir.join("audit.jsonl");
    let opts = json!({"url": format!("http://127.0.0.1:{}", canary.port)});
    let (t, _) = compare(
        &fetch_server(),
        mode,
        "fetch",
        &opts,
        &policy,
        &audit,
        &|| {},
    );
    assert_eq!(t["protocol_version"], generation);
    assert!(step_text(&t, "call fetch").contains(CANARY_BODY), "{t}");
    assert!(!canary.hits_with("/page").is_empty());
}

#[test]
fn python_auto_x_mcp_server_fetch_2026_07_28() {
    fetch_pair("auto", "2026-07-28");
}

#[test]
fn python_legacy_x_mcp_server_fetch_handshake() {
    fetch_pair("legacy", "2025-11-25");
}

// ---------------------------------------------------------------------------------------------
// mcp-server-git
// ---------------------------------------------------------------------------------------------

/// Fixed identities and dates so that both runs make the same commits (same hashes).
fn git_pair(mode: &str, generation: &str) {
    let (_d, dir) = tmp();
    let repo = dir.join("ws");
    let policy = ws_policy(
        &dir,
        &repo,
        "environment:\n  allow: [GIT_AUTHOR_NAME, GIT_AUTHOR_EMAIL, GIT_COMMITTER_NAME, GIT_COMMITTER_EMAIL, GIT_AUTHOR_DATE, GIT_COMMITTER_DATE]\n",
    );
    let audit = dir.join("audit.jsonl");
    let env: serde_json::Map<String, Value> = GIT_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let opts = json!({"repo": repo.display().to_string(), "env": env});
    let server = vec![
        peer("venv/bin/mcp-server-git").display().to_string(),
        "--repository".into(),
        repo.display().to_string(),
    ];
    let (t, _) = compare(&server, mode, "git", &opts, &policy, &audit, &|| {
        reset_git_repo(&repo)
    });
    assert_eq!(t["protocol_version"], generation);
    assert!(step_text(&t, "log after commit").contains("second"), "{t}");
}

#[test]
fn python_auto_x_mcp_server_git_2026_07_28() {
    git_pair("auto", "2026-07-28");
}

#[test]
fn python_legacy_x_mcp_server_git_handshake() {
    git_pair("legacy", "2025-11-25");
}

// ---------------------------------------------------------------------------------------------
// Policy effects seen by the real SDK client
// ---------------------------------------------------------------------------------------------

/// Drop the tool `name` from every tools/list page of a transcript.
fn without_tool(t: &Value, name: &str) -> Value {
    let mut t = t.clone();
    for s in t["steps"].as_array_mut().unwrap() {
        if s["method"] == "tools/list" {
            if let Some(tools) = s["result"]["tools"].as_array_mut() {
                tools.retain(|x| x["name"] != name);
            }
        }
    }
    t
}

/// `blocked_tool` is blocked (and, by default, hidden): hidden on every page of the paged
/// tools/list and again after list_changed, refused when called by name; every other step is
/// exactly what the server answers directly. Both generations.
fn hidden_tool(mode: &str) {
    let (_d, dir) = tmp();
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let policy = policy_file(
        &dir,
        "block",
        &format!(
            "name: block-one\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\n\
             tools:\n  mode: blocklist\n  blocked: [blocked_tool]\n",
            ws.display()
        ),
    );
    let audit = dir.join("audit.jsonl");
    let opts = fixture_opts(&ws);
    let (direct, _) = py_session(&sdk_fixture(), mode, "fixture", &opts);
    let (through, _) = py_session(
        &jailed(&policy, &audit, &sdk_fixture()),
        mode,
        "fixture",
        &opts,
    );
    let pages: Vec<&Value> = through["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["method"] == "tools/list")
        .collect();
    assert_eq!(
        pages.len(),
        8,
        "two paged listings of four pages: {through}"
    );
    for p in &pages {
        assert!(
            !p["result"].to_string().contains("\"blocked_tool\""),
            "a blocked tool was listed: {p}"
        );
    }
    let refused = step(&through, "call blocked_tool");
    assert_eq!(refused["error"]["code"], -32001, "{refused}");
    assert_eq!(
        step(&direct, "call blocked_tool")["result"]["isError"],
        false
    );
    // Everything else: identical.
    let mut d = without_tool(&direct, "blocked_tool");
    let mut j = through.clone();
    for t in [&mut d, &mut j] {
        for s in t["steps"].as_array_mut().unwrap() {
            if s["step"] == "call blocked_tool" {
                s.as_object_mut().unwrap().remove("result");
                s.as_object_mut().unwrap().remove("error");
            }
        }
    }
    assert_same(
        &d,
        &j,
        &format!("fixture with blocked_tool hidden / python {mode}"),
    );
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(log.contains("blocked_tool"), "the refusal is not audited");
}

#[test]
fn python_auto_hidden_tool_stays_hidden_across_pages_and_blocked_2026_07_28() {
    hidden_tool("auto");
}

#[test]
fn python_legacy_hidden_tool_stays_hidden_across_pages_and_blocked() {
    hidden_tool("legacy");
}

/// server-filesystem replaces its directories with the client's roots. The SDK client offers
/// the workspace and a directory outside the policy: directly the server takes both; through
/// capjail the roots answer is intersected with the mounts, and the server only gets the
/// workspace.
#[test]
fn python_roots_answer_is_intersected_with_the_mounts() {
    let (_d, dir) = tmp();
    let ws = dir.join("ws");
    let outside = dir.join("outside");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let policy = ws_policy(&dir, &ws, "");
    let audit = dir.join("audit.jsonl");
    let opts = json!({"roots": [
        {"uri": format!("file://{}", ws.display()), "name": "ws"},
        {"uri": format!("file://{}", outside.display()), "name": "outside"}]});
    let server = fs_server(&[&ws]);
    let (direct, _) = py_session(&server, "legacy", "fs_roots", &opts);
    let (through, _) = py_session(
        &jailed(&policy, &audit, &server),
        "legacy",
        "fs_roots",
        &opts,
    );
    let d = step_text(&direct, "call list_allowed_directories");
    let j = step_text(&through, "call list_allowed_directories");
    assert!(d.contains(&outside.display().to_string()), "baseline: {d}");
    assert!(j.contains(&ws.display().to_string()), "{j}");
    assert!(
        !j.contains(&outside.display().to_string()),
        "capjail let the client's roots widen the server: {j}"
    );
}
