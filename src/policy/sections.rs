//! The kernel, environment and audit sections compiled: defaults applied, paths and values
//! expanded once (with the environment compilation was given, `--workspace` included), so the
//! kernel layer, the environment filter and the audit log never read the file as written.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::compile::CompileError;
use super::schema::{AuditSection, EnvironmentSection, KernelSection, PolicyFile, RlimitsSection};

/// A path of `kernel.extra_read` / `kernel.extra_write` / `network.unix_sockets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtraPath {
    /// As written in the policy (for messages).
    pub(crate) written: String,
    /// Expanded, absolute, lexically normalised.
    pub(crate) path: PathBuf,
}

/// `kernel:` compiled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KernelPolicy {
    /// `kernel.require` (default false).
    pub(crate) require: bool,
    /// `kernel.namespaces` (default true).
    pub(crate) namespaces: bool,
    pub(crate) extra_read: Vec<ExtraPath>,
    pub(crate) extra_write: Vec<ExtraPath>,
    /// `network.unix_sockets`: the pathname sockets the kernel layer lets the server reach.
    pub(crate) unix_sockets: Vec<ExtraPath>,
    pub(crate) rlimits: RlimitsSection,
}

/// `environment:` compiled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct EnvironmentPolicy {
    /// Names or `PREFIX_*` patterns passed besides the defaults.
    pub(crate) allow: Vec<String>,
    /// Variables set for the server, values expanded.
    pub(crate) set: BTreeMap<String, String>,
    pub(crate) inherit_all: bool,
}

/// `audit:` compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditPolicy {
    /// `audit.path` expanded (absolute); `None`: the default location.
    pub(crate) path: Option<ExtraPath>,
    pub(crate) allow_off: bool,
    pub(crate) fsync: bool,
    /// Extra argument names to redact.
    pub(crate) redact: Vec<String>,
    pub(crate) max_bytes: u64,
    pub(crate) keep: usize,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        let r = crate::audit::rotated::Rotation::default();
        AuditPolicy {
            path: None,
            allow_off: true,
            fsync: false,
            redact: Vec::new(),
            max_bytes: r.max_bytes,
            keep: r.keep,
        }
    }
}

/// How compile.rs expands a path (`~`, variables, absolute, the implicit-workspace check).
pub(crate) type PathFn<'a> = &'a dyn Fn(&str) -> Result<PathBuf, String>;

fn err(key: String, value: &str, message: String) -> CompileError {
    CompileError {
        key,
        value: Some(value.to_string()),
        message,
    }
}

fn paths(key: &str, list: &[String], path: PathFn) -> Result<Vec<ExtraPath>, CompileError> {
    list.iter()
        .enumerate()
        .map(|(i, w)| {
            Ok(ExtraPath {
                written: w.clone(),
                path: path(w).map_err(|m| err(format!("{key}[{i}]"), w, m))?,
            })
        })
        .collect()
}

pub(crate) fn compile_kernel(
    file: &PolicyFile,
    path: PathFn,
) -> Result<KernelPolicy, CompileError> {
    let k = file.kernel.clone().unwrap_or_default();
    let KernelSection {
        require,
        extra_read,
        extra_write,
        namespaces,
        rlimits,
    } = k;
    let unix = file
        .network
        .as_ref()
        .map(|n| n.unix_sockets.clone())
        .unwrap_or_default();
    Ok(KernelPolicy {
        require: require.unwrap_or(false),
        namespaces: namespaces.unwrap_or(true),
        extra_read: paths("kernel.extra_read", &extra_read, path)?,
        extra_write: paths("kernel.extra_write", &extra_write, path)?,
        unix_sockets: paths("network.unix_sockets", &unix, path)?,
        rlimits,
    })
}

pub(crate) fn compile_environment(
    section: Option<&EnvironmentSection>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EnvironmentPolicy, CompileError> {
    let Some(s) = section else {
        return Ok(EnvironmentPolicy::default());
    };
    for (i, a) in s.allow.iter().enumerate() {
        let ok = !a.is_empty()
            && a.trim_end_matches('*')
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !a[..a.len() - 1].contains('*');
        if !ok {
            return Err(err(
                format!("environment.allow[{i}]"),
                a,
                format!("`{a}` is not a variable name or a `PREFIX_*` pattern"),
            ));
        }
    }
    let mut set = BTreeMap::new();
    for (k, v) in &s.set {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(err(
                format!("environment.set.{k}"),
                k,
                format!("`{k}` is not a variable name"),
            ));
        }
        let value = super::expand::expand_with(v, env)
            .map_err(|e| err(format!("environment.set.{k}"), v, e.to_string()))?;
        set.insert(k.clone(), value);
    }
    Ok(EnvironmentPolicy {
        allow: s.allow.clone(),
        set,
        inherit_all: s.inherit_all,
    })
}

