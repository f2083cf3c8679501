//! Byte-class runs counted a block at a time: the scans of large texts (a 1 MiB token, long
//! ASCII runs) are dominated by "how far does this class of bytes go?", which a byte-at-a-time
//! loop answers at a few hundred MB/s. Each class is a branch-free predicate, so the check of a
//! 32-byte block compiles to vector compares; the byte loop only runs in the last block.

/// How many bytes from `from` (at most `cap`) satisfy `class`.
#[inline(always)]
pub(crate) fn run_len(b: &[u8], from: usize, cap: usize, class: impl Fn(u8) -> bool) -> usize {
    let end = from.saturating_add(cap).min(b.len());
    if from >= end {
        return 0;
    }
    let s = &b[from..end];
    const W: usize = 32;
    let mut i = 0;
    while i + W <= s.len() {
        let mut all = true;
        for &c in &s[i..i + W] {
            all &= class(c);
        }
        if !all {
            // The run ends in this block: one bit per byte, its first clear bit.
            let mut inside = 0u32;
            for (j, &c) in s[i..i + W].iter().enumerate() {
                inside |= u32::from(class(c)) << j;
            }
            return i + inside.trailing_ones() as usize;
        }
        i += W;
    }
    while i < s.len() && class(s[i]) {
        i += 1;
    }
    i
}

/// Bytes [`run_len_short`] reads one at a time before it goes to blocks.
const SHORT_HEAD: usize = 16;

/// [`run_len`] for runs that are usually short (words): the first [`SHORT_HEAD`] bytes one at
/// a time with `scalar` (no block set-up for a three-letter word), blocks with `block` (the
/// same class, written branch-free so that it vectorises) once the run is longer (a token, a
/// line of base64, a 1 MiB run). The head was 64 bytes: a 76-byte line of base64 then cost a
/// byte loop over most of it, on every scan that measures token runs (issue 19).
#[inline(always)]
pub(crate) fn run_len_short(
    b: &[u8],
    from: usize,
    cap: usize,
    scalar: impl Fn(u8) -> bool,
    block: impl Fn(u8) -> bool,
) -> usize {
    let end = from.saturating_add(cap).min(b.len());
    if from >= end {
        return 0;
    }
    let stop = end.min(from + SHORT_HEAD);
    let mut i = from + b[from..stop].iter().take_while(|&&c| scalar(c)).count();
    if i == stop && i < end {
        i += run_len(b, i, end - i, block);
    }
    i - from
}

/// Runs of ASCII letters this long or longer are kept by [`AlphaRuns`].
pub(crate) const LONG_RUN: usize = 256;
/// Most runs kept.
const KEPT: usize = 16;

/// The long runs of ASCII letters of one text (the seed-phrase scan measures every letter run
/// anyway): the scans that count wider classes of bytes (letters and digits, base64
/// characters) jump over them instead of counting them again, so a large text of letters is
/// counted once, not three times. The first [`KEPT`] runs of [`LONG_RUN`] bytes or more are
/// kept, in order; a run not kept is counted as before. No allocation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct AlphaRuns {
    runs: [(usize, usize); KEPT],
    n: usize,
}

impl AlphaRuns {
    /// `start..end` is a maximal run of ASCII letters, after every run noted before it.
    #[inline]
    pub(crate) fn note(&mut self, start: usize, end: usize) {
        if end - start >= LONG_RUN && self.n < KEPT {
            self.runs[self.n] = (start, end);
            self.n += 1;
        }
    }

    /// The runs kept, in order.
    #[inline(always)]
    pub(crate) fn kept(&self) -> &[(usize, usize)] {
        &self.runs[..self.n]
    }

    /// Keep `start..end` whatever its length (tests of the readers that jump over kept runs).
    #[cfg(test)]
    pub(crate) fn note_any(&mut self, start: usize, end: usize) {
        if self.n < KEPT {
            self.runs[self.n] = (start, end);
            self.n += 1;
        }
    }
}

