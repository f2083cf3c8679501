//! Transparency with the real Rust `rmcp` client (3.11.0, a dev-dependency): the same scripted
//! session runs directly against a real server and through `capjail run` (full mode when the
//! kernel layer is available, else `--mode proxy`; `--audit` to a temp file, which must hold no
//! deny) under a policy that allows it; the transcripts (results, errors, progress, server->client
//! requests handled, list_changed; ids, progress tokens and timing aside) must be equal.
//!
//! Pairs (rmcp lifecycle x server):
//! - `Initialize` (the handshake generation, 2025-11-25) x server-everything (tools, sampling,
//!   elicitation, roots, resources and templates, prompts; progress of a long-running
//!   operation; cancellation), server-filesystem and server-memory (every tool), mcp-server-fetch
//!   (every tool and prompt, against a loopback canary only), mcp-server-git (every tool) and
//!   tests/fixtures/sdk_server.py (pagination, progress, cancellation, list_changed, input);
//! - `Discover` (2026-07-28: `server/discover`, `_meta` on every request, `input_required`
//!   results that `RunningService::call_tool` retries with a new id after asking this handler)
//!   x mcp-server-fetch, mcp-server-git and the fixture.
//!
//! Normalised: JSON-RPC ids and progress tokens (never recorded), file times (JS `Date` and
//! ISO-8601 strings become "<time>"), list_changed (a set over the session: how many the server
//! sends and when is timing), and, for a cancelled request, how much progress came around the
//! cancellation. rmcp ends a request itself when it sends `notifications/cancelled`; that the
//! server got it is checked in capjail's audit.

// Sampling and roots are deprecated by the 2026-07-28 revision (SEP-2577) yet still part of the
// handshake generation, which these tests cover.
#![allow(deprecated)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use rmcp::model::{
    CallToolRequestParams, CancelledNotificationParam, ClientConfig, ClientNotification,
    ClientRequest, CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams,
    ElicitResult, GetPromptRequestParams, ListRootsResult, Notification, ProgressNotificationParam,
    ProgressToken, ProtocolVersion, ReadResourceRequestParams, Request,
};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, NotificationContext, PeerRequestOptions, RequestContext,
};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ErrorData as McpError, RoleClient};
use serde_json::{json, Value};

/// What the handler saw: server->client requests and notifications, in arrival order per kind.
#[derive(Clone)]
struct Handler {
    info: ClientConfig,
    roots: Value,
    seen: Arc<Mutex<Vec<Value>>>,
    /// Progress tokens of cancelled requests: their progress is timing, not transcript.
    cancelled: Arc<Mutex<Vec<ProgressToken>>>,
    /// Distinct server notifications of the whole session (list_changed).
    notifications: Arc<Mutex<std::collections::BTreeSet<String>>>,
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
            cancelled: Arc::new(Mutex::new(Vec::new())),
            notifications: Arc::default(),
        }
    }
    fn note(&self, v: Value) {
        self.seen.lock().unwrap().push(v);
    }
    fn notify(&self, method: &str) {
        self.notifications
            .lock()
            .unwrap()
            .insert(method.to_string());
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
        if self
            .cancelled
            .lock()
            .unwrap()
            .contains(&params.progress_token)
        {
            return;
        }
        self.note(json!({"progress": params.progress, "total": params.total,
                         "message": params.message}));
    }

    // list_changed notifications are a set over the whole session (as in py_session.py): how
    // many the server sends, and during which step, is timing (server-everything announces its
    // capability-dependent tools right after the handshake, once or several times).
    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.notify("notifications/tools/list_changed");
    }

    async fn on_resource_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.notify("notifications/resources/list_changed");
    }

    async fn on_prompt_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.notify("notifications/prompts/list_changed");
    }
}

