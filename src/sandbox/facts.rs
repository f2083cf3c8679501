//! What the plan needs to know about this machine, looked up BEFORE planning so that
//! [`super::plan::plan`] stays pure and can be tested with made-up facts.
//!
//! [`HostFacts::gather`] resolves the command the way `execve` + the shebang mechanism will:
//! `argv[0]` through `PATH`, every `#!` line (including `#!/usr/bin/env prog` and
//! `env -S`), the ELF `PT_INTERP` of each binary, and the runtime around a Node or Python
//! interpreter (Node's prefix, a Python venv and its base installation, found by following
//! the venv's `bin/python` symlink).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One program in the exec chain (`npx` -> `env` -> `node`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ExecStep {
    /// As named (`/usr/bin/npx`, or the shebang's path).
    pub(crate) invoked: PathBuf,
    /// All symlinks resolved (`/usr/lib/node_modules/npm/bin/npx-cli.js`).
    pub(crate) canonical: PathBuf,
    pub(crate) kind: ExecKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ExecKind {
    /// An ELF binary; `interpreter` is its `PT_INTERP` (the dynamic loader), if any.
    Elf { interpreter: Option<PathBuf> },
    /// A `#!` script.
    Script {
        interpreter: PathBuf,
        arg: Option<String>,
    },
    /// Could not be read or classified.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PythonFacts {
    /// The interpreter's installation (`/root/.pyenv/versions/3.11.7`): stdlib, lib-dynload.
    pub(crate) base_prefix: PathBuf,
    /// A virtual environment (directory holding `pyvenv.cfg`), if the interpreter was started from one.
    pub(crate) venv: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct NodeFacts {
    /// `<prefix>/bin/node`.
    pub(crate) prefix: PathBuf,
    /// `<prefix>/lib/node_modules`, if it exists.
    pub(crate) global_modules: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    /// The environment capjail was started with.
    #[serde(skip)]
    pub env: Vec<(String, String)>,
    pub(crate) home: Option<PathBuf>,
    pub(crate) cwd: PathBuf,
    pub(crate) uid: u32,
    /// `argv[0]` and every interpreter after it.
    pub(crate) chain: Vec<ExecStep>,
    pub(crate) python: Option<PythonFacts>,
    pub(crate) node: Option<NodeFacts>,
    /// The chain runs npm / npx (needs its cache read-write and `/bin/sh`).
    pub(crate) npm: bool,
    /// The chain runs uv / uvx or pipx (their package caches, uv's interpreter).
    pub(crate) py_launchers: super::pylaunch::PyLauncherFacts,
    /// The script an interpreter was given as its first argument (`node /x/dist/index.js`), canonical.
    pub(crate) script: Option<PathBuf>,
    /// The standard shared-library directories that exist, canonical and deduplicated
    /// (`/lib` -> `/usr/lib` on merged-/usr systems).
    pub(crate) lib_dirs: Vec<PathBuf>,
    /// Paths the plan may mention that exist here (checked for a fixed candidate list).
    pub(crate) existing: Vec<PathBuf>,
    /// Programs a known server runs itself (mcp-server-git -> git), with the data
    /// directories they need that exist here.
    pub(crate) helpers: Vec<Helper>,
    /// What could not be resolved (printed as notes in the plan).
    pub(crate) problems: Vec<String>,
}

/// A program the server is known to spawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Helper {
    pub(crate) name: String,
    /// Why it is needed (`mcp-server-git runs git`).
    pub(crate) why: String,
    pub(crate) step: ExecStep,
    /// Directories the helper reads or executes from (`libexec/git-core`, `share/git-core`).
    pub(crate) dirs: Vec<PathBuf>,
    /// Configuration files in HOME it must be able to read (existing ones only).
    pub(crate) home_files: Vec<PathBuf>,
}

/// Known servers and the programs they spawn: (substring of the server's command or
/// script, helper program, directories relative to the helper's prefix, files relative to
/// HOME that the helper refuses to run without being able to read if they exist).
/// git treats EACCES on `~/.gitconfig` as fatal; it holds name, email and settings
/// (credentials live in `~/.git-credentials`, which stays unreachable).
pub(crate) const KNOWN_HELPERS: &[(&str, &str, &[&str], &[&str])] = &[
    (
        "mcp-server-git",
        "git",
        &["libexec/git-core", "share/git-core"],
        &[".gitconfig", ".config/git/config"],
    ),
    (
        "mcp_server_git",
        "git",
        &["libexec/git-core", "share/git-core"],
        &[".gitconfig", ".config/git/config"],
    ),
];