/// Most seed stretches kept (8 bytes each: at most 512 KiB; a MiB of source text has about
/// 3700, a MiB of prose about 2100, so a 16 MiB answer of source text has about 60,000);
/// past them the seed scan reads the rest of the text.
pub(crate) const KEPT_STRETCHES: usize = 1 << 16;

/// Where a text's BIP-39 seed phrases can be, as the shape pass finds it: a phrase is twelve or
/// more consecutive words of three to eight ASCII letters (separated by ASCII bytes other
/// than letters), so it lies in a *stretch* of such words; a letter run of another length or
/// a byte outside ASCII ends a stretch. The stretches with at least twelve words are kept as
/// `secrets::seed_phrases` would scan them (from the first word's start to the byte that ended
/// the stretch, or the text's end), the first [`KEPT_STRETCHES`] of them; past those,
/// [`SeedStretches::rest`] says from where every byte must be read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SeedStretches {
    /// Kept as `u32` offsets (a stretch past 4 GiB is read with the rest).
    kept: Vec<(u32, u32)>,
    /// The open stretch: its first word's start and how many words it has.
    from: usize,
    count: usize,
    /// The rest of the text from here must be scanned whole.
    rest: Option<usize>,
}

impl SeedStretches {
    /// A word (a maximal run of three to eight ASCII letters) starts at `at`, after every
    /// event noted before.
    #[inline(always)]
    pub(crate) fn word(&mut self, at: usize) {
        if self.count == 0 {
            self.from = at;
        }
        self.count += 1;
    }

    /// `n` words, the first at `first`, after every event noted before and with no break
    /// between them.
    #[inline(always)]
    pub(crate) fn words(&mut self, first: usize, n: usize) {
        if n == 0 {
            return;
        }
        if self.count == 0 {
            self.from = first;
        }
        self.count += n;
    }

    /// How many words the open stretch has.
    #[inline(always)]
    pub(crate) fn open_words(&self) -> usize {
        self.count
    }

    /// Breaks whose stretches all have fewer than twelve words, then `n` words (the first at
    /// `first`): the open stretch is those `n` words.
    #[inline(always)]
    pub(crate) fn restart(&mut self, first: usize, n: usize) {
        self.count = n;
        if n > 0 {
            self.from = first;
        }
    }

    /// A letter run of another length, or a byte outside ASCII, starts at `at`: the open
    /// stretch ends there.
    #[inline(always)]
    pub(crate) fn brk(&mut self, at: usize) {
        if self.count >= super::secrets::SEED_MIN_WORDS {
            self.keep(self.from, at);
        }
        self.count = 0;
    }

    fn keep(&mut self, from: usize, to: usize) {
        if self.rest.is_some() {
            return; // (read with the rest)
        }
        match (u32::try_from(from), u32::try_from(to)) {
            (Ok(f), Ok(t)) if self.kept.len() < KEPT_STRETCHES => self.kept.push((f, t)),
            _ => self.rest = Some(from),
        }
    }

    /// The text ends at `n`.
    pub(crate) fn finish(&mut self, n: usize) {
        self.brk(n);
        self.from = 0; // (no stretch open: the state compares equal)
    }

    /// The pass stopped at `at`, a letter run open since `open` (`None`: not in one): the
    /// seed scan must read everything from the open stretch's first word, or the open run,
    /// or `at`. (The tests' byte-loop reference of the shape pass stops so; the pass follows
    /// the letters to the end.)
    #[cfg(test)]
    pub(crate) fn stop(&mut self, at: usize, open: Option<usize>) {
        let resume = if self.count > 0 {
            self.from
        } else {
            open.unwrap_or(at)
        };
        self.rest = Some(self.rest.map_or(resume, |r| r.min(resume)));
        (self.from, self.count) = (0, 0);
    }

