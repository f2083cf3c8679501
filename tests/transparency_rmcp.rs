//! Transparency with the real Rust `rmcp` client (3.11.0, a dev-dependency): the same scripted
//! session runs directly against a real server and through `capjail run` under a policy that
//! allows it; the transcripts (results, errors, server->client requests handled, list_changed;
//! ids and timing aside) must be equal.
//!
//! rmcp's lifecycles: `Initialize` (the handshake generation) against server-everything,
//! server-filesystem and tests/fixtures/sdk_server.py, and `Discover` (2026-07-28:
//! `server/discover`, `_meta` on every request, `input_required` results that
//! `RunningService::call_tool` retries with a new id after asking this handler) against the
//! fixture.

// Sampling and roots are deprecated by the 2026-07-28 revision (SEP-2577) yet still part of the
// handshake generation, which these tests cover.
#![allow(deprecated)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
    ElicitRequestParams, ElicitResult, GetPromptRequestParams, ListRootsResult,
    ProgressNotificationParam, ProtocolVersion, ReadResourceRequestParams,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, NotificationContext, RequestContext};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ErrorData as McpError, RoleClient};
use serde_json::{json, Value};
use support::*;

/// What the handler saw: server->client requests and notifications, in arrival order per kind.
#[derive(Clone)]
struct Handler {
    info: ClientConfig,
    roots: Value,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Handler {
    fn new(roots: Value) -> Handler {
        let info: ClientConfig = serde_json::from_value(json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"roots": {}, "sampling": {}, "elicitation": {"form": {}}},
            "clientInfo": {"name": "capjail-rmcp-session", "version": "1"}
        }))
        .expect("client config");
        Handler {
            info,
            roots,
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }
    fn note(&self, v: Value) {
        self.seen.lock().unwrap().push(v);
    }
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        self.note(json!({"sampling": serde_json::to_value(&params).unwrap()["messages"]}));
        Ok(serde_json::from_value(json!({"role": "assistant",
            "content": {"type": "text", "text": "sampled by rmcp"},
            "model": "rmcp-test-model", "stopReason": "endTurn"}))
        .unwrap())
    }

    async fn list_roots(
        &self,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        // The server may ask at any moment: not part of the transcript order.
        Ok(serde_json::from_value(json!({"roots": self.roots})).unwrap())
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let r = serde_json::to_value(&request).unwrap();
        self.note(json!({"elicitation": r["message"]}));
        Ok(serde_json::from_value(json!({"action": "accept",
            "content": {"colour": "teal", "color": "teal", "number": 7, "pets": "cats"}}))
        .unwrap())
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        self.note(json!({"progress": params.progress, "total": params.total}));
    }

    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.note(json!("tools/list_changed"));
    }
}

/// One scripted step: a name and what to do.
enum Step {
    ListTools,
    ListResources,
    ListPrompts,
    Call(&'static str, Value),
    Read(String),
    Prompt(&'static str, Value),
}

fn obj(v: &Value) -> Option<serde_json::Map<String, Value>> {
    v.as_object().cloned()
}

/// Run `steps` with rmcp against `argv`; the transcript is a JSON array.
async fn session(
    argv: &[String],
    lifecycle: ClientLifecycleMode,
    roots: Value,
    steps: &[Step],
) -> Value {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).stderr(std::process::Stdio::null());
    let transport = TokioChildProcess::new(cmd).expect("spawn");
    let handler = Handler::new(roots);
    let seen = handler.seen.clone();
    let client = handler
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .unwrap_or_else(|e| panic!("rmcp could not connect to {argv:?}: {e}"));
    let mut out = vec![
        json!({"protocol_version": client.peer_info().map(|i| i.protocol_version.to_string())}),
    ];
    for step in steps {
        seen.lock().unwrap().clear();
        let (name, r): (String, Result<Value, String>) = match step {
            Step::ListTools => (
                "tools/list (all pages)".into(),
                client
                    .list_all_tools()
                    .await
                    .map(|t| serde_json::to_value(t).unwrap())
                    .map_err(|e| e.to_string()),
            ),
            Step::ListResources => (
                "resources/list (all pages)".into(),
                client
                    .list_all_resources()
                    .await
                    .map(|t| serde_json::to_value(t).unwrap())
                    .map_err(|e| e.to_string()),
            ),
            Step::ListPrompts => (
                "prompts/list (all pages)".into(),
                client
                    .list_all_prompts()
                    .await
                    .map(|t| serde_json::to_value(t).unwrap())
                    .map_err(|e| e.to_string()),
            ),
            Step::Call(tool, args) => {
                let mut p = CallToolRequestParams::new(*tool);
                if let Some(a) = obj(args) {
                    p = p.with_arguments(a);
                }
                (
                    format!("call {tool}"),
                    client
                        .call_tool(p)
                        .await
                        .map(|t| serde_json::to_value(t).unwrap())
                        .map_err(|e| e.to_string()),
                )
            }
            Step::Read(uri) => (
                format!("read {uri}"),
                client
                    .read_resource(ReadResourceRequestParams::new(uri.clone()))
                    .await
                    .map(|t| serde_json::to_value(t).unwrap())
                    .map_err(|e| e.to_string()),
            ),
            Step::Prompt(name, args) => {
                let mut p = GetPromptRequestParams::new(*name);
                if let Some(a) = obj(args) {
                    p = p.with_arguments(a);
                }
                (
                    format!("prompt {name}"),
                    client
                        .get_prompt(p)
                        .await
                        .map(|t| serde_json::to_value(t).unwrap())
                        .map_err(|e| e.to_string()),
                )
            }
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        let seen_now: Vec<Value> = seen.lock().unwrap().drain(..).collect();
        out.push(json!({"step": name, "outcome": match r { Ok(v) => json!({"result": v}), Err(e) => json!({"error": e}) },
                        "handled": seen_now}));
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), client.cancel()).await;
    Value::Array(out)
}

fn run(argv: &[String], lifecycle: ClientLifecycleMode, roots: Value, steps: &[Step]) -> Value {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(90),
            session(argv, lifecycle, roots, steps),
        )
        .await
        .unwrap_or_else(|_| panic!("the rmcp session against {argv:?} took longer than 90 s"))
    })
}

