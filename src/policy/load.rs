//! Find and parse a policy: a built-in name or a YAML file. Errors name file, line and column.

use std::path::{Path, PathBuf};

use super::compile::{compile_in, CompileError};
use super::schema::PolicyFile;
use super::{builtin, Policy, PolicySource};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no built-in policy named `{0}` and no such file (built-in: {names})", names = builtin::names().join(", "))]
    Unknown(String),
}

/// `name_or_path`: a built-in name (`strict`), or a path to a YAML file.
pub fn load(name_or_path: &str) -> Result<Policy, PolicyError> {
    load_in(name_or_path, None)
}

/// [`load`] with `${CAPJAIL_WORKSPACE}` standing for `workspace` (`--workspace DIR`).
pub(crate) fn load_in(name_or_path: &str, workspace: Option<&Path>) -> Result<Policy, PolicyError> {
    let as_path = Path::new(name_or_path);
    let looks_like_path = name_or_path.contains('/')
        || name_or_path.ends_with(".yaml")
        || name_or_path.ends_with(".yml");
    if looks_like_path || as_path.exists() {
        if !looks_like_path && builtin::get(name_or_path).is_some() {
            // A file in the current directory named like a built-in: the built-in wins; say so.
            tracing::warn!("`{name_or_path}` is a built-in policy name; using the built-in, write ./{name_or_path} for the file");
        } else {
            return load_file_in(as_path, workspace);
        }
    }
    match builtin::get(name_or_path) {
        Some(text) => load_str_in(
            text,
            PolicySource::Builtin(name_or_path.to_string()),
            workspace,
        ),
        None => Err(PolicyError::Unknown(name_or_path.to_string())),
    }
}

pub(crate) fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    load_file_in(path, None)
}

pub(crate) fn load_file_in(path: &Path, workspace: Option<&Path>) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str_in(&text, PolicySource::File(path.to_path_buf()), workspace)
}

pub fn load_str(text: &str, source: PolicySource) -> Result<Policy, PolicyError> {
    load_str_in(text, source, None)
}

pub(crate) fn load_str_in(
    text: &str,
    source: PolicySource,
    workspace: Option<&Path>,
) -> Result<Policy, PolicyError> {
    let origin = match &source {
        PolicySource::Builtin(n) => format!("<built-in {n}>"),
        PolicySource::File(p) => p.display().to_string(),
        PolicySource::Inline => "<inline>".to_string(),
    };
    let file: PolicyFile = if text.trim().is_empty() {
        return Err(PolicyError::Invalid {
            origin,
            line: 1,
            column: 1,
            message: "the policy is empty".into(),
        });
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            // serde_yaml appends "at line X column Y"; we already print it in front.
            let msg = e.to_string();
            let message = match msg.find(" at line ") {
                Some(p) => msg[..p].to_string(),
                None => msg,
            };
            PolicyError::Syntax {
                origin: origin.clone(),
                line,
                column,
                message,
            }
        })?
    };
    compile_in(file, text.to_string(), source, workspace).map_err(|e| invalid(&origin, text, e))
}

fn invalid(origin: &str, text: &str, e: CompileError) -> PolicyError {
    let (line, column) = locate(text, &e);
    PolicyError::Invalid {
        origin: origin.to_string(),
        line,
        column,
        message: e.to_string(),
    }
}

/// Best-effort position of a semantic error: the line holding the offending value, else the
/// line of the last key of its path.
fn locate(text: &str, e: &CompileError) -> (usize, usize) {
    let needles: Vec<String> = e
        .value
        .iter()
        .cloned()
        .chain(e.key.rsplit('.').next().map(|k| {
            let k = k.split('[').next().unwrap_or(k);
            format!("{k}:")
        }))
        .collect();
    for needle in needles.iter().filter(|n| !n.is_empty()) {
        for (i, line) in text.lines().enumerate() {
            if let Some(col) = line.find(needle.as_str()) {
                return (i + 1, col + 1);
            }
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_line_and_column() {
        let text = "name: x\nnetwork:\n  mode: none\n  allowed_host: [a]\n";
        let e = load_str(text, PolicySource::File("p.yaml".into())).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("p.yaml:4:"), "{s}");
        assert!(s.contains("unknown field `allowed_host`"), "{s}");
    }

    #[test]
    fn semantic_errors_are_located() {
        let text =
            "name: x\nnetwork:\n  mode: allowlist\n  allowed_hosts:\n    - http://bad.example/\n";
        let e = load_str(text, PolicySource::File("p.yaml".into())).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("p.yaml:5:7: network.allowed_hosts[0]"), "{s}");
    }

    #[test]
    fn unknown_name() {
        assert!(matches!(
            load("no-such-policy"),
            Err(PolicyError::Unknown(_))
        ));
    }
}