/// One scripted step: a name and what to do.
enum Step {
    ListTools,
    ListResources,
    ListResourceTemplates,
    ListPrompts,
    Call(&'static str, Value),
    /// A call under its own step name (the same tool twice in one script).
    CallAs(&'static str, &'static str, Value),
    Read(String),
    Prompt(&'static str, Value),
    /// Something the test does between requests (edit a file the server works on); nothing
    /// is sent.
    Do(&'static str, Box<dyn Fn()>),
    /// Call a tool, cancel it (`notifications/cancelled`) after its first progress
    /// notification, and record whether a response still came within [`AFTER_CANCEL`].
    Cancel(&'static str, Value),
}

/// How long a cancelled request is watched for a (late) response.
const AFTER_CANCEL: Duration = Duration::from_secs(3);

fn obj(v: &Value) -> Option<serde_json::Map<String, Value>> {
    v.as_object().cloned()
}

/// Start `tool` with rmcp's cancellable request (rmcp puts a progress token on every request),
/// wait for the first progress notification, send `notifications/cancelled` for the request's
/// id, then watch for a response for [`AFTER_CANCEL`]. How many progress notifications arrived
/// before the cancellation is timing alone: only "at least one" is recorded.
async fn cancel_after_progress(
    client: &rmcp::service::RunningService<RoleClient, Handler>,
    tool: &str,
    args: &Value,
    handler: &Handler,
) -> Value {
    let seen = &handler.seen;
    let mut p = CallToolRequestParams::new(tool.to_string());
    if let Some(a) = obj(args) {
        p = p.with_arguments(a);
    }
    let mut handle = match client
        .peer()
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(p)),
            PeerRequestOptions::no_options(),
        )
        .await
    {
        Ok(h) => h,
        Err(e) => return json!({"send_error": e.to_string()}),
    };
    let has_progress = || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|v| v.get("progress").is_some())
    };
    let mut progress_before_cancel = false;
    for _ in 0..200 {
        if has_progress() {
            progress_before_cancel = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // From here on, progress for this request is ignored: how much of it the server still
    // sends after the cancellation (server-everything keeps reporting), and when, is timing.
    handler
        .cancelled
        .lock()
        .unwrap()
        .push(handle.progress_token.clone());
    let cancelled = client
        .peer()
        .send_notification(ClientNotification::CancelledNotification(
            Notification::new(CancelledNotificationParam::new(
                Some(handle.id.clone()),
                Some("cancelled by the rmcp test".into()),
            )),
        ))
        .await
        .map_err(|e| e.to_string());
    let after = match tokio::time::timeout(AFTER_CANCEL, &mut handle.rx).await {
        Err(_) => json!("no response (the server dropped the request)"),
        Ok(Err(_)) => json!("the response channel closed"),
        Ok(Ok(Ok(r))) => json!({"late result": serde_json::to_value(r).unwrap()}),
        Ok(Ok(Err(e))) => json!({"late error": e.to_string()}),
    };
    // Progress that came before the cancellation is timing too; not part of the transcript.
    seen.lock().unwrap().retain(|v| v.get("progress").is_none());
    json!({"progress_before_cancel": progress_before_cancel,
           "cancelled_sent": cancelled.is_ok(), "after_cancel": after})
}

/// Replace what legitimately differs between two runs of the same session: file times
/// (server-filesystem's get_file_info prints JS `Date`s) and ISO-8601 times become "<time>".
fn norm(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(norm_times(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(norm).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, norm(v))).collect()),
        v => v,
    }
}

/// Does `s` start with `shape` ('d' a digit, 'A' an ASCII letter, anything else itself)?
fn shaped(s: &[u8], shape: &str) -> bool {
    s.len() >= shape.len()
        && shape.bytes().zip(s).all(|(p, c)| match p {
            b'd' => c.is_ascii_digit(),
            b'A' => c.is_ascii_alphabetic(),
            p => p == *c,
        })
}

