//! The maximal runs of a byte class in a text, found 64 bytes at a time from a block's mask (a
//! bit a byte): each run costs a few bit operations at its two edges, whatever its length, and
//! no byte is compared on its own. The WIF key search and the encoded-token search each needed
//! every run of their class measured; measured a byte at a time for the first 16 bytes of each,
//! that was ~46% of the checks' time on a text of base64 lines (issue 19).
//!
//! The long letter runs the text's shape pass found ([`AlphaRuns`]) are jumped over, as the
//! byte loops did: a class that holds every ASCII letter holds them whole, so a 16 MiB run of
//! one letter is not read again.

use super::bytes::AlphaRuns;

/// A byte class whose 64-byte blocks give a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// `[A-Za-z0-9]` (the WIF key search's runs).
    Alnum,
    /// `[A-Za-z0-9+/=_-]` (the characters of base64, base64url, base32 and hex tokens).
    Token,
}

impl Class {
    /// Is `c` in the class (a byte at a time: the reference of the masks)?
    #[inline(always)]
    pub(crate) fn has(self, c: u8) -> bool {
        let alnum = c.is_ascii_alphanumeric();
        match self {
            Class::Alnum => alnum,
            Class::Token => alnum || matches!(c, b'+' | b'/' | b'=' | b'_' | b'-'),
        }
    }

    /// The class's bytes among `c`, bit `j` for `c[j]`.
    #[inline(always)]
    fn mask(self, c: &[u8; 64]) -> u64 {
        #[cfg(target_arch = "x86_64")]
        {
            mask_sse2(self, c)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            mask_bytes(self, c)
        }
    }
}

/// [`Class::mask`] a byte at a time.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn mask_bytes(class: Class, c: &[u8; 64]) -> u64 {
    let mut m = 0u64;
    for (j, &x) in c.iter().enumerate() {
        m |= u64::from(class.has(x)) << j;
    }
    m
}

/// [`Class::mask`] 16 bytes at a time (SSE2: every x86-64 CPU has it).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn mask_sse2(class: Class, c: &[u8; 64]) -> u64 {
    use std::arch::x86_64::*;
    let mut m = 0u64;
    for h in 0..4 {
        // SAFETY: the 16-byte load lies inside `c` (an unaligned load); SSE2 is part of
        // x86-64.
        let bits = unsafe {
            let v = _mm_loadu_si128(c.as_ptr().add(16 * h).cast::<__m128i>());
            // `x - lo <= span` unsigned: the minimum with `span` is the value itself.
            let within = |x: __m128i, lo: u8, span: u8| {
                let d = _mm_sub_epi8(x, _mm_set1_epi8(lo as i8));
                _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(span as i8)), d)
            };
            let letter = within(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', 25);
            let mut inside = _mm_or_si128(letter, within(v, b'0', 9));
            if class == Class::Token {
                for x in [b'+', b'/', b'=', b'_', b'-'] {
                    inside = _mm_or_si128(inside, _mm_cmpeq_epi8(v, _mm_set1_epi8(x as i8)));
                }
            }
            _mm_movemask_epi8(inside)
        };
        m |= u64::from(bits as u16) << (16 * h);
    }
    m
}

/// No run open.
const NONE: usize = usize::MAX;

/// The maximal runs of `class` in a text, in order, as `(start, end)`.
#[derive(Debug, Clone)]
pub(crate) struct ClassRuns<'a> {
    b: &'a [u8],
    class: Class,
    /// Long letter runs to jump over, and the cursor into them.
    kept: AlphaRuns,
    k: usize,
    /// Where the next block starts.
    at: usize,
    /// Where the run open before `at` began (`NONE`: none).
    open: usize,
    /// The current block's start and its edges not yet reported (starts, and the first byte
    /// after a run), with which of them are starts.
    base: usize,
    edges: u64,
    starts: u64,
}

