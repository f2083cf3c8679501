//! The Python package launchers `uvx` / `uv run` and `pipx run` under the kernel layer.
//!
//! Both run a server out of a package cache they write to (uv: `UV_CACHE_DIR`, default
//! `~/.cache/uv`; pipx: `PIPX_HOME`, default `~/.local/share/pipx`). Like npx's `~/.npm`, the
//! cache is granted read-write with a reason starting with one of the
//! [`super::world::plan::PACKAGE_CACHE_REASONS`], so the world turns it into a private
//! copy-on-write layer: the server reads the user's cache, and nothing it writes there can
//! ever run outside the sandbox (without a world the grant becomes read-only).
//!
//! uv also starts a Python that is not on the command line: [`find_uv_python`] (I/O) asks
//! for it the way uv will (`UV_PYTHON` if it is a path, else `uv python find`), and
//! [`rules`] (pure) grants its installation read-only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::plan::FsAccess;

/// What the exec chain says about the Python launchers (filled by `facts`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct PyLauncherFacts {
    /// `uv` or `uvx` runs: the `uv` binary.
    pub(crate) uv: Option<PathBuf>,
    /// The interpreter uv will use (as named: a venv's `bin/python` stays a venv path).
    pub(crate) uv_python: Option<PathBuf>,
    /// `pipx` runs.
    pub(crate) pipx: bool,
    /// What uv's console scripts run before Python (`#!/bin/sh` then `realpath`, `dirname`),
    /// as found on PATH.
    pub(crate) script_tools: Vec<PathBuf>,
}

/// The programs of uv's `#!/bin/sh` console-script trampoline.
pub(crate) const SCRIPT_TOOLS: &[&str] = &["sh", "realpath", "dirname"];

/// One grant of [`rules`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) path: PathBuf,
    pub(crate) access: FsAccess,
    pub(crate) reason: String,
}

/// Reason prefixes (also in `PACKAGE_CACHE_REASONS`).
pub(crate) const UV_CACHE_REASON: &str = "uv package cache";
pub(crate) const PIPX_CACHE_REASON: &str = "pipx package cache";

/// uv's cache directory, as uv computes it.
pub(crate) fn uv_cache_dir(
    get: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    if let Some(d) = get("UV_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(x) = get("XDG_CACHE_HOME").filter(|d| Path::new(d).is_absolute()) {
        return Some(PathBuf::from(x).join("uv"));
    }
    home.map(|h| h.join(".cache/uv"))
}

/// uv's tool directory, as uv computes it.
pub(crate) fn uv_tool_dir(
    get: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    if let Some(d) = get("UV_TOOL_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(x) = get("XDG_DATA_HOME").filter(|d| Path::new(d).is_absolute()) {
        return Some(PathBuf::from(x).join("uv/tools"));
    }
    home.map(|h| h.join(".local/share/uv/tools"))
}

/// pipx's home, as pipx computes it (`~/.local/pipx` when that legacy folder exists).
pub(crate) fn pipx_home(
    get: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
    exists: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if let Some(d) = get("PIPX_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let home = home?;
    let legacy = home.join(".local/pipx");
    if exists(&legacy) {
        return Some(legacy);
    }
    let data = get("XDG_DATA_HOME")
        .filter(|d| Path::new(d).is_absolute())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".local/share"));
    Some(data.join("pipx"))
}

/// The read-write cache grants and the interpreter's read-only ones. Pure: `canonical` and
/// `is_venv` are the file system look-ups done by the caller.
pub(crate) fn rules(
    f: &PyLauncherFacts,
    get: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
    exists: &dyn Fn(&Path) -> bool,
    canonical: &dyn Fn(&Path) -> PathBuf,
    notes: &mut Vec<String>,
) -> Vec<Grant> {
    let mut out = Vec::new();
    if f.uv.is_some() {
        match uv_cache_dir(get, home) {
            Some(c) => out.push(Grant {
                reason: format!(
                    "{UV_CACHE_REASON} {} rw+exec (uvx / uv run install and run packages from it)",
                    c.display()
                ),
                path: c,
                access: FsAccess::all(),
            }),
            None => notes.push("uv cache: neither UV_CACHE_DIR nor HOME is set".into()),
        }
        // `uv tool run` locks (and `uv tool install` puts tools in) the tool directory: its
        // bins run outside the sandbox later, so it is a private layer too.
        if let Some(t) = uv_tool_dir(get, home) {
            out.push(Grant {
                reason: format!(
                    "{UV_CACHE_REASON}: tool directory {} (uvx locks it)",
                    t.display()
                ),
                path: t,
                access: FsAccess::all(),
            });
        }
        for t in &f.script_tools {
            out.push(Grant {
                path: t.clone(),
                access: FsAccess::read_exec(),
                reason: "uv's console scripts start through /bin/sh, realpath and dirname".into(),
            });
        }
        match &f.uv_python {
            Some(py) => out.extend(python_grants(py, exists, canonical)),
            None => notes.push(
                "uv: the interpreter it will use was not found (set UV_PYTHON to its path)".into(),
            ),
        }
    }
    if f.pipx {
        match pipx_home(get, home, exists) {
            Some(c) => out.push(Grant {
                reason: format!(
                    "{PIPX_CACHE_REASON} {} rw+exec (pipx run installs and runs packages from it)",
                    c.display()
                ),
                path: c,
                access: FsAccess::all(),
            }),
            None => notes.push("pipx home: neither PIPX_HOME nor HOME is set".into()),
        }
        // pipx creates its bin and man directories at every start; what lands there runs
        // outside the sandbox later (~/.local/bin is on PATH), so they are private layers too.
        for (var, default) in [
            ("PIPX_BIN_DIR", ".local/bin"),
            ("PIPX_MAN_DIR", ".local/share/man"),
        ] {
            let d = get(var)
                .filter(|d| Path::new(d).is_absolute())
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(default)));
            if let Some(d) = d {
                out.push(Grant {
                    reason: format!(
                        "{PIPX_CACHE_REASON}: {var} {} (pipx creates it at start)",
                        d.display()
                    ),
                    path: d,
                    access: FsAccess::all(),
                });
            }
        }
    }
    out
}

