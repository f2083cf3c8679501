//! Newline-delimited framing with a size limit.
//!
//! A line longer than the limit is not buffered: its bytes are skipped up to the next newline
//! and reported as [`Frame::TooLong`], so the stream stays in sync and memory stays bounded.

use std::io::{self, BufRead};

use crate::content::shape::{TextShape, TextShapes};
use crate::jsonrpc::quiet::{Quiet, QuietFinder, FIND_FROM};

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// One complete line, without its `\n` (a `\r` before it is kept: JSON treats it as blank).
    Line(Vec<u8>),
    /// A line over the limit was skipped; its length in bytes.
    TooLong(usize),
    /// The stream ended. A last line without a newline is returned as `Line` first.
    Eof,
}

pub(crate) struct LineReader<R> {
    inner: R,
    max: usize,
    /// The start of the next line, taken out of `inner`'s buffer by [`LineReader::fill_ready`]
    /// so that it could read on without waiting.
    partial: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            partial: Vec::new(),
        }
    }

    /// Read the next frame into `buf` (cleared first); `buf` is reused across calls.
    pub(crate) fn next_into(&mut self, buf: &mut Vec<u8>) -> io::Result<Frame> {
        buf.clear();
        let mut skipped: Option<usize> = None;
        if !self.partial.is_empty() {
            // A line's start `fill_ready` took out (within the limit; the loop checks the rest).
            std::mem::swap(buf, &mut self.partial);
        }
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(match skipped {
                    Some(n) => Frame::TooLong(n),
                    None if buf.is_empty() => Frame::Eof,
                    None => Frame::Line(std::mem::take(buf)),
                });
            }
            let (chunk, found) = match memchr(available) {
                Some(i) => (&available[..i], Some(i)),
                None => (available, None),
            };
            let used = chunk.len() + usize::from(found.is_some());
            match skipped.as_mut() {
                Some(n) => *n += chunk.len(),
                None if buf.len() + chunk.len() > self.max => {
                    skipped = Some(buf.len() + chunk.len());
                    buf.clear();
                    buf.shrink_to(64 * 1024);
                }
                None => buf.extend_from_slice(chunk),
            }
            self.inner.consume(used);
            if found.is_some() {
                return Ok(match skipped {
                    Some(n) => Frame::TooLong(n),
                    None => Frame::Line(std::mem::take(buf)),
                });
            }
        }
    }
}

impl<T: io::Read> LineReader<io::BufReader<T>> {
    /// Is a whole line already buffered (the next `next_into` returns without reading)?
    pub(crate) fn line_buffered(&self) -> bool {
        memchr(self.inner.buffer()).is_some()
    }

