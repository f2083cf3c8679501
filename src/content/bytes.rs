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
            break;
        }
        i += W;
    }
    while i < s.len() && class(s[i]) {
        i += 1;
    }
    i
}

/// The first non-ASCII byte at or after `from`, if any.
#[inline]
pub(crate) fn next_non_ascii(b: &[u8], from: usize) -> Option<usize> {
    let i = from + run_len(b, from, usize::MAX, |c| c < 0x80);
    (i < b.len()).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alnum(c: u8) -> bool {
        (c.wrapping_sub(b'0') < 10) | ((c | 0x20).wrapping_sub(b'a') < 26)
    }

    #[test]
    fn runs_across_block_boundaries_and_caps() {
        for len in [0usize, 1, 31, 32, 33, 63, 64, 65, 200, 1000] {
            for stop in [
                None,
                Some(0usize),
                Some(1),
                Some(31),
                Some(32),
                Some(33),
                Some(64),
            ] {
                let mut v = vec![b'x'; len];
                if let Some(s) = stop.filter(|&s| s < len) {
                    v[s] = b' ';
                }
                let want = v.iter().take_while(|c| c.is_ascii_alphanumeric()).count();
                assert_eq!(run_len(&v, 0, usize::MAX, alnum), want, "{len} {stop:?}");
                for cap in [0usize, 5, 32, 40, 200] {
                    assert_eq!(run_len(&v, 0, cap, alnum), want.min(cap), "{len} {cap}");
                }
                for from in [0usize, 1, 7, 33] {
                    let want = v.get(from..).map_or(0, |r| {
                        r.iter().take_while(|c| c.is_ascii_alphanumeric()).count()
                    });
                    assert_eq!(run_len(&v, from, usize::MAX, alnum), want);
                }
            }
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
}
