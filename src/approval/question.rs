//! What is asked, in plain words, and how each kind of answer is read (pure).

use serde_json::{json, Value};

use crate::audit::canon::sha256_hex;

/// One call waiting for a person's approval. Built by the proxy from the decision.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApprovalQuestion {
    /// The JSON-RPC method (`tools/call`, ...).
    pub(crate) method: String,
    pub(crate) tool: Option<String>,
    pub(crate) capability: Option<String>,
    pub(crate) resource: Option<String>,
    /// The `require_approval` rule's id (`require_approval[0]`) and its label.
    pub(crate) rule: crate::policy::RuleId,
    pub(crate) rule_label: String,
    /// The rule's reason, or capjail's.
    pub(crate) reason: String,
}

impl ApprovalQuestion {
    /// The message the person reads.
    pub(crate) fn message(&self) -> String {
        let mut m = format!(
            "capjail: the MCP server's tool `{}` wants to {}",
            self.tool.as_deref().unwrap_or(&self.method),
            self.capability.as_deref().unwrap_or("act"),
        );
        if let Some(r) = &self.resource {
            m.push_str(&format!(" on {r}"));
        }
        m.push_str(&format!(
            ".\nPolicy rule {} asks a person to approve this call: {}\nApprove it?",
            self.rule_label, self.reason
        ));
        m
    }

    /// The `elicitation/create` params (both generations carry the same).
    pub(crate) fn elicitation_params(&self, offer_remember: bool) -> Value {
        let mut props = json!({
            "approve": {
                "type": "boolean",
                "title": "Approve this call",
                "description": "true runs the call once; false refuses it",
            }
        });
        if offer_remember {
            props["remember"] = json!({
                "type": "boolean",
                "title": "For the rest of this session",
                "description": format!("Also approve later calls of this tool that match rule {}, until this session ends", self.rule),
                "default": false,
            });
        }
        json!({
            "mode": "form",
            "message": self.message(),
            "requestedSchema": {"type": "object", "properties": props, "required": ["approve"]},
        })
    }

    /// The document an approver command reads on stdin.
    pub(crate) fn command_document(&self, offer_remember: bool, timeout_seconds: f64) -> Value {
        json!({
            "capjail_approval": 1,
            "message": self.message(),
            "method": self.method,
            "tool": self.tool,
            "capability": self.capability,
            "resource": self.resource,
            "rule": self.rule,
            "rule_label": self.rule_label,
            "reason": self.reason,
            "remember_allowed": offer_remember,
            "timeout_seconds": timeout_seconds,
        })
    }
}

/// The digest an approval is bound to: method, tool and arguments, canonical JSON.
pub(crate) fn call_digest(method: &str, params: Option<&Value>) -> String {
    let tool = params.and_then(|p| p.get("name")).cloned();
    let args = params.and_then(|p| p.get("arguments")).cloned();
    let mut text = Vec::new();
    // serde_json's Map is ordered (BTreeMap without preserve_order): canonical enough here.
    serde_json::to_writer(&mut text, &json!([method, tool, args])).expect("serialising a Value");
    sha256_hex(&text)
}

/// What came back, whoever answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Approved {
        remember: bool,
    },
    Denied,
    TimedOut,
    /// No approver could be asked.
    Unavailable,
}

