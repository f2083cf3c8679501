//! A small deterministic generator for the differential tests (xorshift64): the same seed gives
//! the same cases on every run and machine, so a failure is reproduced by running the test again.

pub(crate) struct XorShift(u64);

impl XorShift {
    /// `seed` must not be 0 (xorshift stays at 0).
    pub(crate) fn new(seed: u64) -> XorShift {
        debug_assert_ne!(seed, 0);
        XorShift(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
