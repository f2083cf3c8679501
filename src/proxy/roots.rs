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
pub fn narrow_roots_response(response: &Value, policy: &Policy) -> Option<Vec<u8>> {
    let mounts = policy.filesystem.mounts.as_ref()?;
    let roots = response.pointer("/result/roots")?.as_array()?;
    let ctx = PathContext {
        cwd: "/".into(),
        home: None,
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
}
