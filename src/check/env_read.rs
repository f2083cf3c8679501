//! Reading the server's environment through a tool (`environment.read`, e.g. server-everything's
//! `get-env`): refused unless the rule that admits it names the variables
//! (`allow: [{capability: environment.read, variables: [LANG, TZ]}]`), and then the answer the
//! client gets keeps only those variables: every other value is cut out of it (pure).
//!
//! The server keeps its whole (allowlisted) environment — it needs `PATH`, `HOME`, ... to run —
//! so the filter works on the answer. An answer is filtered when each of its text items is a
//! JSON object of strings (`JSON.stringify(process.env)`) or `NAME=value` lines, and its
//! `structuredContent` an object; other content items (images, resources) are dropped. An
//! answer in any other shape cannot be filtered with confidence and is withheld (an error with
//! rule `default.environment`): no unnamed variable's value reaches the client.

use serde_json::{Map, Value};

use super::rules::{evaluate, RuleVerdict};
use super::{decide::Decision, Denial};
use crate::policy::rules::CapabilityPattern;
use crate::policy::{Policy, Rule};

pub(crate) const CAPABILITY: &str = "environment.read";

/// The variables an environment read may show: exact names, `PREFIX_*`, or `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Readable(Vec<String>);

impl Readable {
    pub(crate) fn admits(&self, name: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
    }
}

/// `variables:` is only meaningful on an `environment.read` rule, and each entry is a
/// variable name, `PREFIX_*` or `*`.
pub(crate) fn validate_rule(
    capability: Option<&CapabilityPattern>,
    variables: &[String],
) -> Result<(), String> {
    if !matches!(capability, Some(CapabilityPattern::Exact(c)) if c == CAPABILITY) {
        return Err("`variables` goes only with `capability: environment.read`".into());
    }
    for v in variables {
        let name = v.strip_suffix('*').unwrap_or(v);
        let ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && (name.len() == v.len() || !name.contains('*'));
        if !ok || v.is_empty() {
            return Err(format!("`{v}` is not a variable name, `PREFIX_*` or `*`"));
        }
    }
    Ok(())
}

/// An `environment.read` access a rule admits: refused unless that rule names the variables.
pub(crate) fn judge_allowed(rule: &Rule) -> Result<(), Denial> {
    match &rule.variables {
        Some(_) => Ok(()),
        None => Err(Denial::new(
            crate::policy::RuleId::DefaultEnvironment,
            format!(
                "rule {} admits environment.read without naming the variables the tool may show; \
                 write `variables: [LANG, TZ]` in that rule",
                rule.label
            ),
        )),
    }
}

/// What the answer to this request may show, when the request reads the environment: the
/// variables of the rule that admitted (or gates) it; nothing when no rule names any.
pub(crate) fn readable(policy: &Policy, decision: &Decision) -> Option<Readable> {
    let access = decision
        .accesses
        .iter()
        .find(|a| a.capability == CAPABILITY)?;
    let vars = match evaluate(
        &policy.rules,
        access,
        decision.tool.as_deref(),
        &decision.method,
    ) {
        RuleVerdict::Allowed(r) | RuleVerdict::ApprovalRequired(r) => {
            r.variables.clone().unwrap_or_default()
        }
        _ => vec![],
    };
    Some(Readable(vars))
}

/// What becomes of the server's answer to an environment read.
#[derive(Debug, PartialEq)]
pub(crate) enum EnvAnswer {
    /// Nothing to cut (an error, or only named variables).
    Unchanged,
    /// The answer with the unnamed variables cut out, and what was cut.
    Rewritten(Vec<u8>, String),
    /// The answer could not be filtered: this error goes to the client instead.
    Withheld(Vec<u8>, String),
}