fn jail_mode() -> &'static str {
    static MODE: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    MODE.get_or_init(|| if kernel_available() { "full" } else { "proxy" })
}

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
        "--".into(),
    ];
    v.extend(server.iter().cloned());
    v
}

fn tmp_ws() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let d = tempfile::Builder::new()
        .prefix("capjail-rmcp-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = d.path().canonicalize().unwrap();
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "name: transparency-rmcp\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\n\
             tools:\n  mode: blocklist\n  blocked: [execute_command]\n",
            ws.display()
        ),
    )
    .unwrap();
    (d, dir, ws, policy)
}

#[track_caller]
fn assert_same(direct: &Value, through: &Value, what: &str) {
    if direct == through {
        return;
    }
    let (a, b) = (direct.as_array().unwrap(), through.as_array().unwrap());
    let mut diff = String::new();
    for i in 0..a.len().max(b.len()) {
        if a.get(i) != b.get(i) {
            diff += &format!(
                "step {i}:\n  direct:  {}\n  capjail: {}\n",
                a.get(i).map(Value::to_string).unwrap_or_default(),
                b.get(i).map(Value::to_string).unwrap_or_default()
            );
        }
    }
    panic!("{what}: the rmcp transcript through capjail differs from the direct one:\n{diff}");
}

fn compare(server: &[String], lifecycle: ClientLifecycleMode, steps: &[Step], what: &str) -> Value {
    let (_d, dir, ws, policy) = tmp_ws();
    let roots = json!([{"uri": format!("file://{}", ws.display()), "name": "ws"}]);
    let direct = run(server, lifecycle.clone(), roots.clone(), steps);
    let audit = dir.join("audit.jsonl");
    let through = run(&jailed(&policy, &audit, server), lifecycle, roots, steps);
    assert_same(&direct, &through, what);
    direct
}

fn fixture_steps() -> Vec<Step> {
    vec![
        Step::ListTools,
        Step::Call("add", json!({"a": 2, "b": 40})),
        Step::Call("ask_user", json!({"question": "colour?"})),
        Step::Call("summarise", json!({"text": "capjail"})),
        Step::Call("where_am_i", json!({})),
        Step::Call("grow", json!({})),
        Step::ListTools,
        Step::ListResources,
        Step::Read("fixture://note".into()),
        Step::ListPrompts,
        Step::Prompt("greet", json!({"who": "Ada"})),
    ]
}

fn sdk_fixture() -> Vec<String> {
    vec![
        peer("venv/bin/python").display().to_string(),
        fixture("sdk_server.py").display().to_string(),
    ]
}

fn text_of(t: &Value, step: &str) -> String {
    t.as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == step)
        .unwrap_or_else(|| panic!("no step {step} in {t}"))
        .to_string()
}

#[test]
fn rmcp_discover_x_sdk_fixture_2026_07_28() {
    let t = compare(
        &sdk_fixture(),
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        &fixture_steps(),
        "rmcp discover x sdk fixture",
    );
    assert_eq!(t[0]["protocol_version"], "2026-07-28", "{t}");
    assert!(text_of(&t, "call ask_user").contains("teal"), "{t}");
    assert!(
        text_of(&t, "call summarise").contains("sampled by rmcp"),
        "{t}"
    );
    assert!(text_of(&t, "call add").contains("42"), "{t}");
}

#[test]
fn rmcp_initialize_x_sdk_fixture_handshake() {
    let t = compare(
        &sdk_fixture(),
        ClientLifecycleMode::Initialize,
        &fixture_steps(),
        "rmcp initialize x sdk fixture",
    );
    assert_eq!(t[0]["protocol_version"], "2025-11-25", "{t}");
    assert!(text_of(&t, "call ask_user").contains("teal"), "{t}");
    assert!(
        text_of(&t, "call summarise").contains("sampled by rmcp"),
        "{t}"
    );
}

#[test]
fn rmcp_initialize_x_server_everything() {
    let server = vec![
        "node".into(),
        peer("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
            .display()
            .to_string(),
    ];
    let steps = vec![
        Step::ListTools,
        Step::Call("echo", json!({"message": "hello"})),
        Step::Call("get-sum", json!({"a": 19, "b": 23})),
        Step::Call("get-structured-content", json!({"location": "Chicago"})),
        Step::Call("get-tiny-image", json!({})),
        Step::Call(
            "trigger-sampling-request",
            json!({"prompt": "say hi", "maxTokens": 20}),
        ),
        Step::Call("trigger-elicitation-request", json!({})),
        Step::Call("get-roots-list", json!({})),
        Step::ListResources,
        Step::Read("demo://resource/static/document/features.md".into()),
        Step::ListPrompts,
        Step::Prompt("args-prompt", json!({"city": "Lyon", "state": "Rhone"})),
    ];
    let t = compare(
        &server,
        ClientLifecycleMode::Initialize,
        &steps,
        "rmcp initialize x server-everything",
    );
    assert!(
        text_of(&t, "call trigger-sampling-request").contains("sampled by rmcp"),
        "{t}"
    );
    assert!(
        text_of(&t, "call trigger-elicitation-request").contains("teal"),
        "{t}"
    );
}
