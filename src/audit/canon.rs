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
        Value::Object(m) => write_object(out, m, &mut |out, _, item| write_canonical(out, item)),
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
        // Numbers, booleans, null: serde_json's own compact form.
        other => serde_json::to_writer(&mut *out, other).expect("writing to a Vec cannot fail"),
    }
}

/// Append an object with its keys in byte order, each value written by `item`
/// (`item(out, key, value)`). serde_json's map is ordered already (unless some crate turns on
/// its `preserve_order` feature); the order is checked, and only sorted when needed.
pub(crate) fn write_object(
    out: &mut Vec<u8>,
    m: &Map<String, Value>,
    item: &mut dyn FnMut(&mut Vec<u8>, &str, &Value),
) {
    out.push(b'{');
    let sorted = m
        .keys()
        .zip(m.keys().skip(1))
        .all(|(a, b)| a.as_bytes() < b.as_bytes());
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, k: &str, x: &Value| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        item(out, k, x);
    };
    if sorted {
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
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// One member of a record being encoded by [`write_record`].
pub(crate) enum Member<'a> {
    Str(&'a str),
    U64(u64),
    Bool(bool),
    Null,
    /// Any JSON value, written canonically.
    Json(&'a Value),
    /// Bytes that are canonical JSON already (a cached encoding).
    Canonical(&'a [u8]),
    /// Written by a function (canonically).
    With(&'a dyn Fn(&mut Vec<u8>)),
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
            Member::Str(s) => write_str(out, s),
            Member::U64(n) => out.extend_from_slice(itoa_u64(*n).as_bytes()),
            Member::Bool(true) => out.extend_from_slice(b"true"),
            Member::Bool(false) => out.extend_from_slice(b"false"),
            Member::Null => out.extend_from_slice(b"null"),
            Member::Json(v) => write_canonical(out, v),
            Member::Canonical(b) => out.extend_from_slice(b),
            Member::With(f) => f(out),
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
    let hex = chain_hash_hex(prev, body);
    String::from_utf8(hex.to_vec()).expect("hex is ASCII")
}

/// [`chain_hash`] without an allocation: the 64 hex digits.
pub(crate) fn chain_hash_hex(prev: &str, body: &[u8]) -> [u8; 64] {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(body);
    let mut hex = [0u8; 64];
    hex::encode_to_slice(h.finalize(), &mut hex).expect("64 hex digits for 32 bytes");
    hex
}

#[cfg(test)]
/// Serialise a record (which must not hold `hash`) into its line, newline included.
/// Returns the line and the record's hash.
pub(crate) fn encode_line(record: &Map<String, Value>, prev: &str) -> (Vec<u8>, String) {
    debug_assert!(!record.contains_key("hash"));
    let mut line = Vec::with_capacity(256);
    write_object(&mut line, record, &mut |out, _, item| {
        write_canonical(out, item)
    });
    let hash = seal_line(&mut line, 0, prev);
    (line, hash)
}

/// `buf[start..]` holds a record's canonical body (a JSON object); turn it into the record's
/// line in place (the `hash` member before the final `}`, then `\n`) and return the hash.
#[cfg(test)]
pub(crate) fn seal_line(buf: &mut Vec<u8>, start: usize, prev: &str) -> String {
    let hash = seal_line_hex(buf, start, prev);
    String::from_utf8(hash.to_vec()).expect("hex is ASCII")
}

/// [`seal_line`] without an allocation: returns the hash's 64 hex digits.
pub(crate) fn seal_line_hex(buf: &mut Vec<u8>, start: usize, prev: &str) -> [u8; 64] {
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
mod tests {
    use super::*;
    use serde_json::json;

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
