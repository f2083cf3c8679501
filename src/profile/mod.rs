//! WHAT A TOOL DOES: for each tool of a known server, its capability and which arguments are
//! paths, URLs, globs or commands. Profiles are data (`profiles/*.yaml`); this module loads
//! them, picks one for a server, and infers a description for tools no profile knows.

pub(crate) mod infer;
pub(crate) mod select;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A profile file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    /// Short name (`filesystem`, `fetch`, ...), used with `--profile`.
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default, rename = "match")]
    pub(crate) matcher: ProfileMatch,
    /// Tools by exact name.
    #[serde(default)]
    pub(crate) tools: BTreeMap<String, ToolSpec>,
    /// How the server reads path arguments: the bases of relative paths
    /// (`relative_to: [cwd, argv_dirs, roots]`) and whether it expands `$VAR`
    /// (`expands_vars`). Unset: every reading is assumed.
    #[serde(default)]
    pub(crate) paths: crate::check::readings::PathReadings,
}

/// How a profile is recognised.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileMatch {
    /// Substrings of a command-line word (`@modelcontextprotocol/server-filesystem`, `mcp-server-fetch`).
    #[serde(default)]
    pub(crate) commands: Vec<String>,
    /// Exact `serverInfo.name` values from the `initialize` response.
    #[serde(default)]
    pub(crate) server_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// The capability the tool exercises on its resources (or on nothing, if it has none):
    /// `filesystem.read`, `filesystem.write`, `network.fetch`, `shell.execute`,
    /// `memory.read`, `environment.read`, `compute`, ...
    pub(crate) capability: String,
    /// Arguments by name. Arguments a call carries that are not listed here are scanned: a
    /// value that looks like a path or URL is checked as one.
    #[serde(default)]
    pub(crate) args: BTreeMap<String, ArgSpec>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) note: String,
}

/// An argument: its kind, written either as a bare word (`path`, `path[]`, `url`, `data`, ...)
/// or as a map with overrides.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ArgSpec {
    pub(crate) kind: ArgKind,
    /// Overrides the tool's capability for this argument (`move_file.source` writes).
    pub(crate) capability: Option<String>,
    /// Relative values resolve against the path in this other argument (`git_add.files`
    /// against `repo_path`), not the server's working directory.
    pub(crate) relative_to: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum ArgKind {
    #[serde(rename = "path")]
    Path,
    #[serde(rename = "path[]")]
    PathList,
    #[serde(rename = "url")]
    Url,
    #[serde(rename = "url[]")]
    UrlList,
    /// A glob relative to another path argument: refused if it climbs (`..`) or is absolute.
    #[serde(rename = "glob")]
    Glob,
    #[serde(rename = "glob[]")]
    GlobList,
    /// A command line for a shell.
    #[serde(rename = "command")]
    Command,
    /// Plain data: never a resource (file contents, messages, numbers).
    #[serde(rename = "data")]
    Data,
}

impl<'de> Deserialize<'de> for ArgSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            kind: ArgKind,
            #[serde(default)]
            capability: Option<String>,
            #[serde(default)]
            relative_to: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Short(ArgKind),
            Full(Full),
        }
        Ok(match Either::deserialize(d).map_err(|_| {
            serde::de::Error::custom("an argument is a kind (path, path[], url, url[], glob, glob[], command, data) or {kind, capability, relative_to}")
        })? {
            Either::Short(kind) => ArgSpec { kind, capability: None, relative_to: None },
            Either::Full(f) => ArgSpec { kind: f.kind, capability: f.capability, relative_to: f.relative_to },
        })
    }
}

const BUILTIN: &[(&str, &str)] = &[
    ("filesystem", include_str!("../../profiles/filesystem.yaml")),
    ("fetch", include_str!("../../profiles/fetch.yaml")),
    ("git", include_str!("../../profiles/git.yaml")),
    ("memory", include_str!("../../profiles/memory.yaml")),
    ("everything", include_str!("../../profiles/everything.yaml")),
    ("probe", include_str!("../../profiles/probe.yaml")),
];

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProfileError {
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("no built-in profile named `{0}` and no such file (built-in: {names})", names = builtin_names().join(", "))]
    Unknown(String),
}

pub(crate) fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

/// Every built-in profile, parsed once per process (the texts are compiled in and covered by
/// tests). A session used to parse all of them up to three times, once while the server's
/// `initialize` answer waited (issue 19: startup).
pub(crate) fn builtin_profiles() -> &'static [Profile] {
    static PARSED: std::sync::OnceLock<Vec<Profile>> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        BUILTIN
            .iter()
            .map(|(n, t)| {
                parse(t, &format!("<built-in profile {n}>")).expect("built-in profiles are valid")
            })
            .collect()
    })
}

pub(crate) fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
    let p: Profile = serde_yaml::from_str(text).map_err(|e| ProfileError::Invalid {
        origin: origin.into(),
        message: e.to_string(),
    })?;
    for (tool, spec) in &p.tools {
        for (arg, a) in &spec.args {
            if let Some(rel) = &a.relative_to {
                if !spec.args.get(rel).is_some_and(|r| r.kind == ArgKind::Path) {
                    return Err(ProfileError::Invalid {
                        origin: origin.into(),
                        message: format!("tools.{tool}.args.{arg}.relative_to names `{rel}`, which is not a `path` argument of the tool"),
                    });
                }
            }
        }
        if !spec.capability.contains('.') && spec.capability != "compute" {
            return Err(ProfileError::Invalid {
                origin: origin.into(),
                message: format!(
                    "tools.{tool}.capability `{}` is not `family.action` (or `compute`)",
                    spec.capability
                ),
            });
        }
    }
    Ok(p)
}

/// `--profile NAME|FILE`.
pub(crate) fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
    if let Some((_, t)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
        return parse(t, &format!("<built-in profile {name_or_path}>"));
    }
    let path = std::path::Path::new(name_or_path);
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.into(),
            source,
        })?;
        return parse(&text, &path.display().to_string());
    }
    Err(ProfileError::Unknown(name_or_path.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse() {
        let all = builtin_profiles();
        assert_eq!(all.len(), BUILTIN.len());
        let fs = all.iter().find(|p| p.name == "filesystem").unwrap();
        assert_eq!(
            fs.tools["read_multiple_files"].args["paths"].kind,
            ArgKind::PathList
        );
        assert_eq!(
            fs.tools["move_file"].args["source"].capability.as_deref(),
            Some("filesystem.write")
        );
        let git = all.iter().find(|p| p.name == "git").unwrap();
        assert_eq!(
            git.tools["git_add"].args["files"].relative_to.as_deref(),
            Some("repo_path")
        );
    }

    #[test]
    fn bad_relative_to_is_refused() {
        let text = "name: x\ntools:\n  t:\n    capability: filesystem.read\n    args:\n      a: {kind: path, relative_to: nope}\n";
        assert!(parse(text, "t").is_err());
    }
}
