//! One pass over a text's bytes that proves which detectors cannot fire, so that the common
//! text (nothing found) is not read again by each of them: a text without any of the anchors'
//! bytes has no anchored credential, one without a run of 51 letters and digits no WIF key,
//! one without a run of 20 base64 characters no token to decode, one with fewer than twelve
//! words of three to eight letters no seed phrase, and the seed scan reads only the stretches
//! of twelve such words ([`SeedStretches`]). The bytes are classified 64 at a time into bit
//! masks (AVX2 where the CPU has it), the runs measured from the masks' edges; blocks of
//! lower-case letters inside a run (filler) are skipped at a vector compare's speed; the long
//! runs of letters are kept for the scans that still run ([`AlphaRuns`]).

use super::bytes::{run_len, AlphaRuns, SeedStretches};

/// Every anchor of `secrets` holds one of these bytes, except `xprv`/`tprv` (a test checks
/// it): those hold a `v`, and a hit needs a run of [`XPRV_RUN`] letters and digits.
pub(crate) const ANCHOR_BYTES: &[u8] = b"ASJ_-/~";
/// The shortest run of letters and digits an `xprv`/`tprv` hit lies in (prefix and body).
pub(crate) const XPRV_RUN: usize = 4 + 100;

const ALPHA: u8 = 1;
const DIGIT: u8 = 2;
/// `+ / = _ -`: the rest of the base64/base32/hex token class.
const TOKX: u8 = 4;
const ANCHOR: u8 = 8;
const V: u8 = 16;
/// A byte every injection marker's collapsed form needs: `<`, `[`, a newline or a blank (space,
/// tab, carriage return, vertical tab, form feed: `content::text::blank_byte`).
const MARK: u8 = 32;
const NON_ASCII: u8 = 64;

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let mut k = 0;
        if b.is_ascii_alphabetic() {
            k |= ALPHA;
        }
        if b.is_ascii_digit() {
            k |= DIGIT;
        }
        if matches!(b, b'+' | b'/' | b'=' | b'_' | b'-') {
            k |= TOKX;
        }
        let mut j = 0;
        while j < ANCHOR_BYTES.len() {
            if ANCHOR_BYTES[j] == b {
                k |= ANCHOR;
            }
            j += 1;
        }
        if b == b'v' {
            k |= V;
        }
        if matches!(b, b' ' | b'<' | b'[') || (b >= b'\t' && b <= b'\r') {
            k |= MARK;
        }
        if b >= 0x80 {
            k |= NON_ASCII;
        }
        t[c] = k;
        c += 1;
    }
    t
}

static CLASS: [u8; 256] = classes();

/// A lower-case letter other than `v`: in every run class, no anchor byte. Branch-free.
#[inline(always)]
fn quiet(c: u8) -> bool {
    (c.wrapping_sub(b'a') < 26) & (c != b'v')
}

/// What the pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Any byte of [`ANCHOR_BYTES`].
    pub(crate) anchor_byte: bool,
    /// Any `v`.
    pub(crate) v: bool,
    /// The longest run of `[A-Za-z0-9]`.
    pub(crate) max_alnum: usize,
    /// The longest run of `[A-Za-z0-9+/=_-]`.
    pub(crate) max_tok: usize,
    /// How many maximal runs of letters are three to eight long (BIP-39 word lengths).
    pub(crate) words: usize,
    /// The long runs of letters.
    pub(crate) runs: AlphaRuns,
    /// Where seed phrases can be (the stretches of twelve words or more).
    pub(crate) seeds: SeedStretches,
    /// Any blank, newline, `<` or `[` (an ASCII text without them holds no marker).
    pub(crate) marker_byte: bool,
    /// Any byte outside ASCII.
    pub(crate) non_ascii: bool,
    /// The pass read the whole text. `false`: it stopped once every detector was known to
    /// need running; the flags then say `true` (the checks they would skip run) and the
    /// lengths and counts are those of the part read (only the letters' runs and the seed
    /// stretches were followed to the end).
    pub(crate) complete: bool,
}

impl Shape {
    /// Can an anchored detector (`secrets::anchor_hits`) find anything?
    pub(crate) fn anchors_possible(&self) -> bool {
        self.anchor_byte || (self.v && self.max_alnum >= XPRV_RUN)
    }
}

/// No run is open.
const NONE: usize = usize::MAX;

/// How often the pass asks whether it has anything left to prove.
const CHECK_EVERY: usize = 4096;

