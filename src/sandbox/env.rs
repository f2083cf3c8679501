//! The server's environment: an allowlist, pure.
//!
//! The server gets a small default set (what locale, paths and terminals need) plus the names
//! and `PREFIX_*` patterns of `environment.allow`, plus `environment.set`. Two classes of names
//! pass ONLY when `environment.allow` names them exactly (a pattern never admits them, and
//! `inherit_all` does not either):
//!
//! - secrets: `AWS_*`, `*_TOKEN`, `*_KEY`, `*SECRET*`, `*PASSWORD*`, `*_CREDENTIALS`, ...
//! - injection vectors: `LD_*` (loader preload/audit), `NODE_OPTIONS` (`--require` any file),
//!   `PYTHONSTARTUP`, `PYTHONPATH`, `BASH_ENV`, `ENV`, `PERL5OPT`, `RUBYOPT`, ... Passing
//!   `NODE_*` by default was considered and rejected: `NODE_OPTIONS` runs code of the
//!   caller's choosing in the server before its first line, which the sandbox would then
//!   treat as the server's own.

use serde::{Deserialize, Serialize};

use crate::policy::sections::EnvironmentPolicy;

/// Names passed by default (exact), and default `PREFIX_*` patterns.
pub(crate) const DEFAULT_ALLOW: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TERM",
    "COLORTERM",
    "TMPDIR",
    "SHELL",
    "npm_config_cache",
    "UV_CACHE_DIR",
    "UV_PYTHON",
    "UV_OFFLINE",
    "UV_NO_CONFIG",
    "UV_PYTHON_DOWNLOADS",
    "UV_TOOL_DIR",
    "PIPX_HOME",
    "PIPX_SHARED_LIBS",
    "PIPX_DEFAULT_PYTHON",
    "PIPX_DEFAULT_BACKEND",
    "PIPX_BIN_DIR",
    "PIPX_MAN_DIR",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
];

/// Why a variable did not reach the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DropReason {
    /// Not in the allowlist.
    NotAllowed,
    /// Looks like a secret; only an exact `environment.allow` entry passes it.
    Secret,
    /// Can inject code into the server; only an exact `environment.allow` entry passes it.
    Injection,
}

/// The environment the server will see. Values are kept out of the serialized form (they may
/// be secrets the user chose to pass): the plan shows names only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct EnvPlan {
    /// Names passed (inherited or set), sorted.
    pub(crate) passed: Vec<String>,
    /// Names set by the policy (`environment.set`).
    pub(crate) set_by_policy: Vec<String>,
    /// Names dropped and why, sorted.
    pub(crate) dropped: Vec<(String, DropReason)>,
    pub(crate) inherit_all: bool,
    #[serde(skip)]
    pub(crate) values: Vec<(String, String)>,
}

/// Does `name` look like a credential?
pub(crate) fn is_secret_name(name: &str) -> bool {
    let u = name.to_ascii_uppercase();
    const CONTAINS: &[&str] = &[
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "PRIVATE_KEY",
        "API_KEY",
        "APIKEY",
        "ACCESS_KEY",
    ];
    const SUFFIX: &[&str] = &[
        "_TOKEN", "_KEY", "_PAT", "_AUTH", "_COOKIE", "_SESSION", "_PASS", "_PWD",
    ];
    const PREFIX: &[&str] = &[
        "AWS_",
        "AZURE_",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GCP_",
        "SSH_AUTH_SOCK",
        "GPG_AGENT",
        "VAULT_",
    ];
    const EXACT: &[&str] = &[
        "TOKEN",
        "KEY",
        "PASSWORD",
        "SECRET",
        "NPM_TOKEN",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "DATABASE_URL",
    ];
    EXACT.contains(&u.as_str())
        || CONTAINS.iter().any(|c| u.contains(c))
        || SUFFIX.iter().any(|s| u.ends_with(s))
        || PREFIX.iter().any(|p| u.starts_with(p))
}

/// Can `name` make the server run code that is not the server's?
pub(crate) fn is_injection_name(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "NODE_OPTIONS",
        "NODE_PATH",
        "NODE_REPL_EXTERNAL_MODULE",
        "PYTHONSTARTUP",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONINSPECT",
        "PYTHONBREAKPOINT",
        "BASH_ENV",
        "ENV",
        "PERL5OPT",
        "PERL5LIB",
        "RUBYOPT",
        "RUBYLIB",
        "GIT_EXEC_PATH",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "PROMPT_COMMAND",
        "GCONV_PATH",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "npm_config_script_shell",
        "npm_config_node_options",
    ];
    name.starts_with("LD_") || name.starts_with("DYLD_") || EXACT.contains(&name)
}

fn matches_entry(entry: &str, name: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => entry == name,
    }
}

