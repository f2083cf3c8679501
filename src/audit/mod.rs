//! THE AUDIT LOG: every decision, in a tamper-evident file.
//!
//! The proxy hands each decision to a writer thread (`queue`) as it decides; an allowed request
//! is forwarded only once the file holds its record (the proxy waits for the queue's
//! watermark, `proxy::held`), and a failed write stops the session with the audit status
//! (`queue` says what may then be decided but unwritten).
//!
//! One JSON object per line; each line carries the SHA-256 of the previous one, so editing,
//! deleting, inserting or reordering lines breaks the chain at a line `verify` can name. The
//! exact format, with an independent 15-line verifier, is in `docs/audit-format.md`.
//!
//! - `canon`: canonical JSON, the chain hash, a line <-> its parts (pure);
//! - `record`: THE record ([`Record`]): what a stage built, owned, as the queue carries it and
//!   an offline session keeps it;
//! - `event`: the encoder: a [`Record`] -> its canonical line (pure);
//! - `redact`: secret arguments replaced by a digest (pure);
//! - `queue`: [`AuditQueue`], the bounded queue and the writer thread in front of the file;
//! - `writer`: [`AuditLog`], appending under `flock` with torn-tail recovery (file I/O);
//! - `verify`, `show`, `replay`: the `capjail audit` commands, as functions returning a
//!   report with its text and exit code.

pub(crate) mod canon;
pub(crate) mod event;
pub(crate) mod queue;
pub(crate) mod record;
pub(crate) mod redact;
pub(crate) mod replay;
mod reserve;
pub(crate) mod rotated;
pub(crate) mod rotated_read;
mod rotated_verify;
pub(crate) mod show;
pub(crate) mod verify;
pub(crate) mod writer;

use std::path::{Path, PathBuf};

pub use queue::AuditQueue;
pub(crate) use record::{
    ApprovalRecord, FilterAction, FilterRecord, SessionEnd, SessionStart, TrustRecord,
};
pub use record::{DecisionRecord, Direction, Record};
pub(crate) use replay::replay;
pub(crate) use show::{show, ShowFilter};
pub(crate) use verify::verify;
pub use writer::AuditLog;

use crate::policy::Policy;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--audit off: the policy `{policy}` requires an audit log (audit.allow_off: false)")]
    OffNotAllowed { policy: String },
    #[error("--audit {path}: the policy `{policy}` requires an audit log (audit.allow_off: false), and {path} is not a regular file")]
    NotAFile { path: PathBuf, policy: String },
    #[error(
        "no place for the audit log: neither XDG_STATE_HOME nor HOME is set (pass --audit FILE)"
    )]
    NoDefaultLocation,
    #[error("{0} is not empty and holds no audit record; refusing to append to it")]
    NotAnAuditLog(PathBuf),
    #[error("audit log {path}: {lines} unreadable lines after the last record; refusing to append (run `capjail audit verify`)")]
    CorruptTail { path: PathBuf, lines: usize },
}

/// Where to write: `--audit FILE` (or `off`), else the policy's `audit.path`, else
/// `$XDG_STATE_HOME/capjail/audit.jsonl` (`~/.local/state/capjail/audit.jsonl`).
/// `Ok(None)`: auditing is off (only if the policy allows it).
pub(crate) fn resolve_location(
    cli: Option<&str>,
    policy: &Policy,
) -> Result<Option<PathBuf>, AuditError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    resolve_location_with(cli, policy, &|k| std::env::var(k).ok(), &cwd)
}

