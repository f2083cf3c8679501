//! Appending records: one `write(2)` per line under an exclusive `flock`, flushed (and
//! optionally fsynced) before `record` returns.
//!
//! The system calls of one batch: `flock`, one `fstat` of our descriptor (the size, and the
//! inode compared with the path's), one `stat` of the path (rotated by another writer?),
//! `write`, `pwrite` of the head file, `flock` again to unlock (and `fallocate` once per MiB, `reserve`).
//!
//! The queue's batches (`write_batch`, with `set_keep_lock`) may keep the lock after the
//! write: while it is held nobody else can append or rotate, so the next batch is the `write`
//! alone (no `flock`, `fstat`, `stat`), and the head file is written once, when the queue's
//! writer thread gives the lock back (`release_lock`, within `queue::LINGER` plus
//! `queue::TIMER_SLACK` of taking it). A lone request's record then costs one system call on
//! the round trip. The lock is not kept
//! for [`SHARED_FOR`] after another writer's records were seen in the file: sessions sharing a
//! log wait on each other's kept lock at most once (`queue::LINGER`), then lock per batch.
//!
//! Several capjail processes may append to one file. Under the lock the writer compares the
//! file size with where its own last line ended; if they differ, another writer appended (or
//! a writer crashed mid-line), so the tail is re-read to find the chain head. A tail that does
//! not end in `\n` is torn: it is kept, terminated with `\n`, and a `recovery` record naming
//! its byte range continues the chain from the last complete record.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};

use super::canon::{parse_line, seal_line_hex, sha256_hex, GENESIS};
use super::event::{
    new_session_id, recovery_record, write_map_body, write_record_body, Chain, Clock, Counts,
    Precoded, SpecCache,
};
use super::record::Record;
use super::redact::Redactor;
use super::rotated::{self, Rotation};
use super::AuditError;
use crate::policy::Policy;

/// Unreadable lines tolerated after the last record before appending is refused.
const MAX_TORN_LINES: usize = 64;

/// An open audit log. Not shared between threads: give each its own handle (or a `Mutex`).
#[derive(Debug)]
pub struct AuditLog {
    /// Shared with the lock guard (no `dup` per lock): a rotation may replace it while the
    /// old file is still locked.
    file: Arc<File>,
    path: PathBuf,
    fsync: bool,
    redactor: Redactor,
    session: String,
    counts: Counts,
    /// Where our last line ended, and the chain head there.
    head: Option<Head>,
    /// The line being built (reused: no allocation per record once warm).
    line: Vec<u8>,
    specs: SpecCache,
    /// Formats the records' times (the date and time of a second once).
    clock: Clock,
    /// `None`: never rotate (tests of the writer itself; logs that are not regular files).
    rotation: Option<Rotation>,
    /// `audit.jsonl.head`, rewritten in place after every write (regular files only).
    head_file: Option<File>,
    /// Space reserved past the end, so that a record is written whole or not at all.
    reserve: super::reserve::Reserve,
    /// The size `lock` read with `fstat` under the lock just taken (`sync_head` uses it
    /// instead of a second `fstat`).
    locked_size: Option<u64>,
    /// May the lock be kept between batches (`write_batch`)? Set by the queue, whose writer
    /// thread gives it back within `queue::LINGER` ([`AuditLog::release_lock`]).
    keep_lock: bool,
    /// The lock kept since the last batch, if any (see [`Kept`]).
    kept: Option<Kept>,
    /// When another writer's records were last found in the file: the lock is not kept for
    /// [`SHARED_FOR`] after that, so several sessions do not wait on each other's kept locks.
    shared_at: Option<Instant>,
    /// The inode of `file` (`None` until `lock` read it, and again once `file` is replaced):
    /// when the path names it under the lock, the path's `statx` gives the size too.
    file_id: Option<SizeIno>,
}

/// How long after seeing another writer's records the lock is taken and given back per batch.
const SHARED_FOR: Duration = Duration::from_secs(1);

