//! What of a tool definition is pinned, and its digest: SHA-256 of the canonical JSON of the
//! members the model and the user read (`name`, `title`, `description`, `inputSchema`,
//! `outputSchema`, `annotations`). Other members (`_meta`, `icons`, ...) do not change what
//! the tool does or what the model is told, and are left out so they can vary freely.

use serde_json::{Map, Value};

use crate::audit::canon::{canonical_json, sha256_hex};

/// The pinned members, in the order they are reported.
pub(crate) const PINNED_MEMBERS: &[&str] = &[
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// The pinned part of a definition (absent members stay absent).
pub(crate) fn pinned_part(tool: &Value) -> Value {
    let mut m = Map::new();
    for k in PINNED_MEMBERS {
        if let Some(v) = tool.get(*k) {
            m.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(m)
}

/// `sha256:<hex>` of the canonical JSON of the pinned part.
pub(crate) fn digest(tool: &Value) -> String {
    format!(
        "sha256:{}",
        sha256_hex(canonical_json(&pinned_part(tool)).as_bytes())
    )
}

/// Which pinned members differ between two definitions (`description`, `inputSchema`, ...).
pub(crate) fn changed_members(old: &Value, new: &Value) -> Vec<&'static str> {
    PINNED_MEMBERS
        .iter()
        .copied()
        .filter(|k| old.get(*k).map(canonical_json) != new.get(*k).map(canonical_json))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_extra_members_do_not_change_the_digest() {
        let a = json!({"name":"t","description":"d","inputSchema":{"type":"object","properties":{"a":{},"b":{}}}});
        let b = json!({"inputSchema":{"properties":{"b":{},"a":{}},"type":"object"},"description":"d","name":"t","_meta":{"x":1}});
        assert_eq!(digest(&a), digest(&b));
        let c = json!({"name":"t","description":"d!","inputSchema":{"type":"object","properties":{"a":{},"b":{}}}});
        assert_ne!(digest(&a), digest(&c));
        assert_eq!(changed_members(&a, &c), vec!["description"]);
        let d = json!({"name":"t","description":"d","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}});
        assert_eq!(changed_members(&a, &d), vec!["inputSchema", "annotations"]);
    }
}
