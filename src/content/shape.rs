//! One pass over a text's bytes that proves which detectors cannot fire, so that the common
//! text (nothing found) is not read again by each of them: a text without any of the anchors'
//! bytes has no anchored credential, one without a run of 51 letters and digits no WIF key,
//! one without a run of 20 base64 characters no token to decode, one with fewer than twelve
//! words of three to eight letters no seed phrase. Runs of lower-case letters (the bulk of
//! prose words and of filler) are measured a block at a time; the long runs of letters are
//! kept for the scans that still run ([`AlphaRuns`]).

use super::bytes::{run_len_short, AlphaRuns, SeedStretches};

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
/// A byte every injection marker's collapsed form needs (space, tab, `<`, `[`, newline).
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
        if matches!(b, b' ' | b'\t' | b'<' | b'[' | b'\n') {
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
#[derive(Debug, Default, Clone)]
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
    /// Any space, tab, `<`, `[` or newline (an ASCII text without them holds no marker).
    pub(crate) marker_byte: bool,
    /// Any byte outside ASCII.
    pub(crate) non_ascii: bool,
    /// The pass read the whole text. `false`: it stopped once every detector was known to
    /// need running; the flags then say `true` (the checks they would skip run) and the
    /// lengths and counts are those of the part read.
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

/// The shape of `b`, in one pass.
pub(crate) fn shape(b: &[u8]) -> Shape {
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

#[cfg(test)]
mod tests {
    use super::*;

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