/// Read an elicitation result (`{action, content}`): only an explicit `approve: true` under
/// `accept` approves. Returns the verdict and the answer in words.
pub(crate) fn read_elicitation(result: &Value, remember_allowed: bool) -> (Verdict, String) {
    let action = result.get("action").and_then(Value::as_str).unwrap_or("");
    let content = result.get("content");
    let approve = content
        .and_then(|c| c.get("approve"))
        .and_then(Value::as_bool);
    let remember = content
        .and_then(|c| c.get("remember"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match (action, approve) {
        ("accept", Some(true)) => approved(remember && remember_allowed),
        ("accept", _) => (
            Verdict::Denied,
            "accept without approve: true (deny)".into(),
        ),
        ("decline", _) => (Verdict::Denied, "decline".into()),
        ("cancel", _) => (Verdict::Denied, "cancel".into()),
        (other, _) => (
            Verdict::Denied,
            format!("unreadable answer {other:?} (deny)"),
        ),
    }
}

fn approved(remember: bool) -> (Verdict, String) {
    let words = if remember {
        "approve for the rest of the session"
    } else {
        "approve"
    };
    (Verdict::Approved { remember }, words.into())
}

/// Read an approver command's answer: exit status 0 and stdout `approve` (or `approve
/// session`, or JSON `{"approve": true, "remember": true}`) approves; anything else denies.
pub(crate) fn read_command_answer(
    success: bool,
    stdout: &[u8],
    remember_allowed: bool,
) -> (Verdict, String) {
    if !success {
        return (Verdict::Denied, "the approver command failed (deny)".into());
    }
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        if v.is_object() {
            let approve = v.get("approve").and_then(Value::as_bool) == Some(true);
            let remember = v.get("remember").and_then(Value::as_bool) == Some(true);
            return if approve {
                approved(remember && remember_allowed)
            } else {
                (Verdict::Denied, "deny".into())
            };
        }
    }
    read_words(text.lines().next().unwrap_or(""), remember_allowed)
}

/// A typed answer: `approve` / `yes` / `y`, `session` / `always` for the rest of the session;
/// anything else denies.
pub(crate) fn read_words(line: &str, remember_allowed: bool) -> (Verdict, String) {
    let words: Vec<String> = line
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    match words.first().map(String::as_str) {
        Some("approve" | "yes" | "y") => {
            approved(remember_allowed && words.get(1).is_some_and(|w| w == "session"))
        }
        Some("session" | "s") => approved(remember_allowed),
        _ => (Verdict::Denied, "deny".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RuleId;

    fn q() -> ApprovalQuestion {
        ApprovalQuestion {
            method: "tools/call".into(),
            tool: Some("write_file".into()),
            capability: Some("filesystem.write".into()),
            resource: Some("/ws/a.txt".into()),
            rule: RuleId::Policy("require_approval[0]".into()),
            rule_label: "require_approval[0] capability=filesystem.write".into(),
            reason: "writes need a person".into(),
        }
    }

    #[test]
    fn the_message_says_what_is_asked() {
        let m = q().message();
        for part in [
            "write_file",
            "filesystem.write",
            "/ws/a.txt",
            "require_approval[0]",
            "writes need a person",
        ] {
            assert!(m.contains(part), "{part} missing from {m}");
        }
        let p = q().elicitation_params(true);
        assert_eq!(p["requestedSchema"]["required"], json!(["approve"]));
        assert!(p["requestedSchema"]["properties"]["remember"].is_object());
        assert!(
            q().elicitation_params(false)["requestedSchema"]["properties"]
                .get("remember")
                .is_none()
        );
    }

    #[test]
    fn only_an_explicit_approval_approves() {
        let r = |v: Value| read_elicitation(&v, true).0;
        assert_eq!(
            r(json!({"action":"accept","content":{"approve":true}})),
            Verdict::Approved { remember: false }
        );
        assert_eq!(
            r(json!({"action":"accept","content":{"approve":true,"remember":true}})),
            Verdict::Approved { remember: true }
        );
        assert_eq!(
            read_elicitation(
                &json!({"action":"accept","content":{"approve":true,"remember":true}}),
                false
            )
            .0,
            Verdict::Approved { remember: false }
        );
        assert_eq!(
            r(json!({"action":"accept","content":{"approve":"true"}})),
            Verdict::Denied
        );
        assert_eq!(r(json!({"action":"accept"})), Verdict::Denied);
        assert_eq!(r(json!({"action":"decline"})), Verdict::Denied);
        assert_eq!(
            r(json!({"action":"cancel","content":{"approve":true}})),
            Verdict::Denied
        );
        assert_eq!(r(json!(null)), Verdict::Denied);
    }

    #[test]
    fn command_answers() {
        let r = |ok, out: &str| read_command_answer(ok, out.as_bytes(), true).0;
        assert_eq!(r(true, "approve\n"), Verdict::Approved { remember: false });
        assert_eq!(
            r(true, "approve session\n"),
            Verdict::Approved { remember: true }
        );
        assert_eq!(
            r(true, "{\"approve\":true}"),
            Verdict::Approved { remember: false }
        );
        assert_eq!(r(false, "approve\n"), Verdict::Denied);
        assert_eq!(r(true, ""), Verdict::Denied);
        assert_eq!(r(true, "deny"), Verdict::Denied);
        assert_eq!(r(true, "{\"approve\":false}"), Verdict::Denied);
    }

    #[test]
    fn the_digest_binds_tool_and_arguments() {
        let a = json!({"name":"w","arguments":{"path":"/a"}});
        let b = json!({"name":"w","arguments":{"path":"/b"}});
        let a2 = json!({"name":"w","arguments":{"path":"/a"},"_meta":{"x":1}});
        assert_ne!(
            call_digest("tools/call", Some(&a)),
            call_digest("tools/call", Some(&b))
        );
        assert_eq!(
            call_digest("tools/call", Some(&a)),
            call_digest("tools/call", Some(&a2))
        );
    }
}