/// Filter one answer line (already held to the strict JSON rules).
pub(crate) fn filter_answer(line: &[u8], readable: &Readable) -> EnvAnswer {
    let Ok(mut v) = serde_json::from_slice::<Value>(line) else {
        return withheld(&Value::Null, "the answer could not be parsed");
    };
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let Some(result) = v.get_mut("result") else {
        return EnvAnswer::Unchanged;
    };
    let Some(result) = result.as_object_mut() else {
        return withheld(&id, "the result is not an object");
    };
    let mut cut = 0usize;
    if let Some(content) = result.get_mut("content") {
        let Some(items) = content.as_array_mut() else {
            return withheld(&id, "`content` is not an array");
        };
        let before = items.len();
        items.retain(|i| i.get("type").and_then(Value::as_str) == Some("text"));
        cut += before - items.len();
        for item in items.iter_mut() {
            let Some(text) = item.get("text").and_then(Value::as_str) else {
                return withheld(&id, "a text item without text");
            };
            match filter_text(text, readable) {
                Some((t, n)) => {
                    cut += n;
                    item["text"] = Value::String(t);
                }
                None => {
                    return withheld(
                        &id,
                        "a text item is neither a JSON object of variables nor NAME=value lines",
                    )
                }
            }
        }
    }
    if let Some(sc) = result.get_mut("structuredContent") {
        match sc.as_object_mut().and_then(|m| filter_map(m, readable)) {
            Some(n) => cut += n,
            None => return withheld(&id, "`structuredContent` is not an object of variables"),
        }
    }
    if cut == 0 {
        return EnvAnswer::Unchanged;
    }
    EnvAnswer::Rewritten(
        serde_json::to_vec(&v).expect("serialising a Value"),
        format!("environment read: {cut} variable(s) or item(s) the rule does not name were cut from the answer"),
    )
}

fn withheld(id: &Value, why: &str) -> EnvAnswer {
    let reason = format!(
        "the answer of an environment read was withheld: {why}, so it cannot be reduced to the variables the rule names"
    );
    EnvAnswer::Withheld(
        crate::jsonrpc::error_response(
            id,
            crate::jsonrpc::code::POLICY_VIOLATION,
            &format!("Request blocked: {reason}"),
            Some(serde_json::json!({
                "rule": crate::policy::RuleId::DefaultEnvironment.static_id(),
                "capability": CAPABILITY
            })),
        ),
        reason,
    )
}

/// Keep the named variables of a map of strings; `None` when a value is not a string.
fn filter_map(m: &mut Map<String, Value>, readable: &Readable) -> Option<usize> {
    if m.values().any(|v| !v.is_string()) {
        return None;
    }
    let before = m.len();
    m.retain(|k, _| readable.admits(k));
    Some(before - m.len())
}

