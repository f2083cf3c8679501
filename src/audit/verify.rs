//! `capjail audit verify`: check the hash chain of one or more files.
//!
//! Each file is its own chain (anchored at [`GENESIS`]). The report names the FIRST break with
//! its 1-based line number and what happened there. Lines that are not records are accepted
//! only as recovered torn lines: the next record must be a `recovery` record naming exactly
//! their byte ranges (offset, length, sha256). A torn last line is an error (the file ends
//! mid-record); it stops being one once a later session has chained over it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::canon::{chain_hash, parse_line, sha256_hex, ParsedLine, GENESIS};

/// The known record kinds.
pub(crate) const KINDS: &[&str] = &[
    "session_start",
    "decision",
    "approval",
    "response_filter",
    "session_end",
    "recovery",
    "tool_trust",
    "rotation",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakKind {
    /// The record does not hash to its stored hash.
    Edited,
    /// Records are missing before this line.
    Deleted,
    /// This line does not belong to the chain; the chain continues after it.
    Inserted,
    /// Records are out of order.
    Reordered,
    /// A line appears twice.
    Duplicated,
    /// `prev` does not match, for no more specific reason (e.g. the previous line replaced
    /// with a recomputed hash).
    ChainBroken,
    /// The sequence number is wrong although the links are right.
    Sequence,
    /// The file ends in an incomplete line.
    TornTail,
    /// A line that is not a record and that no recovery record accounts for.
    InvalidRecord,
    /// The file could not be read.
    Unreadable,
    /// Records were removed from the end: the head file names a later record.
    Truncated,
    /// A file of a rotated set is missing, or does not continue the one before it.
    MissingFile,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Break {
    /// 1-based line number (0 when the file could not be read).
    pub(crate) line: usize,
    pub(crate) kind: BreakKind,
    /// The full sentence, starting with `line N: `.
    pub(crate) message: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct FileReport {
    pub(crate) path: PathBuf,
    /// Records accepted before the first break (or all of them).
    pub(crate) records: u64,
    pub(crate) counts: BTreeMap<String, u64>,
    /// The hash of the last accepted record.
    pub(crate) head: String,
    /// The seq of the last accepted record.
    pub(crate) last_seq: u64,
    /// Where the chain of this file starts: GENESIS and 0, or a `rotation` record's `prev`
    /// and `seq - 1` (the end of the file before it in a rotated set).
    pub(crate) anchor: (String, u64),
    pub(crate) warnings: Vec<String>,
    pub(crate) error: Option<Break>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct VerifyReport {
    pub(crate) files: Vec<FileReport>,
}

impl VerifyReport {
    pub(crate) fn ok(&self) -> bool {
        self.files.iter().all(|f| f.error.is_none())
    }
    /// 0 when every file verifies, 1 otherwise.
    pub(crate) fn exit_code(&self) -> i32 {
        if self.ok() {
            0
        } else {
            1
        }
    }
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            let p = f.path.display();
            for w in &f.warnings {
                let _ = writeln!(out, "{p}: warning: {w}");
            }
            match &f.error {
                Some(b) => {
                    let _ = writeln!(out, "{p}: {}", b.message);
                }
                None => {
                    let counts: Vec<String> =
                        f.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
                    let _ = writeln!(
                        out,
                        "{p}: OK, {} records ({}), head {}",
                        f.records,
                        counts.join(", "),
                        short(&f.head)
                    );
                }
            }
        }
        out
    }
}

/// Verify each file; a live file with rotated files beside it (`FILE.1`, `FILE.2`, ...) is
/// verified as a whole set, and against its head file `FILE.head` (see `rotated`).
pub(crate) fn verify(paths: &[PathBuf]) -> VerifyReport {
    let mut files = Vec::new();
    for p in paths {
        files.extend(super::rotated_verify::verify_set(p));
    }
    VerifyReport { files }
}

pub(crate) fn verify_file(path: &Path) -> FileReport {
    match std::fs::read(path) {
        Ok(data) => FileReport {
            path: path.to_path_buf(),
            ..verify_bytes(&data)
        },
        Err(e) => FileReport {
            path: path.to_path_buf(),
            head: GENESIS.into(),
            anchor: (GENESIS.into(), 0),
            error: Some(Break {
                line: 0,
                kind: BreakKind::Unreadable,
                message: format!("cannot read: {e}"),
            }),
            ..FileReport::default()
        },
    }
}

/// One physical line of the file.
#[derive(Debug)]
pub(crate) struct RawLine<'a> {
    pub(crate) no: usize,
    pub(crate) offset: u64,
    /// Without the `\n`.
    pub(crate) bytes: &'a [u8],
    pub(crate) terminated: bool,
}

/// Split into lines, keeping offsets (pure).
pub(crate) fn split_lines(data: &[u8]) -> Vec<RawLine<'_>> {
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < data.len() {
        let (end, terminated) = match data[start..].iter().position(|&b| b == b'\n') {
            Some(p) => (start + p, true),
            None => (data.len(), false),
        };
        out.push(RawLine {
            no: out.len() + 1,
            offset: start as u64,
            bytes: &data[start..end],
            terminated,
        });
        start = end + 1;
    }
    out
}