/// Does every detector the shape could skip need running? (Then the rest of the pass
/// could only clear the ASCII and marker flags: texts dense in letters of every case, digits
/// and symbols, such as base64, where a branchy pass is slowest.)
fn nothing_to_skip(sh: &Shape, flags: u8) -> bool {
    flags & ANCHOR != 0
        && sh.max_alnum >= super::secrets::WIF_MIN
        && sh.max_tok >= super::encodings::MIN_TOKEN
        && sh.words >= super::secrets::SEED_MIN_WORDS
}

/// The maximal letter run `start..end` ends: a word (three to eight letters) or a break of the
/// seed stretches, maybe a long run.
#[inline(always)]
fn close_letters(
    start: usize,
    end: usize,
    words: &mut usize,
    runs: &mut AlphaRuns,
    seeds: &mut SeedStretches,
) {
    if (3..=8).contains(&(end - start)) {
        *words += 1;
        seeds.word(start);
    } else {
        seeds.brk(start);
    }
    runs.note(start, end);
}

/// The classes of 64 bytes, a bit a byte (bit `j`: byte `j`), and the flag classes seen.
#[derive(Clone, Copy, Default)]
struct Masks {
    alpha: u64,
    alnum: u64,
    tok: u64,
    non_ascii: u64,
    /// [`ANCHOR`], [`V`], [`MARK`] and [`NON_ASCII`] as seen (the first three only where
    /// asked for).
    flags: u8,
}

/// The flags a block's classes are asked for until the text has shown them all.
const FLAGS: u8 = ANCHOR | V | MARK;

/// [`Masks`] a byte at a time, through the class table (CPUs without AVX2).
#[inline(always)]
fn masks_table(c: &[u8; 64], _flags: bool) -> Masks {
    let mut m = Masks::default();
    for (j, &x) in c.iter().enumerate() {
        let k = CLASS[x as usize];
        m.flags |= k;
        m.alpha |= u64::from(k & ALPHA != 0) << j;
        m.alnum |= u64::from(k & (ALPHA | DIGIT) != 0) << j;
        m.tok |= u64::from(k & (ALPHA | DIGIT | TOKX) != 0) << j;
        m.non_ascii |= u64::from(x >> 7) << j;
    }
    m.flags &= FLAGS | NON_ASCII;
    m
}

/// [`Masks`] 32 bytes at a time: range compares for letters and digits, equality with each
/// byte of the small classes, one `movemask` per class.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
fn masks_avx2(c: &[u8; 64], flags: bool) -> Masks {
    use std::arch::x86_64::*;
    // SAFETY: both 32-byte loads lie inside `c` (unaligned loads).
    let (v0, v1) = unsafe {
        (
            _mm256_loadu_si256(c.as_ptr().cast::<__m256i>()),
            _mm256_loadu_si256(c.as_ptr().add(32).cast::<__m256i>()),
        )
    };
    let mut m = Masks::default();
    for (h, v) in [(0u32, v0), (32, v1)] {
        let is = |b: u8| _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b as i8));
        // `x - lo <= n` unsigned: the minimum with `n` is the value itself.
        let within = |x: __m256i, lo: u8, n: u8| {
            let d = _mm256_sub_epi8(x, _mm256_set1_epi8(lo as i8));
            _mm256_cmpeq_epi8(_mm256_min_epu8(d, _mm256_set1_epi8(n as i8)), d)
        };
        let alpha = within(_mm256_or_si256(v, _mm256_set1_epi8(0x20)), b'a', 25);
        let alnum = _mm256_or_si256(alpha, within(v, b'0', 9));
        let (slash, under, dash) = (is(b'/'), is(b'_'), is(b'-'));
        let tokx = _mm256_or_si256(
            _mm256_or_si256(is(b'+'), is(b'=')),
            _mm256_or_si256(slash, _mm256_or_si256(under, dash)),
        );
        let tok = _mm256_or_si256(alnum, tokx);
        let bits = |x: __m256i| u64::from(_mm256_movemask_epi8(x) as u32) << h;
        m.alpha |= bits(alpha);
        m.alnum |= bits(alnum);
        m.tok |= bits(tok);
        m.non_ascii |= bits(v);
        if flags {
            let anchor = _mm256_or_si256(
                _mm256_or_si256(_mm256_or_si256(is(b'A'), is(b'S')), is(b'J')),
                _mm256_or_si256(
                    _mm256_or_si256(slash, under),
                    _mm256_or_si256(dash, is(b'~')),
                ),
            );
            // Tab, newline, vertical tab, form feed, carriage return: 9 to 13.
            let mark = _mm256_or_si256(
                _mm256_or_si256(is(b' '), within(v, b'\t', 4)),
                _mm256_or_si256(is(b'<'), is(b'[')),
            );
            m.flags |= if bits(anchor) != 0 { ANCHOR } else { 0 }
                | if bits(is(b'v')) != 0 { V } else { 0 }
                | if bits(mark) != 0 { MARK } else { 0 };
        }
    }
    if m.non_ascii != 0 {
        m.flags |= NON_ASCII;
    }
    m
}

