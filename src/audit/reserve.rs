//! Space reserved ahead of the audit log's end, so that a record is written whole or not at all.
//!
//! Before a line is appended past what is reserved, the blocks for it and for [`AHEAD`] more
//! bytes are allocated past the end of the file with `fallocate(FALLOC_FL_KEEP_SIZE)` (one call
//! per MiB of records, not one per record): the file's size and content
//! do not change (no zero bytes appear in the log — appends by other writers, the hash chain,
//! `audit verify` and a crash are unaffected; a crash leaves at most the reservation allocated
//! past the end, invisible and freed by the next writer's close). When the file system is full
//! the lines keep landing in blocks already reserved until the reserve is spent; then the
//! reservation for the next line fails with `ENOSPC` BEFORE anything is written, so the log
//! never ends in a torn record and the failure is the clean one the proxy acts on (every later
//! request refused, the session ends with status 123). File systems without `fallocate`
//! (`EOPNOTSUPP`: some network and FUSE file systems; pipes and character devices) are written
//! without a reservation. On close the unused reservation is given back (`FALLOC_FL_PUNCH_HOLE`
//! past the end).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags};

/// Bytes reserved past the line being written. 1 MiB (issue 19): at 64 KiB a sustained stream
/// (batches of ~130 KB) called `fallocate` before every write, and a lone request every ~85
/// records paid one (~20 µs, a journal transaction) on its round trip; at 1 MiB that is every
/// ~1,400 records, below the p99 of round trips. The reservation is given back on close.
pub(crate) const AHEAD: u64 = 1024 * 1024;

/// The reservation state of one open log file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Reserve {
    /// The file system cannot reserve (`EOPNOTSUPP`, ...): write without.
    unsupported: bool,
    /// The furthest offset reserved so far (for giving it back).
    reserved_to: u64,
}

/// What the reservation calls to make for a line of `len` bytes at `end` (pure): first the line
/// and the reserve ahead, and, when that does not fit, the line alone.
pub(crate) fn plan(end: u64, len: u64) -> [(u64, u64); 2] {
    [(end, len + AHEAD), (end, len.max(1))]
}

/// How a reservation failure is read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No space (or quota): nothing may be written.
    Full,
    /// This file system or file cannot reserve: write without.
    Unsupported,
    /// Anything else: the write is attempted and reports its own error.
    Other,
}

pub(crate) fn classify(e: Errno) -> Failure {
    match e {
        Errno::ENOSPC | Errno::EDQUOT => Failure::Full,
        Errno::EOPNOTSUPP | Errno::ENOSYS | Errno::ENODEV | Errno::ESPIPE | Errno::EINVAL => {
            Failure::Unsupported
        }
        _ => Failure::Other,
    }
}

impl Reserve {
    /// Reserve room for `len` bytes at `end` (and [`AHEAD`] past them where there is space).
    /// `Err` (ENOSPC): the line does not fit and must not be written.
    pub(crate) fn ensure(&mut self, file: &File, end: u64, len: u64) -> io::Result<()> {
        if self.unsupported || end + len <= self.reserved_to {
            return Ok(());
        }
        for (off, n) in plan(end, len) {
            match fallocate(
                file.as_fd(),
                FallocateFlags::FALLOC_FL_KEEP_SIZE,
                off as i64,
                n as i64,
            ) {
                Ok(()) => {
                    self.reserved_to = self.reserved_to.max(off + n);
                    return Ok(());
                }
                Err(e) => match classify(e) {
                    Failure::Full => continue,
                    Failure::Unsupported => {
                        tracing::debug!("the audit log's file system cannot reserve space ({e})");
                        self.unsupported = true;
                        return Ok(());
                    }
                    Failure::Other => return Ok(()),
                },
            }
        }
        Err(io::Error::other(
            format!(
                "no space left for the next audit record ({len} bytes; reserving space for it failed with ENOSPC, nothing was written)"
            ),
        ))
    }

    /// Give back what was reserved past `size` (the file's size now; the caller holds the
    /// log's lock). Best effort: ext4 frees blocks past the end on a truncate to the same size,
    /// tmpfs on a hole punched past the end.
    pub(crate) fn release(&mut self, file: &File, size: u64) {
        if self.reserved_to > size {
            let _ = file.set_len(size);
            let _ = fallocate(
                file.as_fd(),
                FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
                size as i64,
                (self.reserved_to - size) as i64,
            );
        }
        self.reserved_to = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_plan_is_the_line_and_the_reserve_then_the_line_alone() {
        assert_eq!(plan(100, 10), [(100, 10 + AHEAD), (100, 10)]);
        assert_eq!(plan(0, 0), [(0, AHEAD), (0, 1)]);
    }

    #[test]
    fn a_line_inside_the_reserve_needs_no_call() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("log")).unwrap();
        let mut r = Reserve {
            unsupported: false,
            reserved_to: 1000,
        };
        // Inside: nothing to do (a closed descriptor would fail any call).
        r.ensure(&f, 10, 990).unwrap();
        assert_eq!(r.reserved_to, 1000);
        r.ensure(&f, 10, 991).unwrap();
        assert!(r.unsupported || r.reserved_to == 10 + 991 + AHEAD);
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(classify(Errno::ENOSPC), Failure::Full);
        assert_eq!(classify(Errno::EDQUOT), Failure::Full);
        assert_eq!(classify(Errno::EOPNOTSUPP), Failure::Unsupported);
        assert_eq!(classify(Errno::EIO), Failure::Other);
    }

    /// The reservation never changes the file's size or content; it allocates blocks past the
    /// end (where the file system supports it) and gives them back.
    #[test]
    fn reserving_keeps_the_size_and_release_gives_the_blocks_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"seq\":1}\n").unwrap();
        let mut r = Reserve::default();
        r.ensure(&f, 10, 20).unwrap();
        let m = f.metadata().unwrap();
        assert_eq!(m.len(), 10);
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"seq\":1}\n");
        if r.unsupported {
            eprintln!("SKIP: this file system does not reserve space (fallocate unsupported)");
            return;
        }
        assert!(m.blocks() * 512 >= AHEAD, "{} blocks reserved", m.blocks());
        r.release(&f, 10);
        let m = f.metadata().unwrap();
        assert_eq!(m.len(), 10);
        assert!(
            m.blocks() * 512 < AHEAD,
            "{} blocks after release",
            m.blocks()
        );
    }
}