/// Files and directories the plan may grant if they exist.
pub(crate) const CANDIDATES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.preload",
    "/etc/localtime",
    "/usr/share/zoneinfo",
    "/etc/timezone",
    "/usr/share/locale",
    "/usr/lib/locale",
    "/etc/locale.alias",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/ssl",
    "/usr/share/ca-certificates",
    "/etc/ca-certificates",
    "/etc/pki",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
    "/proc/stat",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/sys/devices/system/cpu",
    "/bin/sh",
    "/usr/bin/env",
    "/etc/npmrc",
    "/usr/bin",
    "/bin",
    "/usr/local/bin",
];

const LIB_DIRS: &[&str] = &["/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib"];

impl HostFacts {
    /// Look everything up for `argv` (I/O; never fails: what cannot be found becomes a problem note).
    pub fn gather(argv: &[String]) -> HostFacts {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let path_var = get("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        let mut f = HostFacts {
            home: get("HOME").map(PathBuf::from),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            uid: nix::unistd::getuid().as_raw(),
            ..Default::default()
        };
        let mut seen_lib = Vec::new();
        for d in LIB_DIRS {
            if let Ok(c) = std::fs::canonicalize(d) {
                if c.is_dir() && !seen_lib.contains(&c) {
                    seen_lib.push(c);
                }
            }
        }
        f.lib_dirs = seen_lib;
        f.existing = CANDIDATES
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect();

        if let Some(arg0) = argv.first() {
            match which(arg0, &path_var, &f.cwd) {
                Some(p) => {
                    let cwd = f.cwd.clone();
                    follow_chain(&p, &path_var, &cwd, &mut f)
                }
                None => f.problems.push(format!("`{arg0}` not found in PATH")),
            }
        }
        let mentioned = |needle: &str| {
            argv.iter().take(3).any(|a| a.contains(needle))
                || f.chain
                    .iter()
                    .any(|s| s.canonical.to_string_lossy().contains(needle))
        };
        for (server, prog, dirs, home_files) in KNOWN_HELPERS {
            if f.helpers.iter().any(|h| h.name == *prog) || !mentioned(server) {
                continue;
            }
            match which(prog, &path_var, &f.cwd) {
                Some(p) => {
                    let canonical = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
                    let prefix = canonical
                        .parent()
                        .and_then(Path::parent)
                        .map(Path::to_path_buf)
                        .unwrap_or_default();
                    let dirs = dirs
                        .iter()
                        .map(|d| prefix.join(d))
                        .filter(|d| d.is_dir())
                        .collect();
                    let home_files = match &f.home {
                        Some(h) => home_files
                            .iter()
                            .map(|r| h.join(r))
                            .filter(|p| p.is_file())
                            .collect(),
                        None => Vec::new(),
                    };
                    f.helpers.push(Helper {
                        name: prog.to_string(),
                        why: format!("{server} runs {prog}"),
                        step: ExecStep {
                            kind: classify(&canonical),
                            invoked: p,
                            canonical,
                        },
                        dirs,
                        home_files,
                    });
                }
                None => f
                    .problems
                    .push(format!("{server} runs `{prog}`, which is not in PATH")),
            }
        }
        if let Some(uv) = f.py_launchers.uv.clone() {
            match super::pylaunch::find_uv_python(&uv, &env) {
                Ok(p) => f.py_launchers.uv_python = Some(p),
                Err(e) => f.problems.push(e),
            }
            for t in super::pylaunch::SCRIPT_TOOLS {
                let found = if *t == "sh" {
                    Some(PathBuf::from("/bin/sh")).filter(|p| p.exists())
                } else {
                    which(t, &path_var, &f.cwd)
                };
                f.py_launchers.script_tools.extend(found);
            }
        }
        // The script given to a Node/Python interpreter named directly (`node /x/index.js`).
        if f.chain.len() == 1 && (f.node.is_some() || f.python.is_some()) {
            f.script = script_argument(&argv[1..], &f.cwd);
        }
        // A package's bin link (`node_modules/.bin/x` -> `../pkg/dist/index.js`): the script is
        // the program itself, and it imports its package tree.
        if f.script.is_none() {
            if let Some(first) = f.chain.first() {
                if matches!(first.kind, ExecKind::Script { .. })
                    && first
                        .canonical
                        .components()
                        .any(|c| c.as_os_str() == "node_modules")
                {
                    f.script = Some(first.canonical.clone());
                }
            }
        }
        // A shell wrapper script: follow the absolute programs it names (`exec /v/bin/server`).
        if let Some(first) = f.chain.first().cloned() {
            if let ExecKind::Script { interpreter, .. } = &first.kind {
                let shell = interpreter
                    .file_name()
                    .is_some_and(|n| ["sh", "bash", "dash", "zsh", "ksh"].iter().any(|s| n == *s));
                if shell {
                    let cwd = f.cwd.clone();
                    for p in wrapper_targets(&first.canonical) {
                        if !f.chain.iter().any(|s| s.invoked == p) {
                            follow_chain(&p, &path_var, &cwd, &mut f);
                        }
                    }
                }
            }
        }
        f.env = env;
        f
    }
}

