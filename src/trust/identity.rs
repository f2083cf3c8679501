//! Which server a session talks to, for the pin store: the package and its version when the
//! command line shows them (`npx -y @scope/pkg@1.2.3`, a path inside `node_modules/<pkg>`,
//! a venv console script, `uvx pkg`, `python -m module`), else the program or script file.
//! Data arguments (directories, flags) are not part of the identity: the same server started
//! on another folder is the same server. `serverInfo` is recorded next to the pins.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServerIdentity {
    /// The store key: `npm:@scope/pkg@1.2.3`, `pypi:mcp-server-git@2026.1.1`,
    /// `python:-m module`, `file:/abs/path/server.py`, `command:name`.
    pub(crate) key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<String>,
}

const NPM_LAUNCHERS: &[&str] = &["npx", "pnpx", "bunx"];
const PY_LAUNCHERS: &[&str] = &["uvx", "pipx"];
const INTERPRETERS: &[&str] = &[
    "node", "nodejs", "bun", "deno", "python", "python3", "sh", "bash", "uv",
];

pub(crate) fn identify(argv: &[String]) -> ServerIdentity {
    let base = |s: &str| {
        Path::new(s)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let Some(prog) = argv.first() else {
        return plain("command:".into());
    };
    let prog_base = base(prog);
    let rest = &argv[1..];
    let first_plain = || {
        rest.iter()
            .map(String::as_str)
            .find(|a| !a.starts_with('-') && *a != "run")
    };
    if NPM_LAUNCHERS.contains(&prog_base.as_str()) {
        if let Some(spec) = first_plain() {
            let (name, version) = split_npm_spec(spec);
            return package("npm", name, version);
        }
    }
    if PY_LAUNCHERS.contains(&prog_base.as_str()) {
        if let Some(spec) = first_plain() {
            let (name, version) = match spec.split_once("==").or_else(|| spec.split_once('@')) {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (spec.to_string(), None),
            };
            return package("pypi", name, version);
        }
    }
    if prog_base.starts_with("python") {
        if let Some(i) = rest.iter().position(|a| a == "-m") {
            if let Some(m) = rest.get(i + 1) {
                return plain(format!("python:-m {m}"));
            }
        }
    }
    // The file that is the server: the program, or the first argument an interpreter runs.
    let script = if INTERPRETERS.contains(&prog_base.as_str()) || prog_base.starts_with("python") {
        rest.iter()
            .find(|a| !a.starts_with('-') && Path::new(a).is_file())
    } else {
        None
    };
    let file = script.unwrap_or(prog);
    let abs = resolve_program(file);
    if let Some(id) = abs.as_deref().and_then(node_package) {
        return id;
    }
    if let Some(id) = abs.as_deref().and_then(venv_script) {
        return id;
    }
    match abs {
        Some(p) => plain(format!("file:{}", p.display())),
        None => plain(format!("command:{}", base(file))),
    }
}

fn plain(key: String) -> ServerIdentity {
    ServerIdentity {
        key,
        package: None,
        version: None,
    }
}

fn package(eco: &str, name: String, version: Option<String>) -> ServerIdentity {
    let key = match &version {
        Some(v) => format!("{eco}:{name}@{v}"),
        None => format!("{eco}:{name}"),
    };
    ServerIdentity {
        key,
        package: Some(name),
        version,
    }
}

/// `@scope/pkg@1.2` -> (`@scope/pkg`, `1.2`); `pkg` -> (`pkg`, None).
fn split_npm_spec(spec: &str) -> (String, Option<String>) {
    let (scope, body) = match spec.strip_prefix('@') {
        Some(b) => ("@", b),
        None => ("", spec),
    };
    match body.split_once('@') {
        Some((n, v)) if !v.is_empty() => (format!("{scope}{n}"), Some(v.to_string())),
        _ => (spec.to_string(), None),
    }
}

/// An absolute, symlink-resolved path for a program name or path.
fn resolve_program(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let found = if p.contains('/') {
        Some(path.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(p))
                .find(|c| c.is_file())
        })
    }?;
    std::fs::canonicalize(found).ok()
}

/// A file inside `node_modules/<pkg>/`: the package and its `package.json` version.
fn node_package(file: &Path) -> Option<ServerIdentity> {
    let comps: Vec<String> = file
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let i = comps.iter().rposition(|c| c == "node_modules")?;
    let first = comps.get(i + 1)?;
    let (name, n) = if first.starts_with('@') {
        (format!("{first}/{}", comps.get(i + 2)?), 2)
    } else {
        (first.clone(), 1)
    };
    let dir: PathBuf = comps[..=i + n].iter().collect();
    let version = std::fs::read(dir.join("package.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(String::from));
    Some(package("npm", name, version))
}

/// A console script in a virtual environment's `bin/`: the distribution it came from (found
/// by its `*.dist-info` folder) and its version.
fn venv_script(file: &Path) -> Option<ServerIdentity> {
    let bin = file.parent()?;
    let venv = bin.parent()?;
    if bin.file_name()? != "bin" || !venv.join("pyvenv.cfg").is_file() {
        return None;
    }
    let script = file.file_name()?.to_string_lossy().replace('-', "_");
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    for py in lib.flatten() {
        let Ok(entries) = std::fs::read_dir(py.path().join("site-packages")) else {
            continue;
        };
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = n.strip_suffix(".dist-info") {
                if let Some((dist, ver)) = stem.rsplit_once('-') {
                    if dist.eq_ignore_ascii_case(&script) {
                        return Some(package(
                            "pypi",
                            dist.replace('_', "-"),
                            Some(ver.to_string()),
                        ));
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(v: &[&str]) -> String {
        identify(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).key
    }

    #[test]
    fn launchers_name_the_package() {
        assert_eq!(
            id(&["npx", "-y", "@modelcontextprotocol/server-memory@0.6.3"]),
            "npm:@modelcontextprotocol/server-memory@0.6.3"
        );
        assert_eq!(
            id(&["npx", "-y", "some-server", "/tmp/x"]),
            "npm:some-server"
        );
        assert_eq!(
            id(&["uvx", "mcp-server-git==1.0"]),
            "pypi:mcp-server-git@1.0"
        );
        assert_eq!(
            id(&["python3", "-m", "mcp_server_time"]),
            "python:-m mcp_server_time"
        );
        assert_eq!(id(&["/nonexistent/bin/srv", "/data"]), "command:srv");
    }

    #[test]
    fn data_arguments_are_not_part_of_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("node_modules/@s/p");
        std::fs::create_dir_all(pkg.join("dist")).unwrap();
        std::fs::write(
            pkg.join("package.json"),
            r#"{"name":"@s/p","version":"1.2.3"}"#,
        )
        .unwrap();
        std::fs::write(pkg.join("dist/index.js"), "").unwrap();
        let js = pkg.join("dist/index.js").display().to_string();
        assert_eq!(id(&["node", &js, "/tmp/a"]), "npm:@s/p@1.2.3");
        assert_eq!(id(&["node", &js, "/tmp/b"]), "npm:@s/p@1.2.3");
        let script = dir.path().join("srv.py");
        std::fs::write(&script, "").unwrap();
        let s = script.display().to_string();
        let canon = std::fs::canonicalize(&script).unwrap();
        assert_eq!(
            id(&["python3", &s, "--root", "/x"]),
            format!("file:{}", canon.display())
        );
    }
}
