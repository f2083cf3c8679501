//! Pure encoding: canonical JSON, the chain hash, and one record line <-> its parts.
//!
//! A line is `BODY` with the member `,"hash":"<64 hex>"` inserted before its final `}`, plus
//! `\n`. `BODY` is the record without `hash`, serialised canonically (object keys sorted by
//! byte order, no whitespace, serde_json's string escaping). The hash covers the bytes of
//! `BODY` exactly as they appear in the line: `hash = SHA-256(prev_hex || BODY)`. A verifier
//! therefore never re-serialises anything (see docs/audit-format.md).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev` of the first record of a file.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What separates the body from the hash in a line.
pub(crate) const HASH_MEMBER: &[u8] = b",\"hash\":\"";

/// Canonical JSON: object keys sorted by byte order (recursively), no whitespace, serde_json
/// escaping for strings, numbers as serde_json prints them (records only hold integers; a
/// float can only come from a client's params, and is hashed as written in the line).
pub(crate) fn canonical_json(v: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(&mut out, v);
    // Only serde_json output and ASCII punctuation were written.
    String::from_utf8(out).expect("canonical JSON is UTF-8")
}

/// Append the canonical JSON of `v` to `out` (no copy of `v` is made).
pub(crate) fn write_canonical(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Object(m) => write_object(out, m, |out, _, item| write_canonical(out, item)),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        Value::String(s) => write_str(out, s),
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Integers as serde_json prints them (itoa); other numbers through serde_json itself.
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_u64(out, u);
            } else if let Some(i) = n.as_i64() {
                out.push(b'-');
                write_u64(out, i.unsigned_abs());
            } else {
                serde_json::to_writer(&mut *out, n).expect("writing to a Vec cannot fail");
            }
        }
    }
}

/// Does `serde_json::Map` iterate in key byte order? It does unless some crate turns on
/// serde_json's `preserve_order` feature (then it keeps insertion order). Found out once.
fn maps_iterate_sorted() -> bool {
    static SORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut m = Map::new();
        m.insert("b".into(), Value::Null);
        m.insert("a".into(), Value::Null);
        m.insert("B".into(), Value::Null);
        m.keys().map(String::as_str).eq(["B", "a", "b"])
    })
}

/// Append an object with its keys in byte order, each value written by `item`
/// (`item(out, key, value)`). serde_json's map is ordered already (unless some crate turns on
/// its `preserve_order` feature, see [`maps_iterate_sorted`]); only then are keys sorted here.
pub(crate) fn write_object(
    out: &mut Vec<u8>,
    m: &Map<String, Value>,
    mut item: impl FnMut(&mut Vec<u8>, &str, &Value),
) {
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, k: &str, x: &Value| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        item(out, k, x);
    };
    if maps_iterate_sorted() {
        for (k, x) in m {
            member(out, k, x);
        }
    } else {
        let mut entries: Vec<(&String, &Value)> = m.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (k, x) in entries {
            member(out, k, x);
        }
    }
    out.push(b'}');
}

/// A JSON string with serde_json's escaping.
#[inline]
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    write_str_bytes(out, s.as_bytes());
}

/// [`write_str`] of UTF-8 held as bytes (hex digits, a formatted time).
#[inline]
pub(crate) fn write_str_bytes(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// [`write_str_bytes`] of text that never needs escaping (capjail's own: a direction, a
/// time's digits, a known method's name): the same bytes, without the look for bytes to
/// escape (a record's fixed members took a fifth of its escaping, issue 19).
#[inline]
pub(crate) fn write_plain_str(out: &mut Vec<u8>, s: &[u8]) {
    debug_assert_eq!(next_escape(s, 0), s.len(), "{s:?} needs escaping");
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s);
    out.push(b'"');
}

/// What serde_json writes for a byte of a string: 0 (the byte itself), `u` (`\u00XX`) or the
/// letter after a backslash (serde_json's `ESCAPE` table).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = b'u';
        c += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// The index of the first byte of `b[from..]` that needs escaping (`b.len()` if none), eight
