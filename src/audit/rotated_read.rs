//! Reading a log as its whole rotated set (see `rotated` for the layout): `show` and `replay`
//! see every record still kept, oldest first, the way `verify` checks them.

use std::path::{Path, PathBuf};

use super::rotated;
use super::AuditError;

/// The files of `live`'s set that exist, oldest first (the live file last).
pub(crate) fn set_files(live: &Path) -> Vec<PathBuf> {
    let set = rotated::set_of(live);
    let n = set.len();
    set.into_iter()
        .enumerate()
        .filter(|(i, p)| *i + 1 == n || p.exists())
        .map(|(_, p)| p)
        .collect()
}

/// The records of the whole set as one stream, oldest first (a missing rotated file is
/// skipped here; `verify` names it). Fails when the live file cannot be read.
pub(crate) fn read_set(live: &Path) -> Result<Vec<u8>, AuditError> {
    let mut data = Vec::new();
    for p in set_files(live) {
        let bytes = std::fs::read(&p).map_err(|source| AuditError::Io {
            path: p.clone(),
            source,
        })?;
        data.extend_from_slice(&bytes);
        if !data.is_empty() && !data.ends_with(b"\n") {
            data.push(b'\n');
        }
    }
    Ok(data)
}

/// The first break of the set's chain (`FILE: message`), as `verify` finds it.
pub(crate) fn set_break(live: &Path) -> Option<String> {
    super::rotated_verify::verify_set(live)
        .into_iter()
        .find_map(|r| {
            r.error
                .map(|b| format!("{}: {}", r.path.display(), b.message))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_is_read_oldest_first_and_gaps_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let live = t.path().join("a.jsonl");
        std::fs::write(t.path().join("a.jsonl.3"), "three\n").unwrap();
        std::fs::write(t.path().join("a.jsonl.1"), "one").unwrap();
        std::fs::write(&live, "live\n").unwrap();
        assert_eq!(read_set(&live).unwrap(), b"three\none\nlive\n");
        assert_eq!(set_files(&live).len(), 3);
        std::fs::remove_file(&live).unwrap();
        assert!(read_set(&live).is_err());
    }
}