fn norm_times(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        let mut n = 0;
        if shaped(rest, "AAA AAA dd dddd dd:dd:dd GMT") {
            // JS Date.toString(): "Sun Nov 22 2026 13:20:40 GMT+0000 (Coordinated Universal Time)"
            n = 28;
            if shaped(&rest[n..], "+dddd") || shaped(&rest[n..], "-dddd") {
                n += 5;
            }
            if rest[n..].starts_with(b" (") {
                if let Some(close) = rest[n..].iter().position(|c| *c == b')') {
                    n += close + 1;
                }
            }
        } else if shaped(rest, "dddd-dd-ddTdd:dd:dd") {
            n = 19;
            if rest.get(n) == Some(&b'.') {
                n += 1;
                while rest.get(n).is_some_and(u8::is_ascii_digit) {
                    n += 1;
                }
            }
            if rest.get(n) == Some(&b'Z') {
                n += 1;
            } else if shaped(&rest[n..], "+dd:dd") || shaped(&rest[n..], "-dd:dd") {
                n += 6;
            }
        }
        if n > 0 {
            out += "<time>";
            i += n;
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Run `steps` with rmcp against `argv` (with `env` added to the environment); the transcript
/// is a JSON array.
async fn session(
    argv: &[String],
    env: &[(String, String)],
    lifecycle: ClientLifecycleMode,
    roots: Value,
    steps: &[Step],
) -> Value {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(std::process::Stdio::null());
    let transport = TokioChildProcess::new(cmd).expect("spawn");
    let handler = Handler::new(roots);
    let seen = handler.seen.clone();
    let handler_ref = handler.clone();
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
            Step::ListResourceTemplates => (
                "resources/templates/list (all pages)".into(),
                client
                    .list_all_resource_templates()
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
            Step::Call(tool, args) | Step::CallAs(_, tool, args) => {
                let mut p = CallToolRequestParams::new(*tool);
                if let Some(a) = obj(args) {
                    p = p.with_arguments(a);
                }
                (
                    match step {
                        Step::CallAs(name, ..) => name.to_string(),
                        _ => format!("call {tool}"),
                    },
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
            Step::Do(name, f) => {
                f();
                (name.to_string(), Ok(Value::Null))
            }
            Step::Cancel(tool, args) => (
                format!("cancel {tool}"),
                Ok(cancel_after_progress(&client, tool, args, &handler_ref).await),
            ),
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        let seen_now: Vec<Value> = seen.lock().unwrap().drain(..).collect();
        out.push(norm(json!({"step": name, "outcome": match r { Ok(v) => json!({"result": v}), Err(e) => json!({"error": e}) },
                        "handled": seen_now})));
    }
    // Let late, deterministic notifications (list_changed after the last step) arrive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let notes: Vec<String> = handler_ref
        .notifications
        .lock()
        .unwrap()
        .iter()
        .cloned()
        .collect();
    out.push(json!({"notifications": notes}));
    let _ = tokio::time::timeout(Duration::from_secs(10), client.cancel()).await;
    Value::Array(out)
}

fn run(
    argv: &[String],
    env: &[(String, String)],
    lifecycle: ClientLifecycleMode,
    roots: Value,
    steps: &[Step],
) -> Value {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(90),
            session(argv, env, lifecycle, roots, steps),
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
        // Never the user's pin file.
        "--pins".into(),
        audit.with_file_name("pins.json").display().to_string(),
        "--".into(),
    ];
    v.extend(server.iter().cloned());
    v
}

/// A temp dir under /tmp (canonical) with an empty `ws` in it.
fn tmp_ws() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::Builder::new()
        .prefix("capjail-rmcp-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = d.path().canonicalize().unwrap();
    let ws = dir.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    (d, dir, ws)
}

/// Everything the server needs allowed: the workspace read-write, no network, `extra` appended
/// (an `environment:` section).
fn ws_policy(dir: &Path, ws: &Path, extra: &str) -> PathBuf {
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "name: transparency-rmcp\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\n\
             tools:\n  mode: blocklist\n  blocked: [execute_command]\nallow:\n  - capability: environment.read\n    variables: [\"*\"]\n{extra}",
            ws.display()
        ),
    )
    .unwrap();
    policy
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

/// One pair: a server, the environment added for it, the policy that allows it, the roots
/// the client offers, and `reset`, which restores the server's state before each run.
struct Pair<'a> {
    server: Vec<String>,
    env: Vec<(String, String)>,
    policy: PathBuf,
    roots: Value,
    reset: &'a dyn Fn(),
}

impl Pair<'_> {
    /// Run `steps` directly and through capjail; compare; return the direct transcript.
    fn compare(&self, lifecycle: ClientLifecycleMode, steps: &[Step], what: &str) -> Value {
        self.compare_audited(lifecycle, steps, what).0
    }

    /// [`Pair::compare`], also returning capjail's audit log of the run through it.
    fn compare_audited(
        &self,
        lifecycle: ClientLifecycleMode,
        steps: &[Step],
        what: &str,
    ) -> (Value, String) {
        (self.reset)();
        let direct = run(
            &self.server,
            &self.env,
            lifecycle.clone(),
            self.roots.clone(),
            steps,
        );
        (self.reset)();
        let audit = self
            .policy
            .with_file_name(format!("audit-{}.jsonl", random_hex(4)));
        let through = run(
            &jailed(&self.policy, &audit, &self.server),
            &self.env,
            lifecycle,
            self.roots.clone(),
            steps,
        );
        assert_same(
            &direct,
            &through,
            &format!("{what} (capjail {})", jail_mode()),
        );
        let log = std::fs::read_to_string(&audit).unwrap_or_default();
        assert!(
            !log.contains("\"deny\""),
            "{what}: the policy meant to allow everything denied something: {log}"
        );
        if steps.iter().any(|s| matches!(s, Step::Cancel(..))) {
            assert_cancel_forwarded(&log, what);
        }
        (direct, log)
    }
}

