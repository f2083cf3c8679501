//! The proxy's calls into the trust layer, on the session state both pumps share.

use serde_json::Value;

use super::assess::CallVerdict;
use crate::proxy::session::Shared;

/// A `tools/list` answer: assess its tools and rewrite `answer` for the client. Returns
/// whether it was rewritten; an error means the audit log failed (forward nothing).
pub(crate) fn on_tools_list(
    shared: &mut Shared,
    answer: &mut Value,
    complete: bool,
) -> std::io::Result<bool> {
    let Some(trust) = shared.trust.as_mut() else {
        return Ok(false);
    };
    let Some(tools) = answer
        .pointer_mut("/result/tools")
        .and_then(Value::as_array_mut)
    else {
        return Ok(false);
    };
    let out = trust.on_listing(tools, shared.catalog.profile(), complete)?;
    if out.rewritten {
        tracing::warn!(
            hidden = out.hidden,
            shown_pinned = out.replaced,
            "tools/list: changed or suspicious tool definitions were not shown as served (see the audit log)"
        );
    }
    Ok(out.rewritten)
}

/// The `initialize` / `server/discover` result: remember `serverInfo` for the pin file.
pub(crate) fn on_server_info(shared: &mut Shared, result: &Value) {
    if let (Some(t), Some(info)) = (shared.trust.as_mut(), result.get("serverInfo")) {
        t.server_info = Some(info.clone());
    }
}

/// What the trust layer says about a call of `tool` (`None`: nothing known, no opinion).
pub(crate) fn call_verdict(shared: &Shared, tool: &str) -> Option<CallVerdict> {
    shared.trust.as_ref()?.call_verdict(tool).cloned()
}
