//! The tools of the running server: its profile (forced, or picked from the command line or
//! `serverInfo`), and what its `tools/list` answers said about tools the profile lacks.

use std::borrow::Cow;
use std::collections::BTreeMap;

// Read on every call (its tool's description): foldhash, seeded per map (issue 19).
use foldhash::HashMap;
use std::sync::Arc;

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
    /// Shared copies of the descriptions handed out by [`SessionCatalog::shared_tool`] (one
    /// copy per tool, not one per call); emptied whenever the descriptions change.
    shared: HashMap<String, Arc<ToolSpec>>,
    shared_profile_name: Option<Arc<str>>,
}

impl SessionCatalog {
    pub(crate) fn new(forced: Option<Profile>, argv: &[String]) -> SessionCatalog {
        match forced {
            Some(p) => SessionCatalog {
                profile: Some(p),
                forced: true,
                ..SessionCatalog::default()
            },
            None => {
                let picked = select::by_command(crate::profile::builtin_profiles(), argv).cloned();
                SessionCatalog {
                    profile: picked,
                    forced: false,
                    ..SessionCatalog::default()
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
            ..SessionCatalog::default()
        }
    }

    /// Describe a tool the profile lacks (`audit replay`: the description recorded with a
    /// decision).
    pub(crate) fn describe(&mut self, name: &str, spec: ToolSpec) {
        self.listed.insert(name.to_string(), spec);
        self.shared.clear();
    }

    /// The `initialize` result arrived: pick a profile by `serverInfo.name` if none is set.
    pub(crate) fn on_server_info(&mut self, result: &Value) {
        if self.forced || self.profile.is_some() {
            return;
        }
        if let Some(name) = result.pointer("/serverInfo/name").and_then(Value::as_str) {
            if let Some(p) = select::by_server_name(crate::profile::builtin_profiles(), name) {
                tracing::info!(profile = %p.name, server = name, "profile picked by serverInfo");
                self.profile = Some(p.clone());
                self.shared.clear();
                self.shared_profile_name = None;
            }
        }
    }

    /// A `tools/list` result arrived: remember tools the profile does not describe.
    pub(crate) fn on_tools_list(&mut self, result: &Value) {
        let Some(tools) = result.get("tools").and_then(Value::as_array) else {
            return;
        };
        self.shared.clear();
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

    /// The description of `name` as [`ToolCatalog::tool`] gives it, shared: the first call
    /// copies it, later calls only count a reference (the per-call snapshot of the proxy).
    pub(crate) fn shared_tool(&mut self, name: &str) -> Option<Arc<ToolSpec>> {
        if let Some(s) = self.shared.get(name) {
            return Some(Arc::clone(s));
        }
        let spec = Arc::new(self.tool(name)?.into_owned());
        self.shared.insert(name.to_string(), Arc::clone(&spec));
        Some(spec)
    }

    /// The profile's name, shared (see [`SessionCatalog::shared_tool`]).
    pub(crate) fn shared_profile_name(&mut self) -> Option<Arc<str>> {
        if self.shared_profile_name.is_none() {
            self.shared_profile_name = self.profile_name().map(Arc::from);
        }
        self.shared_profile_name.clone()
    }
}

/// What a decision on one request may read of the catalog, taken under the session lock:
/// the profile's name and the description of the one tool called (shared, not copied).
pub(crate) struct CallSnapshot<'a> {
    pub(crate) profile_name: Option<Arc<str>>,
    pub(crate) tool: Option<(&'a str, Arc<ToolSpec>)>,
}

impl ToolCatalog for CallSnapshot<'_> {
    fn tool(&self, name: &str) -> Option<Cow<'_, ToolSpec>> {
        match &self.tool {
            Some((n, spec)) if *n == name => Some(Cow::Borrowed(&**spec)),
            _ => None,
        }
    }
    fn profile_name(&self) -> Option<&str> {
        self.profile_name.as_deref()
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
