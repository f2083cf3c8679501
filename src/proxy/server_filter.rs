//! Server -> client: lines are relayed byte for byte, but only if they are JSON. The responses
//! to `initialize` and `tools/list` are read on the way (to pick the profile and learn tool
//! schemas); everything else is only validated.

use serde::de::IgnoredAny;
use serde_json::Value;

use super::client_filter::{SharedState, Watched};

#[derive(Debug, PartialEq)]
pub enum ServerOutcome {
    Forward,
    /// Not sent to the client; the reason is logged.
    Drop(String),
}

pub struct ServerFilter {
    pub shared: SharedState,
}

impl ServerFilter {
    pub fn on_line(&mut self, line: &[u8]) -> ServerOutcome {
        if line.iter().all(u8::is_ascii_whitespace) {
            return ServerOutcome::Drop("blank line".into());
        }
        let watching = !self.shared.lock().expect("shared state").watched.is_empty();
        if !watching {
            // Fast path: validate without building a value.
            return match serde_json::from_slice::<IgnoredAny>(line) {
                Ok(_) => ServerOutcome::Forward,
                Err(e) => ServerOutcome::Drop(format!("the server wrote a line that is not JSON ({e})")),
            };
        }
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => return ServerOutcome::Drop(format!("the server wrote a line that is not JSON ({e})")),
        };
        let is_response = v.get("method").is_none() && (v.get("result").is_some() || v.get("error").is_some());
        if let (true, Some(id)) = (is_response, v.get("id")) {
            let mut shared = self.shared.lock().expect("shared state");
            if let Some(w) = shared.watched.remove(&id.to_string()) {
                if let Some(result) = v.get("result") {
                    match w {
                        Watched::Initialize => shared.catalog.on_server_info(result),
                        Watched::ToolsList => shared.catalog.on_tools_list(result),
                    }
                }
            }
        }
        ServerOutcome::Forward
    }
}