/// Filter `inherited` through the defaults and the policy's `environment` section.
pub(crate) fn filter_env(inherited: &[(String, String)], section: &EnvironmentPolicy) -> EnvPlan {
    let mut plan = EnvPlan {
        inherit_all: section.inherit_all,
        ..Default::default()
    };
    for (name, value) in inherited {
        if section.set.contains_key(name) {
            continue; // replaced below
        }
        let exact = section.allow.iter().any(|a| a == name);
        let verdict = if exact {
            None
        } else if is_secret_name(name) {
            Some(DropReason::Secret)
        } else if is_injection_name(name) {
            Some(DropReason::Injection)
        } else if section.inherit_all
            || DEFAULT_ALLOW.iter().any(|d| matches_entry(d, name))
            || section.allow.iter().any(|a| matches_entry(a, name))
        {
            None
        } else {
            Some(DropReason::NotAllowed)
        };
        match verdict {
            None => plan.values.push((name.clone(), value.clone())),
            Some(r) => plan.dropped.push((name.clone(), r)),
        }
    }
    for (name, value) in &section.set {
        plan.values.push((name.clone(), value.clone()));
        plan.set_by_policy.push(name.clone());
    }
    plan.values.sort();
    plan.values.dedup_by(|a, b| a.0 == b.0);
    plan.passed = plan.values.iter().map(|(n, _)| n.clone()).collect();
    plan.dropped.sort_by(|a, b| a.0.cmp(&b.0));
    plan
}

impl EnvPlan {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_keep_basics_and_drop_secrets() {
        let e = env(&[
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("LC_ALL", "C.UTF-8"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("AWS_REGION", "eu"),
            ("FOO_TOKEN", "t"),
            ("MY_API_KEY", "k"),
            ("DB_PASSWORD", "p"),
            ("RANDOM_THING", "r"),
            ("NODE_OPTIONS", "--require /tmp/evil.js"),
            ("LD_PRELOAD", "/tmp/evil.so"),
            ("XDG_CACHE_HOME", "/root/.cache"),
        ]);
        let p = filter_env(&e, &EnvironmentPolicy::default());
        assert_eq!(p.passed, vec!["HOME", "LC_ALL", "PATH", "XDG_CACHE_HOME"]);
        let dropped: Vec<_> = p
            .dropped
            .iter()
            .map(|(n, r)| (n.as_str(), r.clone()))
            .collect();
        assert!(dropped.contains(&("AWS_SECRET_ACCESS_KEY", DropReason::Secret)));
        assert!(dropped.contains(&("AWS_REGION", DropReason::Secret)));
        assert!(dropped.contains(&("FOO_TOKEN", DropReason::Secret)));
        assert!(dropped.contains(&("MY_API_KEY", DropReason::Secret)));
        assert!(dropped.contains(&("DB_PASSWORD", DropReason::Secret)));
        assert!(dropped.contains(&("RANDOM_THING", DropReason::NotAllowed)));
        assert!(dropped.contains(&("NODE_OPTIONS", DropReason::Injection)));
        assert!(dropped.contains(&("LD_PRELOAD", DropReason::Injection)));
    }

    #[test]
    fn allow_patterns_never_admit_secrets_but_exact_names_do() {
        let e = env(&[
            ("GITHUB_TOKEN", "g"),
            ("GITHUB_USER", "u"),
            ("FOO_TOKEN", "f"),
            ("NODE_OPTIONS", "x"),
        ]);
        let s = EnvironmentPolicy {
            allow: vec!["GITHUB_*".into(), "FOO_TOKEN".into()],
            set: [("MEMORY_FILE_PATH".to_string(), "/tmp/m.json".to_string())].into(),
            inherit_all: false,
        };
        let p = filter_env(&e, &s);
        assert_eq!(
            p.passed,
            vec!["FOO_TOKEN", "GITHUB_USER", "MEMORY_FILE_PATH"]
        );
        assert_eq!(p.get("MEMORY_FILE_PATH"), Some("/tmp/m.json"));
        assert_eq!(p.set_by_policy, vec!["MEMORY_FILE_PATH"]);
    }

    #[test]
    fn inherit_all_still_drops_secrets_and_injection() {
        let e = env(&[
            ("WHATEVER", "1"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("LD_AUDIT", "x"),
        ]);
        let s = EnvironmentPolicy {
            inherit_all: true,
            ..Default::default()
        };
        let p = filter_env(&e, &s);
        assert_eq!(p.passed, vec!["WHATEVER"]);
    }

    #[test]
    fn set_overrides_inherited() {
        let e = env(&[("PATH", "/evil")]);
        let s = EnvironmentPolicy {
            set: [("PATH".to_string(), "/usr/bin".to_string())].into(),
            ..Default::default()
        };
        let p = filter_env(&e, &s);
        assert_eq!(p.get("PATH"), Some("/usr/bin"));
        assert_eq!(p.values.len(), 1);
    }
}
