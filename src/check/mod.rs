//! PURE DECISIONS: given a policy and what a request would touch, allowed or not, and why.
//!
//! `path` and `net` judge single resources, `tools` judges tool names, `rules` evaluates the
//! capability rules, and `decide` puts them together for one JSON-RPC request. I/O that a
//! decision needs (resolving symlinks, DNS) goes through the [`World`] trait so that every
//! decision can be unit-tested with a fake world.

pub(crate) mod casefold;
pub mod decide;
pub(crate) mod doors;
pub(crate) mod env_read;
pub(crate) mod exec_writes;
pub(crate) mod net;
pub(crate) mod path;
pub(crate) mod readings;
pub(crate) mod rules;
pub(crate) mod tools;
pub(crate) mod uri;

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// What the checks need from the outside world.
pub(crate) trait World {
    /// Resolve symlinks in the longest existing ancestor of `path` (absolute, lexically
    /// normalised) and re-append the rest. Must not fail: a path that cannot be examined is
    /// returned lexically.
    fn resolve_path(&self, path: &Path) -> PathBuf {
        path::canonicalize_lenient(path)
    }
    /// Is `dir` a git directory by its contents (`check::exec_writes`)?
    fn is_git_dir(&self, dir: &Path) -> bool {
        exec_writes::looks_like_git_dir(dir)
    }
    /// The components of the outermost directory on `path` whose lookups ignore case
    /// (`check::casefold`), or `None`.
    fn case_insensitive_from(&self, path: &Path) -> Option<usize> {
        casefold::case_insensitive_from(path)
    }
    /// Resolve a host name to every address it has.
    fn resolve_host(&self, host: &str, port: u16) -> std::io::Result<Vec<IpAddr>>;
}

/// The real world: the filesystem and the system resolver.
#[derive(Clone, Copy)]
pub(crate) struct RealWorld;

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
    /// ([`decide::kept_capability`]: a known one without an allocation).
    pub(crate) capability: Cow<'static, str>,
    #[serde(skip_serializing_if = "Resource::is_none")]
    pub(crate) resource: Resource,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum Resource {
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
    pub(crate) fn is_none(&self) -> bool {
        matches!(self, Resource::None)
    }
    /// Short text for messages.
    pub(crate) fn describe(&self) -> String {
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
    pub(crate) reason: String,
    /// The rule that decided (`filesystem.mounts`, `tools.blocked`, `deny[0]`, ...), serialised
    /// as its dotted id.
    pub(crate) rule: crate::policy::RuleId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) capability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) resource: Option<String>,
    /// True when the call would be allowed after an approval.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) approval_required: bool,
}

impl Denial {
    pub(crate) fn new(rule: crate::policy::RuleId, reason: impl Into<String>) -> Denial {
        Denial {
            reason: reason.into(),
            rule,
            capability: None,
            resource: None,
            approval_required: false,
        }
    }
    pub(crate) fn on(mut self, access: &Access) -> Denial {
        self.capability = Some(access.capability.to_string());
        if !access.resource.is_none() {
            self.resource = Some(access.resource.describe());
        }
        self
    }
}
