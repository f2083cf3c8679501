//! Does the policy grant the directories the server was told about?
//!
//! A server started as `server-filesystem /home/u/proj` believes it may use `/home/u/proj`;
//! when the policy mounts something else, every legitimate call fails inside the sandbox and
//! nobody says why. `capjail run` warns at start about each directory argument (an argv entry,
//! or the value of `--flag=DIR`, that is an existing directory) outside every mount. The
//! client's roots are narrowed to the mounts with a warning of their own (proxy/roots.rs).

use std::path::{Path, PathBuf};

use super::Policy;
use crate::check::path::{canonicalize_lenient, is_within};

/// The server's directory arguments (`argv[1..]`, resolved against `cwd`) that no mount
/// contains. Empty when the policy does not restrict the filesystem by mounts.
pub(crate) fn dirs_outside_mounts(argv: &[String], cwd: &Path, policy: &Policy) -> Vec<PathBuf> {
    let Some(mounts) = policy.filesystem.mounts.as_ref() else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for arg in argv.iter().skip(1) {
        let value = match arg.split_once('=') {
            Some((flag, v)) if flag.starts_with('-') => v,
            _ => arg.as_str(),
        };
        if value.is_empty() || value.starts_with('-') {
            continue;
        }
        let path = cwd.join(value);
        if !path.is_dir() {
            continue;
        }
        let real = canonicalize_lenient(&path);
        if !mounts.iter().any(|m| is_within(&real, &m.path)) && !out.contains(&real) {
            out.push(real);
        }
    }
    out
}

/// The warning line for one directory.
pub(crate) fn warning(dir: &Path, policy: &Policy) -> String {
    let mounts: Vec<String> = policy
        .filesystem
        .mounts
        .iter()
        .flatten()
        .map(|m| m.path.display().to_string())
        .collect();
    format!(
        "the server was given the directory {} but policy `{}` does not mount it (mounts: {}): \
         calls there will be refused; pass --workspace DIR or add a filesystem.mounts entry",
        dir.display(),
        policy.name,
        if mounts.is_empty() {
            "none".to_string()
        } else {
            mounts.join(", ")
        }
    )
}

/// The warning line for a client root that no mount contains: the policy line that grants it.
pub(crate) fn root_warning(root: &Path, policy: &Policy) -> String {
    format!(
        "the client named the root {} but policy `{}` does not mount it: the server does not \
         see it there and calls in it will be refused; to grant it add to the policy \
         `filesystem.mounts: - {{path: {}, mode: ro}}` (or `mode: rw`), or pass --workspace {}",
        root.display(),
        policy.name,
        root.display(),
        root.display()
    )
}

/// The roots (local paths) that no mount contains; empty when the policy has no mounts.
pub(crate) fn roots_outside_mounts(roots: &[PathBuf], policy: &Policy) -> Vec<PathBuf> {
    let Some(mounts) = policy.filesystem.mounts.as_ref() else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for r in roots {
        if !mounts.iter().any(|m| is_within(r, &m.path)) && !out.contains(r) {
            out.push(r.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_str, PolicySource};

    #[test]
    fn directory_arguments_outside_the_mounts_are_named() {
        let t = tempfile::tempdir().unwrap();
        let ws = t.path().join("ws");
        let other = t.path().join("other");
        std::fs::create_dir_all(ws.join("sub")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(t.path().join("file"), "x").unwrap();
        let yaml = format!(
            "filesystem:\n  mounts:\n    - path: {}\n      mode: rw\n",
            ws.display()
        );
        let p = load_str(&yaml, PolicySource::Inline).unwrap();
        let argv: Vec<String> = [
            "server",
            "ws/sub",
            "--root=other",
            "file",
            "no-such-dir",
            "--flag",
            "other",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let got = dirs_outside_mounts(&argv, t.path(), &p);
        assert_eq!(got, vec![canonicalize_lenient(&other)]);
        assert!(warning(&got[0], &p).contains("does not mount it"));
        let open = load_str("filesystem:\n  mode: any\n", PolicySource::Inline).unwrap();
        assert!(dirs_outside_mounts(&argv, t.path(), &open).is_empty());
    }

    #[test]
    fn roots_outside_the_mounts_get_the_line_to_add() {
        let p = load_str(
            "filesystem:\n  mounts:\n    - path: /srv/ws\n      mode: rw\n",
            PolicySource::Inline,
        )
        .unwrap();
        let roots = vec![
            PathBuf::from("/srv/ws/a"),
            PathBuf::from("/etc"),
            PathBuf::from("/srv"),
        ];
        let out = roots_outside_mounts(&roots, &p);
        assert_eq!(out, vec![PathBuf::from("/etc"), PathBuf::from("/srv")]);
        assert!(root_warning(&out[0], &p).contains("filesystem.mounts: - {path: /etc, mode: ro}"));
    }
}