/// The log's lock kept after a batch (only the queue's batches, `keep_lock`): the next batch
/// needs no `flock`, `fstat` or `stat` (nobody else can have appended or rotated while it is
/// held), and the head file is written once, when the lock is given back.
#[derive(Debug)]
struct Kept {
    lock: Flock,
    since: Instant,
    /// The head file lags: the last record written (seq, hash), not yet in it.
    head: Option<(u64, [u8; 64])>,
}

#[derive(Debug, Clone, PartialEq)]
struct Head {
    end: u64,
    /// Lower-case hex (as every record's `hash`, `GENESIS` included).
    hash: [u8; 64],
    seq: u64,
}

/// A chain hash as read (64 hex digits, checked by `parse_line`) into its bytes.
fn hex64(hash: &str) -> [u8; 64] {
    let mut out = [b'0'; 64];
    let n = hash.len().min(64);
    out[..n].copy_from_slice(&hash.as_bytes()[..n]);
    out
}

/// The hex digits of a chain hash as text.
fn hex_str(hash: &[u8; 64]) -> &str {
    std::str::from_utf8(hash).expect("hex is ASCII")
}

impl AuditLog {
    /// Open (creating the file, mode 0600, and its directory) with the default redaction.
    /// Repairs a torn tail right away (see the module doc).
    pub fn open(path: &Path, fsync: bool) -> Result<AuditLog, AuditError> {
        Self::open_with(path, fsync, Redactor::default())
    }

    /// Open with the policy's `audit.fsync` and `audit.redact`.
    pub(crate) fn open_for_policy(path: &Path, policy: &Policy) -> Result<AuditLog, AuditError> {
        let a = &policy.audit;
        let mut log = Self::open_with(path, a.fsync, Redactor::from_policy(policy))?;
        log.set_rotation(Some(Rotation {
            max_bytes: a.max_bytes,
            keep: a.keep,
        }));
        Ok(log)
    }

    /// Rotate the file when it reaches `max_bytes` (see `rotated`). Only for regular files.
    pub(crate) fn set_rotation(&mut self, rotation: Option<Rotation>) {
        let regular = std::fs::metadata(&self.path).is_ok_and(|m| m.is_file());
        self.rotation = rotation.filter(|r| regular && r.max_bytes > 0 && r.keep > 0);
    }

    pub(crate) fn open_with(
        path: &Path,
        fsync: bool,
        redactor: Redactor,
    ) -> Result<AuditLog, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let file = Arc::new(open_append(path).map_err(io)?);
        let head_file = if file.metadata().map_err(io)?.is_file() {
            Some(
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .open(rotated::head_path(path))
                    .map_err(io)?,
            )
        } else {
            None
        };
        let mut log = AuditLog {
            file,
            path: path.to_path_buf(),
            fsync,
            redactor,
            session: new_session_id().map_err(io)?,
            counts: Counts::default(),
            head: None,
            line: Vec::with_capacity(1024),
            specs: SpecCache::default(),
            clock: Clock::default(),
            rotation: None,
            head_file,
            reserve: Default::default(),
            locked_size: None,
            keep_lock: false,
            kept: None,
            shared_at: None,
            file_id: None,
        };
        {
            let _lock = log.lock()?;
            log.sync_head()?;
        }
        Ok(log)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn session_id(&self) -> &str {
        &self.session
    }

    /// What encoding a decision ahead of the lock needs ([`Precoded`]): this log's redaction.
    pub(crate) fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    #[cfg(test)]
    /// This session's allowed / denied / filtered tallies so far.
    pub(crate) fn counts(&self) -> Counts {
        self.counts
    }

    /// Append one event. When this returns `Ok` the line is in the file (written and flushed
    /// to the kernel; fsynced too if configured). On `Err` the proxy must not forward the
    /// request. Returns the record's sequence number.
    pub fn record(&mut self, record: &Record) -> Result<u64, AuditError> {
        self.release_lock()?;
        let seq = {
            let mut lock = self.lock()?;
            self.sync_head()?;
            if let Some(l) = self.maybe_rotate()? {
                lock = l;
            }
            let seq = self.append(Body::Record(record))?;
            drop(lock);
            seq
        };
        self.counts.count(record);
        Ok(seq)
    }