/// The longest run of one class, over blocks: the run open at a block's end is carried into
/// the next; a run inside a block (63 bytes at most) is measured only when one beats the
/// longest so far (at most 63 times a text).
#[derive(Debug)]
struct MaxRun {
    /// Where the run open at the block's start began (`NONE`: none).
    open: usize,
    max: usize,
}

impl MaxRun {
    fn new() -> MaxRun {
        MaxRun { open: NONE, max: 0 }
    }

    /// The class's mask `m` of the block at `base`.
    #[inline(always)]
    fn block(&mut self, m: u64, base: usize) {
        let mut rest = m;
        if self.open != NONE {
            let t = m.trailing_ones() as usize;
            if t == 64 {
                return;
            }
            self.max = self.max.max(base + t - self.open);
            self.open = NONE;
            rest &= m + 1; // (the carried run cleared)
        }
        if rest >> 63 != 0 {
            let lo = rest.leading_ones();
            self.open = base + 64 - lo as usize;
            rest &= u64::MAX.checked_shr(lo).unwrap_or(0);
        }
        if rest != 0 && self.max < 63 && has_run(rest, self.max + 1) {
            self.max = longest_run(rest);
        }
    }

    /// The text ends at `n`.
    fn finish(&mut self, n: usize) -> usize {
        if self.open != NONE {
            self.max = self.max.max(n - self.open);
        }
        self.max
    }
}

/// Does `m` hold a run of `len` (1 to 63) set bits? (The runs of `len` bits are ANDed
/// together by doubling shifts.)
#[inline(always)]
fn has_run(m: u64, len: usize) -> bool {
    let (mut p, mut w) = (m, 1);
    while 2 * w <= len {
        p &= p >> w;
        w *= 2;
    }
    p &= p >> (len - w);
    p != 0
}

/// The longest run of set bits of `m` (bit 63 clear).
fn longest_run(mut m: u64) -> usize {
    let mut best = 0;
    while m != 0 {
        let s = m.trailing_zeros();
        best = best.max((m >> s).trailing_ones() as usize);
        m &= m.wrapping_add(1 << s); // (the lowest run cleared)
    }
    best
}

/// The letter runs over blocks: words, long runs, seed stretches.
#[derive(Debug)]
struct Letters {
    /// Where the letter run open at the block's start began (`NONE`: none).
    open: usize,
    words: usize,
    runs: AlphaRuns,
    seeds: SeedStretches,
}

impl Letters {
    /// The letters `a` and the bytes outside ASCII `na` of the block at `base`.
    #[inline(always)]
    fn block(&mut self, a: u64, na: u64, base: usize) {
        let mut rest = a;
        if self.open != NONE {
            let t = a.trailing_ones() as usize;
            if t == 64 {
                return;
            }
            close_letters(
                self.open,
                base + t,
                &mut self.words,
                &mut self.runs,
                &mut self.seeds,
            );
            self.open = NONE;
            rest &= a + 1;
        }
        if rest >> 63 != 0 {
            let lo = rest.leading_ones();
            self.open = base + 64 - lo as usize;
            rest &= u64::MAX.checked_shr(lo).unwrap_or(0);
        }
        if rest | na == 0 {
            return;
        }
        // The runs inside the block (shorter than a long run): where they start, which are
        // words (three letters or more, not nine).
        let starts = rest & !(rest << 1);
        let a3 = rest & (rest >> 1) & (rest >> 2);
        let a9 = a3 & (a3 >> 3) & (a3 >> 6);
        let w = starts & a3 & !a9;
        let brk = (starts & !w) | na;
        self.words += w.count_ones() as usize;
        self.stretches(w, brk, base);
    }

    /// The seed stretches' events of a block: words starting at `w`, breaks at `brk`.
    #[inline(always)]
    fn stretches(&mut self, mut w: u64, mut brk: u64, base: usize) {
        let first = |w: u64| base + w.trailing_zeros() as usize;
        if brk == 0 {
            self.seeds.words(first(w), w.count_ones() as usize);
            return;
        }
        if self.seeds.open_words() + (w.count_ones() as usize) < super::secrets::SEED_MIN_WORDS {
            // No stretch can reach twelve words: only the words after the last break count.
            let last = 63 - brk.leading_zeros();
            let after = w & u64::MAX.checked_shl(last + 1).unwrap_or(0);
            self.seeds
                .restart(first(after), after.count_ones() as usize);
            return;
        }
        while brk != 0 {
            let p = brk.trailing_zeros();
            let below = w & ((1u64 << p) - 1);
            self.seeds.words(first(below), below.count_ones() as usize);
            self.seeds.brk(base + p as usize);
            w &= !below;
            brk &= brk - 1;
        }
        self.seeds.words(first(w), w.count_ones() as usize);
    }
}

