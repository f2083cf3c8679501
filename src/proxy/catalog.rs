//! The tools of the running server: its profile (forced, or picked from the command line or
//! `serverInfo`), and what its `tools/list` answers said about tools the profile lacks.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::check::decide::ToolCatalog;
use crate::profile::{infer, select, Profile, ToolSpec};

#[derive(Debug, Default)]
pub(crate) struct SessionCatalog {
    profile: Option<Profile>,
    /// The profile was forced with `--profile`: `serverInfo` does not replace it.
    forced: bool,
    /// Tools described by the server itself, inferred from their `inputSchema`.
    listed: BTreeMap<String, ToolSpec>,
}

impl SessionCatalog {
    pub(crate) fn new(forced: Option<Profile>, argv: &[String]) -> SessionCatalog {
        match forced {
            Some(p) => SessionCatalog {
                profile: Some(p),
                forced: true,
                listed: BTreeMap::new(),
            },
            None => {
                let all = crate::profile::builtin_profiles();
                let picked = select::by_command(&all, argv).cloned();
                SessionCatalog {
                    profile: picked,
                    forced: false,
                    listed: BTreeMap::new(),
                }
            }
        }
    }

    /// A catalog of these tools and no profile, for a session with no server to identify
    /// (`capjail check` without `--profile`).
    pub(crate) fn of_tools(tools: BTreeMap<String, ToolSpec>) -> SessionCatalog {
        SessionCatalog {
            profile: None,
            forced: true,
            listed: tools,
        }
    }

    /// Describe a tool the profile lacks (`audit replay`: the description recorded with a
    /// decision).
    pub(crate) fn describe(&mut self, name: &str, spec: ToolSpec) {
        self.listed.insert(name.to_string(), spec);
    }

    /// The `initialize` result arrived: pick a profile by `serverInfo.name` if none is set.
    pub(crate) fn on_server_info(&mut self, result: &Value) {
        if self.forced || self.profile.is_some() {
            return;
        }
        if let Some(name) = result.pointer("/serverInfo/name").and_then(Value::as_str) {
            let all = crate::profile::builtin_profiles();
            if let Some(p) = select::by_server_name(&all, name) {
                tracing::info!(profile = %p.name, server = name, "profile picked by serverInfo");
                self.profile = Some(p.clone());
            }
        }
    }

    /// A `tools/list` result arrived: remember tools the profile does not describe.
    pub(crate) fn on_tools_list(&mut self, result: &Value) {
        let Some(tools) = result.get("tools").and_then(Value::as_array) else {
            return;
        };
        for t in tools {
            let Some(name) = t.get("name").and_then(Value::as_str) else {
                continue;
            };
            if self
                .profile
                .as_ref()
                .is_some_and(|p| p.tools.contains_key(name))
            {
                continue;
            }
            let schema = t.get("inputSchema").cloned().unwrap_or(Value::Null);
            let spec = infer::infer_tool(name, &schema);
            tracing::debug!(tool = name, capability = %spec.capability, "tool described from its inputSchema");
            self.listed.insert(name.to_string(), spec);
        }
    }

    pub(crate) fn profile(&self) -> Option<&Profile> {
        self.profile.as_ref()
    }
}

impl ToolCatalog for SessionCatalog {
    fn tool(&self, name: &str) -> Option<Cow<'_, ToolSpec>> {
        self.profile
            .as_ref()
            .and_then(|p| p.tools.get(name))
            .or_else(|| self.listed.get(name))
            .map(Cow::Borrowed)
    }
    fn profile_name(&self) -> Option<&str> {
        self.profile.as_ref().map(|p| p.name.as_str())
    }
}
