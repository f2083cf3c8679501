//! The pin store: one JSON file (`$XDG_STATE_HOME/capjail/pins.json`, the policy's
//! `pins.file`, or `--pins FILE`) that a team can commit. Per server identity: the pinned
//! definition of each tool with its digest, and the definitions seen since that differ from
//! the pins (`pending`, what `capjail pins diff` shows and `capjail pins accept` pins).
//!
//! Read-modify-write under an exclusive `flock` on `<file>.lock`, written to a temporary file
//! and renamed over the old one, so concurrent sessions never lose each other's pins and a
//! crash never leaves half a file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) const STORE_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PinFile {
    pub(crate) version: u32,
    #[serde(default)]
    pub(crate) servers: BTreeMap<String, ServerPins>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerPins {
    /// The last `serverInfo` seen (informative: not part of the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server_info: Option<Value>,
    #[serde(default)]
    pub(crate) tools: BTreeMap<String, Pin>,
    /// Definitions seen that differ from the pins (or are new under a frozen file's
    /// reader), waiting for `capjail pins accept`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) pending: BTreeMap<String, Pin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pin {
    /// `sha256:<hex>` of the canonical pinned part (see `digest`).
    pub(crate) digest: String,
    /// The pinned part of the definition.
    pub(crate) definition: Value,
    /// When it was pinned (or, for a pending one, last seen).
    pub(crate) at: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("pin file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pin file {path} is not a capjail pin file: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "no place for the pin file: neither XDG_STATE_HOME nor HOME is set (pass --pins FILE)"
    )]
    NoDefaultLocation,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `$XDG_STATE_HOME/capjail/pins.json`, else `~/.local/state/capjail/pins.json`.
pub(crate) fn default_location(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, StoreError> {
    let state = match env("XDG_STATE_HOME").filter(|s| Path::new(s).is_absolute()) {
        Some(s) => PathBuf::from(s),
        None => PathBuf::from(
            env("HOME")
                .filter(|h| !h.is_empty())
                .ok_or(StoreError::NoDefaultLocation)?,
        )
        .join(".local/state"),
    };
    Ok(state.join("capjail").join("pins.json"))
}

/// Read the file; a missing file is an empty store.
pub(crate) fn load(path: &Path) -> Result<PinFile, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(PinFile {
                version: STORE_VERSION,
                servers: BTreeMap::new(),
            })
        }
        Err(e) => return Err(io(path)(e)),
    };
    let file: PinFile = serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if file.version != STORE_VERSION {
        return Err(StoreError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "version {} (this capjail reads {STORE_VERSION})",
                file.version
            ),
        });
    }
    Ok(file)
}

/// Apply `change` to the file under its lock and write it back (only when it changed).
/// Returns what `change` returned.
pub(crate) fn update<T>(
    path: &Path,
    change: impl FnOnce(&mut PinFile) -> T,
) -> Result<T, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let lock_path = lock_path(path);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io(&lock_path)(std::io::Error::from(e)))?;
    let mut file = load(path)?;
    let before = file.clone();
    let out = change(&mut file);
    if file != before {
        write_atomically(path, &file)?;
    }
    Ok(out)
}

fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

fn write_atomically(path: &Path, file: &PinFile) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut text = serde_json::to_vec_pretty(file).expect("serialising the pin file");
    text.push(b'\n');
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(&text).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn update_persists_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/pins.json");
        assert!(load(&p).unwrap().servers.is_empty());
        update(&p, |f| {
            f.servers.entry("k".into()).or_default().tools.insert(
                "t".into(),
                Pin {
                    digest: "sha256:x".into(),
                    definition: json!({"name":"t"}),
                    at: "now".into(),
                },
            );
        })
        .unwrap();
        let f = load(&p).unwrap();
        assert_eq!(f.servers["k"].tools["t"].digest, "sha256:x");
        std::fs::write(&p, "{\"version\":1,\"servers\":{},\"extra\":1}").unwrap();
        assert!(matches!(load(&p), Err(StoreError::Invalid { .. })));
    }

    #[test]
    fn default_location_follows_xdg() {
        let env = |k: &str| match k {
            "XDG_STATE_HOME" => Some("/s".to_string()),
            _ => Some("/h".to_string()),
        };
        assert_eq!(
            default_location(&env).unwrap(),
            PathBuf::from("/s/capjail/pins.json")
        );
        let env = |k: &str| (k == "HOME").then(|| "/h".to_string());
        assert_eq!(
            default_location(&env).unwrap(),
            PathBuf::from("/h/.local/state/capjail/pins.json")
        );
    }
}