/// The shape of `b`, in one pass.
#[inline]
pub(crate) fn shape(b: &[u8]) -> Shape {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::fast() {
        // SAFETY: the CPU has the vector paths' features (`simd::fast`, just above).
        return unsafe { shape_avx2(b) };
    }
    shape_blocks(b, masks_table)
}

/// [`shape`] with AVX2's masks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
fn shape_avx2(b: &[u8]) -> Shape {
    shape_blocks(b, |c, f| masks_avx2(c, f))
}

/// The pass, 64 bytes at a time: each block's classes as masks (`classify`), the runs from the
/// masks' edges; every [`CHECK_EVERY`] bytes the question whether anything is left to prove.
/// Once nothing is, only the letters are followed to the end: the seed scan still reads only
/// the stretches (the whole rest of a base64 text was read again: 4 ms per MiB).
#[inline(always)]
fn shape_blocks(b: &[u8], classify: impl Fn(&[u8; 64], bool) -> Masks) -> Shape {
    let mut pass = ShapeStream::default();
    pass.advance(b, true, classify);
    pass.finish(b.len())
}

/// The pass of [`shape`] over a text that arrives in parts (a large answer's text while it is
/// read: `jsonrpc::quiet`), each part read once, right after it came in. Fed the text so far
/// each time, then finished with the whole, it gives what [`shape`] of the whole gives
/// (the blocks, the skips and the checks fall where they fall in one pass).
#[derive(Debug)]
pub(crate) struct ShapeStream {
    letters: Letters,
    alnum: MaxRun,
    tok: MaxRun,
    flags: u8,
    /// The last block was letters only: every run class is open.
    letters_only: bool,
    /// Every detector must run: the shape as it was then.
    stopped: Option<Shape>,
    /// The bytes read (whole blocks; past the text's end by the tail's padding once finished).
    at: usize,
    /// A check is due at `at` once the text is known to go on past it.
    check_due: bool,
}

impl Default for ShapeStream {
    fn default() -> Self {
        ShapeStream {
            letters: Letters {
                open: NONE,
                words: 0,
                runs: AlphaRuns::default(),
                seeds: SeedStretches::default(),
            },
            alnum: MaxRun::new(),
            tok: MaxRun::new(),
            flags: 0,
            letters_only: false,
            stopped: None,
            at: 0,
            check_due: false,
        }
    }
}

impl ShapeStream {
    /// Read the whole blocks of `b` (the text so far, from its start) not read yet.
    pub(crate) fn feed(&mut self, b: &[u8]) {
        self.advance_here(b, false);
    }

    /// The shape of the whole text `b` (every part of it fed before, or not).
    pub(crate) fn finish_with(mut self, b: &[u8]) -> Shape {
        self.advance_here(b, true);
        self.finish(b.len())
    }

