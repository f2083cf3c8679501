//! The probe's MCP/JSON-RPC 2.0 request handling: one line in, at most one line out.
//!
//! Stateless: every request is answered whether or not `initialize` came first, which serves
//! both protocol generations (the `initialize` handshake up to 2025-11-25, and 2026-07-28's
//! per-request `_meta` with `server/discover`).

use serde_json::{json, Map, Value};

use super::tools::{self, TOOLS};
use super::ProbeConfig;

pub(crate) const SERVER_NAME: &str = "capjail-probe";
/// Handshake-generation revisions `initialize` accepts (echoed back when the client asks for one).
pub(crate) const LEGACY_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// What `initialize` answers when the client asks for a revision not in [`LEGACY_VERSIONS`].
pub(crate) const DEFAULT_VERSION: &str = "2025-11-25";
/// The per-request-metadata generation.
pub(crate) const MODERN_VERSION: &str = "2026-07-28";
/// `_meta` key carrying the protocol version on 2026-07-28 requests.
const META_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

pub(crate) const PARSE_ERROR: i64 = -32700;
pub(crate) const INVALID_REQUEST: i64 = -32600;
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
pub(crate) const INVALID_PARAMS: i64 = -32602;

/// Handle one line (without or with its trailing newline). Returns the response line (no
/// trailing newline), or `None` for notifications, client responses and blank lines.
pub(crate) fn handle(line: &str, cfg: &ProbeConfig) -> Option<String> {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.trim().is_empty() {
        return None;
    }
    let reply = match serde_json::from_str::<Value>(line) {
        Ok(msg) => handle_value(&msg, cfg)?,
        Err(e) => error(Value::Null, PARSE_ERROR, &format!("Parse error: {e}")),
    };
    Some(reply.to_string())
}

/// A JSON-RPC error response.
pub(crate) fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn valid_id(id: &Value) -> bool {
    id.is_string() || id.is_i64() || id.is_u64()
}

fn handle_value(msg: &Value, cfg: &ProbeConfig) -> Option<Value> {
    let Some(obj) = msg.as_object() else {
        // Batches were removed in 2025-06-18; this server does not take them.
        return Some(error(
            Value::Null,
            INVALID_REQUEST,
            "Invalid Request: expected a single JSON object",
        ));
    };
    let id = obj.get("id");
    let method = match obj.get("method") {
        Some(Value::String(m)) => m.as_str(),
        None if obj.contains_key("result") || obj.contains_key("error") => return None, // a client response
        _ => {
            let id = id.filter(|i| valid_id(i)).cloned().unwrap_or(Value::Null);
            return Some(error(
                id,
                INVALID_REQUEST,
                "Invalid Request: missing or non-string `method`",
            ));
        }
    };
    let Some(id) = id else {
        return None; // notification: nothing to answer (notifications/initialized, cancelled, ...)
    };
    if !valid_id(id) {
        return Some(error(
            Value::Null,
            INVALID_REQUEST,
            "Invalid Request: `id` must be a string or an integer",
        ));
    }
    let id = id.clone();
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(error(
            id,
            INVALID_REQUEST,
            "Invalid Request: `jsonrpc` must be \"2.0\"",
        ));
    }
    let empty = Map::new();
    let params = match obj.get("params") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Some(error(
                id,
                INVALID_PARAMS,
                "Invalid params: `params` must be an object",
            ))
        }
    };
    let modern = params
        .get("_meta")
        .and_then(|m| m.get(META_VERSION_KEY))
        .and_then(Value::as_str)
        .is_some();

    let outcome = match method {
        "initialize" => Ok(initialize(params)),
        "ping" => Ok(json!({})),
        "server/discover" => Ok(discover()),
        "tools/list" => Ok(tools_list()),
        "tools/call" => tools_call(params, cfg),
        _ => Err((METHOD_NOT_FOUND, format!("Method not found: {method}"))),
    };
    Some(match outcome {
        Ok(mut r) => {
            if modern || method == "server/discover" {
                if let Some(o) = r.as_object_mut() {
                    o.insert("resultType".into(), json!("complete"));
                }
            }
            result(id, r)
        }
        Err((code, message)) => error(id, code, &message),
    })
}

fn server_info() -> Value {
    json!({"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")})
}

fn capabilities() -> Value {
    json!({"tools": {}})
}

fn initialize(params: &Map<String, Value>) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = match asked {
        Some(v) if LEGACY_VERSIONS.contains(&v) => v,
        _ => DEFAULT_VERSION,
    };
    json!({"protocolVersion": version, "capabilities": capabilities(), "serverInfo": server_info()})
}

fn discover() -> Value {
    let mut versions = vec![MODERN_VERSION];
    versions.extend(LEGACY_VERSIONS.iter().rev());
    json!({"supportedVersions": versions, "capabilities": capabilities(), "serverInfo": server_info()})
}

fn tools_list() -> Value {
    let tools: Vec<Value> = TOOLS
        .iter()
        .chain(super::walls::WALL_TOOLS)
        .chain(super::egress::EGRESS_TOOLS)
        .map(|t| {
            json!({
                "name": t.name,
                "description": t.description,
                "inputSchema": {
                    "type": "object",
                    "properties": {"topic": {"type": "string", "description": t.topic_hint}},
                    "required": ["topic"],
                },
            })
        })
        .collect();
    json!({"tools": tools})
}

fn tools_call(params: &Map<String, Value>, cfg: &ProbeConfig) -> Result<Value, (i64, String)> {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Err((
            INVALID_PARAMS,
            "Invalid params: `name` must be a string".into(),
        ));
    };
    if !TOOLS
        .iter()
        .chain(super::walls::WALL_TOOLS)
        .chain(super::egress::EGRESS_TOOLS)
        .any(|t| t.name == name)
    {
        return Err((INVALID_PARAMS, format!("Unknown tool: {name}")));
    }
    // Argument problems are tool execution errors (isError), as MCP asks.
    let topic = match params.get("arguments") {
        None | Some(Value::Null) => Err("missing required argument `topic`".to_string()),
        Some(Value::Object(args)) => match args.get("topic") {
            Some(Value::String(t)) => Ok(t.as_str()),
            Some(_) => Err("argument `topic` must be a string".to_string()),
            None => Err("missing required argument `topic`".to_string()),
        },
        Some(_) => Err("`arguments` must be an object".to_string()),
    };
    let outcome = match topic {
        Ok(topic) => {
            let out = tools::call(name, topic, cfg).expect("tool listed in TOOLS");
            eprintln!(
                "capjail-probe: {name}({topic:?}) -> {}",
                if out.ok { "ok" } else { "error" }
            );
            out
        }
        Err(text) => tools::Outcome { ok: false, text },
    };
    Ok(json!({"content": [{"type": "text", "text": outcome.text}], "isError": !outcome.ok}))
}
