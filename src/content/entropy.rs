//! Random-looking strings in a URL's host, path or query: the shape of an exfiltrated key
//! that no vendor detector knows. Thresholds were tuned on the benign corpus
//! (tests/fixtures/benign): long tokens only, mixed letter cases and digits, not hex (hashes,
//! UUIDs and commit ids are hex), high per-character entropy.

use std::ops::Range;

use super::secrets::{Class, Hit};

/// Shortest token judged.
pub(crate) const MIN_LEN: usize = 32;
/// Fewest bits of Shannon entropy per character.
pub(crate) const MIN_BITS: f64 = 4.3;

pub(crate) fn shannon(s: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in s {
        counts[c as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Does this token look random enough to be a key?
pub(crate) fn random_token(t: &[u8]) -> bool {
    t.len() >= MIN_LEN
        && t.iter().any(u8::is_ascii_uppercase)
        && t.iter().any(u8::is_ascii_lowercase)
        && t.iter().any(u8::is_ascii_digit)
        && !t.iter().all(|c| c.is_ascii_hexdigit() || *c == b'-')
        && shannon(t) >= MIN_BITS
}

/// An SSH public key blob (base64 of a length-prefixed `ssh-...`/`ecdsa-...` name): public.
fn ssh_public_key(t: &[u8]) -> bool {
    t.starts_with(b"AAAA")
        && [&b"NzaC1"[..], b"VjZHNh", b"NrLXNz"]
            .iter()
            .any(|m| t[4..t.len().min(16)].windows(m.len()).any(|w| w == *m))
}

/// Documentation placeholders, and Subresource Integrity hashes (`sha512-<base64>`, in every
/// lockfile): random by construction, public by purpose.
fn placeholder(t: &[u8]) -> bool {
    [&b"sha256-"[..], b"sha384-", b"sha512-", b"sha1-"]
        .iter()
        .any(|p| t.starts_with(p))
        || std::str::from_utf8(t).is_ok_and(super::secrets::placeholder)
}

/// Judge the tokens (`[A-Za-z0-9_+/=-]` runs) of one URL part; `offset` places spans.
pub(crate) fn scan_part(part: &str, offset: usize, out: &mut Vec<Hit>) {
    let b = part.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let n = b[i..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'/'))
            .count();
        if n == 0 {
            i += 1;
            continue;
        }
        let tok = &b[i..i + n];
        // A `data:...;base64,` payload (an inline image): binary by purpose. Text hidden in it
        // is still found, because every base64 token is decoded and scanned as text.
        if b[..i].ends_with(b";base64,") {
            i += n;
            continue;
        }
        // Judged piece by piece between `/` and `+` (path segments, query words); base64
        // carrying those is decoded and scanned as text elsewhere.
        let pieces: Vec<Range<usize>> = {
            let mut v = Vec::new();
            let mut s = 0;
            for (k, &c) in tok.iter().enumerate() {
                if c == b'/' || c == b'+' {
                    v.push(s..k);
                    s = k + 1;
                }
            }
            v.push(s..n);
            v
        };
        for r in pieces {
            let piece = &tok[r.clone()];
            // base64 of readable text is not a key: its decoded text is scanned instead.
            let text = std::str::from_utf8(piece)
                .ok()
                .and_then(super::encodings::decode_token);
            if random_token(piece)
                && text.is_none()
                && !ssh_public_key(piece)
                && !placeholder(piece)
            {
                out.push(Hit {
                    class: Class::HighEntropy,
                    detector: "high_entropy_url",
                    span: offset + i + r.start..offset + i + r.end,
                });
            }
        }
        i += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_vs_words() {
        assert!(random_token(b"Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9H0iJ"));
        assert!(!random_token(
            b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        ));
        assert!(!random_token(
            b"getting-started-with-the-model-context-protocol"
        ));
        assert!(!random_token(b"Short1Abc"));
        let mut v = Vec::new();
        scan_part("/v1/Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9H0iJ/x", 10, &mut v);
        assert_eq!(v.len(), 1);
        assert!(v[0].span.start >= 10 && v[0].span.end <= 52);
    }
}
