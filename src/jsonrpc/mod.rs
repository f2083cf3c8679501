//! JSON-RPC 2.0 as MCP uses it: strict parsing, message shapes, error responses.

pub(crate) mod message;
mod plain;
pub(crate) mod quiet;
mod reuse;
pub(crate) mod stops;
pub(crate) mod strict;

use serde_json::{json, Map, Value};

#[cfg(test)]
pub(crate) use message::parse_message;
pub(crate) use message::parse_message_reusing;
#[cfg(test)]
pub(crate) use strict::validate_envelope;
pub(crate) use strict::{parse_strict, ParseError};

/// JSON-RPC / MCP error codes used by capjail.
pub(crate) mod code {
    pub(crate) const PARSE_ERROR: i64 = -32700;
    pub(crate) const INVALID_REQUEST: i64 = -32600;
    /// A request refused by the policy (MCP Jail's code).
    pub(crate) const POLICY_VIOLATION: i64 = -32001;
}

/// The shape of one well-formed message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Shape<'a> {
    Request {
        id: &'a Value,
        method: &'a str,
        params: Option<&'a Value>,
    },
    Notification {
        method: &'a str,
        params: Option<&'a Value>,
    },
    Response {
        id: &'a Value,
    },
}

/// A message that is valid JSON but not a valid JSON-RPC 2.0 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct InvalidMessage(pub String);

/// Classify a parsed value. Anything that is not exactly a JSON-RPC 2.0 request, notification
/// or response is refused: a message capjail cannot classify is never forwarded.
pub(crate) fn shape(v: &Value) -> Result<Shape<'_>, InvalidMessage> {
    let obj = v
        .as_object()
        .ok_or_else(|| InvalidMessage("a message must be a JSON object".into()))?;
    match obj.get("jsonrpc") {
        Some(Value::String(s)) if s == "2.0" => {}
        Some(_) => return Err(InvalidMessage("`jsonrpc` must be \"2.0\"".into())),
        None => return Err(InvalidMessage("missing `\"jsonrpc\": \"2.0\"`".into())),
    }
    let id = obj.get("id");
    if let Some(id) = id {
        if !(id.is_string() || id.is_i64() || id.is_u64()) {
            return Err(InvalidMessage("`id` must be a string or an integer".into()));
        }
    }
    let params = obj.get("params");
    if let Some(p) = params {
        if !p.is_object() && !p.is_array() {
            return Err(InvalidMessage(
                "`params` must be an object or an array".into(),
            ));
        }
    }
    match (obj.get("method"), id) {
        (Some(Value::String(method)), Some(id)) => {
            only_keys(obj, &["jsonrpc", "id", "method", "params"])?;
            Ok(Shape::Request { id, method, params })
        }
        (Some(Value::String(method)), None) => {
            only_keys(obj, &["jsonrpc", "method", "params"])?;
            Ok(Shape::Notification { method, params })
        }
        (Some(_), _) => Err(InvalidMessage("`method` must be a string".into())),
        (None, Some(id)) => {
            let has_result = obj.contains_key("result");
            let has_error = obj.contains_key("error");
            if has_result == has_error {
                return Err(InvalidMessage(
                    "a response has exactly one of `result` and `error`".into(),
                ));
            }
            only_keys(obj, &["jsonrpc", "id", "result", "error"])?;
            Ok(Shape::Response { id })
        }
        (None, None) => {
            // An error response to an unparseable message carries `"id": null`.
            if obj.get("id").is_some_and(Value::is_null) && obj.contains_key("error") {
                return Ok(Shape::Response { id: &Value::Null });
            }
            Err(InvalidMessage(
                "neither a request, a notification nor a response".into(),
            ))
        }
    }
}

/// Extra top-level members are how parser differentials start (`"Method"` next to `"method"`):
/// refuse them.
fn only_keys(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), InvalidMessage> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(InvalidMessage(format!(
            "unexpected member `{k}` in a JSON-RPC message"
        ))),
        None => Ok(()),
    }
}

/// A JSON-RPC error response, serialised on one line (no trailing newline).
pub(crate) fn error_response(id: &Value, code: i64, message: &str, data: Option<Value>) -> Vec<u8> {
    let mut err = json!({ "code": code, "message": message });
    if let Some(d) = data {
        err["data"] = d;
    }
    serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": id, "error": err }))
        .expect("serialising a Value cannot fail")
}

/// Best effort: the `id` of a message that failed validation, so that the error can carry it.
pub(crate) fn salvage_id(v: &Value) -> Value {
    match v.get("id") {
        Some(id) if id.is_string() || id.is_i64() || id.is_u64() => id.clone(),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let r = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
        assert!(matches!(
            shape(&r),
            Ok(Shape::Request { method: "ping", .. })
        ));
        let n = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        assert!(matches!(shape(&n), Ok(Shape::Notification { .. })));
        let resp = json!({"jsonrpc":"2.0","id":"a","result":{}});
        assert!(matches!(shape(&resp), Ok(Shape::Response { .. })));
    }

    #[test]
    fn refusals() {
        for bad in [
            json!([1]),
            json!({"id":1,"method":"tools/call"}),
            json!({"jsonrpc":"1.0","id":1,"method":"x"}),
            json!({"jsonrpc":"2.0","id":1.5,"method":"x"}),
            json!({"jsonrpc":"2.0","id":{},"method":"x"}),
            json!({"jsonrpc":"2.0","id":1,"method":7}),
            json!({"jsonrpc":"2.0","id":1,"method":"x","params":"s"}),
            json!({"jsonrpc":"2.0","id":1,"method":"x","Method":"y"}),
            json!({"jsonrpc":"2.0","id":1,"result":{},"error":{}}),
            json!({"jsonrpc":"2.0","id":1}),
        ] {
            assert!(shape(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_lines() {
        let line = error_response(
            &json!(7),
            code::POLICY_VIOLATION,
            "capjail policy violation: x",
            Some(json!({"rule":"r"})),
        );
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], -32001);
        assert_eq!(v["error"]["data"]["rule"], "r");
        assert!(!line.contains(&b'\n'));
    }
}