/// A line read as a record, or why it is not one. An unterminated line is never a record.
fn read_record(l: &RawLine) -> Result<ParsedLine, String> {
    let p = parse_line(l.bytes)?;
    if !l.terminated {
        return Err("no newline at the end".into());
    }
    Ok(p)
}

/// Verify a whole file's bytes (pure).
pub(crate) fn verify_bytes(data: &[u8]) -> FileReport {
    let lines = split_lines(data);
    let parsed: Vec<Result<ParsedLine, String>> = lines.iter().map(read_record).collect();
    let mut v = Verifier::new(&lines, &parsed);
    // A file that starts with a `rotation` record continues the chain of the file before it.
    if let Some(Ok(first)) = parsed.iter().find(|p| p.is_ok()) {
        if first.kind == "rotation" && first.seq > 0 {
            v.prev_hash = first.prev.clone();
            v.last_seq = first.seq - 1;
        }
    }
    let anchor = (v.prev_hash.clone(), v.last_seq);
    let error = v.run();
    let mut warnings = v.warnings;
    if error.is_none() {
        for (s, line) in &v.open_sessions {
            warnings.push(format!("session {s} (started at line {line}) has no session_end: still running, killed, or its last records were removed"));
        }
    }
    FileReport {
        path: PathBuf::new(),
        records: v.records,
        counts: v.counts,
        head: v.prev_hash,
        last_seq: v.last_seq,
        anchor,
        warnings,
        error,
    }
}

struct Verifier<'a> {
    lines: &'a [RawLine<'a>],
    parsed: &'a [Result<ParsedLine, String>],
    /// Accepted records: (line, hash), in order.
    chain: Vec<(usize, String)>,
    prev_hash: String,
    last_seq: u64,
    records: u64,
    counts: BTreeMap<String, u64>,
    warnings: Vec<String>,
    /// Every record's seq -> its first line (for "reordered").
    seq_lines: HashMap<u64, usize>,
    /// Every accepted hash -> line.
    seen: HashMap<String, usize>,
    /// Every record's stored hash -> its first line.
    hash_lines: HashMap<String, usize>,
    open_sessions: BTreeMap<String, usize>,
}