    /// [`ShapeStream::advance`] with this CPU's masks (AVX2's where it has them).
    fn advance_here(&mut self, b: &[u8], last: bool) {
        #[cfg(target_arch = "x86_64")]
        if crate::simd::fast() {
            // SAFETY: the CPU has the vector paths' features (`simd::fast`, just above).
            return unsafe { self.advance_avx2(b, last) };
        }
        self.advance(b, last, masks_table);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
    fn advance_avx2(&mut self, b: &[u8], last: bool) {
        self.advance(b, last, |c, f| masks_avx2(c, f));
    }

    /// Read on in `b`: its whole blocks, and with `last` (`b` is the whole text) its tail.
    #[inline(always)]
    fn advance(&mut self, b: &[u8], last: bool, classify: impl Fn(&[u8; 64], bool) -> Masks) {
        let n = b.len();
        let mut tail = [0u8; 64];
        loop {
            if self.check_due {
                if self.at >= n {
                    if !last {
                        return; // the check waits for the text to go on
                    }
                    self.check_due = false; // the text ends here: nothing to check
                    continue;
                }
                self.check_due = false;
                self.check();
            }
            if self.at >= n {
                return;
            }
            // The end of the check's stretch the reading is in, and of what is here of it.
            let check_at = (self.at / CHECK_EVERY + 1) * CHECK_EVERY;
            let end = n.min(check_at);
            while self.at < end {
                if self.letters_only {
                    // Blocks of quiet letters change nothing while every run is open: they are
                    // skipped at a vector compare's speed (a large answer of one letter).
                    self.at += run_len(b, self.at, end - self.at, quiet) / 64 * 64;
                    if self.at >= end {
                        break;
                    }
                }
                let i = self.at;
                let c: &[u8; 64] = match b.get(i..i + 64) {
                    Some(c) => c.try_into().expect("64 bytes"),
                    None if last => {
                        // The last bytes, then zeros (in no class: every run ends at the
                        // text's end).
                        tail[..n - i].copy_from_slice(&b[i..]);
                        &tail
                    }
                    None => return, // the block is not all here yet
                };
                let more = self.stopped.is_none();
                let m = classify(c, more && self.flags & FLAGS != FLAGS);
                self.letters.block(m.alpha, m.non_ascii, i);
                if more {
                    self.flags |= m.flags;
                    self.alnum.block(m.alnum, i);
                    self.tok.block(m.tok, i);
                }
                self.letters_only = m.alpha == u64::MAX;
                self.at += 64;
            }
            if self.at >= check_at && self.stopped.is_none() {
                self.check_due = true;
            }
        }
    }

    /// Is anything left to prove? If not, every detector runs: the shape is kept as it is.
    /// (Inlined: a call would keep the one pass's state in memory, not registers.)
    #[inline(always)]
    fn check(&mut self) {
        let sh = Shape {
            max_alnum: self.alnum.max,
            max_tok: self.tok.max,
            words: self.letters.words,
            ..Shape::default()
        };
        if nothing_to_skip(&sh, self.flags) {
            self.stopped = Some(Shape {
                anchor_byte: true,
                v: true,
                marker_byte: true,
                non_ascii: true,
                ..sh
            });
        }
    }

    /// The shape of the text of `n` bytes, read to its end.
    #[inline(always)]
    fn finish(mut self, n: usize) -> Shape {
        let mut letters = self.letters;
        if letters.open != NONE {
            close_letters(
                letters.open,
                n,
                &mut letters.words,
                &mut letters.runs,
                &mut letters.seeds,
            );
        }
        letters.seeds.finish(n);
        if let Some(sh) = self.stopped.take() {
            // (The long runs kept are letter runs, more of them: jumping them is right.)
            return Shape {
                runs: letters.runs,
                seeds: letters.seeds,
                ..sh
            };
        }
        Shape {
            anchor_byte: self.flags & ANCHOR != 0,
            v: self.flags & V != 0,
            max_alnum: self.alnum.finish(n),
            max_tok: self.tok.finish(n),
            words: letters.words,
            runs: letters.runs,
            seeds: letters.seeds,
            marker_byte: self.flags & MARK != 0,
            non_ascii: self.flags & NON_ASCII != 0,
            complete: true,
        }
    }
}

/// The shape of `line[start..end]`, a long run without stops of a server's line, computed
/// while the line was read ([`TextShapes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TextShape {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) shape: Shape,
}

/// The shapes of a long line's long runs, each computed as the run came in
/// (`jsonrpc::quiet::RunWatcher`): a large answer's text, read once more by the content checks
/// when the whole line is in, was out of the cache by then (issue 19). A run is a string's
/// contents when it starts after the opening quote and ends at the closing one; the content
/// checks take a text's shape from here only for exactly that range ([`TextShapes::of`]).
#[derive(Debug, Default)]
pub(crate) struct TextShapes {
    /// Compute them (the content checks are on).
    on: bool,
    /// The open run's start and its pass so far.
    open: Option<(usize, ShapeStream)>,
    done: Vec<TextShape>,
}

impl TextShapes {
    pub(crate) fn new(on: bool) -> Self {
        TextShapes {
            on,
            ..TextShapes::default()
        }
    }

    /// The shapes of the line read, in its order.
    pub(crate) fn done(&self) -> &[TextShape] {
        &self.done
    }

    /// The shape of the text `t` if `shapes` (those of `line`) hold it: `t` is borrowed from
    /// `line` and spans one of their runs exactly.
    pub(crate) fn of<'s>(shapes: &'s [TextShape], line: &[u8], t: &str) -> Option<&'s Shape> {
        if shapes.is_empty() {
            return None;
        }
        let start = (t.as_ptr() as usize).wrapping_sub(line.as_ptr() as usize);
        if start > line.len() || t.len() > line.len() - start {
            return None; // not a part of the line (a decoded text)
        }
        let k = shapes.binary_search_by_key(&start, |s| s.start).ok()?;
        let s = &shapes[k];
        (s.end == start + t.len()).then_some(&s.shape)
    }
}

impl crate::jsonrpc::quiet::RunWatcher for TextShapes {
    fn grown(&mut self, line: &[u8], start: usize, end: usize) {
        if !self.on || end - start < crate::jsonrpc::quiet::MIN_QUIET {
            return;
        }
        match &mut self.open {
            Some((s, pass)) if *s == start => pass.feed(&line[start..end]),
            _ => {
                let mut pass = ShapeStream::default();
                pass.feed(&line[start..end]);
                self.open = Some((start, pass));
            }
        }
    }

