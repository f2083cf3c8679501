//! The stops of a JSON string (`"`, `\\`, a control character below 0x20), found 64 bytes at a
//! time and walked one by one: a string with escapes (a file's text has one every few dozen
//! bytes: `\n`, `\"`) is read as a bit mask per 64 bytes, not a new scan from each escape
//! (issue 19: `strict::special` called once per escape loaded and compared the bytes after it
//! again each time).

/// Bytes compared at a time: one bit of a `u64` each.
const BLOCK: usize = 64;

/// A walk over the stops of `b` from some offset onwards, in increasing order.
pub(crate) struct StringStops<'a> {
    b: &'a [u8],
    /// The block's first byte; the block holds `b[base..base + len]`.
    base: usize,
    len: usize,
    /// One bit per byte of the block that stops a string.
    stops: u64,
    /// One bit per byte of the block with its top bit set (outside ASCII).
    top: u64,
    avx2: bool,
}

impl<'a> StringStops<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        #[cfg(target_arch = "x86_64")]
        let avx2 = crate::simd::fast();
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        StringStops {
            b,
            base: 0,
            len: 0,
            stops: 0,
            top: 0,
            avx2,
        }
    }

    /// The first stop at or after `from` (`None`: none before the end of the bytes), and
    /// whether any byte from `from` to it is outside ASCII. `from` may be anywhere: behind the
    /// block, in it, or past it.
    #[inline(always)]
    pub(crate) fn next(&mut self, from: usize) -> (Option<usize>, bool) {
        // The common case: the next stop is in the block already read.
        let rel = from.wrapping_sub(self.base);
        if rel < self.len {
            // `rel` < `len` <= 64: the shifts are in range, and so is `k` (< 64 - `rel`).
            let hits = self.stops >> rel;
            if hits != 0 {
                let k = hits.trailing_zeros() as usize;
                let high = (self.top >> rel) & ((1u64 << k) - 1) != 0;
                return (Some(from + k), high);
            }
        }
        self.next_in_blocks(from)
    }

    /// [`Self::next`] past the block already read: block after block from `from` on.
    #[inline(never)]
    fn next_in_blocks(&mut self, mut from: usize) -> (Option<usize>, bool) {
        let mut high = false;
        loop {
            if from < self.base || from >= self.base + self.len {
                if from >= self.b.len() {
                    return (None, high);
                }
                self.load(from);
            }
            // The bits of the block from `from` on (`from - base` < `len` <= 64).
            let live = !0u64 << (from - self.base);
            let hits = self.stops & live;
            if hits != 0 {
                let k = hits.trailing_zeros() as usize;
                // The bytes before bit `k` (k < 64).
                high |= self.top & live & ((1u64 << k) - 1) != 0;
                return (Some(self.base + k), high);
            }
            high |= self.top & live != 0;
            from = self.base + self.len;
        }
    }

    /// Reads the block that starts at `at` (< the length): 64 bytes, or the rest.
    fn load(&mut self, at: usize) {
        self.base = at;
        let rest = &self.b[at..];
        if let Some(block) = rest.first_chunk::<BLOCK>() {
            self.len = BLOCK;
            #[cfg(target_arch = "x86_64")]
            if self.avx2 {
                // SAFETY: `avx2` says the CPU has the vector paths' features (`simd::fast`).
                (self.stops, self.top) = unsafe { masks_avx2(block) };
                return;
            }
            (self.stops, self.top) = masks(block);
        } else {
            // The tail: padded with a byte that is neither a stop nor outside ASCII.
            let mut block = [b'a'; BLOCK];
            block[..rest.len()].copy_from_slice(rest);
            self.len = rest.len();
            (self.stops, self.top) = masks(&block);
            let real = (1u64 << rest.len()) - 1;
            (self.stops, self.top) = (self.stops & real, self.top & real);
        }
    }
}

/// What each byte after a backslash stands for when the escape is that one byte (`\n`: a
/// newline), else 0 (`\u`, and every byte that escapes nothing).
pub(crate) const SHORT_ESCAPES: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'/' as usize] = b'/';
    t[b'b' as usize] = 8;
    t[b'f' as usize] = 12;
    t[b'n' as usize] = b'\n';
    t[b'r' as usize] = b'\r';
    t[b't' as usize] = b'\t';
    t
};

/// The stop and top-bit masks of 64 bytes, portably.
fn masks(block: &[u8; BLOCK]) -> (u64, u64) {
    let (mut stops, mut top) = (0u64, 0u64);
    for (k, &x) in block.iter().enumerate() {
        stops |= u64::from(x == b'"' || x == b'\\' || x < 0x20) << k;
        top |= u64::from(x >= 0x80) << k;
    }
    (stops, top)
}