/// bytes at a time: a byte < 0x20, `"` or `\`. Of the flags the word tricks raise, the lowest
/// is always a true one (a false one can only follow a true one, through a borrow).
#[inline]
fn next_escape(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let ctrl = x.wrapping_sub(ONES * 0x20) & !x;
        let q = x ^ (ONES * u64::from(b'"'));
        let q = q.wrapping_sub(ONES) & !q;
        let s = x ^ (ONES * u64::from(b'\\'));
        let s = s.wrapping_sub(ONES) & !s;
        let hit = (ctrl | q | s) & HIGH;
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && ESCAPE[b[i] as usize] == 0 {
        i += 1;
    }
    i
}

/// The inside of a JSON string (no quotes), with serde_json's escaping.
pub(crate) fn write_escaped(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    loop {
        let i = next_escape(b, start);
        out.extend_from_slice(&b[start..i]);
        let Some(&c) = b.get(i) else {
            return;
        };
        match ESCAPE[c as usize] {
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 15)],
            ]),
            e => out.extend_from_slice(&[b'\\', e]),
        }
        start = i + 1;
    }
}

/// One member of a record being encoded by [`write_record`].
pub(crate) enum Member<'a> {
    /// A string held as UTF-8 bytes.
    StrBytes(&'a [u8]),
    U64(u64),
    /// Any JSON value, written canonically.
    Json(&'a Value),
}

/// Append a record object whose members are given in any order: they are written sorted by
/// key bytes, which is the canonical form of the same record as a JSON object. Keys must be
/// distinct.
pub(crate) fn write_record(out: &mut Vec<u8>, members: &mut [(&str, Member)]) {
    members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    debug_assert!(
        members.windows(2).all(|w| w[0].0 != w[1].0),
        "duplicate record key"
    );
    out.push(b'{');
    for (i, (k, m)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        match m {
            Member::StrBytes(s) => write_str_bytes(out, s),
            Member::U64(n) => write_u64(out, *n),
            Member::Json(v) => write_canonical(out, v),
        }
    }
    out.push(b'}');
}

/// Decimal digits of `n` without allocating.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Append the decimal digits of `n`.
#[inline]
pub(crate) fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa_u64(n).as_bytes());
}

fn itoa_u64(mut n: u64) -> Digits {
    let mut d = Digits {
        buf: [0; 20],
        start: 20,
    };
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `SHA-256(prev_hex_ascii || body)`, lower-case hex.
pub(crate) fn chain_hash(prev: &str, body: &[u8]) -> String {
    let hex = chain_hash_hex(prev.as_bytes(), body);
    String::from_utf8(hex.to_vec()).expect("hex is ASCII")
}

/// [`chain_hash`] without an allocation: the 64 hex digits.
pub(crate) fn chain_hash_hex(prev: &[u8], body: &[u8]) -> [u8; 64] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(body);
    let mut hex = [0u8; 64];
    hex_into(&h.finalize(), &mut hex);
    hex
}

/// Lower-case hex of `bytes` into `out` (twice as long), a byte's two digits from a table:
/// a record's hash in about a third of the `hex` crate's instructions (issue 19).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    static DIGITS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut t = [[0u8; 2]; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = [HEX[b >> 4], HEX[b & 15]];
            b += 1;
        }
        t
    };
    debug_assert_eq!(out.len(), 2 * bytes.len());
    for (b, o) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        o.copy_from_slice(&DIGITS[usize::from(*b)]);
    }
}

#[cfg(test)]
/// Serialise a record (which must not hold `hash`) into its line, newline included.
/// Returns the line and the record's hash.
pub(crate) fn encode_line(record: &Map<String, Value>, prev: &str) -> (Vec<u8>, String) {
    debug_assert!(!record.contains_key("hash"));
    let mut line = Vec::with_capacity(256);
    write_object(&mut line, record, |out, _, item| write_canonical(out, item));
    let hash = seal_line(&mut line, 0, prev);
    (line, hash)
}

/// `buf[start..]` holds a record's canonical body (a JSON object); turn it into the record's
/// line in place (the `hash` member before the final `}`, then `\n`) and return the hash.
#[cfg(test)]
pub(crate) fn seal_line(buf: &mut Vec<u8>, start: usize, prev: &str) -> String {
    let hash = seal_line_hex(buf, start, prev.as_bytes());
    String::from_utf8(hash.to_vec()).expect("hex is ASCII")
}

