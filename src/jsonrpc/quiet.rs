//! The quiet stretches of a long line, found while it is still being read: runs of bytes
//! without a byte that stops a JSON string (`"`, `\\`, or one below 0x20, the newline among
//! them). The strict scanner (`strict::validate_envelope_hinted`) jumps over them instead of
//! reading a large answer's text a second time, once it is out of the cache and after the
//! server has finished writing it (issue 19: each 16 MiB answer was read once to frame it and
//! once more to validate it). A [`RunWatcher`] is told of each run as it grows (the server
//! pump computes the content checks' shape of a long text there: `content::shape::TextShapes`).
//!
//! The finder does the framer's newline search at the same time (the newline is a stop), so
//! the bytes are read once, right after the read that brought them in. It is used only for a
//! line already longer than [`FIND_FROM`] (read from its start), and it gives up on a line
//! whose chunks are mostly short runs (text with an escape every few dozen bytes): there the
//! framer goes back to its plain newline search and the scanner reads those bytes as before.
//! A stretch it reports is trusted by the scanner: each is checked against its bytes in debug
//! builds, and the tests compare the scanner told and untold.

use super::strict::special;

/// Bytes `start..end` of a line (offsets from the line's first byte) hold no byte that stops
/// a string; `end` is a stop byte or the end of what was read. `high`: one of them is outside
/// ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quiet {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) high: bool,
}

/// The shortest stretch worth keeping: shorter ones cost the scanner less to read than to
/// look up.
pub(crate) const MIN_QUIET: usize = 4096;

/// Told of the runs the finder reads, as it reads them (the server pump computes each long
/// run's shape for the content checks while its bytes are in the cache).
pub(crate) trait RunWatcher {
    /// `line[start..end]` is the open run so far (`end`: where the finder has read to).
    fn grown(&mut self, line: &[u8], start: usize, end: usize);
    /// The run `line[start..end]` ended; `kept`: it is one of the stretches.
    fn ended(&mut self, line: &[u8], start: usize, end: usize, kept: bool);
    /// A new line.
    fn reset(&mut self);
}

/// No watcher.
impl RunWatcher for () {
    fn grown(&mut self, _: &[u8], _: usize, _: usize) {}
    fn ended(&mut self, _: &[u8], _: usize, _: usize, _: bool) {}
    fn reset(&mut self) {}
}

/// A line shorter than this is left to the plain newline search (the stretches are for large
/// answers).
pub(crate) const FIND_FROM: usize = 64 * 1024;

/// The quiet stretches of the line being read, and the line's newline.
#[derive(Debug, Default)]
pub(crate) struct QuietFinder<W = ()> {
    stretches: Vec<Quiet>,
    /// The stop-free run still open at the end of what was fed: its start and whether it holds
    /// a byte outside ASCII.
    open: Option<(usize, bool)>,
    /// The finder gave up on this line (its chunks were mostly short runs).
    off: bool,
    /// The finder has read part of this line.
    fed: bool,
    watcher: W,
}

impl<W: RunWatcher> QuietFinder<W> {
    /// A finder that tells `watcher` of the runs.
    pub(crate) fn watched(watcher: W) -> Self {
        QuietFinder {
            stretches: Vec::new(),
            open: None,
            off: false,
            fed: false,
            watcher,
        }
    }

    /// The watcher (what it learnt of the line).
    pub(crate) fn watcher(&self) -> &W {
        &self.watcher
    }

    /// Forget the last line (its stretches were handed out with it).
    pub(crate) fn reset(&mut self) {
        self.stretches.clear();
        self.open = None;
        self.off = false;
        self.fed = false;
        self.watcher.reset();
    }

    /// Has the finder read part of this line? (It reads a line from its start: a stretch then
    /// begins where a string's contents do.)
    pub(crate) fn fed(&self) -> bool {
        self.fed
    }

    /// Is the finder still following this line? Once it gives up, the caller searches for the
    /// newline itself.
    pub(crate) fn on(&self) -> bool {
        !self.off
    }

    /// The stretches found so far (offsets from the line's start).
    pub(crate) fn stretches(&self) -> &[Quiet] {
        &self.stretches
    }