    /// The stretches to scan, in order.
    pub(crate) fn kept(&self) -> impl ExactSizeIterator<Item = (usize, usize)> + '_ {
        self.kept.iter().map(|&(f, t)| (f as usize, t as usize))
    }

    /// From where the seed scan must read the whole rest of the text, if anywhere.
    pub(crate) fn rest(&self) -> Option<usize> {
        self.rest
    }
}

/// No letter run is open.
const NO_RUN: usize = usize::MAX;

/// The letter runs of `b[from..to]` and its bytes outside ASCII, in order, as `(start, end)`
/// tokens (a byte outside ASCII: an empty token at it), read 64 bytes at a time from the
/// blocks' masks (the seed search's words: one event per edge, no branch per byte). `to` must
/// not be inside a letter run that began before it, nor `from` (a letter run ends at `to`).
#[derive(Debug, Clone)]
pub(crate) struct LetterRuns {
    at: usize,
    to: usize,
    /// Where the letter run open at `at` began (`NO_RUN`: none).
    open: usize,
}

impl LetterRuns {
    pub(crate) fn new(from: usize, to: usize) -> LetterRuns {
        LetterRuns {
            at: from,
            to,
            open: NO_RUN,
        }
    }

    /// Every byte of the range has been read.
    #[inline(always)]
    pub(crate) fn done(&self) -> bool {
        self.at >= self.to
    }

    /// Reads the next block (at most 64 bytes) and pushes its tokens to `out`; the run open
    /// at the range's end is pushed with the last block.
    #[inline]
    pub(crate) fn block(&mut self, b: &[u8], out: &mut Vec<(usize, usize)>) {
        let p = self.at;
        let n = (self.to - p).min(64);
        let valid = u64::MAX >> (64 - n);
        let (a, na) = letter_masks(b, p);
        let (a, na) = (a & valid, na & valid);
        let prev = (a << 1) | u64::from(self.open != NO_RUN);
        let starts = a & !prev;
        let ends = !a & prev & valid;
        if na == 0 {
            // Letters only (the common block): the runs' edges alternate, so each end closes
            // the run open before it (carried in, or the start before it) and the runs are
            // taken a pair of bit scans at a time, with no branch on which edge comes next.
            out.reserve(33);
            let (mut s, mut en) = (starts, ends);
            if self.open != NO_RUN && en != 0 {
                out.push((self.open, p + en.trailing_zeros() as usize));
                self.open = NO_RUN;
                en &= en - 1;
            }
            while en != 0 {
                out.push((
                    p + s.trailing_zeros() as usize,
                    p + en.trailing_zeros() as usize,
                ));
                s &= s - 1;
                en &= en - 1;
            }
            if s != 0 {
                self.open = p + s.trailing_zeros() as usize;
            }
        } else {
            // Bytes outside ASCII too (each an empty token): edge by edge.
            let mut e = starts | ends | na;
            while e != 0 {
                let j = e.trailing_zeros() as usize;
                let bit = 1u64 << j;
                if ends & bit != 0 {
                    out.push((self.open, p + j));
                    self.open = NO_RUN;
                }
                if starts & bit != 0 {
                    self.open = p + j;
                }
                if na & bit != 0 {
                    out.push((p + j, p + j));
                }
                e &= e - 1;
            }
        }
        self.at = p + n;
        if self.at >= self.to && self.open != NO_RUN {
            out.push((self.open, self.to));
            self.open = NO_RUN;
        }
    }
}

/// The ASCII letters and the bytes outside ASCII of the 64 bytes from `p` (past the text's
/// end: neither), a bit a byte.
#[inline(always)]
fn letter_masks(b: &[u8], p: usize) -> (u64, u64) {
    let mut tail = [0u8; 64];
    let c: &[u8; 64] = match b.get(p..p + 64) {
        Some(c) => c.try_into().expect("64 bytes"),
        None => {
            tail[..b.len() - p].copy_from_slice(&b[p..]);
            &tail
        }
    };
    #[cfg(target_arch = "x86_64")]
    {
        letter_masks_sse2(c)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        letter_masks_bytes(c)
    }
}

