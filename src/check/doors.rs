//! Methods besides `tools/call`, `resources/*` and `prompts/get`: what each one names, so that
//! none reaches the server unexamined. Pure.
//!
//! - protocol housekeeping that names nothing (`initialize`, `ping`, the list methods, the
//!   notifications) passes as `protocol`;
//! - `subscriptions/listen` (2026-07-28) names resource URIs in
//!   `notifications.resourceSubscriptions`: each is judged like `resources/subscribe`;
//! - `completion/complete` names a resource (`ref.uri`) or a prompt, and an argument value:
//!   the URI is judged, the value scanned;
//! - the tasks methods (`tasks/get|result|list|cancel`) are `task.read` / `task.cancel` and
//!   need a string `taskId` where the method takes one;
//! - any other method is scanned: a path or URL anywhere in its params is judged.

use serde_json::Value;

pub(crate) enum Door {
    Protocol,
    /// Resource URIs, judged like `resources/read`.
    Uris(Vec<String>),
    /// A capability with no resource.
    Capability(&'static str),
    /// Scan the params for paths and URLs; the capability when there are none.
    Scanned(&'static str),
    Malformed(String),
}

pub(crate) fn classify(method: &str, params: Option<&Value>) -> Door {
    match method {
        "initialize"
        | "ping"
        | "server/discover"
        | "tools/list"
        | "resources/list"
        | "resources/templates/list"
        | "prompts/list"
        | "logging/setLevel" => Door::Protocol,
        m if m.starts_with("notifications/") => Door::Protocol,
        "subscriptions/listen" => {
            let subs = params.and_then(|p| p.pointer("/notifications/resourceSubscriptions"));
            match subs {
                None | Some(Value::Null) => Door::Capability("subscription.listen"),
                Some(Value::Array(items)) => {
                    let mut uris = Vec::new();
                    for i in items {
                        match i.as_str() {
                            Some(u) => uris.push(u.to_string()),
                            None => {
                                return Door::Malformed(
                                    "notifications.resourceSubscriptions must be strings".into(),
                                )
                            }
                        }
                    }
                    if uris.is_empty() {
                        Door::Capability("subscription.listen")
                    } else {
                        Door::Uris(uris)
                    }
                }
                Some(_) => {
                    Door::Malformed("notifications.resourceSubscriptions must be an array".into())
                }
            }
        }
        "completion/complete" => {
            let uri = params.and_then(|p| p.pointer("/ref/uri"));
            match uri {
                Some(Value::String(u)) => Door::Uris(vec![u.clone()]),
                Some(_) => Door::Malformed("completion/complete: ref.uri must be a string".into()),
                None => Door::Scanned("completion.complete"),
            }
        }
        "tasks/list" => Door::Capability("task.read"),
        "tasks/get" | "tasks/result" | "tasks/cancel" => {
            match params.and_then(|p| p.get("taskId")) {
                Some(Value::String(_)) => Door::Capability(if method == "tasks/cancel" {
                    "task.cancel"
                } else {
                    "task.read"
                }),
                _ => Door::Malformed(format!("{method} needs a string `params.taskId`")),
            }
        }
        _ => Door::Scanned("protocol"),
    }
}