    /// Read `line[from..]` (`line` is the line's bytes so far, `from` where the last call
    /// stopped): the offset of its newline if it has one, the stretches before it noted
    /// (the one still open at the end is kept open for the next call).
    pub(crate) fn feed(&mut self, line: &[u8], from: usize) -> Option<usize> {
        self.fed = true;
        let mut pos = from;
        let mut quiet_bytes = 0;
        loop {
            let (k, or) = special(&line[pos..]);
            let high = or >= 0x80;
            let (start, was_high) = self.open.take().unwrap_or((pos, false));
            let Some(k) = k else {
                self.open = Some((start, was_high | high));
                quiet_bytes += line.len() - pos;
                self.watcher.grown(line, start, line.len());
                break;
            };
            let stop = pos + k;
            let kept = stop - start >= MIN_QUIET;
            if kept {
                quiet_bytes += stop - pos;
                self.stretches.push(Quiet {
                    start,
                    end: stop,
                    high: was_high | high,
                });
            }
            self.watcher.ended(line, start, stop, kept);
            if line[stop] == b'\n' {
                return Some(stop);
            }
            pos = stop + 1;
        }
        // Mostly short runs: this line's bytes are cheaper to leave to the scanner.
        if 2 * quiet_bytes < line.len() - from {
            self.off = true;
            if let Some((start, _)) = self.open.take() {
                self.watcher.ended(line, start, line.len(), false);
            }
        }
        None
    }

    /// The stretches with the one still open closed at the end of `line` (the line ended
    /// without a newline, at the end of the stream).
    pub(crate) fn close_at(&mut self, line: &[u8]) -> &[Quiet] {
        let end = line.len();
        if let Some((start, high)) = self.open.take() {
            let kept = end - start >= MIN_QUIET;
            if kept {
                self.stretches.push(Quiet { start, end, high });
            }
            self.watcher.ended(line, start, end, kept);
        }
        &self.stretches
    }
}

/// Where a string's contents stop from `p` in `b` (as [`special`], offsets absolute), jumping
/// over the quiet stretches that `hints` holds from its cursor on. `hints.next` moves forward
/// only: the scanner reads a line from left to right.
#[inline(always)]
pub(crate) fn special_hinted(b: &[u8], p: usize, hints: &mut Hints<'_>) -> (Option<usize>, u8) {
    if hints.next >= hints.quiet.len() {
        // No stretch ahead (every small line): the plain search.
        let (k, o) = special(&b[p..]);
        return (k.map(|k| p + k), o);
    }
    special_jumping(b, p, hints)
}

/// [`special_hinted`] with stretches ahead.
#[inline(never)]
fn special_jumping(b: &[u8], mut p: usize, hints: &mut Hints<'_>) -> (Option<usize>, u8) {
    let mut or = 0u8;
    loop {
        while hints.quiet.get(hints.next).is_some_and(|h| h.end <= p) {
            hints.next += 1;
        }
        let Some(h) = hints.quiet.get(hints.next).copied() else {
            let (k, o) = special(&b[p..]);
            return (k.map(|k| p + k), or | o);
        };
        if h.start > p {
            let (k, o) = special(&b[p..h.start]);
            or |= o;
            if let Some(k) = k {
                return (Some(p + k), or);
            }
            p = h.start;
        }
        debug_assert!(
            b[p..h.end]
                .iter()
                .all(|&x| x != b'"' && x != b'\\' && x >= 0x20),
            "a quiet stretch with a stop in it"
        );
        debug_assert_eq!(h.high, !b[h.start..h.end].is_ascii());
        or |= u8::from(h.high) << 7;
        p = h.end;
    }
}

/// The quiet stretches of a line, with the scanner's place in them.
#[derive(Debug, Default)]
pub(crate) struct Hints<'a> {
    quiet: &'a [Quiet],
    next: usize,
}