/// [`letter_masks`] a byte at a time.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn letter_masks_bytes(c: &[u8; 64]) -> (u64, u64) {
    let (mut a, mut na) = (0u64, 0u64);
    for (j, &x) in c.iter().enumerate() {
        a |= u64::from(alpha(x)) << j;
        na |= u64::from(x >> 7) << j;
    }
    (a, na)
}

/// [`letter_masks`] 16 bytes at a time (SSE2: every x86-64 CPU has it).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn letter_masks_sse2(c: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::*;
    let (mut a, mut na) = (0u64, 0u64);
    for h in 0..4 {
        // SAFETY: the 16-byte load lies inside `c` (an unaligned load); SSE2 is part of
        // x86-64 (every CPU the target runs on has it).
        let (letter, v) = unsafe {
            let v = _mm_loadu_si128(c.as_ptr().add(16 * h).cast::<__m128i>());
            // `(x | 0x20) - b'a' <= 25` unsigned: the minimum with 25 is the value itself.
            let d = _mm_sub_epi8(
                _mm_or_si128(v, _mm_set1_epi8(0x20)),
                _mm_set1_epi8(b'a' as i8),
            );
            (_mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(25)), d), v)
        };
        // SAFETY: as above.
        let (ml, mv) = unsafe { (_mm_movemask_epi8(letter), _mm_movemask_epi8(v)) };
        a |= u64::from(ml as u16) << (16 * h);
        na |= u64::from(mv as u16) << (16 * h);
    }
    (a, na)
}

/// `[A-Za-z0-9]`, branch-free (vectorises in [`run_len`]).
#[cfg(test)]
#[inline(always)]
pub(crate) fn alnum(c: u8) -> bool {
    (c.wrapping_sub(b'0') < 10) | ((c | 0x20).wrapping_sub(b'a') < 26)
}

/// `[A-Za-z]`, branch-free.
#[inline(always)]
pub(crate) fn alpha(c: u8) -> bool {
    (c | 0x20).wrapping_sub(b'a') < 26
}

/// The first non-ASCII byte at or after `from`, if any.
#[inline]
pub(crate) fn next_non_ascii(b: &[u8], from: usize) -> Option<usize> {
    let i = from + run_len(b, from, usize::MAX, |c| c < 0x80);
    (i < b.len()).then_some(i)
}