    fn ended(&mut self, line: &[u8], start: usize, end: usize, kept: bool) {
        let open = self.open.take();
        if !self.on || !kept {
            return;
        }
        let text = &line[start..end];
        let shape = match open {
            Some((s, pass)) if s == start => pass.finish_with(text),
            _ => shape(text),
        };
        self.done.push(TextShape { start, end, shape });
    }

    fn reset(&mut self) {
        self.open = None;
        self.done.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::bytes::{run_len_short, KEPT_STRETCHES};

    /// The shape pass as it was: a byte loop, runs of lower-case letters counted a block at a
    /// time (the reference of the block pass).
    pub(super) fn bytewise(b: &[u8]) -> Shape {
        let mut sh = Shape::default();
        let mut runs = AlphaRuns::default();
        let mut seeds = SeedStretches::default();
        let mut flags = 0u8;
        let (mut max_alnum, mut max_tok, mut words) = (0usize, 0usize, 0usize);
        // Where the open runs started (NONE: not in one).
        let (mut alpha0, mut alnum0, mut tok0) = (NONE, NONE, NONE);
        let mut i = 0;
        while i < b.len() {
            // A block, then the question whether anything is left to prove.
            let end = b.len().min(i + CHECK_EVERY);
            while i < end {
                let c = b[i];
                if quiet(c) {
                    // A letter: every run class goes on, for as long as the quiet letters do.
                    if alpha0 == NONE {
                        alpha0 = i;
                    }
                    if alnum0 == NONE {
                        alnum0 = i;
                    }
                    if tok0 == NONE {
                        tok0 = i;
                    }
                    i += run_len_short(b, i, usize::MAX, quiet, quiet);
                    continue;
                }
                let k = CLASS[c as usize];
                flags |= k;
                if k & ALPHA != 0 {
                    if alpha0 == NONE {
                        alpha0 = i;
                    }
                } else if alpha0 != NONE {
                    close_letters(alpha0, i, &mut words, &mut runs, &mut seeds);
                    alpha0 = NONE;
                }
                if k & NON_ASCII != 0 {
                    seeds.brk(i);
                }
                if k & (ALPHA | DIGIT) != 0 {
                    if alnum0 == NONE {
                        alnum0 = i;
                    }
                } else if alnum0 != NONE {
                    max_alnum = max_alnum.max(i - alnum0);
                    alnum0 = NONE;
                }
                if k & (ALPHA | DIGIT | TOKX) != 0 {
                    if tok0 == NONE {
                        tok0 = i;
                    }
                } else if tok0 != NONE {
                    max_tok = max_tok.max(i - tok0);
                    tok0 = NONE;
                }
                i += 1;
            }
            sh.max_alnum = max_alnum;
            sh.max_tok = max_tok;
            sh.words = words;
            if i < b.len() && nothing_to_skip(&sh, flags) {
                sh.anchor_byte = true;
                sh.v = true;
                sh.marker_byte = true;
                sh.non_ascii = true;
                sh.runs = runs; // (the runs kept so far are letter runs: jumping them is right)
                seeds.stop(i, (alpha0 != NONE).then_some(alpha0));
                sh.seeds = seeds;
                return sh;
            }
        }
        let n = b.len();
        if alpha0 != NONE {
            close_letters(alpha0, n, &mut words, &mut runs, &mut seeds);
        }
        seeds.finish(n);
        if alnum0 != NONE {
            max_alnum = max_alnum.max(n - alnum0);
        }
        if tok0 != NONE {
            max_tok = max_tok.max(n - tok0);
        }
        sh.max_alnum = max_alnum;
        sh.max_tok = max_tok;
        sh.words = words;
        sh.runs = runs;
        sh.seeds = seeds;
        sh.anchor_byte = flags & ANCHOR != 0;
        // (No quiet byte is in these classes: the flags saw every one of their bytes.)
        sh.v = flags & V != 0;
        sh.marker_byte = flags & MARK != 0;
        sh.non_ascii = flags & NON_ASCII != 0;
        sh.complete = true;
        sh
    }

    /// The shape as a byte loop computes it, the obvious way.
    fn reference(b: &[u8]) -> (bool, bool, usize, usize, usize, bool, bool) {
        let runs = |class: &dyn Fn(u8) -> bool| -> Vec<usize> {
            let mut v = Vec::new();
            let mut n = 0;
            for &c in b {
                if class(c) {
                    n += 1;
                } else {
                    if n > 0 {
                        v.push(n);
                    }
                    n = 0;
                }
            }
            if n > 0 {
                v.push(n);
            }
            v
        };
        let alnum = runs(&|c: u8| c.is_ascii_alphanumeric());
        let tok = runs(&|c: u8| c.is_ascii_alphanumeric() || b"+/=_-".contains(&c));
        let alpha = runs(&|c: u8| c.is_ascii_alphabetic());
        (
            b.iter().any(|c| ANCHOR_BYTES.contains(c)),
            b.contains(&b'v'),
            alnum.into_iter().max().unwrap_or(0),
            tok.into_iter().max().unwrap_or(0),
            alpha.into_iter().filter(|n| (3..=8).contains(n)).count(),
            b.iter().any(|c| b" \t<[\n".contains(c)),
            !b.is_ascii(),
        )
    }

    type Ranges = Vec<(usize, usize)>;

    /// The stretches of twelve words or more, and the long letter runs, the obvious way.
    fn reference_ranges(b: &[u8]) -> (Ranges, Ranges) {
        let (mut stretches, mut long) = (Vec::new(), Vec::new());
        let (mut from, mut count) = (0, 0);
        let mut close = |count: &mut usize, from: usize, to: usize| {
            if *count >= crate::content::secrets::SEED_MIN_WORDS {
                stretches.push((from, to));
            }
            *count = 0;
        };
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_alphabetic() {
                if !b[i].is_ascii() {
                    close(&mut count, from, i);
                }
                i += 1;
                continue;
            }
            let n = b[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphabetic())
                .count();
            if (3..=8).contains(&n) {
                if count == 0 {
                    from = i;
                }
                count += 1;
            } else {
                close(&mut count, from, i);
            }
            if n >= crate::content::bytes::LONG_RUN {
                long.push((i, i + n));
            }
            i += n;
        }
        close(&mut count, from, b.len());
        (stretches, long)
    }