/// [`seal_line`] without an allocation: returns the hash's 64 hex digits.
pub(crate) fn seal_line_hex(buf: &mut Vec<u8>, start: usize, prev: &[u8]) -> [u8; 64] {
    debug_assert_eq!(buf.last(), Some(&b'}'));
    let hash = chain_hash_hex(prev, &buf[start..]);
    let line = buf;
    line.pop();
    line.extend_from_slice(HASH_MEMBER);
    line.extend_from_slice(&hash);
    line.extend_from_slice(b"\"}\n");
    hash
}

/// A line split into its parts (not yet checked against the chain).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedLine {
    /// `BODY`: the bytes the hash covers.
    pub(crate) body: Vec<u8>,
    /// The stored hash.
    pub(crate) hash: String,
    pub(crate) record: Map<String, Value>,
    pub(crate) seq: u64,
    pub(crate) prev: String,
    pub(crate) kind: String,
}

/// Split a line (without its `\n`) into body and stored hash and read the chain fields.
/// `Err` says why the line is not a record.
pub(crate) fn parse_line(line: &[u8]) -> Result<ParsedLine, String> {
    const TAIL: usize = 64 + 2; // hex + `"}`
    if line.len() < HASH_MEMBER.len() + TAIL + 1 || !line.ends_with(b"\"}") {
        return Err(not_record(line));
    }
    let cut = line.len() - TAIL - HASH_MEMBER.len();
    if &line[cut..cut + HASH_MEMBER.len()] != HASH_MEMBER {
        return Err(not_record(line));
    }
    let hash = &line[line.len() - TAIL..line.len() - 2];
    if !hash
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return Err("the `hash` member is not 64 lower-case hex digits".into());
    }
    let mut body = line[..cut].to_vec();
    body.push(b'}');
    let record: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("invalid JSON: {e}")),
    };
    if record.contains_key("hash") {
        return Err("`hash` appears twice".into());
    }
    let seq = record
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or("missing or non-integer `seq`")?;
    let prev = match record.get("prev").and_then(Value::as_str) {
        Some(p)
            if p.len() == 64
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            p.to_string()
        }
        _ => return Err("missing or malformed `prev`".into()),
    };
    let kind = record
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("missing `kind`")?
        .to_string();
    Ok(ParsedLine {
        body,
        hash: String::from_utf8_lossy(hash).into_owned(),
        record,
        seq,
        prev,
        kind,
    })
}