/// Resolve a command name the way execvp does.
pub(crate) fn which(name: &str, path_var: &str, cwd: &Path) -> Option<PathBuf> {
    if name.contains('/') {
        let p = if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            cwd.join(name)
        };
        return p.is_file().then_some(p);
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() {
            cwd.to_path_buf()
        } else {
            PathBuf::from(dir)
        };
        let p = dir.join(name);
        if let Ok(m) = std::fs::metadata(&p) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Some(p);
            }
        }
    }
    None
}

fn follow_chain(start: &Path, path_var: &str, cwd: &Path, f: &mut HostFacts) {
    let mut next = Some(start.to_path_buf());
    let mut depth = 0;
    while let Some(invoked) = next.take() {
        depth += 1;
        if depth > 6 {
            f.problems
                .push("shebang chain deeper than 6: stopped following".into());
            break;
        }
        let canonical = std::fs::canonicalize(&invoked).unwrap_or_else(|_| invoked.clone());
        let kind = classify(&canonical);
        match &kind {
            ExecKind::Script { interpreter, arg } => {
                let is_env = interpreter.file_name().is_some_and(|n| n == "env");
                next = Some(interpreter.clone());
                if is_env {
                    // `#!/usr/bin/env node` or `#!/usr/bin/env -S node --flag`
                    f.chain.push(ExecStep {
                        invoked: invoked.clone(),
                        canonical: canonical.clone(),
                        kind: kind.clone(),
                    });
                    let env_path = interpreter.clone();
                    let env_canon =
                        std::fs::canonicalize(&env_path).unwrap_or_else(|_| env_path.clone());
                    f.chain.push(ExecStep {
                        invoked: env_path,
                        kind: classify(&env_canon),
                        canonical: env_canon,
                    });
                    let prog = arg
                        .as_deref()
                        .map(|a| a.trim_start_matches("-S").trim())
                        .unwrap_or("");
                    let prog = prog.split_whitespace().next().unwrap_or("");
                    next = if prog.is_empty() {
                        None
                    } else {
                        match which(prog, path_var, cwd) {
                            Some(p) => Some(p),
                            None => {
                                f.problems.push(format!(
                                    "`env {prog}` (shebang of {}): not found in PATH",
                                    invoked.display()
                                ));
                                None
                            }
                        }
                    };
                    note_runtime(&invoked, &canonical, f);
                    continue;
                }
            }
            ExecKind::Elf { .. } | ExecKind::Unknown => {}
        }
        note_runtime(&invoked, &canonical, f);
        f.chain.push(ExecStep {
            invoked,
            canonical,
            kind,
        });
    }
}