/// rmcp ends a request itself when it sends `notifications/cancelled`, so its transcript
/// cannot show whether the server got the cancellation: capjail's audit does (allowed, with
/// the request id rmcp used).
#[track_caller]
fn assert_cancel_forwarded(log: &str, what: &str) {
    let forwarded = log.lines().any(|l| {
        let v: Value = serde_json::from_str(l).unwrap_or_default();
        v["method"] == "notifications/cancelled"
            && v["verdict"] == "allow"
            && v["direction"] == "client_to_server"
            && v["params"]["requestId"].is_number()
    });
    assert!(
        forwarded,
        "{what}: capjail did not forward rmcp's notifications/cancelled:\n{log}"
    );
}

fn roots_of(ws: &Path) -> Value {
    json!([{"uri": format!("file://{}", ws.display()), "name": "ws"}])
}

fn compare(server: &[String], lifecycle: ClientLifecycleMode, steps: &[Step], what: &str) -> Value {
    let (_d, dir, ws) = tmp_ws();
    Pair {
        server: server.to_vec(),
        env: vec![],
        policy: ws_policy(&dir, &ws, ""),
        roots: roots_of(&ws),
        reset: &|| {},
    }
    .compare(lifecycle, steps, what)
}

fn fixture_steps() -> Vec<Step> {
    vec![
        Step::ListTools,
        Step::Call("add", json!({"a": 2, "b": 40})),
        Step::Call("blocked_tool", json!({"x": "called by name"})),
        Step::Call("slow", json!({"steps": 3})),
        Step::Call("ask_user", json!({"question": "colour?"})),
        Step::Call("summarise", json!({"text": "capjail"})),
        Step::Call("where_am_i", json!({})),
        Step::Call("grow", json!({})),
        Step::ListTools,
        Step::ListResources,
        Step::Read("fixture://note".into()),
        Step::ListPrompts,
        Step::Prompt("greet", json!({"who": "Ada"})),
        Step::Cancel("slow", json!({"steps": 50})),
        Step::CallAs("after cancel", "add", json!({"a": 1, "b": 1})),
    ]
}