    /// Texts of every byte class (letters of every case, `v`, digits, token symbols, anchors,
    /// markers, other ASCII, UTF-8 and stray bytes outside ASCII) in runs of every length, cut
    /// to lengths either side of the 32- and 64-byte blocks and of `CHECK_EVERY`.
    fn class_texts(n: usize, seed: u64) -> Vec<Vec<u8>> {
        const BYTES: &[u8] = b"aexvVZASJ_-/~+=059 \t<[\n.:;\"'{}()?!";
        const NON_ASCII: &[&[u8]] = &["\u{e9}".as_bytes(), "\u{65e5}".as_bytes(), &[0xff], &[0x80]];
        const WORDS: &[&str] = &[
            "legal",
            "winner",
            "thank",
            "a",
            "of",
            "notaseedw",
            "ZOO",
            "vvvv",
        ];
        let mut rng = crate::test_rng::XorShift::new(seed);
        let lens = [
            0usize, 1, 2, 3, 8, 9, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 4095,
            4096, 4097, 4159, 4160, 4161, 8191, 8192, 8193,
        ];
        (0..n)
            .map(|_| {
                let len = lens[rng.below(lens.len())] + rng.below(2) * rng.below(64);
                let mut v = Vec::new();
                if rng.below(4) == 0 {
                    // A start that lets the pass stop early.
                    v.extend_from_slice(b"ghp_ ");
                    v.extend_from_slice("Zq8vX2mN".repeat(8).as_bytes());
                    v.extend_from_slice(b" legal winner thank year wave sausage worth useful legal winner thank yellow ");
                }
                let dense = rng.below(3) == 0;
                while v.len() < len {
                    match rng.below(if dense { 4 } else { 10 }) {
                        0..=1 => v.push(BYTES[rng.below(BYTES.len())]),
                        2 => v.extend_from_slice(NON_ASCII[rng.below(NON_ASCII.len())]),
                        3 => {
                            let c = BYTES[rng.below(BYTES.len())];
                            let k = [1, 2, 3, 8, 9, 20, 51, 63, 64, 65, 104, 255, 256, 300][rng.below(14)];
                            v.extend(std::iter::repeat_n(c, k));
                        }
                        _ => {
                            v.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
                            v.push(b" ,\n7-"[rng.below(5)]);
                        }
                    }
                }
                v.truncate(len);
                v
            })
            .collect()
    }