/// Absolute paths of executable files named in a shell script (at most 8, first 64 KiB).
fn wrapper_targets(script: &Path) -> Vec<PathBuf> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(script) {
        let _ = f.take(64 * 1024).read_to_end(&mut buf);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut out: Vec<PathBuf> = Vec::new();
    for line in text.lines().skip(1) {
        let line = line.split('#').next().unwrap_or("");
        for tok in line.split(|c: char| c.is_whitespace() || "\"'`;|&()=".contains(c)) {
            if !tok.starts_with('/') || out.len() >= 8 {
                continue;
            }
            let p = PathBuf::from(tok);
            let exec = std::fs::metadata(&p)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if exec && !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Recognise Node, npm and Python from a step of the chain.
fn note_runtime(invoked: &Path, canonical: &Path, f: &mut HostFacts) {
    let name = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cs = canonical.to_string_lossy();
    if cs.contains("/node_modules/npm/bin/") || name == "npm" || name == "npx" {
        f.npm = true;
    }
    if name == "uv" || name == "uvx" {
        // `uvx` is a second binary next to `uv`; `uv python find` needs `uv` itself.
        let uv = canonical.with_file_name("uv");
        f.py_launchers.uv = Some(if uv.is_file() {
            uv
        } else {
            canonical.to_path_buf()
        });
    }
    if invoked.file_name().is_some_and(|n| n == "pipx") || name == "pipx" {
        f.py_launchers.pipx = true;
        // pipx >= 1.17 hands `pipx run` to the uv installed next to it (`uv tool run`).
        let uv = invoked.with_file_name("uv");
        if f.py_launchers.uv.is_none() && uv.is_file() {
            f.py_launchers.uv = Some(std::fs::canonicalize(&uv).unwrap_or(uv));
        }
    }
    if name == "node" || name == "nodejs" {
        if let Some(prefix) = canonical.parent().and_then(Path::parent) {
            let gm = prefix.join("lib/node_modules");
            f.node = Some(NodeFacts {
                prefix: prefix.to_path_buf(),
                global_modules: gm.is_dir().then_some(gm),
            });
        }
    }
    if name.starts_with("python") && !name.ends_with("-config") {
        // A venv's bin/python is a symlink to the base interpreter: the venv is found from the
        // name it was invoked by, the base installation from the resolved target.
        let venv = invoked
            .parent()
            .and_then(Path::parent)
            .filter(|d| d.join("pyvenv.cfg").is_file())
            .map(Path::to_path_buf);
        if let Some(base) = canonical.parent().and_then(Path::parent) {
            f.python = Some(PythonFacts {
                base_prefix: base.to_path_buf(),
                venv,
            });
        }
    }
}

/// ELF (with its PT_INTERP), `#!` script, or unknown.
pub(crate) fn classify(path: &Path) -> ExecKind {
    let mut head = Vec::with_capacity(256);
    let Ok(file) = std::fs::File::open(path) else {
        return ExecKind::Unknown;
    };
    if file.take(256).read_to_end(&mut head).is_err() {
        return ExecKind::Unknown;
    }
    if head.starts_with(b"#!") {
        let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
        let line = String::from_utf8_lossy(&head[2..line_end])
            .trim()
            .to_string();
        let (interp, arg) = match line.split_once(char::is_whitespace) {
            Some((i, a)) => (
                i.to_string(),
                Some(a.trim().to_string()).filter(|a| !a.is_empty()),
            ),
            None => (line.clone(), None),
        };
        return ExecKind::Script {
            interpreter: PathBuf::from(interp),
            arg,
        };
    }
    if head.starts_with(b"\x7fELF") {
        return ExecKind::Elf {
            interpreter: elf_interpreter(path),
        };
    }
    ExecKind::Unknown
}

/// The `PT_INTERP` of a 64-bit little-endian ELF file.
pub(crate) fn elf_interpreter(path: &Path) -> Option<PathBuf> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let mut eh = [0u8; 64];
    f.read_exact(&mut eh).ok()?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None; // not ELF64 little-endian
    }
    let phoff = u64::from_le_bytes(eh[0x20..0x28].try_into().ok()?);
    let phentsize = u16::from_le_bytes(eh[0x36..0x38].try_into().ok()?) as u64;
    let phnum = u16::from_le_bytes(eh[0x38..0x3a].try_into().ok()?) as u64;
    if phentsize < 56 || phnum > 256 {
        return None;
    }
    for i in 0..phnum {
        let mut ph = [0u8; 56];
        f.seek(SeekFrom::Start(phoff + i * phentsize)).ok()?;
        f.read_exact(&mut ph).ok()?;
        if u32::from_le_bytes(ph[0..4].try_into().ok()?) == 3 {
            let off = u64::from_le_bytes(ph[8..16].try_into().ok()?);
            let size = u64::from_le_bytes(ph[32..40].try_into().ok()?).min(4096) as usize;
            let mut buf = vec![0u8; size];
            f.seek(SeekFrom::Start(off)).ok()?;
            f.read_exact(&mut buf).ok()?;
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return Some(PathBuf::from(
                String::from_utf8_lossy(&buf[..end]).into_owned(),
            ));
        }
    }
    None
}

/// The first non-option argument of `node`/`python`, if it names an existing file
/// (`-e`, `-c`, `-m`, `-p` mean there is no script file).
fn script_argument(args: &[String], cwd: &Path) -> Option<PathBuf> {
    for a in args {
        if matches!(a.as_str(), "-e" | "-c" | "-m" | "-p" | "--eval" | "--print") {
            return None;
        }
        if a.starts_with('-') {
            continue;
        }
        let p = if Path::new(a).is_absolute() {
            PathBuf::from(a)
        } else {
            cwd.join(a)
        };
        return std::fs::canonicalize(&p).ok().filter(|p| p.is_file());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_loader_of_a_real_binary() {
        let interp = elf_interpreter(Path::new("/bin/sh"));
        assert!(interp.is_some_and(|p| p.to_string_lossy().contains("ld-")));
    }

    #[test]
    fn follows_env_shebangs() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("tool");
        std::fs::write(&s, "#!/usr/bin/env -S sh -e\necho hi\n").unwrap();
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut f = HostFacts::default();
        follow_chain(&s, "/usr/bin:/bin", d.path(), &mut f);
        let names: Vec<_> = f
            .chain
            .iter()
            .map(|s| {
                s.invoked
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, vec!["tool", "env", "sh"]);
        assert!(matches!(
            f.chain[2].kind,
            ExecKind::Elf {
                interpreter: Some(_)
            }
        ));
    }
}
