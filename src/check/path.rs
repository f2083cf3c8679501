//! Paths: decode what a tool argument says into the absolute path the server will touch, and
//! judge it against the mounts.
//!
//! Order matters and is the point of this file: `file://` URI or percent-encoding decoded ->
//! `~` expanded -> made absolute against the SERVER's working directory -> `..` refused ->
//! normalised lexically -> symlinks resolved up to the nearest existing ancestor -> compared
//! with each mount by whole components.

use std::path::{Component, Path, PathBuf};

use crate::policy::{Mount, MountMode};

/// Why a path argument is refused before any mount is consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    #[error("path traversal (`..`) is not allowed: {0}")]
    Traversal(String),
    #[error("empty path")]
    Empty,
    #[error("path contains a NUL byte: {0:?}")]
    Nul(String),
    #[error("invalid percent-encoding or non-UTF-8 bytes in path: {0}")]
    Encoding(String),
    #[error("unsupported URI scheme in path argument: {0}")]
    Scheme(String),
    #[error("`~user` paths are not supported: {0}")]
    TildeUser(String),
    #[error("a Windows-style path is not a path on this system: {0}")]
    Windows(String),
}

/// Where the server runs and how it reads paths: what a relative path, a `~` or a `$VAR`
/// means to it (see `check::readings`).
#[derive(Debug, Clone, Default)]
pub(crate) struct PathContext {
    pub(crate) cwd: PathBuf,
    pub(crate) home: Option<PathBuf>,
    /// Directories on the server's command line.
    pub(crate) argv_dirs: Vec<PathBuf>,
    /// The roots the client gave the server (as narrowed by capjail).
    pub(crate) roots: Vec<PathBuf>,
    /// The server's environment, for servers that expand variables (`None`: unknown).
    pub(crate) env: Option<Vec<(String, String)>>,
    /// What the server's profile says about its reading of paths.
    pub(crate) readings: super::readings::PathReadings,
}

/// Every path a server might open for `written` (every reading: see `check::readings`); all
/// must be inside the policy.
pub(crate) fn decode_all(written: &str, ctx: &PathContext) -> Result<Vec<PathBuf>, PathError> {
    super::readings::path_readings(written, ctx)
}

/// Decode `written` into an absolute, lexically normalised path (no symlink resolution yet).
pub(crate) fn decode(written: &str, ctx: &PathContext) -> Result<PathBuf, PathError> {
    if written.is_empty() {
        return Err(PathError::Empty);
    }
    let text: String = if let Some(rest) = strip_scheme(written, "file:") {
        // file:///abs, file://localhost/abs, file:/abs
        let rest = if let Some(r) = rest.strip_prefix("//") {
            let slash = r.find('/').unwrap_or(r.len());
            let authority = &r[..slash];
            if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
                return Err(PathError::Scheme(written.to_string()));
            }
            &r[slash..]
        } else {
            rest
        };
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        percent_decode(rest, written)?
    } else if looks_like_other_uri(written) {
        return Err(PathError::Scheme(written.to_string()));
    } else if written.contains('%') {
        // Servers that URL-decode paths exist: judge what they would open. A literal `%` that
        // is not a valid escape stays as it is.
        percent_decode(written, written)?
    } else {
        written.to_string()
    };
    finish(written, text, ctx)
}

fn finish(written: &str, text: String, ctx: &PathContext) -> Result<PathBuf, PathError> {
    if text.contains('\0') {
        return Err(PathError::Nul(written.to_string()));
    }
    if text.len() >= 2 && text.as_bytes()[1] == b':' && text.as_bytes()[0].is_ascii_alphabetic() {
        return Err(PathError::Windows(written.to_string()));
    }
    let expanded: PathBuf = if text == "~" || text.starts_with("~/") {
        match &ctx.home {
            Some(h) => h.join(text.trim_start_matches('~').trim_start_matches('/')),
            None => ctx.cwd.join(&text),
        }
    } else if text.starts_with('~') {
        return Err(PathError::TildeUser(written.to_string()));
    } else {
        PathBuf::from(&text)
    };
    // `..` anywhere (also `\..` for servers that accept backslashes) is refused, as MCP Jail does.
    if expanded.components().any(|c| c == Component::ParentDir)
        || text.split(['/', '\\']).any(|s| s == "..")
    {
        return Err(PathError::Traversal(written.to_string()));
    }
    let absolute = if expanded.is_absolute() {
        expanded
    } else {
        ctx.cwd.join(expanded)
    };
    Ok(lexical_normalize(&absolute))
}