impl<'a> ClassRuns<'a> {
    /// The runs of `class` in `b`; `kept` holds runs of ASCII letters of `b` (the shape
    /// pass's, or none), which `class` must hold.
    pub(crate) fn new(b: &'a [u8], class: Class, kept: AlphaRuns) -> ClassRuns<'a> {
        ClassRuns {
            b,
            class,
            kept,
            k: 0,
            at: 0,
            open: NONE,
            base: 0,
            edges: 0,
            starts: 0,
        }
    }

    /// Read the next block (up to 64 bytes, ending where a kept run starts), or jump over a
    /// kept run. `false`: the text is read.
    #[inline]
    fn advance(&mut self) -> bool {
        let b = self.b;
        loop {
            if self.at >= b.len() {
                return false;
            }
            match self.kept.kept().get(self.k).copied() {
                Some((s, e)) if s <= self.at => {
                    self.k += 1;
                    if e > self.at {
                        // Letters to `e`: in the class; the run is open from `at` at the latest.
                        if self.open == NONE {
                            self.open = self.at;
                        }
                        self.at = e;
                    }
                    continue;
                }
                next => {
                    let lim = next.map_or(b.len(), |(s, _)| s);
                    let p = self.at;
                    let n = (lim - p).min(64);
                    let valid = u64::MAX >> (64 - n);
                    let m = self.class.mask(&block(b, p)) & valid;
                    let before = (m << 1) | u64::from(self.open != NONE);
                    self.starts = m & !before;
                    self.edges = self.starts | (!m & before & valid);
                    self.base = p;
                    self.at = p + n;
                    return true;
                }
            }
        }
    }
}

/// The 64 bytes from `p` (zeros past the text's end).
#[inline(always)]
fn block(b: &[u8], p: usize) -> [u8; 64] {
    match b.get(p..p + 64) {
        Some(c) => c.try_into().expect("64 bytes"),
        None => {
            let mut tail = [0u8; 64];
            tail[..b.len() - p].copy_from_slice(&b[p..]);
            tail
        }
    }
}

impl Iterator for ClassRuns<'_> {
    type Item = (usize, usize);

    #[inline]
    fn next(&mut self) -> Option<(usize, usize)> {
        loop {
            while self.edges != 0 {
                let j = self.edges.trailing_zeros();
                self.edges &= self.edges - 1;
                let at = self.base + j as usize;
                if self.starts >> j & 1 != 0 {
                    self.open = at;
                } else {
                    let start = std::mem::replace(&mut self.open, NONE);
                    return Some((start, at));
                }
            }
            if !self.advance() {
                // The run open at the text's end.
                let start = std::mem::replace(&mut self.open, NONE);
                return (start != NONE).then_some((start, self.b.len()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runs a byte at a time (the reference).
    fn runs_bytewise(b: &[u8], class: Class) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if !class.has(b[i]) {
                i += 1;
                continue;
            }
            let s = i;
            while i < b.len() && class.has(b[i]) {
                i += 1;
            }
            out.push((s, i));
        }
        out
    }

    /// The letter runs of `b` at least `min` long, as the shape pass keeps them.
    fn kept_runs(b: &[u8], min: usize) -> AlphaRuns {
        let mut kept = AlphaRuns::default();
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_alphabetic() {
                i += 1;
                continue;
            }
            let s = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            if i - s >= min {
                kept.note_any(s, i);
            }
        }
        kept
    }

    #[test]
    fn the_masks_are_the_byte_class() {
        let all: Vec<u8> = (0..=255u8).collect();
        for class in [Class::Alnum, Class::Token] {
            for chunk in all.chunks(64) {
                let c: [u8; 64] = chunk.try_into().unwrap();
                assert_eq!(class.mask(&c), mask_bytes(class, &c), "{class:?}");
            }
        }
    }

    #[test]
    fn runs_are_the_byte_loops() {
        // Texts of a few classes of bytes, runs of every length across the blocks' edges,
        // with and without long letter runs to jump over.
        let alphabet: &[&[u8]] = &[
            b"a",
            b"Z",
            b"7",
            b"+",
            b"/",
            b"=",
            b"_",
            b"-",
            b" ",
            b"\n",
            "\u{e9}".as_bytes(),
            b"\"",
            b".",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut texts: Vec<Vec<u8>> = vec![vec![], b"a".to_vec(), b"+".to_vec(), vec![b'x'; 1000]];
        for len in [1usize, 15, 16, 17, 63, 64, 65, 127, 128, 129, 300] {
            for pre in [0usize, 1, 62, 63, 64, 65] {
                let mut t = vec![b' '; pre];
                t.extend(std::iter::repeat_n(b'k', len));
                t.push(b'/');
                t.extend(std::iter::repeat_n(b'Q', len));
                texts.push(t);
            }
        }
        for _ in 0..3000 {
            let n = rnd(400);
            let mut t = Vec::new();
            while t.len() < n {
                // Runs of one piece, long enough sometimes to be kept.
                let piece = alphabet[rnd(alphabet.len())];
                let reps = if rnd(8) == 0 {
                    1 + rnd(300)
                } else {
                    1 + rnd(4)
                };
                for _ in 0..reps {
                    t.extend_from_slice(piece);
                }
            }
            texts.push(t);
        }
        for t in &texts {
            for class in [Class::Alnum, Class::Token] {
                let want = runs_bytewise(t, class);
                for min in [usize::MAX, 1, 40] {
                    let kept = if min == usize::MAX {
                        AlphaRuns::default()
                    } else {
                        kept_runs(t, min)
                    };
                    let got: Vec<_> = ClassRuns::new(t, class, kept).collect();
                    assert_eq!(
                        got,
                        want,
                        "{class:?}, kept from {min}: {:?}",
                        String::from_utf8_lossy(t)
                    );
                }
            }
        }
    }
}
