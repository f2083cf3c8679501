//! PURE DECISIONS: given a policy and what a request would touch, allowed or not, and why.
//!
//! `path` and `net` judge single resources, `tools` judges tool names, `rules` evaluates the
//! capability rules, and `decide` puts them together for one JSON-RPC request. I/O that a
//! decision needs (resolving symlinks, DNS) goes through the [`World`] trait so that every
//! decision can be unit-tested with a fake world.

pub mod decide;
pub(crate) mod doors;
pub(crate) mod exec_writes;
pub mod net;
pub mod path;
pub mod readings;
pub mod rules;
pub mod tools;
pub(crate) mod uri;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What the checks need from the outside world.
pub trait World {
    /// Resolve symlinks in the longest existing ancestor of `path` (absolute, lexically
    /// normalised) and re-append the rest. Must not fail: a path that cannot be examined is
    /// returned lexically.
    fn resolve_path(&self, path: &Path) -> PathBuf {
        path::canonicalize_lenient(path)
    }
    /// Resolve a host name to every address it has.
    fn resolve_host(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>>;
}

/// The real world: the filesystem and the system resolver.
#[derive(Clone, Copy)]
pub struct RealWorld;

impl World for RealWorld {
    fn resolve_host(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
        use std::net::ToSocketAddrs;
        Ok((host, port).to_socket_addrs()?.map(|a| a.ip()).collect())
    }
}

/// One thing a request would do: a capability, on a resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Access {
    /// `filesystem.read`, `filesystem.write`, `network.fetch`, `shell.execute`, ...
    pub capability: String,
    #[serde(skip_serializing_if = "Resource::is_none")]
    pub resource: Resource,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Resource {
    None,
    /// A filesystem path: as written, and where it really points.
    Path {
        written: String,
        resolved: PathBuf,
    },
    /// A URL: as written, and the host and port it targets.
    Url {
        written: String,
        host: String,
        port: u16,
    },
    /// A command line handed to a shell tool.
    Command {
        written: String,
    },
}

impl Resource {
    pub fn is_none(&self) -> bool {
        matches!(self, Resource::None)
    }
    /// Short text for messages.
    pub fn describe(&self) -> String {
        match self {
            Resource::None => String::new(),
            Resource::Path { written, resolved } => {
                if Path::new(written) == resolved.as_path() {
                    written.clone()
                } else {
                    format!("{written} (-> {})", resolved.display())
                }
            }
            Resource::Url { written, .. } => written.clone(),
            Resource::Command { written } => written.clone(),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Denial {
    /// Human sentence, used in the JSON-RPC error message.
    pub reason: String,
    /// The rule or policy key that decided (`filesystem.mounts`, `tools.blocked`, `deny[0]`,
    /// `protocol`, `profile`, ...).
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// True when the call would be allowed after an approval.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub approval_required: bool,
}

impl Denial {
    pub fn new(rule: impl Into<String>, reason: impl Into<String>) -> Denial {
        Denial {
            reason: reason.into(),
            rule: rule.into(),
            capability: None,
            resource: None,
            approval_required: false,
        }
    }
    pub fn on(mut self, access: &Access) -> Denial {
        self.capability = Some(access.capability.clone());
        if !access.resource.is_none() {
            self.resource = Some(access.resource.describe());
        }
        self
    }
}