/// [`resolve_location`] with the environment and working directory given (pure).
pub(crate) fn resolve_location_with(
    cli: Option<&str>,
    policy: &Policy,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<Option<PathBuf>, AuditError> {
    let allow_off = policy.audit.allow_off;
    match cli {
        Some("off") if allow_off => return Ok(None),
        Some("off") => {
            return Err(AuditError::OffNotAllowed {
                policy: policy.name.clone(),
            })
        }
        Some(p) => {
            let path = cwd.join(p);
            // `--audit /dev/null` would be `off` by another name.
            if !allow_off && path.exists() && !path.is_file() {
                return Err(AuditError::NotAFile {
                    path,
                    policy: policy.name.clone(),
                });
            }
            return Ok(Some(path));
        }
        None => {}
    }
    // Expanded and checked absolute when the policy was compiled.
    if let Some(p) = &policy.audit.path {
        return Ok(Some(p.path.clone()));
    }
    let state = match env("XDG_STATE_HOME").filter(|s| Path::new(s).is_absolute()) {
        Some(s) => PathBuf::from(s),
        None => PathBuf::from(
            env("HOME")
                .filter(|h| !h.is_empty())
                .ok_or(AuditError::NoDefaultLocation)?,
        )
        .join(".local/state"),
    };
    Ok(Some(state.join("capjail").join("audit.jsonl")))
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::policy::{load_str, Policy, PolicySource};

    pub(crate) fn policy(text: &str) -> Policy {
        load_str(text, PolicySource::Inline).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::policy;
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME" => Some("/home/u".into()),
            "LOGS" => Some("/var/log/x".into()),
            _ => None,
        }
    }

    #[test]
    fn location_precedence() {
        let plain = policy("name: p\n");
        let cwd = Path::new("/work");
        let r = |cli, p: &Policy, e: &dyn Fn(&str) -> Option<String>| {
            resolve_location_with(cli, p, e, cwd)
        };
        assert_eq!(
            r(None, &plain, &env).unwrap(),
            Some(PathBuf::from("/home/u/.local/state/capjail/audit.jsonl"))
        );
        let xdg = |k: &str| {
            if k == "XDG_STATE_HOME" {
                Some("/st".to_string())
            } else {
                env(k)
            }
        };
        assert_eq!(
            r(None, &plain, &xdg).unwrap(),
            Some(PathBuf::from("/st/capjail/audit.jsonl"))
        );
        let rel_xdg = |k: &str| {
            if k == "XDG_STATE_HOME" {
                Some("st".to_string())
            } else {
                env(k)
            }
        };
        assert_eq!(
            r(None, &plain, &rel_xdg).unwrap(),
            Some(PathBuf::from("/home/u/.local/state/capjail/audit.jsonl"))
        );
        assert!(matches!(
            r(None, &plain, &|_| None),
            Err(AuditError::NoDefaultLocation)
        ));

        let text = "name: p\naudit:\n  path: $LOGS/a.jsonl\n";
        let with_path = crate::policy::compile::compile_with(
            serde_yaml::from_str(text).unwrap(),
            text.into(),
            crate::policy::PolicySource::Inline,
            &env,
        )
        .unwrap();
        assert_eq!(
            r(None, &with_path, &env).unwrap(),
            Some(PathBuf::from("/var/log/x/a.jsonl"))
        );
        assert_eq!(
            r(Some("mine.jsonl"), &with_path, &env).unwrap(),
            Some(PathBuf::from("/work/mine.jsonl"))
        );
        assert_eq!(r(Some("off"), &with_path, &env).unwrap(), None);
        // A relative audit.path is a policy error (policy::sections tests).
    }

    #[test]
    fn off_only_where_allowed() {
        let locked = policy("name: locked\naudit:\n  allow_off: false\n");
        let cwd = Path::new("/work");
        let e = resolve_location_with(Some("off"), &locked, &env, cwd).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--audit off: the policy `locked` requires an audit log (audit.allow_off: false)"
        );
        assert!(matches!(
            resolve_location_with(Some("/dev/null"), &locked, &env, cwd),
            Err(AuditError::NotAFile { .. })
        ));
        assert!(
            resolve_location_with(Some("/tmp/x.jsonl"), &locked, &env, cwd)
                .unwrap()
                .is_some()
        );
    }
}

#[cfg(test)]
mod tests_log;