/// A text item: a JSON object of strings, or `NAME=value` lines. The filtered text and how many
/// variables were cut; `None` when the text has neither shape.
fn filter_text(text: &str, readable: &Readable) -> Option<(String, usize)> {
    if let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(text) {
        let n = filter_map(&mut m, readable)?;
        let out = serde_json::to_string_pretty(&Value::Object(m)).expect("serialising a Value");
        return Some((out, n));
    }
    let mut kept = Vec::new();
    let mut cut = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let (name, _) = line.split_once('=')?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        if readable.admits(name) {
            kept.push(line);
        } else {
            cut += 1;
        }
    }
    if kept.is_empty() && cut == 0 {
        return None;
    }
    Some((kept.join("\n"), cut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(v: &[&str]) -> Readable {
        Readable(v.iter().map(|s| s.to_string()).collect())
    }

    fn answer(result: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 7, "result": result})).unwrap()
    }

    fn rewritten(a: EnvAnswer) -> Value {
        match a {
            EnvAnswer::Rewritten(l, _) => serde_json::from_slice(&l).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn patterns() {
        let p = r(&["LANG", "LC_*"]);
        assert!(p.admits("LANG") && p.admits("LC_ALL"));
        assert!(!p.admits("LANGUAGE") && !p.admits("AWS_SECRET_ACCESS_KEY"));
        assert!(r(&["*"]).admits("ANYTHING"));
        assert!(!r(&[]).admits("LANG"));
    }

    #[test]
    fn rule_validation() {
        let env = CapabilityPattern::Exact(CAPABILITY.into());
        assert!(validate_rule(Some(&env), &["LANG".into(), "LC_*".into(), "*".into()]).is_ok());
        assert!(validate_rule(Some(&env), &["A*B".into()]).is_err());
        assert!(validate_rule(Some(&env), &["".into()]).is_err());
        assert!(validate_rule(Some(&env), &["A=B".into()]).is_err());
        let fs = CapabilityPattern::Exact("filesystem.read".into());
        assert!(validate_rule(Some(&fs), &["LANG".into()]).is_err());
        assert!(
            validate_rule(Some(&CapabilityPattern::Family("environment".into())), &[]).is_err()
        );
        assert!(validate_rule(None, &[]).is_err());
    }

    #[test]
    fn json_object_answers_keep_only_named_variables() {
        let text = serde_json::to_string_pretty(
            &json!({"LANG": "C.UTF-8", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "TZ": "UTC"}),
        )
        .unwrap();
        let v = rewritten(filter_answer(
            &answer(json!({"content": [{"type": "text", "text": text}]})),
            &r(&["LANG", "TZ"]),
        ));
        let t = v["result"]["content"][0]["text"].as_str().unwrap();
        assert!(
            t.contains("C.UTF-8") && t.contains("UTC") && !t.contains("s3cr3t"),
            "{t}"
        );
        assert_eq!(v["id"], 7);
        // Nothing named: an empty object.
        let v = rewritten(filter_answer(
            &answer(json!({"content": [{"type": "text", "text": text}]})),
            &r(&[]),
        ));
        assert_eq!(v["result"]["content"][0]["text"], "{}");
    }

    #[test]
    fn name_value_lines_and_structured_content() {
        let v = rewritten(filter_answer(
            &answer(json!({
                "content": [{"type": "text", "text": "LANG=C\nSECRET=x=y\n"},
                            {"type": "image", "data": "U0VDUkVU", "mimeType": "image/png"}],
                "structuredContent": {"LANG": "C", "SECRET": "x=y"}
            })),
            &r(&["LANG"]),
        ));
        assert_eq!(
            v["result"]["content"],
            json!([{"type": "text", "text": "LANG=C"}])
        );
        assert_eq!(v["result"]["structuredContent"], json!({"LANG": "C"}));
    }

    #[test]
    fn unfilterable_answers_are_withheld() {
        for result in [
            json!({"content": [{"type": "text", "text": "the secret is s3cr3t"}]}),
            json!({"content": [{"type": "text", "text": "{\"A\": {\"nested\": \"s3cr3t\"}}"}]}),
            json!({"content": "s3cr3t"}),
            json!({"content": [], "structuredContent": ["s3cr3t"]}),
            json!("s3cr3t"),
        ] {
            match filter_answer(&answer(result.clone()), &r(&["LANG"])) {
                EnvAnswer::Withheld(l, _) => {
                    let v: Value = serde_json::from_slice(&l).unwrap();
                    assert_eq!(v["id"], 7);
                    assert_eq!(v["error"]["data"]["rule"], "default.environment");
                    assert!(!String::from_utf8_lossy(&l).contains("s3cr3t"));
                }
                other => panic!("{result}: {other:?}"),
            }
        }
    }

    #[test]
    fn named_only_answers_and_errors_pass_unchanged() {
        let a = answer(json!({"content": [{"type": "text", "text": "{\"LANG\": \"C\"}"}]}));
        assert_eq!(filter_answer(&a, &r(&["LANG"])), EnvAnswer::Unchanged);
        let e = br#"{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"no"}}"#;
        assert_eq!(filter_answer(e, &r(&[])), EnvAnswer::Unchanged);
    }
}
