//! `verify` over a rotated set and against the head file (see `rotated` for the layout).

use std::path::{Path, PathBuf};

use super::canon::{parse_line, GENESIS};
use super::rotated;
use super::verify::{brk, short, split_lines, verify_file, Break, BreakKind, FileReport};

/// Reports for `path`'s whole set, oldest first (one report when it has no rotated files).
pub(crate) fn verify_set(path: &Path) -> Vec<FileReport> {
    let set = rotated::set_of(path);
    let mut out: Vec<FileReport> = Vec::with_capacity(set.len());
    for (i, p) in set.iter().enumerate() {
        let mut r = if p.exists() || i + 1 == set.len() {
            verify_file(p)
        } else {
            missing(p, path)
        };
        if r.error.is_none() {
            match out.last() {
                Some(before)
                    if before.error.is_none()
                        && r.anchor != (before.head.clone(), before.last_seq) =>
                {
                    r.error = Some(discontinuity(&r, before));
                }
                Some(_) => {} // continuous, or the file before is already reported
                None if r.anchor.0 != GENESIS => r.warnings.push(format!(
                    "the chain starts in an earlier file that is not here (seq {} and before): \
                     audit.keep deletes the oldest file on rotation; deleting it by hand looks the same",
                    r.anchor.1
                )),
                None => {}
            }
        }
        out.push(r);
    }
    // A session that ends in a later file of the set is not open.
    for i in 0..out.len().saturating_sub(1) {
        let later: Vec<Vec<u8>> = set[i + 1..]
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .collect();
        out[i].warnings.retain(|w| {
            let id = w
                .strip_prefix("session ")
                .and_then(|r| r.split_whitespace().next());
            match id.filter(|_| w.contains("has no session_end")) {
                Some(id) => !later.iter().any(|d| ended_in(d, id)),
                None => true,
            }
        });
    }
    if let Some(live) = out.last_mut() {
        if live.error.is_none() {
            live.error = check_head(live);
        }
    }
    out
}

fn ended_in(data: &[u8], session: &str) -> bool {
    split_lines(data).iter().any(|l| {
        parse_line(l.bytes).is_ok_and(|r| {
            r.kind == "session_end"
                && r.record.get("session").and_then(|v| v.as_str()) == Some(session)
        })
    })
}

fn missing(p: &Path, live: &Path) -> FileReport {
    FileReport {
        path: p.to_path_buf(),
        head: GENESIS.into(),
        anchor: (GENESIS.into(), 0),
        error: Some(Break {
            line: 0,
            kind: BreakKind::MissingFile,
            message: format!(
                "missing: the rotated set of {} has older and newer files but not this one",
                live.display()
            ),
        }),
        ..FileReport::default()
    }
}

fn discontinuity(r: &FileReport, before: &FileReport) -> Break {
    brk(
        1,
        BreakKind::MissingFile,
        format!(
            "does not continue {}: this file starts after seq {} ({}) but that file ends at seq {} ({}): \
             a file between them is missing, or one was replaced",
            before.path.display(),
            r.anchor.1,
            short(&r.anchor.0),
            before.last_seq,
            short(&before.head)
        ),
    )
}

/// Compare the end of the live file with its head file, when there is one.
fn check_head(live: &FileReport) -> Option<Break> {
    let head_path = rotated::head_path(&live.path);
    let bytes = std::fs::read(&head_path).ok()?;
    let Some((seq, hash)) = rotated::parse_head(&bytes) else {
        return Some(brk(
            0,
            BreakKind::Truncated,
            format!("{} is not a head file", head_path.display()),
        ));
    };
    if seq > live.last_seq {
        return Some(brk(
            lines_in(&live.path) + 1,
            BreakKind::Truncated,
            format!(
                "truncated: {} names record seq {seq} ({}) but the file ends at seq {}: {} record(s) \
                 were removed from its end",
                head_path.display(),
                short(&hash),
                live.last_seq,
                seq - live.last_seq
            ),
        ));
    }
    match hash_of_seq(&live.path, seq) {
        Some((_, h)) if h == hash => None,
        Some((line, h)) => Some(brk(
            line,
            BreakKind::Truncated,
            format!(
                "record seq {seq} hashes to {} but {} names {}: records from here on were replaced",
                short(&h),
                head_path.display(),
                short(&hash)
            ),
        )),
        // The head names a record before this file began (e.g. the file was just rotated).
        None => None,
    }
}

fn lines_in(p: &PathBuf) -> usize {
    std::fs::read(p).map(|d| split_lines(&d).len()).unwrap_or(0)
}

/// (line, hash) of the record with this seq.
fn hash_of_seq(p: &Path, seq: u64) -> Option<(usize, String)> {
    let data = std::fs::read(p).ok()?;
    split_lines(&data)
        .iter()
        .filter(|l| l.terminated)
        .find_map(|l| {
            parse_line(l.bytes)
                .ok()
                .filter(|r| r.seq == seq)
                .map(|r| (l.no, r.hash))
        })
}