/// A Python interpreter's installation (read-only), and its venv when it is one's.
fn python_grants(
    py: &Path,
    exists: &dyn Fn(&Path) -> bool,
    canonical: &dyn Fn(&Path) -> PathBuf,
) -> Vec<Grant> {
    let mut out = Vec::new();
    if let Some(venv) = py
        .parent()
        .and_then(Path::parent)
        .filter(|v| exists(&v.join("pyvenv.cfg")))
    {
        out.push(Grant {
            path: venv.to_path_buf(),
            access: FsAccess::read_exec(),
            reason: format!("uv's python venv {}", venv.display()),
        });
    }
    let real = canonical(py);
    if let Some(base) = real.parent().and_then(Path::parent) {
        let system = ["/", "/usr", "/usr/local"]
            .iter()
            .any(|s| base == Path::new(s));
        out.push(Grant {
            path: if system {
                real.clone()
            } else {
                base.to_path_buf()
            },
            access: FsAccess::read_exec(),
            reason: format!("uv's python {}", real.display()),
        });
    }
    out
}

/// The interpreter uv will use: `UV_PYTHON` when it is a path, else `uv python find` (run
/// with the server's environment, bounded to 10 s). I/O.
pub(crate) fn find_uv_python(uv: &Path, env: &[(String, String)]) -> Result<PathBuf, String> {
    if let Some((_, v)) = env.iter().find(|(k, _)| k == "UV_PYTHON") {
        if Path::new(v).is_absolute() {
            return Ok(PathBuf::from(v));
        }
    }
    let mut cmd = std::process::Command::new(uv);
    cmd.args(["python", "find"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("UV_PYTHON_DOWNLOADS", "never")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("`{} python find`: {e}", uv.display()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`{} python find` did not answer", uv.display()));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`{} python find`: {e}", uv.display()))?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && Path::new(&s).is_absolute() {
        Ok(PathBuf::from(s))
    } else {
        Err(format!(
            "`{} python find` found no interpreter",
            uv.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(kv: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| kv.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn cache_dirs_follow_the_launchers_own_lookup() {
        let h = Path::new("/home/u");
        assert_eq!(
            uv_cache_dir(&env(&[]), Some(h)),
            Some("/home/u/.cache/uv".into())
        );
        assert_eq!(
            uv_cache_dir(&env(&[("XDG_CACHE_HOME", "/x")]), Some(h)),
            Some("/x/uv".into())
        );
        assert_eq!(
            uv_cache_dir(
                &env(&[("UV_CACHE_DIR", "/c"), ("XDG_CACHE_HOME", "/x")]),
                Some(h)
            ),
            Some("/c".into())
        );
        let no = |_: &Path| false;
        assert_eq!(
            pipx_home(&env(&[]), Some(h), &no),
            Some("/home/u/.local/share/pipx".into())
        );
        let legacy = |p: &Path| p == Path::new("/home/u/.local/pipx");
        assert_eq!(
            pipx_home(&env(&[]), Some(h), &legacy),
            Some("/home/u/.local/pipx".into())
        );
        assert_eq!(
            pipx_home(&env(&[("PIPX_HOME", "/p")]), Some(h), &no),
            Some("/p".into())
        );
    }

    #[test]
    fn caches_are_package_caches_and_the_python_is_read_only() {
        let f = PyLauncherFacts {
            uv: Some("/v/bin/uv".into()),
            uv_python: Some("/v/bin/python".into()),
            pipx: true,
            script_tools: vec![],
        };
        let exists = |p: &Path| p == Path::new("/v/pyvenv.cfg");
        let canon = |_: &Path| PathBuf::from("/opt/py/bin/python3.11");
        let mut notes = vec![];
        let g = rules(
            &f,
            &env(&[("UV_CACHE_DIR", "/c/uv")]),
            Some(Path::new("/home/u")),
            &exists,
            &canon,
            &mut notes,
        );
        let by = |p: &str| g.iter().find(|g| g.path == Path::new(p)).unwrap();
        assert!(super::super::world::plan::is_package_cache(
            &by("/c/uv").reason
        ));
        assert_eq!(by("/c/uv").access, FsAccess::all());
        assert!(super::super::world::plan::is_package_cache(
            &by("/home/u/.local/share/pipx").reason
        ));
        assert_eq!(by("/v").access, FsAccess::read_exec());
        assert_eq!(by("/opt/py").access, FsAccess::read_exec());
        assert!(notes.is_empty());
        // A system interpreter: only the file (the library directories are granted already).
        let f = PyLauncherFacts {
            uv: Some("/v/bin/uv".into()),
            uv_python: Some("/usr/bin/python3".into()),
            pipx: false,
            script_tools: vec![],
        };
        let canon = |_: &Path| PathBuf::from("/usr/bin/python3.11");
        let g = rules(&f, &env(&[]), None, &|_| false, &canon, &mut notes);
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(g[0].path, Path::new("/usr/bin/python3.11"));
        let g = rules(
            &f,
            &env(&[]),
            Some(Path::new("/h")),
            &|_| false,
            &canon,
            &mut notes,
        );
        assert!(g
            .iter()
            .any(|g| g.path == Path::new("/h/.local/share/uv/tools")
                && super::super::world::plan::is_package_cache(&g.reason)));
        assert!(notes[0].contains("uv cache"));
    }
}