fn strip_scheme<'a>(s: &'a str, scheme: &str) -> Option<&'a str> {
    if s.len() >= scheme.len() && s[..scheme.len()].eq_ignore_ascii_case(scheme) {
        Some(&s[scheme.len()..])
    } else {
        None
    }
}

/// `scheme:` with two or more letters before the colon (so `C:` stays a Windows path).
fn looks_like_other_uri(s: &str) -> bool {
    match s.find(':') {
        Some(p) if p >= 2 => {
            let scheme = &s[..p];
            scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
                && s[p + 1..].starts_with("//")
        }
        _ => false,
    }
}

fn percent_decode(s: &str, written: &str) -> Result<String, PathError> {
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(s).collect();
    String::from_utf8(bytes).map_err(|_| PathError::Encoding(written.to_string()))
}

/// Remove `.` components and repeated separators. `..` is applied lexically (callers that must
/// refuse traversal check for it first).
pub(crate) fn lexical_normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Prefix(x) => out.push(x.as_os_str()),
            Component::RootDir => out.push("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(x) => out.push(x),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Resolve symlinks in the longest existing ancestor of `p` and append the rest. A dangling
/// symlink as the final component is followed (read_link) so that a write through it is judged
/// by where it would land.
pub(crate) fn canonicalize_lenient(p: &Path) -> PathBuf {
    canonicalize_depth(p, 0)
}

fn canonicalize_depth(p: &Path, depth: usize) -> PathBuf {
    if depth > 40 {
        return p.to_path_buf(); // a symlink loop: the lexical path; the kernel has the last word
    }
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    // Dangling link at the end? Follow it by hand.
    if let Ok(meta) = std::fs::symlink_metadata(p) {
        if meta.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(p) {
                let parent = p.parent().unwrap_or(Path::new("/"));
                let joined = if target.is_absolute() {
                    target
                } else {
                    parent.join(target)
                };
                return canonicalize_depth(&lexical_normalize(&joined), depth + 1);
            }
        }
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) if parent != p => {
            canonicalize_depth(parent, depth + 1).join(name)
        }
        _ => p.to_path_buf(),
    }
}