impl<'a> Hints<'a> {
    /// The stretches of a line of `len` bytes (any reaching past it are not used).
    pub(crate) fn new(quiet: &'a [Quiet], len: usize) -> Self {
        let usable = quiet.partition_point(|h| h.end <= len);
        Hints {
            quiet: &quiet[..usable],
            next: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;

    /// The quiet stretches of `line` by definition (runs of at least MIN_QUIET stop-free bytes
    /// from `from`, up to the newline).
    fn reference(line: &[u8], from: usize) -> (Option<usize>, Vec<Quiet>) {
        let nl = line[from..]
            .iter()
            .position(|&x| x == b'\n')
            .map(|k| from + k);
        let end = nl.unwrap_or(line.len());
        let mut out = Vec::new();
        let mut start = from;
        for i in from..=end {
            let stop = i == end || matches!(line[i], b'"' | b'\\') || line[i] < 0x20;
            if stop {
                if i - start >= MIN_QUIET && (i < end || nl.is_some()) {
                    out.push(Quiet {
                        start,
                        end: i,
                        high: !line[start..i].is_ascii(),
                    });
                }
                start = i + 1;
            }
        }
        (nl, out)
    }

    fn gen(rng: &mut XorShift, len: usize) -> Vec<u8> {
        // Long quiet runs, some with bytes outside ASCII, broken by stops of every kind.
        let mut s = Vec::with_capacity(len);
        while s.len() < len {
            let run = [
                rng.below(20),
                rng.below(5000),
                4095 + rng.below(3),
                rng.below(20_000),
            ][rng.below(4)];
            let high = rng.below(4) == 0;
            for _ in 0..run {
                s.push(if high && rng.below(1000) == 0 {
                    0xc3
                } else {
                    b"abxyz+/=09 "[rng.below(11)]
                });
            }
            s.push(b"\"\\\x01\x1f\t"[rng.below(5)]);
        }
        s.truncate(len);
        s
    }

    /// Fed in chunks of any size, the finder finds the reference's newline and stretches
    /// (unless it gave up, which it does only on lines of mostly short runs).
    #[test]
    fn the_stretches_are_the_stop_free_runs_fed_in_any_chunks() {
        let mut rng = XorShift::new(0x91e7_5eed_u64);
        let mut followed = 0;
        for case in 0..300 {
            let len = rng.below(120_000) + 1;
            let mut line = gen(&mut rng, len);
            let with_nl = case % 3 != 0;
            if with_nl {
                let at = rng.below(line.len());
                line[at] = b'\n';
            }
            let from = rng.below(line.len().min(9000));
            let mut f = QuietFinder::<()>::default();
            let mut fed = from;
            let mut found = None;
            while fed < line.len() && found.is_none() && f.on() {
                let upto = (fed + 1 + rng.below(70_000)).min(line.len());
                found = f.feed(&line[..upto], fed);
                fed = upto;
            }
            if !f.on() {
                continue;
            }
            followed += 1;
            let (nl, want) = reference(&line, from);
            assert_eq!(found, nl, "case {case}");
            if nl.is_none() {
                let got = f.close_at(&line).to_vec();
                let mut want = want;
                // The reference closes a run at the end only when there is a newline.
                let tail = line
                    .iter()
                    .rposition(|&x| matches!(x, b'"' | b'\\') || x < 0x20);
                let start = tail.map_or(from, |t| (t + 1).max(from));
                if line.len() - start >= MIN_QUIET {
                    want.push(Quiet {
                        start,
                        end: line.len(),
                        high: !line[start..].is_ascii(),
                    });
                }
                assert_eq!(got, want, "case {case}");
            } else {
                assert_eq!(f.stretches(), &want[..], "case {case}");
            }
        }
        assert!(followed > 150, "{followed} lines followed to the end");
    }

    /// A line of short runs (escapes every few dozen bytes) makes the finder give up.
    #[test]
    fn a_line_of_short_runs_is_left_to_the_scanner() {
        let line = "ab\\n".repeat(40_000).into_bytes();
        let mut f = QuietFinder::<()>::default();
        assert_eq!(f.feed(&line, 0), None);
        assert!(!f.on());
    }

    /// The hinted search finds what the plain one finds, from any starting point.
    #[test]
    fn the_hinted_search_stops_where_the_plain_one_does() {
        let mut rng = XorShift::new(0x41_17ed_u64);
        for case in 0..300 {
            let len = rng.below(60_000) + 1;
            let line = gen(&mut rng, len);
            let from = rng.below(line.len().min(5000));
            let mut f = QuietFinder::<()>::default();
            f.feed(&line, from);
            let quiet = f.close_at(&line).to_vec();
            let mut hints = Hints::new(&quiet, line.len());
            let mut p = 0;
            while p < line.len() {
                let (k, or) = special_hinted(&line, p, &mut hints);
                let (want, want_or) = special(&line[p..]);
                assert_eq!(k, want.map(|k| p + k), "case {case} at {p}");
                assert_eq!(or >> 7, want_or >> 7, "case {case} at {p}");
                p = k.map_or(line.len(), |k| k + 1 + rng.below(3));
            }
        }
    }
}
