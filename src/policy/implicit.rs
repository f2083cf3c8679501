//! Directories that are never an IMPLICIT workspace.
//!
//! A policy path written `${CAPJAIL_WORKSPACE:-${PWD}}` falls back to its default when the
//! variable is unset. Clients often start servers with the working directory `/` (or the
//! user's home): the default would then grant the whole machine. A path that came from a
//! `${...:-default}` fallback is refused when it is `/`, a system root, the home directory, or
//! an ancestor of it; the error names `--workspace DIR`. A path written out (or given with
//! `--workspace`) is the user's explicit choice and is not judged here.

use std::path::{Component, Path};

/// Top-level directories that hold the system, not a project.
const SYSTEM_ROOTS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/lost+found",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/snap",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/Applications",
    "/Library",
    "/System",
    "/Users",
    "/Volumes",
    "/private",
    "/nix",
];

/// Pseudo file systems: nothing inside them is a workspace.
const NEVER_INSIDE: &[&str] = &["/proc", "/sys", "/dev"];

/// Why `path` (absolute, normalised) may not be an implicit workspace, or `None` when it may.
pub(crate) fn too_broad(path: &Path, home: Option<&Path>) -> Option<String> {
    if path.components().all(|c| matches!(c, Component::RootDir)) {
        return Some("the root of the file system".into());
    }
    if SYSTEM_ROOTS.iter().any(|r| path == Path::new(r)) {
        return Some("a system directory".into());
    }
    if let Some(r) = NEVER_INSIDE.iter().find(|r| path.starts_with(r)) {
        return Some(format!("inside {r}"));
    }
    if let Some(home) = home.filter(|h| h.is_absolute() && h.parent().is_some()) {
        if path == home {
            return Some("the home directory itself".into());
        }
        if home.starts_with(path) {
            return Some("a directory holding the home directory".into());
        }
    }
    None
}

/// The refusal for a policy value `written` that fell back to its default `expanded`.
pub(crate) fn refusal(written: &str, expanded: &Path, why: &str) -> String {
    format!(
        "`{written}` falls back to its default `{}`, which is {why}: that is never an implicit \
         workspace (clients often start servers in `/` or the home directory). Pass \
         `--workspace DIR` (or set CAPJAIL_WORKSPACE=DIR) with the project directory",
        expanded.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broad(p: &str) -> bool {
        too_broad(Path::new(p), Some(Path::new("/home/u"))).is_some()
    }

    #[test]
    fn roots_home_and_pseudo_fs_are_refused() {
        for p in [
            "/",
            "/usr",
            "/etc",
            "/var",
            "/proc",
            "/sys",
            "/dev",
            "/boot",
            "/bin",
            "/lib",
            "/lib64",
            "/sbin",
            "/opt",
            "/root",
            "/home",
            "/home/u",
            "/proc/self",
            "/sys/kernel",
        ] {
            assert!(broad(p), "{p}");
        }
    }

    #[test]
    fn project_directories_are_fine() {
        for p in [
            "/home/u/proj",
            "/srv/app",
            "/work/repo",
            "/tmp/x",
            "/usr/src/linux",
            "/workspace",
        ] {
            assert!(!broad(p), "{p}");
        }
        // Without a HOME only the fixed list applies.
        assert!(too_broad(Path::new("/home/u"), None).is_none());
    }
}