/// [`masks`] with AVX2: two 32-byte compares to bit masks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
fn masks_avx2(block: &[u8; BLOCK]) -> (u64, u64) {
    let v = load_avx2(block);
    (stop_bits_avx2(v), top_bits_avx2(v))
}

/// A block's 64 bytes as two AVX2 vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
#[inline]
pub(crate) fn load_avx2(
    block: &[u8; BLOCK],
) -> (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i) {
    use std::arch::x86_64::_mm256_loadu_si256;
    // SAFETY: `block` holds 64 bytes; `loadu` reads 32 of them unaligned, twice.
    unsafe {
        (
            _mm256_loadu_si256(block.as_ptr().cast()),
            _mm256_loadu_si256(block.as_ptr().add(32).cast()),
        )
    }
}

/// One bit per byte of a loaded block that stops a string: `"`, `\\`, below 0x20 (also
/// `strict::special`'s).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
#[inline]
pub(crate) fn stop_bits_avx2(
    (v0, v1): (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i),
) -> u64 {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_max_epu8, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8,
    };
    let quote = _mm256_set1_epi8(b'"' as i8);
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let ctrl_max = _mm256_set1_epi8(0x1f);
    let stops = |v: __m256i| {
        let ctrl = _mm256_cmpeq_epi8(_mm256_max_epu8(v, ctrl_max), ctrl_max);
        let q = _mm256_or_si256(_mm256_cmpeq_epi8(v, quote), _mm256_cmpeq_epi8(v, backslash));
        _mm256_movemask_epi8(_mm256_or_si256(q, ctrl)) as u32 as u64
    };
    stops(v0) | stops(v1) << 32
}

/// One bit per byte of a loaded block equal to `c`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
#[inline]
pub(crate) fn eq_bits_avx2(
    (v0, v1): (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i),
    c: u8,
) -> u64 {
    use std::arch::x86_64::{_mm256_cmpeq_epi8, _mm256_movemask_epi8, _mm256_set1_epi8};
    let c = _mm256_set1_epi8(c as i8);
    _mm256_movemask_epi8(_mm256_cmpeq_epi8(v0, c)) as u32 as u64
        | (_mm256_movemask_epi8(_mm256_cmpeq_epi8(v1, c)) as u32 as u64) << 32
}

/// One bit per byte of a loaded block outside ASCII (its top bit set).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
#[inline]
pub(crate) fn top_bits_avx2(
    (v0, v1): (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i),
) -> u64 {
    use std::arch::x86_64::_mm256_movemask_epi8;
    _mm256_movemask_epi8(v0) as u32 as u64 | (_mm256_movemask_epi8(v1) as u32 as u64) << 32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stop in order from every kind of starting point (behind the block, in it, past
    /// it, at the tail), with the ASCII answer of the bytes between, on generated bytes; and
    /// the portable masks equal the AVX2 ones.
    #[test]
    fn the_walk_finds_every_stop_and_the_bytes_between() {
        let mut rng = crate::test_rng::XorShift::new(0x5eed_f057_09a1u64);
        let mut rand = move |n: usize| rng.below(n);
        const BYTES: &[u8] = b"ab x\"\\\x00\x1f\x7f\x80\xc3\xa9\xff !#[]\x1e\x20\x01";
        for _ in 0..3_000 {
            let len = [rand(8), rand(70), rand(200), rand(600)][rand(4)];
            let s: Vec<u8> = (0..len)
                .map(|_| {
                    if rand(6) > 0 {
                        b"abcxyz 019"[rand(10)]
                    } else {
                        BYTES[rand(BYTES.len())]
                    }
                })
                .collect();
            let mut walk = StringStops::new(&s);
            let mut from = rand(len + 2);
            for _ in 0..len + 2 {
                let first = s
                    .get(from..)
                    .and_then(|r| r.iter().position(|&x| x == b'"' || x == b'\\' || x < 0x20))
                    .map(|k| from + k);
                let before = &s[from.min(len)..first.unwrap_or(len)];
                assert_eq!(walk.next(from), (first, !before.is_ascii()), "{s:?} {from}");
                // On from the stop, a little past it, or jumping back or far ahead.
                from = match (first, rand(8)) {
                    (_, 0) => rand(len + 2),
                    (Some(k), 1) => k + 2 + rand(70),
                    (Some(k), _) => k + 1,
                    (None, _) => break,
                };
            }
            for block in s.chunks_exact(BLOCK) {
                let block: &[u8; BLOCK] = block.try_into().expect("64 bytes");
                #[cfg(target_arch = "x86_64")]
                if crate::simd::fast() {
                    // SAFETY: the CPU has the vector paths' features (`simd::fast`, just above).
                    assert_eq!(unsafe { masks_avx2(block) }, masks(block));
                }
            }
        }
    }
}