    /// Let `write_batch` keep the lock between batches; the caller must then call
    /// [`AuditLog::release_lock`] soon after each batch (the queue's writer thread does, within
    /// `queue::LINGER`).
    pub(crate) fn set_keep_lock(&mut self, keep: bool) {
        self.keep_lock = keep;
    }

    /// Since when the lock has been kept after a batch (`None`: not kept).
    pub(crate) fn lock_kept_since(&self) -> Option<Instant> {
        self.kept.as_ref().map(|k| k.since)
    }

    /// Give back a lock kept after a batch: write the head file (if it lags), then unlock.
    pub(crate) fn release_lock(&mut self) -> Result<(), AuditError> {
        let Some(kept) = self.kept.take() else {
            return Ok(());
        };
        let written = self.write_head_file(kept.head.as_ref());
        drop(kept.lock);
        written
    }

    fn write_head_file(&self, head: Option<&(u64, [u8; 64])>) -> Result<(), AuditError> {
        if let (Some(hf), Some((seq, hash))) = (&self.head_file, head) {
            hf.write_all_at(&rotated::encode_head(*seq, hex_str(hash)), 0)
                .map_err(|source| AuditError::Io {
                    path: rotated::head_path(&self.path),
                    source,
                })?;
        }
        Ok(())
    }

    /// Under the lock: make `self.head` the real chain head, writing a recovery record first
    /// if the tail is torn.
    fn sync_head(&mut self) -> Result<(), AuditError> {
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        let size = match self.locked_size.take() {
            Some(size) => size,
            None => SizeIno::of_file(&self.file).map_err(io)?.size,
        };
        if self.head.as_ref().is_some_and(|h| h.end == size) {
            return Ok(());
        }
        if self.head.is_some() {
            // Another writer appended since our last line (or one was torn).
            self.shared_at = Some(Instant::now());
        }
        let tail = scan_tail(&self.file, size).map_err(io)?;
        let (hash, seq) = match tail.last {
            Some(l) => l,
            None if size == 0 || (tail.torn.len() == 1 && !tail.terminated) => {
                (GENESIS.to_string(), 0)
            }
            None => return Err(AuditError::NotAnAuditLog(self.path.clone())),
        };
        if tail.torn.len() > MAX_TORN_LINES {
            return Err(AuditError::CorruptTail {
                path: self.path.clone(),
                lines: tail.torn.len(),
            });
        }
        self.head = Some(Head {
            end: size,
            hash: hex64(&hash),
            seq,
        });
        if !tail.torn.is_empty() {
            if !tail.terminated {
                self.write_bytes(b"\n")?;
            }
            let rec = recovery_record(&self.session, &tail.torn);
            self.append(Body::Map(&rec))?;
        }
        Ok(())
    }