/// Is `path` inside `root` (or equal to it), comparing whole components?
pub(crate) fn is_within(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

/// The mount that admits `resolved` for `write` (the most specific one wins), or why not.
pub(crate) fn mount_for<'m>(
    resolved: &Path,
    mounts: &'m [Mount],
    write: bool,
) -> Result<&'m Mount, MountRefusal> {
    let best = mounts
        .iter()
        .filter(|m| is_within(resolved, &m.path))
        .max_by_key(|m| m.path.components().count());
    match best {
        None => Err(MountRefusal::Outside),
        Some(m) if write && m.mode == MountMode::Ro => {
            Err(MountRefusal::ReadOnly(m.written.clone()))
        }
        Some(m) => Ok(m),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountRefusal {
    Outside,
    ReadOnly(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PathContext {
        PathContext {
            cwd: PathBuf::from("/srv/root"),
            home: Some(PathBuf::from("/home/u")),
            ..Default::default()
        }
    }

    fn mounts(list: &[(&str, MountMode)]) -> Vec<Mount> {
        list.iter()
            .map(|(p, m)| Mount {
                path: PathBuf::from(p),
                written: p.to_string(),
                mode: *m,
            })
            .collect()
    }

    #[test]
    fn decode_forms() {
        let c = ctx();
        assert_eq!(decode("/tmp/a", &c).unwrap(), PathBuf::from("/tmp/a"));
        assert_eq!(decode("a/b", &c).unwrap(), PathBuf::from("/srv/root/a/b"));
        assert_eq!(
            decode("./a//b/.", &c).unwrap(),
            PathBuf::from("/srv/root/a/b")
        );
        assert_eq!(decode("~/x", &c).unwrap(), PathBuf::from("/home/u/x"));
        assert_eq!(
            decode("file:///etc/passwd", &c).unwrap(),
            PathBuf::from("/etc/passwd")
        );
        assert_eq!(
            decode("FILE://localhost/etc/pass%77d", &c).unwrap(),
            PathBuf::from("/etc/passwd")
        );
        assert_eq!(decode("/tmp/a%20b", &c).unwrap(), PathBuf::from("/tmp/a b"));
        assert_eq!(decode("/tmp/a..b", &c).unwrap(), PathBuf::from("/tmp/a..b"));
    }

    #[test]
    fn percent_paths_are_judged_both_ways() {
        let c = ctx();
        assert_eq!(
            decode_all("/tmp/ws%2fx", &c).unwrap(),
            vec![PathBuf::from("/tmp/ws/x"), PathBuf::from("/tmp/ws%2fx")]
        );
        assert_eq!(
            decode_all("/tmp/a%zz", &c).unwrap(),
            vec![PathBuf::from("/tmp/a%zz")]
        );
        // A URL parser decodes; a server that only cuts `file://` off reads it literally.
        assert_eq!(
            decode_all("file:///tmp/a%20b", &c).unwrap(),
            vec![PathBuf::from("/tmp/a b"), PathBuf::from("/tmp/a%20b")]
        );
    }

    #[test]
    fn decode_refusals() {
        let c = ctx();
        for bad in [
            "../../../etc/passwd",
            "/tmp/ws/../secret",
            "/tmp/ws//..//x",
            "/tmp/%2e%2e/x",
            "/tmp/%2E%2E/x",
            "file:///tmp/ws/%2e%2e/x",
            "a\\..\\b",
        ] {
            assert!(
                matches!(decode(bad, &c), Err(PathError::Traversal(_))),
                "{bad}"
            );
        }
        assert!(matches!(decode("", &c), Err(PathError::Empty)));
        assert!(matches!(decode("/tmp/a%00b", &c), Err(PathError::Nul(_))));
        assert!(matches!(
            decode("/tmp/%ff", &c),
            Err(PathError::Encoding(_))
        ));
        assert!(matches!(
            decode("file://evil.host/etc/passwd", &c),
            Err(PathError::Scheme(_))
        ));
        assert!(matches!(
            decode("smb://host/share", &c),
            Err(PathError::Scheme(_))
        ));
        assert!(matches!(
            decode("~root/.ssh", &c),
            Err(PathError::TildeUser(_))
        ));
        assert!(matches!(
            decode("C:\\Windows", &c),
            Err(PathError::Windows(_))
        ));
    }

    #[test]
    fn containment_is_by_component() {
        let m = mounts(&[("/tmp/ws", MountMode::Rw)]);
        assert!(mount_for(Path::new("/tmp/ws"), &m, false).is_ok());
        assert!(mount_for(Path::new("/tmp/ws/a/b"), &m, true).is_ok());
        assert_eq!(
            mount_for(Path::new("/tmp/ws_evil/x"), &m, false),
            Err(MountRefusal::Outside)
        );
        assert_eq!(
            mount_for(Path::new("/tmp/w"), &m, false),
            Err(MountRefusal::Outside)
        );
        assert_eq!(
            mount_for(Path::new("/tmp"), &m, false),
            Err(MountRefusal::Outside)
        );
    }

    #[test]
    fn most_specific_mount_wins() {
        let m = mounts(&[("/w", MountMode::Rw), ("/w/ro", MountMode::Ro)]);
        assert!(mount_for(Path::new("/w/a"), &m, true).is_ok());
        assert_eq!(
            mount_for(Path::new("/w/ro/a"), &m, true),
            Err(MountRefusal::ReadOnly("/w/ro".into()))
        );
        assert!(mount_for(Path::new("/w/ro/a"), &m, false).is_ok());
    }

    #[test]
    fn symlinks_resolve_to_the_real_target() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let ws = root.join("ws");
        let secret = root.join("secret");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join("id_rsa"), "s").unwrap();
        std::os::unix::fs::symlink("../secret", ws.join("link_dir")).unwrap();
        std::os::unix::fs::symlink("../secret/id_rsa", ws.join("link_file")).unwrap();
        std::os::unix::fs::symlink("../secret/newfile", ws.join("dangling")).unwrap();
        std::os::unix::fs::symlink("link_dir", ws.join("chain")).unwrap();
        assert_eq!(
            canonicalize_lenient(&ws.join("link_file")),
            secret.join("id_rsa")
        );
        assert_eq!(
            canonicalize_lenient(&ws.join("link_dir/new.txt")),
            secret.join("new.txt")
        );
        assert_eq!(
            canonicalize_lenient(&ws.join("dangling")),
            secret.join("newfile")
        );
        assert_eq!(
            canonicalize_lenient(&ws.join("chain/a/b")),
            secret.join("a/b")
        );
        assert_eq!(
            canonicalize_lenient(&ws.join("not/yet/there")),
            ws.join("not/yet/there")
        );
        // A loop does not hang.
        std::os::unix::fs::symlink("loop2", ws.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", ws.join("loop2")).unwrap();
        let _ = canonicalize_lenient(&ws.join("loop1/x"));
    }
}