    /// Read what the input already holds, never waiting: `waiting()` says how many bytes a
    /// read returns at once (the pipe's `FIONREAD`; 0: a read could wait, and none is made).
    /// `true` when a whole line is buffered now. The start of a line that is still partial
    /// is kept for `next_into`; at most one read is made.
    pub(crate) fn fill_ready(&mut self, waiting: impl Fn() -> usize) -> io::Result<bool> {
        if self.line_buffered() {
            return Ok(true);
        }
        if waiting() == 0 {
            return Ok(false);
        }
        // The buffer holds no newline: its bytes start the next line. Taken out, so that the
        // buffer is empty and `fill_buf` reads (without waiting: bytes are there).
        let n = self.inner.buffer().len();
        if self.partial.len() + n > self.max {
            return Ok(false); // an over-long line: `next_into` skips it as before
        }
        self.partial.extend_from_slice(self.inner.buffer());
        self.inner.consume(n);
        loop {
            match self.inner.fill_buf() {
                Ok(_) => return Ok(self.line_buffered()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A frame of [`InPlaceLines`]: the line is borrowed from the reader's own buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Slice<'a> {
    /// One complete line: `whole` with its `\n` (none for a last line the stream ended
    /// without); `whole[..len]` is the line without it.
    Line {
        whole: &'a [u8],
        len: usize,
        facts: LineFacts<'a>,
    },
    /// A line over the limit was skipped; its length in bytes.
    TooLong(usize),
    /// The stream ended.
    Eof,
}

/// What the framer learnt of a long line while reading it (nothing for a short one).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineFacts<'a> {
    /// Its quiet stretches (`jsonrpc::quiet`): the strict scanner jumps them.
    pub(crate) quiet: &'a [Quiet],
    /// Their shapes, when the content checks are on: the checks take a text's from here.
    pub(crate) shapes: &'a [TextShape],
}

/// Newline-delimited framing that reads straight into one buffer and hands out lines as
/// slices of it: no copy of a line between the read and the write that relays it (the
/// server's answers, up to `max` bytes each). The buffer grows to the longest line (in
/// place where the allocator can: no second copy of a large line in memory) and goes back
/// to `initial` once lines are small again, so a burst of large answers does not keep its
/// memory.
pub(crate) struct InPlaceLines<R> {
    inner: R,
    max: usize,
    initial: usize,
    /// The data is `buf[start..end]`; `buf.len()` is what was ever read into (initialised),
    /// its capacity what is allocated. Pages past `end` are touched only when read into.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// `buf[start..scanned]` holds no newline (not searched again).
    scanned: usize,
    /// Bytes of an over-long line skipped so far.
    skipped: Option<usize>,
    /// Lines no longer than a quarter of `initial` since the last longer one.
    small_run: usize,
    eof: bool,
    /// The pending line's newline, once found (absolute).
    newline: Option<usize>,
    /// The pending line's quiet stretches (a long line's) and their shapes, found as its
    /// bytes are read.
    quiet: QuietFinder<TextShapes>,
    /// The last line was handed out: the finder still holds its stretches.
    handed_out: bool,
}

/// The most a read asks for (what a pipe holds): the buffer is initialised no further ahead.
const READ_CHUNK: usize = 64 * 1024;
/// The least room a read is given before the buffer is compacted or grown.
const MIN_ROOM: usize = 64 * 1024;
/// Small lines in a row after which a grown buffer is given back.
const SHRINK_AFTER: usize = 16;

impl<R: io::Read> InPlaceLines<R> {
    pub(crate) fn new(inner: R, initial: usize, max: usize) -> Self {
        let initial = initial.max(1);
        InPlaceLines {
            inner,
            max,
            initial,
            buf: Vec::with_capacity(initial),
            start: 0,
            end: 0,
            scanned: 0,
            skipped: None,
            small_run: 0,
            eof: false,
            newline: None,
            quiet: QuietFinder::default(),
            handed_out: false,
        }
    }

    /// Also compute the shapes of a long line's long runs as they are read (for the content
    /// checks).
    pub(crate) fn with_text_shapes(mut self, on: bool) -> Self {
        self.quiet = QuietFinder::watched(TextShapes::new(on));
        self
    }

    /// Is a whole line already buffered (the next `next` returns without reading)?
    pub(crate) fn line_buffered(&mut self) -> bool {
        if self.skipped.is_some() {
            return false;
        }
        self.find_newline().is_some()
    }

    /// Where the pending line's newline is (absolute), reading only the bytes not read
    /// before: a long line's through the quiet finder, which notes its stretches on the way
    /// (every byte of such a line is fed to it once and in order: a stretch it reports holds
    /// no stop), any other's with `memchr`.
    fn find_newline(&mut self) -> Option<usize> {
        if self.handed_out {
            self.quiet.reset();
            self.handed_out = false;
        }
        if self.newline.is_some() {
            return self.newline;
        }
        let found =
            if self.quiet.on() && self.skipped.is_none() && self.end - self.start > FIND_FROM {
                // From the line's start the first time: its first string's run then starts where
                // the string does (a shape is kept only for a whole string's contents).
                let from = match self.quiet.fed() {
                    true => self.scanned - self.start,
                    false => 0,
                };
                self.quiet
                    .feed(&self.buf[self.start..self.end], from)
                    .map(|k| self.start + k)
            } else {
                memchr(&self.buf[self.scanned..self.end]).map(|i| self.scanned + i)
            };
        match found {
            Some(nl) => self.newline = Some(nl),
            None => self.scanned = self.end,
        }
        found
    }

    /// The next frame.
    pub(crate) fn next(&mut self) -> io::Result<Slice<'_>> {
        loop {
            if let Some(nl) = self.find_newline() {
                let (start, len) = (self.start, nl - self.start);
                self.start = nl + 1;
                self.scanned = self.start;
                self.newline = None;
                self.handed_out = true;
                if let Some(n) = self.skipped.take() {
                    self.small_run = 0;
                    return Ok(Slice::TooLong(n + len));
                }
                if len > self.max {
                    self.small_run = 0;
                    return Ok(Slice::TooLong(len));
                }
                self.count(len);
                return Ok(Slice::Line {
                    whole: &self.buf[start..=nl],
                    len,
                    facts: LineFacts {
                        quiet: self.quiet.stretches(),
                        shapes: self.quiet.watcher().done(),
                    },
                });
            }
            let pending = self.end - self.start;
            if self.skipped.is_some() || pending > self.max {
                // Over the limit: count the bytes, keep none (and give the memory back).
                *self.skipped.get_or_insert(0) += pending;
                self.quiet.reset();
                self.start = 0;
                self.end = 0;
                self.scanned = 0;
                if self.buf.capacity() > self.initial {
                    self.buf = Vec::with_capacity(self.initial);
                }
            }
            if self.eof {
                if let Some(n) = self.skipped.take() {
                    return Ok(Slice::TooLong(n));
                }
                let pending = self.end - self.start;
                if pending == 0 {
                    return Ok(Slice::Eof);
                }
                let start = self.start;
                self.start = self.end;
                self.scanned = self.end;
                self.handed_out = true;
                self.count(pending);
                self.quiet.close_at(&self.buf[start..self.end]);
                return Ok(Slice::Line {
                    whole: &self.buf[start..self.end],
                    len: pending,
                    facts: LineFacts {
                        quiet: self.quiet.stretches(),
                        shapes: self.quiet.watcher().done(),
                    },
                });
            }
            self.make_room();
            let want = (self.end + READ_CHUNK).min(self.buf.capacity());
            if self.buf.len() < want {
                // Initialised once per byte of the buffer's life, not once per read.
                self.buf.resize(want, 0);
            }
            let n = loop {
                match self.inner.read(&mut self.buf[self.end..want]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
    }

    fn count(&mut self, len: usize) {
        if len <= self.initial / 4 {
            self.small_run += 1;
        } else {
            self.small_run = 0;
        }
    }

    /// Room for a read after `end`: the partial line moved to the front, the buffer grown
    /// (doubling, in place where the allocator can) for a long line, or given back once it
    /// is empty and lines have been small for a while.
    fn make_room(&mut self) {
        let pending = self.end - self.start;
        if pending == 0 {
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
            if self.buf.capacity() > self.initial && self.small_run >= SHRINK_AFTER {
                self.buf.truncate(self.initial);
                self.buf.shrink_to(self.initial);
            }
            return;
        }
        if self.buf.capacity() - self.end >= MIN_ROOM.min(self.initial) {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.scanned -= self.start;
            self.start = 0;
            self.end = pending;
        }
        if self.buf.capacity() - self.end < MIN_ROOM.min(self.initial) {
            // Only the data is kept (moved by the allocator); the rest is initialised again
            // as it is read into.
            self.buf.truncate(self.end);
            self.buf.reserve(self.buf.capacity());
        }
    }
}

/// The first newline (SIMD search: a 16 MiB line is scanned at memory speed).
fn memchr(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], max: usize, cap: usize) -> Vec<Frame> {
        let mut r = LineReader::new(io::BufReader::with_capacity(cap, input), max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for _ in 0..100 {
            let f = r.next_into(&mut buf).unwrap();
            let eof = f == Frame::Eof;
            out.push(f);
            if eof {
                break;
            }
        }
        out
    }

    /// A reader of chunks, one per read, that counts its reads.
    struct Chunks {
        chunks: std::collections::VecDeque<Vec<u8>>,
        reads: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl io::Read for Chunks {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.reads.set(self.reads.get() + 1);
            let Some(mut c) = self.chunks.pop_front() else {
                return Ok(0);
            };
            let n = c.len().min(b.len());
            b[..n].copy_from_slice(&c[..n]);
            if n < c.len() {
                self.chunks.push_front(c.split_off(n));
            }
            Ok(n)
        }
    }

    fn chunked(
        chunks: &[&[u8]],
        cap: usize,
        max: usize,
    ) -> (
        LineReader<io::BufReader<Chunks>>,
        std::rc::Rc<std::cell::Cell<usize>>,
    ) {
        let reads = std::rc::Rc::new(std::cell::Cell::new(0));
        let input = Chunks {
            chunks: chunks.iter().map(|c| c.to_vec()).collect(),
            reads: reads.clone(),
        };
        (
            LineReader::new(io::BufReader::with_capacity(cap, input), max),
            reads,
        )
    }

    /// `fill_ready` reads on only when bytes are waiting, at most once, keeps a partial line's
    /// start for `next_into`, and says whether a whole line is buffered.
    #[test]
    fn fill_ready_reads_what_waits_and_keeps_a_partial_line() {
        let (mut r, reads) = chunked(&[b"{a}\n{b", b"}\n{c", b"}\n"], 64, 100);
        let mut buf = Vec::new();
        assert_eq!(r.next_into(&mut buf).unwrap(), Frame::Line(b"{a}".to_vec()));
        assert_eq!(reads.get(), 1);
        assert!(!r.line_buffered());
        // Nothing waiting: no read (it could wait), no line.
        assert!(!r.fill_ready(|| 0).unwrap());
        assert_eq!(reads.get(), 1);
        // Bytes waiting: one read, and the line `{b}` is whole.
        assert!(r.fill_ready(|| 4).unwrap());
        assert_eq!(reads.get(), 2);
        assert!(r.fill_ready(|| 4).unwrap()); // (a line buffered: no read)
        assert_eq!(reads.get(), 2);
        assert_eq!(r.next_into(&mut buf).unwrap(), Frame::Line(b"{b}".to_vec()));
        // `{c` waits for its end: a read that brings no newline leaves it partial.
        let (mut r, _) = chunked(&[b"{a}\n{c", b"c", b"c}\n"], 64, 100);
        assert_eq!(r.next_into(&mut buf).unwrap(), Frame::Line(b"{a}".to_vec()));
        assert!(!r.fill_ready(|| 1).unwrap());
        assert_eq!(
            r.next_into(&mut buf).unwrap(),
            Frame::Line(b"{ccc}".to_vec())
        );
        assert_eq!(r.next_into(&mut buf).unwrap(), Frame::Eof);
        // A partial line over the limit is left to `next_into`, which skips it whole.
        let (mut r, _) = chunked(&[b"{a}\nxxxxxxxx", b"xxxx\n{d}\n"], 64, 6);
        assert_eq!(r.next_into(&mut buf).unwrap(), Frame::Line(b"{a}".to_vec()));
        assert!(!r.fill_ready(|| 9).unwrap());
        assert_eq!(r.next_into(&mut buf).unwrap(), Frame::TooLong(12));
        assert_eq!(r.next_into(&mut buf).unwrap(), Frame::Line(b"{d}".to_vec()));
    }

    /// However `fill_ready` interleaves with `next_into`, the frames are the plain reader's:
    /// lines split anywhere, over-long ones, a last line without its newline.
    #[test]
    fn fill_ready_changes_no_frame() {
        let mut rng = crate::test_rng::XorShift::new(0xf111_4ead_u64);
        for _ in 0..500 {
            let mut input = Vec::new();
            for _ in 0..rng.below(12) {
                let len = [rng.below(6), rng.below(40), 20 + rng.below(30)][rng.below(3)];
                input.extend(std::iter::repeat_n(b'x', len));
                input.push(b'\n');
            }
            if rng.below(3) == 0 {
                input.extend_from_slice(b"tail");
            }
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let n = (1 + rng.below(25)).min(rest.len());
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            let (cap, max) = (8 + rng.below(40), 1 + rng.below(40));
            let want = frames(&input, max, cap);
            let (mut r, _) = chunked(&chunks, cap, max);
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for _ in 0..200 {
                if rng.below(2) == 0 {
                    let w = rng.below(3);
                    r.fill_ready(|| w).unwrap();
                }
                let f = r.next_into(&mut buf).unwrap();
                let eof = f == Frame::Eof;
                got.push(f);
                if eof {
                    break;
                }
            }
            assert_eq!(
                got,
                want,
                "{:?} in {chunks:?} (cap {cap}, max {max})",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn splits_lines_across_buffer_boundaries() {
        let f = frames(b"abc\ndefgh\n\nlast", 100, 2);
        assert_eq!(
            f,
            vec![
                Frame::Line(b"abc".to_vec()),
                Frame::Line(b"defgh".to_vec()),
                Frame::Line(vec![]),
                Frame::Line(b"last".to_vec()),
                Frame::Eof
            ]
        );
    }

    #[test]
    fn too_long_lines_are_skipped_and_the_stream_stays_in_sync() {
        let f = frames(b"0123456789abc\nok\n0123456789", 5, 3);
        assert_eq!(
            f,
            vec![
                Frame::TooLong(13),
                Frame::Line(b"ok".to_vec()),
                Frame::TooLong(10),
                Frame::Eof
            ]
        );
        let f = frames(b"12345\n123456\n", 5, 64);
        assert_eq!(
            f,
            vec![
                Frame::Line(b"12345".to_vec()),
                Frame::TooLong(6),
                Frame::Eof
            ]
        );
    }

    /// A reader that returns at most `chunk` bytes a call (a pipe).
    struct Trickle<'a>(&'a [u8], usize);

    impl io::Read for Trickle<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(b.len()).min(self.1);
            b[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// The frames of [`InPlaceLines`], as [`LineReader`] gives them.
    fn in_place(input: &[u8], max: usize, initial: usize, chunk: usize) -> Vec<Frame> {
        let mut r = InPlaceLines::new(Trickle(input, chunk), initial, max);
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let buffered = r.line_buffered();
            let f = match r.next().unwrap() {
                Slice::Line { whole, len, .. } => {
                    assert!(!buffered || whole.last() == Some(&b'\n'));
                    assert!(len == whole.len() || (len + 1 == whole.len() && whole[len] == b'\n'));
                    assert!(!whole[..len].contains(&b'\n'));
                    Frame::Line(whole[..len].to_vec())
                }
                Slice::TooLong(n) => Frame::TooLong(n),
                Slice::Eof => Frame::Eof,
            };
            let eof = f == Frame::Eof;
            out.push(f);
            if eof {
                break;
            }
        }
        out
    }

    #[test]
    fn in_place_lines_frame_as_the_line_reader_does() {
        let mut rng = crate::test_rng::XorShift::new(0x9e37_79b9_7f4a_7c15u64);
        let mut rand = move |n: usize| rng.below(n);
        for case in 0..400 {
            let mut input = Vec::new();
            for _ in 0..rand(12) {
                let len = match rand(4) {
                    0 => rand(4),
                    1 => rand(40),
                    _ => rand(300),
                };
                input.extend((0..len).map(|_| b"ab{}\"\r "[rand(7)]));
                input.push(b'\n');
            }
            if case % 3 == 0 {
                input.extend((0..rand(50)).map(|_| b'z'));
            }
            let max = [5, 64, 100, 1000][rand(4)];
            let (initial, chunk) = ([1, 3, 16, 64, 1024][rand(5)], [1, 7, 64, 4096][rand(4)]);
            assert_eq!(
                in_place(&input, max, initial, chunk),
                frames(&input, max, 64),
                "{:?} max {max} initial {initial} chunk {chunk}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    /// Long lines come with their quiet stretches, each free of stops and inside its line,
    /// whatever the reads' sizes and however `line_buffered` interleaves with `next` (as the
    /// server pump calls them); the scanner told them reads every line as it does untold (the
    /// same envelope, long strings and listed texts of the result). The
    /// protection this guards: a stretch holding a quote would let the scanner read past the
    /// end of a string.
    #[test]
    fn long_lines_carry_quiet_stretches_the_scanner_reads_alike() {
        use crate::jsonrpc::strict::{
            validate_envelope_hinted, validate_envelope_spans, ResultTexts, LONG_STRING,
        };
        let mut rng = crate::test_rng::XorShift::new(0x511e_2ce5_u64);
        let mut rand = move |n: usize| rng.below(n);
        let (mut hinted_lines, mut listed) = (0, 0);
        for case in 0..40 {
            let mut input = Vec::new();
            for k in 0..1 + rand(4) {
                let len = [rand(100), 70_000 + rand(200_000), 300_000][rand(3)];
                // Fillers: long plain runs, base64, text with escapes, bytes outside ASCII.
                let filler = ["x", "QUJD+/09", "a\\\"b\\n", "\u{e9}t\u{e9}", "line \\t"][rand(5)];
                let mut text = filler.repeat(len / filler.len() + 1);
                if rand(2) == 0 {
                    text.insert_str(text.floor_char_boundary(rand(text.len())), "\\\"");
                }
                let mut line = format!(
                    r#"{{"jsonrpc":"2.0","id":{k},"result":{{"content":[{{"type":"text","text":"{text}"}}],"more":"{}"}}}}"#,
                    "y".repeat(rand(9000))
                )
                .into_bytes();
                if rand(8) == 0 {
                    // Broken: a raw quote or control byte inside the long text.
                    let at = 60 + rand(line.len() - 120);
                    line[at] = [b'"', 0x01][rand(2)];
                }
                input.extend_from_slice(&line);
                input.push(b'\n');
            }
            if case % 4 == 0 {
                input.pop(); // the last line without its newline
            }
            let chunk = [7, 4096, 65_536, 100_000][rand(4)];
            let mut r =
                InPlaceLines::new(Trickle(&input, chunk), [1024, 256 * 1024][rand(2)], 1 << 22);
            for _ in 0..100 {
                if rand(2) == 0 {
                    r.line_buffered();
                }
                let (line, quiet) = match r.next().unwrap() {
                    Slice::Line { whole, len, facts } => (&whole[..len], facts.quiet),
                    Slice::TooLong(_) => continue,
                    Slice::Eof => break,
                };
                for q in quiet {
                    assert!(q.start < q.end && q.end <= line.len(), "case {case}: {q:?}");
                    let bytes = &line[q.start..q.end];
                    assert!(
                        bytes.iter().all(|&x| x != b'"' && x != b'\\' && x >= 0x20),
                        "case {case}"
                    );
                    assert_eq!(q.high, !bytes.is_ascii(), "case {case}");
                }
                hinted_lines += usize::from(!quiet.is_empty());
                let (mut told, mut untold) = (Vec::new(), Vec::new());
                // And the texts of the result it lists (with their ASCII flags), told or not.
                let (mut texts_told, mut texts_untold) =
                    (ResultTexts::default(), ResultTexts::default());
                let a = validate_envelope_hinted(
                    line,
                    64,
                    LONG_STRING,
                    quiet,
                    &mut told,
                    Some(&mut texts_told),
                );
                let b = validate_envelope_hinted(
                    line,
                    64,
                    LONG_STRING,
                    &[],
                    &mut untold,
                    Some(&mut texts_untold),
                );
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "case {case}");
                assert_eq!(told, untold, "case {case}");
                assert_eq!(texts_told.listed(), texts_untold.listed(), "case {case}");
                if let Some((_, texts)) = texts_told.listed() {
                    listed += texts.len();
                    for t in texts {
                        let bytes = &line[t.start..t.end];
                        assert_eq!(t.ascii, bytes.is_ascii(), "case {case}");
                        assert_eq!(t.escaped, bytes.contains(&b'\\'), "case {case}");
                    }
                }
                let c = validate_envelope_spans(line, 64, LONG_STRING, &mut untold);
                assert_eq!(format!("{a:?}"), format!("{c:?}"), "case {case}");
            }
        }
        assert!(hinted_lines > 10, "{hinted_lines} lines had stretches");
        assert!(listed > 40, "{listed} texts listed");
    }

    #[test]
    fn in_place_buffer_grows_for_a_long_line_and_is_given_back() {
        let mut input = vec![b'x'; 3 << 20];
        input.push(b'\n');
        for _ in 0..SHRINK_AFTER {
            input.extend_from_slice(b"{}\n");
        }
        let mut r = InPlaceLines::new(&input[..], 1024, 8 << 20);
        assert!(matches!(r.next().unwrap(), Slice::Line { len, .. } if len == 3 << 20));
        assert!(r.buf.capacity() >= 3 << 20);
        for _ in 0..SHRINK_AFTER {
            assert!(matches!(r.next().unwrap(), Slice::Line { len: 2, .. }));
        }
        assert_eq!(r.next().unwrap(), Slice::Eof);
        assert!(r.buf.capacity() < 64 * 1024, "{}", r.buf.capacity());
        // A line over the limit is not kept while it is skipped.
        let mut input = vec![b'y'; 3 << 20];
        input.extend_from_slice(b"\n{}\n");
        let mut r = InPlaceLines::new(&input[..], 1024, 1 << 20);
        assert_eq!(r.next().unwrap(), Slice::TooLong(3 << 20));
        assert!(r.buf.capacity() < 2 << 20, "{}", r.buf.capacity());
        assert!(matches!(r.next().unwrap(), Slice::Line { len: 2, .. }));
    }
}