fn not_record(line: &[u8]) -> String {
    match serde_json::from_slice::<Value>(line) {
        Ok(_) => {
            "valid JSON but not a record line (it must end with `,\"hash\":\"<64 hex>\"}`)".into()
        }
        Err(e) => format!("invalid JSON: {e}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// The table's hex is the `hex` crate's, for every byte and for hashes.
    #[test]
    fn hex_from_the_table_is_hex() {
        let all: Vec<u8> = (0..=255).collect();
        let mut out = vec![0u8; 512];
        hex_into(&all, &mut out);
        assert_eq!(out, hex::encode(&all).into_bytes());
        for body in [&b""[..], b"x", &[0xff; 100]] {
            let h = chain_hash_hex(GENESIS.as_bytes(), body);
            let mut d = Sha256::new();
            d.update(GENESIS.as_bytes());
            d.update(body);
            assert_eq!(h.to_vec(), hex::encode(d.finalize()).into_bytes());
        }
    }

    /// A small deterministic generator for the differential tests (xorshift64*).
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        /// A string mixing plain ASCII with what needs escaping and non-ASCII text.
        pub(crate) fn text(&mut self, max: usize) -> String {
            const PIECES: &[&str] = &[
                "a",
                "Z",
                "hello ",
                "0",
                "\"",
                "\\",
                "\n",
                "\r",
                "\t",
                "\u{8}",
                "\u{c}",
                "\u{0}",
                "\u{1}",
                "\u{1f}",
                "\u{7f}",
                " ",
                "/",
                "é",
                "ß",
                "€",
                "😀",
                "\u{2028}",
                "\u{fffd}",
                "~",
                "\u{80}",
                "long run of plain text with no escapes at all ",
            ];
            let n = self.below(max + 1);
            (0..n).map(|_| PIECES[self.below(PIECES.len())]).collect()
        }
    }

    /// The escaping is serde_json's, byte for byte: every ASCII byte alone and at every offset
    /// of a word (the eight-byte scan), and generated mixtures.
    #[test]
    fn write_str_escapes_as_serde_json_does() {
        let check = |s: &str| {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        };
        for c in 0u8..0x80 {
            for pad in 0..18 {
                let plain = "x".repeat(pad);
                check(&format!("{plain}{}{plain}", c as char));
                check(&format!("{plain}{}", c as char));
            }
        }
        for c in ['é', '😀', '\u{7ff}', '\u{ffff}', '\u{10ffff}'] {
            for pad in 0..10 {
                check(&format!(
                    "{}{c}\"{}",
                    "y".repeat(pad),
                    "\u{1}".repeat(pad % 3)
                ));
            }
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            check(&rng.text(24));
        }
    }

    /// Numbers, booleans and null as serde_json writes them.
    #[test]
    fn write_canonical_scalars_as_serde_json_does() {
        let values = [
            json!(0),
            json!(1),
            json!(-1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(-9_007_199_254_740_993i64),
            json!(1.5),
            json!(-0.0),
            json!(1e300),
            json!(2.5e-10),
            json!(123456789.125),
            json!(true),
            json!(false),
            Value::Null,
            serde_json::from_str("18446744073709551616").unwrap(),
            serde_json::from_str("-1e5").unwrap(),
        ];
        for v in values {
            assert_eq!(
                canonical_json(&v),
                serde_json::to_string(&v).unwrap(),
                "{v}"
            );
        }
        let mut rng = Rng(7);
        for _ in 0..10_000 {
            let u = rng.next() >> rng.below(64);
            let i = -((rng.next() >> (rng.below(63) + 1)) as i64);
            for v in [json!(u), json!(i)] {
                assert_eq!(canonical_json(&v), serde_json::to_string(&v).unwrap());
            }
        }
    }

    #[test]
    fn canonical_sorts_keys_by_bytes_and_has_no_whitespace() {
        let v = json!({"b": 1, "a": {"z": [1, "x\n\u{1}"], "Z": null}, "é": true, "_": -3});
        assert_eq!(
            canonical_json(&v),
            r#"{"_":-3,"a":{"Z":null,"z":[1,"x\n\u0001"]},"b":1,"é":true}"#
        );
    }

    #[test]
    fn line_round_trip_and_hash_covers_body() {
        let rec = json!({"kind": "decision", "seq": 1, "prev": GENESIS, "time": "t"});
        let (line, hash) = encode_line(rec.as_object().unwrap(), GENESIS);
        assert!(line.ends_with(b"\"}\n"));
        let text = std::str::from_utf8(&line).unwrap();
        assert_eq!(
            text,
            format!("{{\"kind\":\"decision\",\"prev\":\"{GENESIS}\",\"seq\":1,\"time\":\"t\",\"hash\":\"{hash}\"}}\n")
        );
        let p = parse_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(p.hash, hash);
        assert_eq!(chain_hash(GENESIS, &p.body), hash);
        assert_eq!((p.seq, p.kind.as_str()), (1, "decision"));
        // The whole line is valid JSON too.
        let _: Value = serde_json::from_slice(&line).unwrap();
    }

    #[test]
    fn known_answer() {
        // echo -n '0…0{}' | sha256sum
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(chain_hash("", b"abc"), sha256_hex(b"abc"));
    }

    #[test]
    fn not_records() {
        assert!(parse_line(b"{\"kind\":\"x\"")
            .unwrap_err()
            .starts_with("invalid JSON"));
        assert!(parse_line(b"{}").unwrap_err().contains("not a record"));
        let rec = json!({"kind": "x", "seq": 1, "prev": "zz"});
        let (line, _) = encode_line(rec.as_object().unwrap(), GENESIS);
        assert!(parse_line(&line[..line.len() - 1])
            .unwrap_err()
            .contains("prev"));
    }
}
