//! The client's `roots/list` answer, narrowed to the policy's mounts before the server sees it.
//!
//! The filesystem server REPLACES its command-line directories with the client's roots, so an
//! unfiltered answer would widen the server. Each root is intersected with each mount: a root
//! inside a mount stays as it is; a mount inside a root replaces it; anything else is removed.
//! When nothing remains the server gets an empty list (the filesystem server then keeps its
//! command-line directories; capjail still checks every call against the mounts).

use serde_json::{json, Value};

use crate::check::path::{canonicalize_lenient, decode, is_within, PathContext};
use crate::policy::Policy;

/// The rewritten response line, or `None` to forward the original (nothing to narrow).
pub(crate) fn narrow_roots_response(response: &Value, policy: &Policy) -> Option<Vec<u8>> {
    let mounts = policy.filesystem.mounts.as_ref()?;
    let roots = response.pointer("/result/roots")?.as_array()?;
    let named = root_paths(&response["result"]);
    for r in crate::policy::grants::roots_outside_mounts(&named, policy) {
        tracing::warn!("{}", crate::policy::grants::root_warning(&r, policy));
    }
    let ctx = PathContext {
        cwd: "/".into(),
        home: None,
        ..Default::default()
    };
    let mut kept = Vec::new();
    for root in roots {
        let Some(uri) = root.get("uri").and_then(Value::as_str) else {
            continue;
        };
        if !uri.to_ascii_lowercase().starts_with("file:") {
            continue;
        }
        let Ok(path) = decode(uri, &ctx) else {
            continue;
        };
        let path = canonicalize_lenient(&path);
        for m in mounts {
            if is_within(&path, &m.path) {
                kept.push(root.clone());
            } else if is_within(&m.path, &path) {
                let mut r = root.clone();
                r["uri"] = json!(file_uri(&m.path));
                kept.push(r);
            }
        }
    }
    kept.dedup();
    if kept.len() == roots.len() && kept.iter().zip(roots).all(|(a, b)| a == b) {
        return None;
    }
    tracing::warn!(
        before = roots.len(),
        after = kept.len(),
        "narrowed the client's roots to the policy's mounts"
    );
    let mut out = response.clone();
    out["result"]["roots"] = Value::Array(kept);
    Some(serde_json::to_vec(&out).expect("serialising a Value"))
}

/// The 2026-07-28 generation: roots also travel as `inputResponses` of a retried request
/// (`params.inputResponses.{key}.roots`). Each is narrowed like a `roots/list` answer. The
/// rewritten message, or `None` when nothing changes.
pub(crate) fn narrow_input_responses(message: &Value, policy: &Policy) -> Option<Vec<u8>> {
    let responses = message.pointer("/params/inputResponses")?.as_object()?;
    let mut out = message.clone();
    let mut changed = false;
    for (key, resp) in responses {
        if resp.get("roots").is_none() {
            continue;
        }
        let wrapped = json!({"result": resp});
        if let Some(line) = narrow_roots_response(&wrapped, policy) {
            let narrowed: Value = serde_json::from_slice(&line).expect("our own JSON");
            out["params"]["inputResponses"][key] = narrowed["result"].clone();
            changed = true;
        }
    }
    changed.then(|| serde_json::to_vec(&out).expect("serialising a Value"))
}

/// The local paths of the roots in a `roots/list` result or an `inputResponses` entry (what
/// the server will resolve relative paths against).
pub(crate) fn root_paths(result: &Value) -> Vec<std::path::PathBuf> {
    let ctx = PathContext {
        cwd: "/".into(),
        ..Default::default()
    };
    result
        .get("roots")
        .and_then(Value::as_array)
        .map(|roots| {
            roots
                .iter()
                .filter_map(|r| r.get("uri").and_then(Value::as_str))
                .filter(|u| u.to_ascii_lowercase().starts_with("file:"))
                .filter_map(|u| decode(u, &ctx).ok())
                .map(|p| canonicalize_lenient(&p))
                .collect()
        })
        .unwrap_or_default()
}

fn file_uri(p: &std::path::Path) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    const PATH: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    format!("file://{}", utf8_percent_encode(&p.to_string_lossy(), PATH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_str, PolicySource};

    #[test]
    fn roots_are_intersected_with_mounts() {
        let p = load_str("filesystem:\n  mounts:\n    - {path: /srv/ws, mode: rw}\n    - {path: /data/a b, mode: ro}\n", PolicySource::Inline).unwrap();
        let resp = json!({"jsonrpc":"2.0","id":0,"result":{"roots":[
            {"uri":"file:///srv/ws/proj","name":"inside"},
            {"uri":"file:///","name":"everything"},
            {"uri":"file:///etc","name":"outside"},
            {"uri":"https://example.com","name":"web"}]}});
        let out: Value =
            serde_json::from_slice(&narrow_roots_response(&resp, &p).unwrap()).unwrap();
        let uris: Vec<&str> = out["result"]["roots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["uri"].as_str().unwrap())
            .collect();
        assert_eq!(
            uris,
            [
                "file:///srv/ws/proj",
                "file:///srv/ws",
                "file:///data/a%20b"
            ]
        );
        assert_eq!(out["id"], 0);
    }

    #[test]
    fn nothing_to_narrow_forwards_the_original() {
        let p = load_str(
            "filesystem:\n  mounts:\n    - {path: /srv/ws, mode: rw}\n",
            PolicySource::Inline,
        )
        .unwrap();
        let resp = json!({"jsonrpc":"2.0","id":0,"result":{"roots":[{"uri":"file:///srv/ws"}]}});
        assert!(narrow_roots_response(&resp, &p).is_none());
        let open = load_str("filesystem: {mode: any}\n", PolicySource::Inline).unwrap();
        let wide = json!({"jsonrpc":"2.0","id":0,"result":{"roots":[{"uri":"file:///"}]}});
        assert!(narrow_roots_response(&wide, &open).is_none());
        let empty = load_str(
            "filesystem:\n  mounts:\n    - {path: /srv/ws, mode: rw}\n",
            PolicySource::Inline,
        )
        .unwrap();
        let out: Value = serde_json::from_slice(
            &narrow_roots_response(
                &json!({"jsonrpc":"2.0","id":1,"result":{"roots":[{"uri":"file:///etc"}]}}),
                &empty,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(out["result"]["roots"], json!([]));
    }

    #[test]
    fn input_responses_are_narrowed_too() {
        let p = load_str(
            "filesystem:\n  mounts:\n    - {path: /srv/ws, mode: rw}\n",
            PolicySource::Inline,
        )
        .unwrap();
        let msg = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"list_allowed_directories","arguments":{},
            "inputResponses":{"r1":{"roots":[{"uri":"file:///"},{"uri":"file:///etc"}]},"e":{"action":"accept"}}}});
        let out: Value =
            serde_json::from_slice(&narrow_input_responses(&msg, &p).unwrap()).unwrap();
        assert_eq!(
            out["params"]["inputResponses"]["r1"]["roots"],
            json!([{"uri":"file:///srv/ws"}])
        );
        assert_eq!(
            out["params"]["inputResponses"]["e"],
            json!({"action":"accept"})
        );
        assert_eq!(
            root_paths(&out["params"]["inputResponses"]["r1"]),
            vec![std::path::PathBuf::from("/srv/ws")]
        );
        let none = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x"}});
        assert!(narrow_input_responses(&none, &p).is_none());
    }
}