    /// Append records queued by the proxy (see `queue`): one lock, one `write(2)`, one
    /// optional fsync for all of them. Each record keeps the time it carries.
    ///
    /// The items are records, or decisions the queue encoded when they were pushed
    /// ([`Batched::Pre`]): their chain fields are put in here.
    pub(crate) fn write_batch<'a>(
        &mut self,
        items: impl ExactSizeIterator<Item = Batched<'a>>,
    ) -> Result<(), AuditError> {
        if items.len() == 0 {
            return Ok(());
        }
        // A kept lock: nobody else appended or rotated since our last batch (the head is
        // current, the path names our file).
        let (mut lock, lagging, since) = match self.kept.take() {
            Some(k) => (k.lock, k.head, Some(k.since)),
            None => {
                let l = self.lock()?;
                if let Err(e) = self.sync_head() {
                    drop(l);
                    return Err(e);
                }
                (l, None, None)
            }
        };
        match self.maybe_rotate() {
            Ok(Some(l)) => lock = l, // the rotation wrote the head file
            Ok(None) => {}
            Err(e) => {
                let _ = self.write_head_file(lagging.as_ref());
                return Err(e);
            }
        }
        let keep = self.keep_lock
            && self.head_file.is_some()
            && self.shared_at.is_none_or(|t| t.elapsed() >= SHARED_FOR);
        let mut buf = std::mem::take(&mut self.line);
        buf.clear();
        let mut counts = self.counts;
        // Each record's hash is the next one's `prev` (no allocation per record or batch).
        let (mut prev, mut seq) = self.chain_head();
        for item in items {
            seq += 1;
            prev = match item {
                Batched::Record(r) => {
                    let hash = self.encode(&mut buf, Body::Record(r), r.at(), &counts, seq, &prev);
                    counts.count(r);
                    hash
                }
                Batched::Pre(bytes, pre) => {
                    let start = buf.len();
                    pre.finish(&mut buf, bytes, seq, &prev);
                    counts.count_decision(pre.allowed);
                    seal_line_hex(&mut buf, start, &prev)
                }
            };
        }
        let written = self.finish(&buf, &prev, seq, !keep);
        self.line = buf;
        match written {
            Ok(()) if keep => {
                let since = since.unwrap_or_else(Instant::now);
                self.kept = Some(Kept {
                    lock,
                    since,
                    head: Some((seq, prev)),
                });
            }
            Ok(()) => drop(lock),
            Err(e) => {
                // What was written before this batch is recorded in the head file.
                let _ = self.write_head_file(lagging.as_ref());
                drop(lock);
                return Err(e);
            }
        }
        self.counts = counts;
        Ok(())
    }

    /// Under the lock: the chain head to continue from.
    fn chain_head(&self) -> ([u8; 64], u64) {
        match &self.head {
            Some(h) => (h.hash, h.seq),
            None => unreachable!("the head is synced under the lock before appending"),
        }
    }

    /// Append one record's line (time, chain fields, hash) to `buf`; returns its hash.
    fn encode(
        &mut self,
        buf: &mut Vec<u8>,
        body: Body,
        at: Option<SystemTime>,
        counts: &Counts,
        seq: u64,
        prev: &[u8],
    ) -> [u8; 64] {
        let time = self.clock.text(at.unwrap_or_else(SystemTime::now));
        let chain = Chain {
            time: time.as_bytes(),
            seq,
            prev,
        };
        let start = buf.len();
        match body {
            Body::Record(record) => write_record_body(
                buf,
                record,
                &self.session,
                counts,
                &self.redactor,
                chain,
                &mut self.specs,
            ),
            Body::Map(rec) => write_map_body(buf, rec, chain),
        }
        seal_line_hex(buf, start, prev)
    }

    /// Under the lock: write the encoded lines, fsync if configured, advance the head (and
    /// write the head file, unless `write_head` is false: the lock is kept, see [`Kept`]).
    fn finish(
        &mut self,
        lines: &[u8],
        hash: &[u8; 64],
        seq: u64,
        write_head: bool,
    ) -> Result<(), AuditError> {
        self.write_bytes(lines)?;
        if self.fsync {
            if let Err(source) = self.file.sync_data() {
                self.head = None; // re-read the tail next time: the lines may or may not be there
                return Err(AuditError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        }
        if write_head {
            if let Some(hf) = &self.head_file {
                if let Err(source) = hf.write_all_at(&rotated::encode_head(seq, hex_str(hash)), 0) {
                    return Err(AuditError::Io {
                        path: rotated::head_path(&self.path),
                        source,
                    });
                }
            }
        }
        if let Some(h) = &mut self.head {
            (h.hash, h.seq) = (*hash, seq);
        }
        Ok(())
    }

    /// Lock the file the path names now: another writer may have rotated it away while we
    /// waited, then we follow the path to the new file (bounded).
    fn lock(&mut self) -> Result<Flock, AuditError> {
        let io = |path: &Path, source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        self.locked_size = None;
        for _ in 0..64 {
            let guard = Flock::exclusive(&self.file).map_err(|e| io(&self.path, e))?;
            if self.rotation.is_none() && self.head_file.is_none() {
                return Ok(guard);
            }
            let named = SizeIno::of_path(&self.path);
            if let (Ok(m), Some(id)) = (&named, &self.file_id) {
                if m.same_file(id) {
                    // The path names our file (one system call: its size is our file's).
                    self.locked_size = Some(m.size);
                    return Ok(guard);
                }
            }
            let ours = SizeIno::of_file(&self.file).map_err(|e| io(&self.path, e))?;
            self.file_id = Some(ours);
            match named {
                Ok(m) if m.same_file(&ours) => {
                    // Under the lock: the size stays this until we write.
                    self.locked_size = Some(ours.size);
                    return Ok(guard);
                }
                Ok(_) | Err(_) => {
                    // Rotated by another writer: give back our reserve in the old file.
                    self.reserve.release(&self.file, ours.size);
                    drop(guard);
                    self.file = Arc::new(open_append(&self.path).map_err(|e| io(&self.path, e))?);
                    self.file_id = None;
                    self.head = None;
                }
            }
        }
        Err(io(
            &self.path,
            std::io::Error::other("the file keeps being replaced while waiting for its lock"),
        ))
    }

    /// Under the lock, with the head synced: when the live file has reached `max_bytes`,
    /// start a new one (see `rotated`). Returns the lock of the new file.
    fn maybe_rotate(&mut self) -> Result<Option<Flock>, AuditError> {
        let Some(rot) = self.rotation else {
            return Ok(None);
        };
        let Some(head) = self.head.clone() else {
            return Ok(None);
        };
        if head.end < rot.max_bytes || head.seq == 0 {
            return Ok(None);
        }
        let io = |path: &Path, source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        // The new live file, complete with its first record, before anything is renamed.
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(format!(".rotating-{}", self.session));
        let tmp = PathBuf::from(tmp);
        let new = Arc::new(
            OpenOptions::new()
                .read(true)
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| io(&tmp, e))?,
        );
        let guard = Flock::exclusive(&new).map_err(|e| io(&tmp, e))?;
        let rec = rotated::rotation_record(
            &self.session,
            &rotated::rotated_name(&self.path, 1),
            rot.max_bytes,
        );
        let mut buf = Vec::with_capacity(512);
        let counts = self.counts;
        let seq = head.seq + 1;
        let hash = self.encode(&mut buf, Body::Map(&rec), None, &counts, seq, &head.hash);
        (&*new).write_all(&buf).map_err(|e| io(&tmp, e))?;
        // Shift the old files: .keep is deleted, .N becomes .N+1.
        let _ = std::fs::remove_file(rotated::rotated_name(&self.path, rot.keep));
        for n in (1..rot.keep).rev() {
            let from = rotated::rotated_name(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated::rotated_name(&self.path, n + 1))
                    .map_err(|e| io(&from, e))?;
            }
        }
        // Atomically swap the new file in (the path never names nothing), then name the old.
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &tmp,
            nix::fcntl::AT_FDCWD,
            &self.path,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(|e| io(&self.path, e.into()))?;
        let first = rotated::rotated_name(&self.path, 1);
        std::fs::rename(&tmp, &first).map_err(|e| io(&first, e))?;
        self.reserve.release(&self.file, head.end);
        self.file = new;
        self.file_id = None;
        self.head = Some(Head {
            end: buf.len() as u64,
            hash,
            seq,
        });
        if let Some(hf) = &self.head_file {
            hf.write_all_at(&rotated::encode_head(seq, hex_str(&hash)), 0)
                .map_err(|e| io(&rotated::head_path(&self.path), e))?;
        }
        Ok(Some(guard))
    }

    /// Under the lock, with `self.head` current: encode one record and write its line.
    fn append(&mut self, body: Body) -> Result<u64, AuditError> {
        let (prev, seq) = self.chain_head();
        let seq = seq + 1;
        let mut buf = std::mem::take(&mut self.line);
        buf.clear();
        let counts = self.counts;
        let hash = self.encode(&mut buf, body, None, &counts, seq, &prev);
        let written = self.finish(&buf, &hash, seq, true);
        self.line = buf;
        written.map(|()| seq)
    }

    /// One `write_all` on the O_APPEND descriptor; keeps `head.end` in step. On error the
    /// head is forgotten, so the next append re-reads the tail (and repairs a partial line).
    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), AuditError> {
        // Room for the whole line first (`reserve`): on a full disk nothing is written.
        let end = match &self.head {
            Some(h) => h.end,
            None => self.file.metadata().map(|m| m.len()).unwrap_or(0),
        };
        if let Err(source) = self.reserve.ensure(&self.file, end, bytes.len() as u64) {
            return Err(AuditError::Io {
                path: self.path.clone(),
                source,
            });
        }
        match (&*self.file).write_all(bytes) {
            Ok(()) => {
                if let Some(h) = &mut self.head {
                    h.end += bytes.len() as u64;
                }
                Ok(())
            }
            Err(source) => {
                self.head = None;
                Err(AuditError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }
}

/// One item of a batch ([`AuditLog::write_batch`]).
pub(crate) enum Batched<'a> {
    Record(&'a Record),
    /// A decision's body encoded ahead (its bytes), and where its chain fields go.
    Pre(&'a [u8], Precoded),
}

/// What a record is built from.
enum Body<'a> {
    Record(&'a Record),
    Map(&'a Map<String, Value>),
}

/// What the end of a file holds.
#[derive(Debug, Default, PartialEq)]
struct Tail {
    /// The last complete record: (hash, seq).
    last: Option<(String, u64)>,
    /// Lines after it that are not records: (offset, length without `\n`, sha256 of them).
    torn: Vec<(u64, u64, String)>,
    /// Does the file end with `\n` (or is it empty)?
    terminated: bool,
}

/// Read backwards from `size` until the last complete record (or the start of the file).
fn scan_tail(file: &File, size: u64) -> std::io::Result<Tail> {
    let mut window: u64 = 64 * 1024;
    loop {
        let start = size.saturating_sub(window);
        let mut buf = vec![0u8; (size - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        if let Some(t) = tail_of(&buf, start) {
            return Ok(t);
        }
        if start == 0 {
            unreachable!("tail_of always decides when it sees the start of the file");
        }
        window *= 4;
    }
}

/// Pure part of [`scan_tail`]: `buf` is the file from offset `start` to its end. `None`: the
/// window holds no complete record and does not reach the start of the file.
fn tail_of(buf: &[u8], start: u64) -> Option<Tail> {
    let terminated = buf.last().is_none_or(|&b| b == b'\n');
    let mut tail = Tail {
        terminated,
        ..Tail::default()
    };
    if buf.is_empty() && start == 0 {
        return Some(tail);
    }
    // Lines, last first: (offset in buf, bytes without `\n`).
    let mut end = buf.len();
    if terminated && end > 0 {
        end -= 1;
    }
    loop {
        let line_start = match buf[..end].iter().rposition(|&b| b == b'\n') {
            Some(p) => p + 1,
            None if start == 0 => 0,
            None => return None, // the line may begin before the window
        };
        let line = &buf[line_start..end];
        let complete = end < buf.len(); // followed by `\n`
        match parse_line(line) {
            Ok(p) if complete => {
                tail.last = Some((p.hash, p.seq));
                tail.torn.reverse();
                return Some(tail);
            }
            _ => tail.torn.push((
                start + line_start as u64,
                line.len() as u64,
                sha256_hex(line),
            )),
        }
        if line_start == 0 {
            tail.torn.reverse();
            return Some(tail);
        }
        end = line_start - 1;
    }
}

/// The size and identity of a file, from a `statx(2)` that asks for nothing else. Not
/// `std::fs::metadata`: it asks for the change time too, and on file systems with multigrain
/// timestamps (ext4, xfs, btrfs, tmpfs since Linux 6.13) a change time that was read must be
/// made fine-grained by the next write, so every later `write(2)` after such a `stat` updates
/// and journals the inode (one `ext4_dirty_inode` per lock taken, instead of one per clock
/// tick). What the lock needs (where the file ends, is the path still our file) needs no time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SizeIno {
    size: u64,
    ino: u64,
    dev: (u32, u32),
}

impl SizeIno {
    const MASK: libc::c_uint = libc::STATX_SIZE | libc::STATX_INO | libc::STATX_TYPE;

    fn of_file(file: &File) -> std::io::Result<SizeIno> {
        Self::statx(file.as_raw_fd(), c"", libc::AT_EMPTY_PATH)
    }

    fn of_path(path: &Path) -> std::io::Result<SizeIno> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        Self::statx(libc::AT_FDCWD, &c, 0)
    }

    fn statx(
        dirfd: libc::c_int,
        path: &std::ffi::CStr,
        flags: libc::c_int,
    ) -> std::io::Result<SizeIno> {
        // SAFETY: statx writes only into `buf`; `path` is NUL-terminated.
        let mut buf: libc::statx = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::statx(dirfd, path.as_ptr(), flags, Self::MASK, &mut buf) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let want = libc::STATX_SIZE | libc::STATX_INO;
        if buf.stx_mask & want != want {
            return Err(std::io::Error::other(
                "statx did not return the size and inode",
            ));
        }
        Ok(SizeIno {
            size: buf.stx_size,
            ino: buf.stx_ino,
            dev: (buf.stx_dev_major, buf.stx_dev_minor),
        })
    }

    fn same_file(&self, other: &SizeIno) -> bool {
        self.ino == other.ino && self.dev == other.dev
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// An exclusive `flock(2)`, released on drop. Shares the `File` (no `dup`), so the log's
/// `File` may be replaced (rotation) while the guard lives.
#[derive(Debug)]
struct Flock(Arc<File>);

impl Flock {
    fn exclusive(f: &Arc<File>) -> std::io::Result<Flock> {
        let f = Arc::clone(f);
        loop {
            // SAFETY: a valid open descriptor.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Flock(f));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for AuditLog {
    /// Give back the space reserved past the end, under the lock (another writer's append
    /// must not land in the range being released).
    fn drop(&mut self) {
        if let Some(kept) = self.kept.take() {
            let _ = self.write_head_file(kept.head.as_ref());
            if let Ok(m) = self.file.metadata() {
                self.reserve.release(&self.file, m.len());
            }
            return;
        }
        if let Ok(_guard) = Flock::exclusive(&self.file) {
            if let Ok(m) = self.file.metadata() {
                self.reserve.release(&self.file, m.len());
            }
        }
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        // SAFETY: the guard owns the open descriptor.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::canon::encode_line;
    use serde_json::json;

    fn line(seq: u64, prev: &str) -> (Vec<u8>, String) {
        let r = json!({"kind": "x", "seq": seq, "prev": prev});
        encode_line(r.as_object().unwrap(), prev)
    }

    #[test]
    fn tail_of_clean_torn_and_empty() {
        assert_eq!(
            tail_of(b"", 0),
            Some(Tail {
                last: None,
                torn: vec![],
                terminated: true
            })
        );
        let (l1, h1) = line(1, GENESIS);
        let t = tail_of(&l1, 0).unwrap();
        assert_eq!(
            (t.last, t.torn.len(), t.terminated),
            (Some((h1.clone(), 1)), 0, true)
        );

        let mut f = l1.clone();
        f.extend_from_slice(b"{\"kind\":\"x\",\"se");
        let t = tail_of(&f, 0).unwrap();
        assert_eq!(t.last, Some((h1.clone(), 1)));
        assert_eq!(
            t.torn,
            vec![(l1.len() as u64, 15, sha256_hex(b"{\"kind\":\"x\",\"se"))]
        );
        assert!(!t.terminated);

        // A torn line already terminated, then another torn tail: both named, in file order.
        let mut g = l1.clone();
        g.extend_from_slice(b"abc\nde");
        let t = tail_of(&g, 0).unwrap();
        assert_eq!(
            t.torn.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
            vec![(l1.len() as u64, 3), (l1.len() as u64 + 4, 2)]
        );

        // Only a torn first record.
        let t = tail_of(b"{\"ki", 0).unwrap();
        assert_eq!((t.last, t.torn.len()), (None, 1));
        // A window that starts mid-line cannot decide.
        assert_eq!(tail_of(b"xyz", 10), None);
    }
}