/// The fixture's progress and cancellation steps did what they claim.
#[track_caller]
fn assert_fixture_progress_and_cancel(t: &Value) {
    let slow = t
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "call slow")
        .unwrap();
    assert_eq!(slow["handled"].as_array().map(Vec::len), Some(3), "{t}");
    assert_eq!(slow["handled"][2]["message"], "step 3", "{t}");
    let cancel = t
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "cancel slow")
        .unwrap();
    assert_eq!(
        cancel["outcome"]["result"]["progress_before_cancel"], true,
        "{t}"
    );
    assert!(text_of(t, "after cancel").contains('2'), "{t}");
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
    assert_fixture_progress_and_cancel(&t);
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
    assert_fixture_progress_and_cancel(&t);
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
        Step::ListResourceTemplates,
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

/// Progress and cancellation with rmcp against server-everything: a long-running operation
/// with rmcp's progress token (every progress notification, in order, is in the transcript),
/// then one cancelled after its first progress notification via rmcp's cancellable request
/// (`notifications/cancelled` with the request's id: the server must drop it, so no response
/// comes back, directly or through capjail), then the session still answers.
#[test]
fn rmcp_initialize_x_server_everything_progress_and_cancel() {
    let server = vec![
        "node".into(),
        peer("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
            .display()
            .to_string(),
    ];
    let steps = vec![
        Step::Call(
            "trigger-long-running-operation",
            json!({"duration": 1, "steps": 4}),
        ),
        Step::Cancel(
            "trigger-long-running-operation",
            json!({"duration": 2, "steps": 20}),
        ),
        Step::CallAs("after cancel", "echo", json!({"message": "after cancel"})),
    ];
    let t = compare(
        &server,
        ClientLifecycleMode::Initialize,
        &steps,
        "rmcp initialize x server-everything (progress, cancel)",
    );
    let progress = &t[1]["handled"];
    assert_eq!(
        progress.as_array().map(Vec::len),
        Some(4),
        "four progress notifications: {t}"
    );
    assert_eq!(progress[3]["progress"].as_f64(), Some(4.0), "{t}");
    let cancel = &t[2]["outcome"]["result"];
    assert_eq!(cancel["progress_before_cancel"], true, "{t}");
    // rmcp ends the request itself when it sends notifications/cancelled.
    assert_eq!(
        cancel["after_cancel"]["late error"],
        "task cancelled for reason cancelled by the rmcp test",
        "{t}"
    );
    assert!(
        t.to_string().contains("notifications/tools/list_changed"),
        "{t}"
    );
    assert!(text_of(&t, "after cancel").contains("after cancel"), "{t}");
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

/// Every tool of server-filesystem (its own errors included), after it took the client's roots.
#[test]
fn rmcp_initialize_x_server_filesystem() {
    let (_d, dir, ws) = tmp_ws();
    let root = ws.display().to_string();
    let f = |rel: &str| format!("{root}/{rel}");
    let steps = vec![
        // The server asks for roots/list right after the handshake: let that settle first.
        Step::Do(
            "roots settle",
            Box::new(|| std::thread::sleep(Duration::from_millis(300))),
        ),
        Step::ListTools,
        Step::Call("list_allowed_directories", json!({})),
        Step::Call(
            "write_file",
            json!({"path": f("a.txt"), "content": "alpha\nbeta\ngamma\n"}),
        ),
        Step::Call("read_text_file", json!({"path": f("a.txt")})),
        Step::CallAs(
            "read head",
            "read_text_file",
            json!({"path": f("a.txt"), "head": 2}),
        ),
        Step::CallAs(
            "read tail",
            "read_text_file",
            json!({"path": f("a.txt"), "tail": 1}),
        ),
        Step::Call("read_file", json!({"path": f("a.txt")})),
        Step::Call("read_media_file", json!({"path": f("pixel.png")})),
        Step::Call(
            "read_multiple_files",
            json!({"paths": [f("a.txt"), f("sub/readme.md"), f("missing")]}),
        ),
        Step::CallAs(
            "edit dry run",
            "edit_file",
            json!({"path": f("a.txt"), "edits": [{"oldText": "beta", "newText": "BETA"}], "dryRun": true}),
        ),
        Step::Call(
            "edit_file",
            json!({"path": f("a.txt"), "edits": [{"oldText": "beta", "newText": "BETA"}]}),
        ),
        Step::Call("create_directory", json!({"path": f("new/deeper")})),
        Step::Call("list_directory", json!({"path": root})),
        Step::Call(
            "list_directory_with_sizes",
            json!({"path": root, "sortBy": "name"}),
        ),
        Step::Call("directory_tree", json!({"path": root})),
        Step::Call(
            "move_file",
            json!({"source": f("a.txt"), "destination": f("new/a.txt")}),
        ),
        Step::Call("search_files", json!({"path": root, "pattern": "**/*.txt"})),
        Step::Call("get_file_info", json!({"path": f("new/a.txt")})),
        Step::CallAs(
            "missing file",
            "read_text_file",
            json!({"path": f("nope.txt")}),
        ),
        Step::ListResources,
        Step::ListPrompts,
    ];
    let t = Pair {
        server: fs_server(&[&ws]),
        env: vec![],
        policy: ws_policy(&dir, &ws, ""),
        roots: roots_of(&ws),
        reset: &|| reset_ws(&ws),
    }
    .compare(
        ClientLifecycleMode::Initialize,
        &steps,
        "rmcp initialize x server-filesystem",
    );
    assert!(text_of(&t, "call read_text_file").contains("alpha"), "{t}");
    assert!(text_of(&t, "call search_files").contains("a.txt"), "{t}");
    assert!(text_of(&t, "call get_file_info").contains("<time>"), "{t}");
    assert!(
        text_of(&t, "call list_allowed_directories").contains(&root),
        "{t}"
    );
    assert_every_tool_called(&t, &steps, "server-filesystem");
}

// ---------------------------------------------------------------------------------------------
// server-memory
// ---------------------------------------------------------------------------------------------

/// Every tool of server-memory; the memory file's location reaches the server through the
/// environment, which the policy passes (`environment.allow: [MEMORY_FILE_PATH]`).
#[test]
fn rmcp_initialize_x_server_memory() {
    let (_d, dir, ws) = tmp_ws();
    let file = ws.join("memory.jsonl");
    let steps = vec![
        Step::ListTools,
        Step::Call(
            "create_entities",
            json!({"entities": [
                {"name": "Ada", "entityType": "person", "observations": ["wrote the first program"]},
                {"name": "Engine", "entityType": "machine", "observations": ["analytical"]},
                {"name": "Babbage", "entityType": "person", "observations": ["designed the engine"]}]}),
        ),
        Step::Call(
            "create_relations",
            json!({"relations": [
                {"from": "Ada", "to": "Engine", "relationType": "programmed"},
                {"from": "Babbage", "to": "Engine", "relationType": "designed"}]}),
        ),
        Step::Call(
            "add_observations",
            json!({"observations": [{"entityName": "Ada", "contents": ["born 1815"]}]}),
        ),
        Step::Call("read_graph", json!({})),
        Step::Call("search_nodes", json!({"query": "engine"})),
        Step::Call("open_nodes", json!({"names": ["Ada", "Nobody"]})),
        Step::Call(
            "delete_observations",
            json!({"deletions": [{"entityName": "Ada", "observations": ["born 1815"]}]}),
        ),
        Step::Call(
            "delete_relations",
            json!({"relations": [{"from": "Babbage", "to": "Engine", "relationType": "designed"}]}),
        ),
        Step::Call("delete_entities", json!({"entityNames": ["Babbage"]})),
        Step::CallAs("final graph", "read_graph", json!({})),
        Step::ListResources,
        Step::ListPrompts,
    ];
    let t = Pair {
        server: node_server("server-memory"),
        env: vec![("MEMORY_FILE_PATH".into(), file.display().to_string())],
        policy: ws_policy(&dir, &ws, "environment:\n  allow: [MEMORY_FILE_PATH]\n"),
        roots: roots_of(&ws),
        reset: &|| {
            let _ = std::fs::remove_file(&file);
        },
    }
    .compare(
        ClientLifecycleMode::Initialize,
        &steps,
        "rmcp initialize x server-memory",
    );
    assert!(text_of(&t, "call read_graph").contains("programmed"), "{t}");
    assert!(!text_of(&t, "final graph").contains("Babbage"), "{t}");
    assert!(file.exists(), "the server did not write MEMORY_FILE_PATH");
    assert_every_tool_called(&t, &steps, "server-memory");
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

/// The first tools/list step lists no tool the script does not call.
#[track_caller]
fn assert_every_tool_called(t: &Value, steps: &[Step], server: &str) {
    let listed = t
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "tools/list (all pages)")
        .and_then(|s| s["outcome"]["result"].as_array())
        .unwrap_or_else(|| panic!("no tools/list result in {t}"));
    assert!(!listed.is_empty(), "{t}");
    for tool in listed {
        let name = tool["name"].as_str().unwrap();
        assert!(
            steps
                .iter()
                .any(|s| matches!(s, Step::Call(n, _) | Step::CallAs(_, n, _) if *n == name)),
            "{server} tool {name} is not covered by the script"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// mcp-server-fetch (a loopback canary in the test process, nothing else)
// ---------------------------------------------------------------------------------------------

fn fetch_pair(lifecycle: ClientLifecycleMode, generation: &str) {
    let (_d, dir, ws) = tmp_ws();
    let canary = Canary::start(64);
    let policy = dir.join("policy-fetch.yaml");
    std::fs::write(
        &policy,
        format!(
            "name: transparency-fetch\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"127.0.0.1:{}\"]\n",
            canary.port
        ),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{}", canary.port);
    let steps = vec![
        Step::ListTools,
        Step::Call(
            "fetch",
            json!({"url": format!("{url}/page"), "max_length": 2000}),
        ),
        Step::CallAs(
            "fetch raw",
            "fetch",
            json!({"url": format!("{url}/raw"), "raw": true}),
        ),
        Step::CallAs(
            "fetch slice",
            "fetch",
            json!({"url": format!("{url}/slice"), "max_length": 5, "start_index": 3}),
        ),
        // An allowed URL the server fails on (the canary answers 404 there): its own error.
        Step::CallAs(
            "fetch 404",
            "fetch",
            json!({"url": format!("{url}/robots.txt")}),
        ),
        Step::ListPrompts,
        Step::Prompt("fetch", json!({"url": format!("{url}/prompt")})),
    ];
    let t = Pair {
        server: fetch_server(),
        env: vec![],
        policy,
        roots: roots_of(&ws),
        reset: &|| {},
    }
    .compare(
        lifecycle,
        &steps,
        &format!("rmcp x mcp-server-fetch ({generation})"),
    );
    assert_eq!(t[0]["protocol_version"], generation, "{t}");
    assert!(text_of(&t, "call fetch").contains(CANARY_BODY), "{t}");
    assert!(text_of(&t, "prompt fetch").contains(CANARY_BODY), "{t}");
    assert!(!canary.hits_with("/page").is_empty());
    assert_every_tool_called(&t, &steps, "mcp-server-fetch");
}

#[test]
fn rmcp_discover_x_mcp_server_fetch_2026_07_28() {
    fetch_pair(
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        "2026-07-28",
    );
}

#[test]
fn rmcp_initialize_x_mcp_server_fetch_handshake() {
    fetch_pair(ClientLifecycleMode::Initialize, "2025-11-25");
}

// ---------------------------------------------------------------------------------------------
// mcp-server-git
// ---------------------------------------------------------------------------------------------

/// Fixed identities and dates so that both runs make the same commits (same hashes).
fn git_pair(lifecycle: ClientLifecycleMode, generation: &str) {
    let (_d, dir, repo) = tmp_ws();
    let r = repo.display().to_string();
    let edit = repo.clone();
    let steps = vec![
        Step::ListTools,
        Step::Call("git_status", json!({"repo_path": r})),
        Step::Call("git_log", json!({"repo_path": r, "max_count": 5})),
        Step::Call(
            "git_branch",
            json!({"repo_path": r, "branch_type": "local"}),
        ),
        Step::Call(
            "git_create_branch",
            json!({"repo_path": r, "branch_name": "feature"}),
        ),
        Step::Call(
            "git_checkout",
            json!({"repo_path": r, "branch_name": "feature"}),
        ),
        Step::Do(
            "edit the work tree",
            Box::new(move || {
                let notes = edit.join("notes.txt");
                let mut s = std::fs::read_to_string(&notes).unwrap();
                s += "more notes\n";
                std::fs::write(&notes, s).unwrap();
                std::fs::write(edit.join("new.txt"), "new file\n").unwrap();
            }),
        ),
        Step::Call("git_diff_unstaged", json!({"repo_path": r})),
        Step::Call(
            "git_add",
            json!({"repo_path": r, "files": ["notes.txt", "new.txt"]}),
        ),
        Step::Call("git_diff_staged", json!({"repo_path": r})),
        Step::Call("git_reset", json!({"repo_path": r})),
        Step::CallAs(
            "add again",
            "git_add",
            json!({"repo_path": r, "files": ["notes.txt"]}),
        ),
        Step::Call("git_commit", json!({"repo_path": r, "message": "second"})),
        Step::Call("git_diff", json!({"repo_path": r, "target": "master"})),
        Step::Call("git_show", json!({"repo_path": r, "revision": "HEAD"})),
        Step::CallAs(
            "log after commit",
            "git_log",
            json!({"repo_path": r, "max_count": 5}),
        ),
        Step::CallAs(
            "branches after",
            "git_branch",
            json!({"repo_path": r, "branch_type": "all"}),
        ),
        // The server's own error, inside the policy: an unknown revision.
        Step::CallAs(
            "bad revision",
            "git_show",
            json!({"repo_path": r, "revision": "no-such-revision"}),
        ),
        Step::ListResources,
        Step::ListPrompts,
    ];
    let names: Vec<&str> = GIT_ENV.iter().map(|(k, _)| *k).collect();
    let t = Pair {
        server: vec![
            peer("venv/bin/mcp-server-git").display().to_string(),
            "--repository".into(),
            r.clone(),
        ],
        env: GIT_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        policy: ws_policy(
            &dir,
            &repo,
            &format!("environment:\n  allow: [{}]\n", names.join(", ")),
        ),
        roots: roots_of(&repo),
        reset: &|| reset_git_repo(&repo),
    }
    .compare(
        lifecycle,
        &steps,
        &format!("rmcp x mcp-server-git ({generation})"),
    );
    assert_eq!(t[0]["protocol_version"], generation, "{t}");
    assert!(text_of(&t, "log after commit").contains("second"), "{t}");
    assert!(
        text_of(&t, "call git_diff_unstaged").contains("more notes"),
        "{t}"
    );
    assert_every_tool_called(&t, &steps, "mcp-server-git");
}

#[test]
fn rmcp_discover_x_mcp_server_git_2026_07_28() {
    git_pair(
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        "2026-07-28",
    );
}

#[test]
fn rmcp_initialize_x_mcp_server_git_handshake() {
    git_pair(ClientLifecycleMode::Initialize, "2025-11-25");
}
