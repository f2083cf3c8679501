//! A log as a SET of files, and its head file (pure parts and the file names).
//!
//! Rotation (policy `audit.max_bytes`, `audit.keep`): when the live file `audit.jsonl` has
//! reached `max_bytes`, the writer moves it to `audit.jsonl.1` (older ones to `.2`, `.3`, ...;
//! beyond `keep` they are deleted) and starts a new live file whose first record, of kind
//! `rotation`, continues the chain: its `prev` is the hash of the last record of the file
//! before and its `seq` the next number. `verify FILE` checks the whole set, oldest first, and
//! that each file begins where the one before ended: a missing or replaced file breaks it.
//!
//! The head file `audit.jsonl.head` holds the `seq` and `hash` of the last record written
//! (rewritten in place under the log's lock: after every batch, or, when the audit queue's
//! batches keep the lock between them (`writer`), once when the lock is given back, within
//! `queue::LINGER` of taking it). `verify` compares the end of the live file with it: records
//! deleted from the end are detected unless the head file was rewritten too; the records of
//! the last `queue::LINGER` before a crash may be past the head file (a head file behind the
//! log is accepted, as after any crash between a write and the head's).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Default `audit.max_bytes`: 64 MiB.
pub(crate) const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default `audit.keep`: rotated files kept besides the live one.
pub(crate) const DEFAULT_KEEP: usize = 4;

/// How the writer rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rotation {
    pub(crate) max_bytes: u64,
    pub(crate) keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP,
        }
    }
}

/// `audit.jsonl.N`.
pub(crate) fn rotated_name(live: &Path, n: usize) -> PathBuf {
    let mut s = live.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// `audit.jsonl.head`.
pub(crate) fn head_path(live: &Path) -> PathBuf {
    let mut s = live.as_os_str().to_owned();
    s.push(".head");
    PathBuf::from(s)
}

/// The set, oldest first, ending with `live`: every `live.N` that exists up to the highest N
/// found (a gap is returned as a missing path, so verify can name it).
pub(crate) fn set_of(live: &Path) -> Vec<PathBuf> {
    let dir = live
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = live.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return vec![live.to_path_buf()];
    };
    let mut highest = 0usize;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = f
                .strip_prefix(&format!("{name}."))
                .and_then(|n| n.parse::<usize>().ok())
            {
                highest = highest.max(n);
            }
        }
    }
    let mut out: Vec<PathBuf> = (1..=highest).rev().map(|n| rotated_name(live, n)).collect();
    out.push(live.to_path_buf());
    out
}

/// The `rotation` record that opens a new live file.
pub(crate) fn rotation_record(
    session: &str,
    previous_file: &Path,
    max_bytes: u64,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("v".into(), super::event::FORMAT_VERSION.into());
    m.insert("kind".into(), "rotation".into());
    m.insert("session".into(), session.into());
    m.insert(
        "previous_file".into(),
        previous_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .into(),
    );
    m.insert("max_bytes".into(), max_bytes.into());
    m.insert(
        "reason".into(),
        "the live file reached audit.max_bytes; the chain continues from the previous file".into(),
    );
    m
}

/// The head file's fixed-size text (same length for every seq, so it is rewritten in place).
pub(crate) fn encode_head(seq: u64, hash: &str) -> Vec<u8> {
    format!("capjail-audit-head v1 seq {seq:020} hash {hash}\n").into_bytes()
}

/// `(seq, hash)` from a head file's bytes.
pub(crate) fn parse_head(bytes: &[u8]) -> Option<(u64, String)> {
    let s = std::str::from_utf8(bytes).ok()?.trim_end();
    let rest = s.strip_prefix("capjail-audit-head v1 seq ")?;
    let (seq, hash) = rest.split_once(" hash ")?;
    let hash = hash.trim();
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Some((seq.parse().ok()?, hash.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trips_at_a_fixed_size() {
        let h = "ab".repeat(32);
        let a = encode_head(1, &h);
        let b = encode_head(u64::MAX, &h);
        assert_eq!(a.len(), b.len());
        assert_eq!(parse_head(&a), Some((1, h.clone())));
        assert_eq!(parse_head(&b), Some((u64::MAX, h)));
        assert_eq!(parse_head(b"junk"), None);
    }

    #[test]
    fn sets_are_oldest_first_and_gaps_are_kept() {
        let t = tempfile::tempdir().unwrap();
        let live = t.path().join("a.jsonl");
        for n in [
            "a.jsonl",
            "a.jsonl.1",
            "a.jsonl.3",
            "a.jsonl.head",
            "a.jsonl.x",
        ] {
            std::fs::write(t.path().join(n), "").unwrap();
        }
        let names: Vec<String> = set_of(&live)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.jsonl.3", "a.jsonl.2", "a.jsonl.1", "a.jsonl"]);
    }
}
