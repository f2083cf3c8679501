//! The large texts the benchmarks answer with (`capjail-bench`'s echo server,
//! `CAPJAIL_BENCH_TEXT`) and `cpu_bench` measures the checks on: one definition for both, so
//! the in-process and the end-to-end numbers are about the same bytes.

/// `len` bytes of a source file's text (escapes every line, prose in comments), repeated.
pub fn source_text(len: usize) -> String {
    let one = include_str!("data/bench_source.txt");
    let mut s = one.repeat(len / one.len() + 1);
    s.truncate(len);
    s
}

/// `len` bytes of pseudo-random base64 in lines of 76 (a binary file, a certificate bundle or a
/// mail's attachment returned as text).
pub fn base64_lines(len: usize) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|i| {
            if i % 77 == 76 {
                return '\n';
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            B64[(x % 64) as usize] as char
        })
        .collect()
}