impl<'a> Verifier<'a> {
    fn new(lines: &'a [RawLine<'a>], parsed: &'a [Result<ParsedLine, String>]) -> Self {
        let (mut seq_lines, mut hash_lines) = (HashMap::new(), HashMap::new());
        for (l, p) in lines.iter().zip(parsed) {
            if let Ok(p) = p {
                seq_lines.entry(p.seq).or_insert(l.no);
                hash_lines.entry(p.hash.clone()).or_insert(l.no);
            }
        }
        Verifier {
            lines,
            parsed,
            chain: Vec::new(),
            prev_hash: GENESIS.into(),
            last_seq: 0,
            records: 0,
            counts: BTreeMap::new(),
            warnings: Vec::new(),
            seq_lines,
            seen: HashMap::new(),
            hash_lines,
            open_sessions: BTreeMap::new(),
        }
    }

    fn run(&mut self) -> Option<Break> {
        let mut pending: Vec<usize> = Vec::new(); // indexes of lines that are not records
        for i in 0..self.lines.len() {
            let p = match &self.parsed[i] {
                Err(_) => {
                    pending.push(i);
                    continue;
                }
                Ok(p) => p,
            };
            if !pending.is_empty() {
                if let Err(b) = self.check_recovered(&pending, i, p) {
                    return Some(b);
                }
                pending.clear();
            }
            if let Some(b) = self.check_record(i, p) {
                return Some(b);
            }
            self.accept(i, p);
        }
        let first = *pending.first()?;
        let last = &self.lines[*pending.last()?];
        if !last.terminated {
            return Some(brk(last.no, BreakKind::TornTail, format!(
                "torn tail: the last line is incomplete ({} bytes at offset {}, no newline): a writer stopped mid-record or the file was truncated",
                last.bytes.len(), last.offset
            )));
        }
        Some(self.invalid(first))
    }

    fn invalid(&self, i: usize) -> Break {
        let why = self.parsed[i].as_ref().err().cloned().unwrap_or_default();
        brk(
            self.lines[i].no,
            BreakKind::InvalidRecord,
            format!("not an audit record ({why}), and no recovery record accounts for it"),
        )
    }

    /// Lines `pending` were not records; record `i` must be a recovery naming them.
    fn check_recovered(
        &mut self,
        pending: &[usize],
        i: usize,
        p: &ParsedLine,
    ) -> Result<(), Break> {
        let named: Vec<(u64, u64, String)> = match (
            p.kind.as_str(),
            p.record.get("torn").and_then(Value::as_array),
        ) {
            ("recovery", Some(list)) => list
                .iter()
                .map(|t| {
                    (
                        t.get("offset").and_then(Value::as_u64).unwrap_or(u64::MAX),
                        t.get("length").and_then(Value::as_u64).unwrap_or(u64::MAX),
                        t.get("sha256")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect(),
            _ => return Err(self.invalid(pending[0])),
        };
        let actual: Vec<(u64, u64, String)> = pending
            .iter()
            .map(|&j| {
                (
                    self.lines[j].offset,
                    self.lines[j].bytes.len() as u64,
                    sha256_hex(self.lines[j].bytes),
                )
            })
            .collect();
        if named != actual {
            return Err(brk(
                self.lines[i].no,
                BreakKind::Edited,
                format!(
                    "recovery record names torn bytes {} but the lines before it are {}",
                    ranges(&named),
                    ranges(&actual)
                ),
            ));
        }
        for &j in pending {
            let l = &self.lines[j];
            self.warnings.push(format!(
                "line {}: torn line ({} bytes at offset {}), recovered by line {}",
                l.no,
                l.bytes.len(),
                l.offset,
                self.lines[i].no
            ));
        }
        Ok(())
    }

    /// Is record `i` the next link of the chain? If not, say precisely what is wrong.
    fn check_record(&self, i: usize, p: &ParsedLine) -> Option<Break> {
        let no = self.lines[i].no;
        let computed = chain_hash(&p.prev, &p.body);
        if computed != p.hash {
            return Some(brk(
                no,
                BreakKind::Edited,
                format!(
                    "record edited: stored hash {} but the record hashes to {}",
                    short(&p.hash),
                    short(&computed)
                ),
            ));
        }
        let expected_seq = self.last_seq + 1;
        if p.prev != self.prev_hash {
            return Some(self.classify_link(i, p, expected_seq));
        }
        if p.seq != expected_seq {
            return Some(brk(no, BreakKind::Sequence, format!("sequence number {} but expected {expected_seq} (the links are intact: the record was rewritten with a recomputed hash)", p.seq)));
        }
        None
    }

    fn classify_link(&self, i: usize, p: &ParsedLine, expected_seq: u64) -> Break {
        let no = self.lines[i].no;
        let last_line = self.chain.last().map(|c| c.0);
        let prev_desc = match last_line {
            Some(l) => format!("the hash of line {l} ({})", short(&self.prev_hash)),
            None => format!("the genesis value ({})", short(GENESIS)),
        };
        // A copy of the line before.
        if self.chain.last().is_some_and(|c| c.1 == p.hash) {
            return brk(
                no,
                BreakKind::Duplicated,
                format!("duplicate of line {}", last_line.unwrap_or(0)),
            );
        }
        // Out of order: this record follows one that comes later in the file.
        if let Some(&later) = self.hash_lines.get(&p.prev).filter(|&&l| l > no) {
            return brk(no, BreakKind::Reordered, format!(
                "records out of order: this record (seq {}) continues the chain from line {later}, further down", p.seq
            ));
        }
        // This line is foreign and the next record continues from the line before it.
        if let Some(next) = self.next_record(i) {
            if next.prev == self.prev_hash {
                return brk(no, BreakKind::Inserted, format!(
                    "inserted record: its prev {} is not {prev_desc}, and the next record continues the chain from there",
                    short(&p.prev)
                ));
            }
        }
        // Lines after an earlier record are foreign: this one continues from it.
        if let Some(&from) = self.seen.get(&p.prev) {
            let first_foreign = self
                .chain
                .iter()
                .position(|c| c.0 == from)
                .map(|k| self.chain[k + 1].0)
                .unwrap_or(from + 1);
            let foreign = if first_foreign + 1 == no {
                format!("line {first_foreign} does")
            } else {
                format!("lines {first_foreign}..{} do", no - 1)
            };
            return brk(first_foreign, BreakKind::Inserted, format!(
                "inserted record(s): line {no} continues the chain from line {from}, so {foreign} not belong to it"
            ));
        }
        // Out of order: a record moved down past others.
        if p.seq < expected_seq && self.seq_lines.get(&p.seq).is_some_and(|&l| l < no) {
            return brk(
                no,
                BreakKind::Reordered,
                format!(
                    "records out of order: seq {} here, after seq {} (line {} already has seq {})",
                    p.seq, self.last_seq, self.seq_lines[&p.seq], p.seq
                ),
            );
        }
        if p.seq > expected_seq {
            let n = p.seq - expected_seq;
            return brk(no, BreakKind::Deleted, format!(
                "{n} record(s) deleted before this line: seq jumps from {} to {}, and prev {} is not {prev_desc}",
                self.last_seq, p.seq, short(&p.prev)
            ));
        }
        brk(no, BreakKind::ChainBroken, format!(
            "chain broken: prev {} is not {prev_desc}: {} was replaced (hash recomputed), or records were deleted and renumbered",
            short(&p.prev),
            last_line.map(|l| format!("line {l}")).unwrap_or_else(|| "the first record".into())
        ))
    }

    fn next_record(&self, i: usize) -> Option<&ParsedLine> {
        self.parsed[i + 1..].iter().find_map(|p| p.as_ref().ok())
    }

    fn accept(&mut self, i: usize, p: &ParsedLine) {
        let no = self.lines[i].no;
        self.chain.push((no, p.hash.clone()));
        self.seen.insert(p.hash.clone(), no);
        self.prev_hash = p.hash.clone();
        self.last_seq = p.seq;
        self.records += 1;
        *self.counts.entry(p.kind.clone()).or_default() += 1;
        if !KINDS.contains(&p.kind.as_str()) {
            self.warnings
                .push(format!("line {no}: unknown record kind `{}`", p.kind));
        }
        let session = p
            .record
            .get("session")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match p.kind.as_str() {
            "session_start" => {
                self.open_sessions.insert(session, no);
            }
            "session_end" => {
                self.open_sessions.remove(&session);
            }
            _ => {}
        }
    }
}

pub(crate) fn brk(line: usize, kind: BreakKind, what: String) -> Break {
    Break {
        line,
        kind,
        message: format!("line {line}: {what}"),
    }
}

/// First 12 hex digits and an ellipsis.
pub(crate) fn short(hash: &str) -> String {
    format!("{}…", &hash[..hash.len().min(12)])
}

fn ranges(r: &[(u64, u64, String)]) -> String {
    let parts: Vec<String> = r
        .iter()
        .map(|(o, l, _)| format!("{l} bytes at {o}"))
        .collect();
    format!("[{}]", parts.join(", "))
}