pub(crate) fn compile_audit(
    section: Option<&AuditSection>,
    path: PathFn,
) -> Result<AuditPolicy, CompileError> {
    let d = AuditPolicy::default();
    let Some(a) = section else {
        return Ok(d);
    };
    let path = match &a.path {
        Some(w) => Some(ExtraPath {
            written: w.clone(),
            path: path(w).map_err(|m| err("audit.path".into(), w, m))?,
        }),
        None => None,
    };
    Ok(AuditPolicy {
        path,
        allow_off: a.allow_off.unwrap_or(d.allow_off),
        fsync: a.fsync.unwrap_or(d.fsync),
        redact: a.redact.clone(),
        max_bytes: a.max_bytes.unwrap_or(d.max_bytes),
        keep: a.keep.unwrap_or(d.keep),
    })
}

impl KernelPolicy {
    /// Back to the schema (what `capjail policy show` prints), defaults written out.
    pub(crate) fn section(&self) -> KernelSection {
        KernelSection {
            require: Some(self.require),
            namespaces: Some(self.namespaces),
            extra_read: self.extra_read.iter().map(|p| p.written.clone()).collect(),
            extra_write: self.extra_write.iter().map(|p| p.written.clone()).collect(),
            rlimits: self.rlimits.clone(),
        }
    }
}

impl EnvironmentPolicy {
    pub(crate) fn section(&self) -> EnvironmentSection {
        EnvironmentSection {
            allow: self.allow.clone(),
            set: self.set.clone(),
            inherit_all: self.inherit_all,
        }
    }
}

impl AuditPolicy {
    pub(crate) fn section(&self) -> AuditSection {
        AuditSection {
            path: self.path.as_ref().map(|p| p.written.clone()),
            allow_off: Some(self.allow_off),
            fsync: Some(self.fsync),
            redact: self.redact.clone(),
            max_bytes: Some(self.max_bytes),
            keep: Some(self.keep),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{load_str, PolicySource};

    fn error(text: &str) -> String {
        load_str(text, PolicySource::File("p.yaml".into()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn kernel_errors_are_located() {
        let s = error("name: x\nkernel:\n  rlimits:\n    nofil: 10\n");
        assert!(s.starts_with("p.yaml:4:5: "), "{s}");
        assert!(s.contains("unknown field `nofil`"), "{s}");
        let s = error("name: x\nkernel:\n  requires: true\n");
        assert!(
            s.starts_with("p.yaml:3:3: ") && s.contains("`requires`"),
            "{s}"
        );
        let s = error("name: x\nkernel:\n  extra_read:\n    - relative/dir\n");
        assert!(s.starts_with("p.yaml:4:7: kernel.extra_read[0]"), "{s}");
        let s = error("name: x\nkernel:\n  rlimits:\n    nofile: -1\n");
        assert!(s.starts_with("p.yaml:4:"), "{s}");
    }

    #[test]
    fn environment_errors_are_located() {
        let s = error("name: x\nenvironment:\n  alow: [A]\n");
        assert!(s.starts_with("p.yaml:3:3: ") && s.contains("`alow`"), "{s}");
        let s = error("name: x\nenvironment:\n  allow: [\"A B\"]\n");
        assert!(
            s.starts_with("p.yaml:3:") && s.contains("environment.allow[0]"),
            "{s}"
        );
        let s = error("name: x\nenvironment:\n  set:\n    X: ${UNSET_CAPJAIL_TEST_VAR}\n");
        assert!(
            s.starts_with("p.yaml:4:") && s.contains("environment.set.X"),
            "{s}"
        );
    }

    #[test]
    fn audit_errors_are_located() {
        let s = error("name: x\naudit:\n  keep: 2\n  fsyn: true\n");
        assert!(s.starts_with("p.yaml:4:3: ") && s.contains("`fsyn`"), "{s}");
        let s = error("name: x\naudit:\n  path: logs/a.jsonl\n");
        assert!(s.starts_with("p.yaml:3:9: audit.path"), "{s}");
    }

    #[test]
    fn the_schema_reflects_the_typed_sections() {
        let schema = schemars::schema_for!(crate::policy::PolicyFile);
        let text = serde_json::to_string(&schema).unwrap();
        assert!(text.contains("RlimitsSection"), "{text}");
        for key in ["nofile", "nproc", "as_bytes", "fsize_bytes", "cpu_seconds"] {
            assert!(text.contains(&format!("\"{key}\"")), "{key}");
        }
    }

    #[test]
    fn defaults_and_expansion() {
        let text = "name: x\nkernel:\n  extra_read: [\"${CAPJAIL_WORKSPACE}/t\"]\n  rlimits: {nofile: 9}\nenvironment:\n  set: {W: \"${CAPJAIL_WORKSPACE}\"}\n";
        let env = |k: &str| (k == "CAPJAIL_WORKSPACE").then(|| "/srv/w".to_string());
        let file = serde_yaml::from_str(text).unwrap();
        let p = crate::policy::compile::compile_with(file, text.into(), PolicySource::Inline, &env)
            .unwrap();
        assert_eq!(
            p.kernel.extra_read[0].path,
            std::path::Path::new("/srv/w/t")
        );
        assert_eq!(p.kernel.rlimits.nofile, Some(9));
        assert!(!p.kernel.require && p.kernel.namespaces);
        assert_eq!(p.environment.set["W"], "/srv/w");
        assert!(p.audit.allow_off && !p.audit.fsync && p.audit.path.is_none());
    }
}