    /// The block pass (with AVX2's masks and with the table's) computes every field as the
    /// byte loop did, and the stretches and long runs as the obvious loop finds them (also
    /// where it stops early: it follows the letters to the end).
    #[test]
    fn block_pass_is_the_byte_loop() {
        let mut texts = class_texts(4000, 0x2545_F491_4F6C_DD1D);
        for t in crate::content::secrets::tests::mixed_texts(800)
            .into_iter()
            .chain(crate::content::secrets::tests::long_texts())
            .chain(crate::content::secrets::tests::run_texts(800))
            .chain(crate::content::secrets::tests::seed_texts(
                800,
                0x51ED_2701_F00D_CAFE,
            ))
        {
            texts.push(t.into_bytes());
        }
        let (mut early, mut same_stop) = (0, 0);
        for (k, t) in texts.iter().enumerate() {
            let sh = shape(t);
            let table = shape_blocks(t, masks_table);
            assert_eq!(sh, table, "text {k}: {:?}", String::from_utf8_lossy(t));
            let old = bytewise(t);
            let (stretches, long) = reference_ranges(t);
            let kept = sh.runs.kept();
            assert_eq!(kept, &long[..long.len().min(16)], "text {k}");
            let n = sh.seeds.kept().len();
            assert_eq!(
                sh.seeds.kept().collect::<Vec<_>>(),
                &stretches[..n],
                "text {k}"
            );
            if let Some(rest) = sh.seeds.rest() {
                assert!(n == KEPT_STRETCHES && rest == stretches[n].0, "text {k}");
            } else {
                assert_eq!(n, stretches.len(), "text {k}");
            }
            if sh.complete {
                assert!(old.complete, "text {k}");
                assert_eq!(sh, old, "text {k}: {:?}", String::from_utf8_lossy(t));
                continue;
            }
            // Stopped early: every detector runs, every flag is up.
            early += 1;
            same_stop += usize::from(
                !old.complete
                    && (old.max_alnum, old.max_tok, old.words)
                        == (sh.max_alnum, sh.max_tok, sh.words),
            );
            assert!(
                t.len() > CHECK_EVERY && nothing_to_skip(&sh, ANCHOR),
                "text {k}"
            );
            assert!(sh.anchors_possible() && sh.marker_byte && sh.non_ascii);
        }
        assert!(early > 200 && same_stop > 0, "{early} {same_stop}");
    }

    /// Fed in parts of any size (down to a byte, across the blocks and the checks), the
    /// stream gives the one pass's shape, with AVX2's masks and with the table's.
    #[test]
    fn the_stream_in_parts_is_the_one_pass() {
        let mut texts = class_texts(1500, 0x5eed_57ae_a11a_0001);
        texts.extend(
            crate::content::secrets::tests::long_texts()
                .into_iter()
                .map(String::into_bytes),
        );
        texts.push(b"x".repeat(70_001));
        let mut rng = crate::test_rng::XorShift::new(0x0b10_c5ed);
        for (k, t) in texts.iter().enumerate() {
            let whole = shape(t);
            for table in [false, true] {
                let mut stream = ShapeStream::default();
                let mut upto = 0;
                while upto < t.len() {
                    upto = (upto + [1, 63, 64, 65, 4096, 5000][rng.below(6)]).min(t.len());
                    if rng.below(2) == 0 {
                        match table {
                            false => stream.feed(&t[..upto]),
                            true => stream.advance(&t[..upto], false, masks_table),
                        }
                    }
                }
                let got = match table {
                    false => stream.finish_with(t),
                    true => {
                        stream.advance(t, true, masks_table);
                        stream.finish(t.len())
                    }
                };
                assert_eq!(got, whole, "text {k} table {table}");
            }
        }
    }

    #[test]
    fn shape_is_what_a_byte_loop_computes() {
        let mut texts = crate::content::secrets::tests::mixed_texts(1500);
        texts.extend(crate::content::secrets::tests::long_texts());
        texts.extend(crate::content::secrets::tests::run_texts(1500));
        // Texts where the pass stops early: base64 lines, keys and words.
        for k in [1usize, 50, 200] {
            let line = "QUtJQVo3UTNCVDRMQ01XMlBYNU4rZ2hwXzRGcTlaV2ZvbzEyMzQ1Njc4OTBhYmNkZWZnaGlq+/";
            texts.push(format!(
                "{}{}",
                "legal winner thank year wave sausage ".repeat(k),
                line.repeat(k * 10)
            ));
        }
        let mut early = 0;
        for t in &texts {
            let sh = shape(t.as_bytes());
            if !sh.complete {
                // Stopped: every detector runs, every flag is up.
                early += 1;
                assert!(t.len() > CHECK_EVERY && nothing_to_skip(&sh, ANCHOR));
                assert!(sh.anchors_possible() && sh.marker_byte && sh.non_ascii);
                continue;
            }
            assert_eq!(
                (
                    sh.anchor_byte,
                    sh.v,
                    sh.max_alnum,
                    sh.max_tok,
                    sh.words,
                    sh.marker_byte,
                    sh.non_ascii
                ),
                reference(t.as_bytes()),
                "{t:?}"
            );
        }
        assert!(early > 0);
    }
}