/// The offsets of `b` no ASCII letter run crosses (its ends, and every edge of a run): where
/// the tests start and end the ranges they scan.
#[cfg(test)]
pub(crate) fn letter_run_edges(b: &[u8]) -> Vec<usize> {
    (0..=b.len())
        .filter(|&i| {
            i == 0 || i == b.len() || !b[i - 1].is_ascii_alphabetic() || !b[i].is_ascii_alphabetic()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_across_block_boundaries_and_caps() {
        for len in [
            0usize, 1, 31, 32, 33, 63, 64, 65, 95, 96, 97, 128, 200, 1000,
        ] {
            for stop in [
                None,
                Some(0usize),
                Some(1),
                // Where `run_len_short`'s head ends and its blocks start and end.
                Some(15),
                Some(16),
                Some(17),
                Some(47),
                Some(48),
                Some(49),
                Some(31),
                Some(32),
                Some(33),
                Some(64),
                Some(65),
                Some(95),
                Some(97),
            ] {
                let mut v = vec![b'x'; len];
                if let Some(s) = stop.filter(|&s| s < len) {
                    v[s] = b' ';
                }
                let want = v.iter().take_while(|c| c.is_ascii_alphanumeric()).count();
                assert_eq!(run_len(&v, 0, usize::MAX, alnum), want, "{len} {stop:?}");
                assert_eq!(
                    run_len_short(&v, 0, usize::MAX, |c| c.is_ascii_alphanumeric(), alnum),
                    want,
                    "{len} {stop:?}"
                );
                for cap in [0usize, 5, 32, 40, 63, 64, 65, 100, 200] {
                    assert_eq!(run_len(&v, 0, cap, alnum), want.min(cap), "{len} {cap}");
                    assert_eq!(
                        run_len_short(&v, 0, cap, |c| c.is_ascii_alphanumeric(), alnum),
                        want.min(cap),
                        "{len} {cap}"
                    );
                }
                for from in [0usize, 1, 7, 33, 64, 65] {
                    let want = v.get(from..).map_or(0, |r| {
                        r.iter().take_while(|c| c.is_ascii_alphanumeric()).count()
                    });
                    assert_eq!(run_len(&v, from, usize::MAX, alnum), want);
                    assert_eq!(
                        run_len_short(&v, from, usize::MAX, |c| c.is_ascii_alphanumeric(), alnum),
                        want
                    );
                }
            }
        }
        for c in 0..=255u8 {
            assert_eq!(alnum(c), c.is_ascii_alphanumeric(), "{c}");
            assert_eq!(alpha(c), c.is_ascii_alphabetic(), "{c}");
        }
        // A non-ASCII byte at the very end, or in the middle of a block.
        let mut s = "a".repeat(70).into_bytes();
        assert_eq!(next_non_ascii(&s, 0), None);
        s.extend("é".as_bytes());
        assert_eq!(next_non_ascii(&s, 0), Some(70));
        assert_eq!(next_non_ascii(&s, 71), Some(71));
        assert_eq!(next_non_ascii(&s, 72), None);
        assert_eq!(next_non_ascii(b"ab\xc3\xa9cd", 0), Some(2));
    }

    /// The letter runs and non-ASCII bytes of `b[from..to]`, a byte at a time.
    fn letter_runs_bytewise(b: &[u8], from: usize, to: usize) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut i = from;
        while i < to {
            if b[i].is_ascii_alphabetic() {
                let n = b[i..to]
                    .iter()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .count();
                v.push((i, i + n));
                i += n;
            } else {
                if !b[i].is_ascii() {
                    v.push((i, i));
                }
                i += 1;
            }
        }
        v
    }

    #[test]
    fn letter_runs_are_the_byte_loops() {
        let mut rng = crate::test_rng::XorShift::new(0x5EED_5EED);
        let pieces: &[&[u8]] = &[
            b"a",
            b"ab",
            b"abcdefgh",
            b"XyZ",
            b" ",
            b"1",
            b"\xc3\xa9",
            b"\xe6\x97\xa5",
            b"z",
            b"-",
            b"@",
            b"[",
            b"`",
            b"{",
        ];
        for _ in 0..3000 {
            let mut t = Vec::new();
            let len = [10, 63, 64, 65, 130, 300][rng.below(6)];
            while t.len() < len {
                t.extend_from_slice(pieces[rng.below(pieces.len())]);
                if rng.below(4) == 0 {
                    t.extend(std::iter::repeat_n(b'q', rng.below(140)));
                }
            }
            // `from` and `to` at the range's letter-run edges (or anywhere no run crosses).
            let edges = letter_run_edges(&t);
            let from = edges[rng.below(edges.len())];
            let to = edges[rng.below(edges.len())].max(from);
            // A letter run may start at `to` (the range ends before it).
            let runs = |to: usize| {
                let mut got = Vec::new();
                let mut lr = LetterRuns::new(from, to);
                while !lr.done() {
                    lr.block(&t, &mut got);
                }
                got
            };
            assert_eq!(
                runs(to),
                letter_runs_bytewise(&t, from, to),
                "{t:?} {from} {to}"
            );
            assert_eq!(runs(t.len()), letter_runs_bytewise(&t, from, t.len()));
        }
        for c in 0..=255u8 {
            let mut blk = [b' '; 64];
            blk[c as usize % 64] = c;
            blk[63 - c as usize % 64] = c;
            assert_eq!(letter_masks_bytes(&blk), letter_masks(&blk, 0), "{c}");
        }
    }
}
